"""A Python worker process for the cross-language fixtures.

    python tests/workers/python_worker.py --database-url URL --queue polyglot_python [--queue …]
        [--handlers polyglot]   # the handlers of tests/handlers/python/<NAME>_handlers.py

Runs until SIGINT/SIGTERM, then stops gracefully.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "handlers", "python"))

import tasker_core  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--queue", action="append", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    parser.add_argument("--handlers", default="polyglot")
    args = parser.parse_args()
    handlers = importlib.import_module(f"{args.handlers}_handlers")
    client = tasker_core.connect(args.database_url)
    worker = tasker_core.Worker(
        client,
        queues=args.queue,
        handlers=handlers.HANDLERS,
        concurrency=args.concurrency,
        lease_seconds=args.lease_seconds,
    )
    print(f"python worker pid {os.getpid()} on {', '.join(args.queue)}", flush=True)
    worker.run()


if __name__ == "__main__":
    main()
