"""W2 with Python handlers: 1,000 diamond workflows submitted at once, no-op Python handlers.

    python bindings-python/bench/bench_w2.py --backend both --rust-baseline target/release/tasker

Prints steps/s for the Python worker, the binding's cost per step (time from an event's
arrival in Python to `complete` returning: decode, context, handler call, encode, hand-over;
and the time poll calls took when they returned an event), and process CPU per step. With
``--rust-baseline`` it also runs ``tasker bench`` (Rust no-op handlers, same W2, same
machine, right before) and prints the ratio.

Each backend gets a fresh database: a temporary SQLite file; on PostgreSQL a scratch database
created with ``psql`` on the server of ``DATABASE_URL`` (or, without psql, a unique
namespace in ``DATABASE_URL`` itself).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import tasker_core

DIAMOND = """
name: bench_diamond
namespace_name: {ns}
version: 1.0.0
steps:
  - {{ name: a, handler: {{ callable: noop }} }}
  - {{ name: b, dependencies: [a], handler: {{ callable: noop }} }}
  - {{ name: c, dependencies: [a], handler: {{ callable: noop }} }}
  - {{ name: d, dependencies: [b, c], handler: {{ callable: noop }} }}
"""


class Finished:
    """Counts the last step of each diamond, so the end of W2 is noticed without reading the
    database while it runs (as `tasker bench` watches engine events)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.target = -1
        self.reached = threading.Event()

    def tick(self, context) -> None:
        if context.step_name == "d":
            with self.lock:
                self.count += 1
                if self.count == self.target:
                    self.reached.set()


FINISHED = Finished()


def noop(context):
    FINISHED.tick(context)
    return None


async def noop_async(context):
    FINISHED.tick(context)
    return None


def scratch_postgres(server: str) -> Tuple[str, Optional[str]]:
    """A fresh database on `server` (url, name to drop), or `server` itself without psql."""
    if not shutil.which("psql"):
        return server, None
    name = "tasker_pybench_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", server, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    base = server.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def drop_postgres(server: str, name: Optional[str]) -> None:
    if name:
        subprocess.run(["psql", server, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


def run_w2(url: str, tasks: int, concurrency: int, threads: int, use_async: bool) -> Dict[str, float]:
    ns = "pybench_" + uuid.uuid4().hex[:8]
    client = tasker_core.connect(url, max_connections=16)
    with tempfile.TemporaryDirectory() as d:
        Path(d, "diamond.yaml").write_text(DIAMOND.format(ns=ns))
        client.register_templates(d)
    handler = noop_async if use_async else noop
    worker = tasker_core.Worker(client, [ns], {"noop": handler}, concurrency, threads=threads)
    worker.start()
    try:
        for _ in range(20):  # warm-up
            client.create_task(ns, "bench_diamond").wait(timeout=60)
        with FINISHED.lock:
            FINISHED.reached.clear()
            FINISHED.target = FINISHED.count + tasks
        before = worker.stats()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        per = -(-tasks // 8)
        with ThreadPoolExecutor(8) as pool:
            chunks = pool.map(
                lambda n: [client.create_task(ns, "bench_diamond").task_uuid for _ in range(n)],
                [min(per, tasks - i * per) for i in range(8)],
            )
            ids: List[str] = [i for chunk in chunks for i in chunk]
        if not FINISHED.reached.wait(600):
            raise SystemExit("W2 did not finish within 600 s")
        # Every last step ran; wait for their outcomes to be applied (the last task is
        # usually among the last few created).
        for task_uuid in reversed(ids):
            done = client.wait_for_task(task_uuid, timeout=600)
            if done.state != "complete":
                raise SystemExit(f"task {task_uuid} ended {done.state}")
            if len(client.list_tasks(namespace=ns, state="complete", limit=tasks + 20)) == tasks + 20:
                break
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        after = worker.stats()
    finally:
        worker.stop(10)
        client.close()
    steps = tasks * 4
    events = after["events"] - before["events"]

    def window_mean(key: str) -> float:
        return (after[key] * after["events"] - before[key] * before["events"]) / events if events else 0.0

    return {
        "wall_s": wall,
        "steps_per_s": steps / wall,
        "dispatch_us": window_mean("dispatch_us"),
        "poll_us": window_mean("poll_us"),
        "cpu_us_per_step": cpu / steps * 1e6,
    }


def rust_baseline(tasker: str, backend: str, tasks: int, concurrency: int, pg: Optional[str]) -> Dict[str, float]:
    cmd = [tasker, "bench", "--backend", backend, "--w1-runs", "20", "--w2-tasks", str(tasks)]
    cmd += ["--w3-steps", "10", "--concurrency", str(concurrency), "--json"]
    if pg:
        cmd += ["--postgres-url", pg]
    cpu0 = os.times()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    cpu1 = os.times()
    figures = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    (f,) = [f for f in figures if f["backend"] == backend]
    return {
        "steps_per_s": f["w2_steps_per_s"],
        "wall_s": f["w2_wall_s"],
        # Whole run (W1 + W2 + W3 + setup): an upper bound for W2's CPU per step.
        "cpu_us_per_step_all": (
            (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system)
        )
        / (tasks * 4)
        * 1e6,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=128)
    p.add_argument("--threads", type=int, default=8, help="poller threads of the Python worker")
    p.add_argument("--async", dest="use_async", action="store_true", help="async no-op handlers")
    p.add_argument("--rust-baseline", metavar="TASKER", help="path of the tasker binary (release build)")
    args = p.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    pg_server = os.environ.get("DATABASE_URL", "")
    print(
        f"W2: {args.tasks} diamonds, concurrency {args.concurrency}, {args.threads} threads, "
        f"{'async' if args.use_async else 'sync'} Python no-op handlers"
    )
    for backend in backends:
        rust = None
        if args.rust_baseline:
            rust = rust_baseline(
                args.rust_baseline, backend, args.tasks, args.concurrency, pg_server if backend == "postgres" else None
            )
        if backend == "sqlite":
            tmp = tempfile.mkdtemp()
            py = run_w2(f"sqlite://{tmp}/bench.db", args.tasks, args.concurrency, args.threads, args.use_async)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if not pg_server.startswith("postgres"):
                sys.exit("the PostgreSQL run needs DATABASE_URL=postgres://…")
            url, name = scratch_postgres(pg_server)
            try:
                py = run_w2(url, args.tasks, args.concurrency, args.threads, args.use_async)
            finally:
                drop_postgres(pg_server, name)
        line = (
            f"  {backend:<8} python: {py['steps_per_s']:7.0f} steps/s ({py['wall_s']:.2f} s) | "
            f"hop: dispatch {py['dispatch_us']:.1f} µs + poll {py['poll_us']:.1f} µs per step | "
            f"CPU {py['cpu_us_per_step']:.0f} µs/step"
        )
        if rust:
            line += (
                f" || rust: {rust['steps_per_s']:7.0f} steps/s ({rust['wall_s']:.2f} s) | "
                f"python/rust {py['steps_per_s'] / rust['steps_per_s']:.0%}"
            )
        print(line, flush=True)
        print("  json " + json.dumps({"backend": backend, "python": py, "rust": rust}))


if __name__ == "__main__":
    main()
