"""Stores one benchmark result with what bench-compare.sh knows about its run.

    annotate.py RESULT.json OUT.json NAME ROUND "LOAD BEFORE" "LOAD AFTER"

RESULT.json is what the engine's script saved (a peer's results/*.json, or `tasker bench --json`);
OUT.json gets it under "result", with the engine name, the round and the 1/5/15-minute load
averages read just before and just after the run.
"""

import json
import sys


def main() -> None:
    source, target, name, round_, before, after = sys.argv[1:7]
    with open(source, encoding="utf-8") as f:
        result = json.load(f)
    record = {
        "name": name,
        "round": int(round_),
        "load_before": [float(x) for x in before.split()],
        "load_after": [float(x) for x in after.split()],
        "result": result,
    }
    with open(target, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
