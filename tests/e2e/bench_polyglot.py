"""Benchmark of the mixed-language workflow (issue: one workflow, three languages).

    bindings-python/.venv/bin/python tests/e2e/bench_polyglot.py [--backend sqlite|postgres|both]

W1: one order_fulfillment task (5 steps: Python, Ruby + TypeScript in parallel, Python, Ruby) at
a time, create → complete as seen by the client: p50/p95/p99 over --runs runs after warm-up.
W2: --tasks tasks submitted at once with one worker process per language: wall time, steps/s.
PostgreSQL needs DATABASE_URL. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import tasker_core  # noqa: E402
from conftest import order_context  # noqa: E402
from polyglot import ORDER_QUEUES, TEMPLATES, ScratchDb, WorkerGroup  # noqa: E402


def percentile(values: list, p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p * len(ordered) + 0.5)) - 1))]


def bench(backend: str, runs: int, tasks: int, concurrency: int) -> dict:
    db = ScratchDb.create(backend)
    group = WorkerGroup()
    try:
        client = tasker_core.connect(db.url)
        client.register_templates(str(TEMPLATES / "order_fulfillment_polyglot.yaml"))
        for language in ("python", "ruby", "typescript"):
            group.start(language, db.url, [ORDER_QUEUES[language]], concurrency=concurrency)
        latencies = []
        for i in range(20 + runs):
            start = time.perf_counter()
            done = client.create_task("polyglot", "order_fulfillment", context=order_context(i)).wait(timeout=30)
            elapsed = (time.perf_counter() - start) * 1000
            assert done.state == "complete", done.state
            if i >= 20:
                latencies.append(elapsed)
        start = time.perf_counter()
        created = [
            client.create_task("polyglot", "order_fulfillment", context=order_context(10_000 + i)) for i in range(tasks)
        ]
        for t in created:
            assert t.wait(timeout=300).state == "complete"
        wall = time.perf_counter() - start
        return {
            "backend": backend,
            "w1_p50_ms": percentile(latencies, 0.50),
            "w1_p95_ms": percentile(latencies, 0.95),
            "w1_p99_ms": percentile(latencies, 0.99),
            "w1_mean_ms": statistics.mean(latencies),
            "w2_tasks": tasks,
            "w2_wall_s": wall,
            "w2_steps_per_s": tasks * 5 / wall,
        }
    finally:
        group.stop()
        db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgres", "both"])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    os.environ["TASKER_QUIET"] = "1"
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"polyglot bench: W1 {args.runs} runs, W2 {args.tasks} tasks x 5 steps, 3 worker processes")
    print("| backend  | W1 p50 ms | W1 p95 ms | W1 p99 ms | W2 wall s | W2 steps/s |")
    print("|----------|-----------|-----------|-----------|-----------|------------|")
    for backend in backends:
        f = bench(backend, args.runs, args.tasks, args.concurrency)
        print(
            f"| {f['backend']:<8} | {f['w1_p50_ms']:>9.2f} | {f['w1_p95_ms']:>9.2f} | {f['w1_p99_ms']:>9.2f} "
            f"| {f['w2_wall_s']:>9.2f} | {f['w2_steps_per_s']:>10.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
