"""Benchmark: durable events consumed by a subscriber in each language (issue 11).

    bindings-python/.venv/bin/python tests/e2e/bench_events.py [--backend sqlite|postgres|both]
        [--events 50000] [--rounds 3]

For each backend: `tasker events publish bench.tick --count N` writes N events (no task, so
they spread over every partition), then one subscriber process per language — Python, Ruby,
TypeScript (tests/subscribers/) — each in a group of its own starting at the log's beginning,
handles every one (a no-op handler, acknowledged). The figure is N over the time from a
subscriber's first delivery to its N-th: the rate one member of a group sustains through its
language's package. Prints the figures and the load average; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from polyglot import ROOT, TARGET_DIR, ScratchDb, subscriber_command  # noqa: E402


def tasker_bin() -> str:
    release = TARGET_DIR / "release" / "tasker"
    return str(release if release.exists() else TARGET_DIR / "debug" / "tasker")


def consume(language: str, url: str, events: int, group: str) -> float:
    command = subscriber_command(
        language, url, group, ["bench.*"], Path(os.devnull), ["--from-start", "--expect", str(events)]
    )
    env = dict(os.environ, TASKER_QUIET="1")
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{language} subscriber failed ({out.returncode}): {out.stderr[-2000:]}")
    return float(json.loads(lines[-1])["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgres", "both"])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"load average {os.getloadavg()}; {args.events} events; {tasker_bin()}")
    for backend in backends:
        db = ScratchDb.create(backend)
        try:
            subprocess.run(
                [
                    tasker_bin(),
                    "--database-url",
                    db.url,
                    "events",
                    "publish",
                    "bench.tick",
                    "--payload",
                    '{"n": 1}',
                    "--count",
                    str(args.events),
                ],
                check=True,
                capture_output=True,
            )
            for language in ("python", "ruby", "typescript"):
                rates = []
                for r in range(args.rounds):
                    seconds = consume(language, db.url, args.events, f"bench_{language}_{r}")
                    rates.append(args.events / seconds)
                shown = " / ".join(f"{x:,.0f}" for x in rates)
                print(f"{backend:8} {language:10} {shown} events/s", flush=True)
        finally:
            db.drop()
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
