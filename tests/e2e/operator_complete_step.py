"""An operator's script: completes a failed step by hand with the result the operator knows,
through the public `tasker_core` client, in a process of its own (tests/e2e/test_recovery.py).

    python tests/e2e/operator_complete_step.py --database-url URL --task UUID --step charge \\
        --result '{"charge_id": "manual-1"}' --by ops --reason "charged by phone" \\
        [--note "customer called"]   # first mark the task's open DLQ entry `investigating`

Prints one JSON line: the step afterwards and the task's DLQ entry as the script found it.
Exits 1 with `{"error": code, "message": …}` on stderr when the engine refuses (for instance a
step that is already complete), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys

import tasker_core
from tasker_core.errors import TaskerError


def json_value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {text!r}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--task", required=True, help="the task's uuid")
    parser.add_argument("--step", required=True, help="the step's name or uuid")
    parser.add_argument("--result", required=True, type=json_value, help="the step's result, as JSON")
    parser.add_argument("--by", required=True)
    parser.add_argument("--reason", required=True)
    parser.add_argument("--note", help="mark the task's open DLQ entry `investigating` with this note first")
    args = parser.parse_args()

    client = tasker_core.connect(args.database_url)
    try:
        open_entries = client.list_dlq(task_uuid=args.task, open_only=True)
        entry = open_entries[0] if open_entries else None
        if entry is not None and args.note:
            client.update_dlq_entry(entry, "investigating", note=args.note, by=args.by)
        step = client.complete_step_manually(args.task, args.step, args.result, by=args.by, reason=args.reason)
    except TaskerError as e:
        print(json.dumps({"error": e.code, "message": str(e)}), file=sys.stderr)
        return 1
    finally:
        client.close()
    print(
        json.dumps(
            {
                "task_uuid": args.task,
                "step": step.name,
                "state": step.state,
                "result": step.results,
                "attempts": step.attempts,
                "dlq_entry": entry.entry_uuid if entry else None,
                "dlq_reason": entry.reason if entry else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
