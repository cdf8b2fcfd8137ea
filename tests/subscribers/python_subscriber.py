"""A Python subscriber process for the cross-language events tests: every event matching
--pattern, one JSON line each, appended to --out, until INT/TERM. With --expect N it writes
nothing per event: after the N-th it prints {"events": N, "seconds": …} (first to N-th
delivery) and exits — the cross-language events benchmark (tests/e2e/bench_events.py).

    python tests/subscribers/python_subscriber.py --database-url URL --group py_audit \\
        --pattern 'order.*' --out events.jsonl [--from-start] [--expect N]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Optional

import tasker_core
from tasker_core.events import Event, Subscriber, SubscriberRunner


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--pattern", action="append", required=True)
    parser.add_argument("--out", default="/dev/null")
    parser.add_argument("--from-start", action="store_true")
    parser.add_argument("--expect", type=int, default=0)
    args = parser.parse_args()

    done = threading.Event()
    state = {"count": 0, "first": None}
    out = open(args.out, "a", buffering=1)

    class Recorder(Subscriber):
        def handle(self, event: Event) -> None:
            if args.expect:
                if state["first"] is None:
                    state["first"] = time.perf_counter()
                state["count"] += 1
                if state["count"] >= args.expect:
                    done.set()
                return
            out.write(
                json.dumps(
                    {
                        "language": "python",
                        "name": event.name,
                        "event_id": str(event.event_id),
                        "task_uuid": str(event.task_uuid) if event.task_uuid else None,
                        "payload": event.payload,
                    }
                )
                + "\n"
            )

    client = tasker_core.connect(args.database_url)
    runner = SubscriberRunner(
        client,
        Recorder,
        group=args.group,
        patterns=args.pattern,
        from_start=args.from_start,
        batch_size=2000,
        poll_interval=0.01,
    )
    runner.start()
    print(f"python subscriber pid {__import__('os').getpid()} in group {args.group}", flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    if args.expect and state["count"] >= args.expect:
        first: Optional[float] = state["first"]
        print(json.dumps({"events": state["count"], "seconds": time.perf_counter() - (first or 0)}), flush=True)
    runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
