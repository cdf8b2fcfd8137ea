"""Prints the table of scripts/bench-compare.sh from the results it stored.

    compare_table.py OUT_DIR

Reads OUT_DIR/results/*_rN.json (written by annotate.py) and prints markdown: every engine's
W1 p50/p95/p99 and W2 steps/s (the median over rounds, then each round's value), the 1-minute
load average around its runs, and the ratios of ours to the best peer. Workflow peers (DBOS,
Celery, Temporal) run the same W1/W2 as `tasker bench`; the queue floors (procrastinate,
pgqueuer, graphile-worker) drain single jobs, so they are compared separately, as jobs/s.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

WORKFLOW_PEERS = {
    "dbos_pg": ("DBOS", "PostgreSQL"),
    "dbos_sqlite": ("DBOS", "SQLite"),
    "celery": ("Celery, prefork -c 2", "Redis"),
    "temporal": ("Temporal", "dev server (SQLite)"),
}
QUEUE_FLOORS = {
    "procrastinate": ("procrastinate, 1 proc × 10", "PostgreSQL"),
    "pgqueuer": ("pgqueuer, batch 10", "PostgreSQL"),
    "graphile": ("graphile-worker, concurrency 10", "PostgreSQL"),
}
OUR_BACKENDS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


@dataclass
class Row:
    engine: str
    backend: str
    ours: bool = False
    floor: bool = False
    w1_p50: List[float] = field(default_factory=list)
    w1_p95: List[float] = field(default_factory=list)
    w1_p99: List[float] = field(default_factory=list)
    w2: List[float] = field(default_factory=list)  # steps/s, or jobs/s for a queue floor
    loads: List[float] = field(default_factory=list)  # 1-minute load, before and after each run
    version: str = ""


def median(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def fmt(value: Optional[float], decimals: int) -> str:
    return "-" if value is None else f"{value:,.{decimals}f}"


def cell(values: List[float], decimals: int) -> str:
    """The median, then each round's value when there are several."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0], decimals)
    return f"**{fmt(median(values), decimals)}** ({' / '.join(fmt(v, decimals) for v in values)})"


def load_rows(out_dir: str) -> Dict[Tuple[str, str], Row]:
    rows: Dict[Tuple[str, str], Row] = {}

    def row(key: Tuple[str, str], engine: str, backend: str, **kind: bool) -> Row:
        if key not in rows:
            rows[key] = Row(engine, backend, **kind)
        return rows[key]

    files = sorted(glob.glob(os.path.join(out_dir, "results", "*_r*.json")), key=lambda p: json.load(open(p))["round"])
    for path in files:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        name, result = record["name"], record["result"]
        loads = [record["load_before"][0], record["load_after"][0]]
        if name == "tasker":
            for b in result.get("backends", []):
                r = row(("tasker", b["backend"]), "tasker", OUR_BACKENDS.get(b["backend"], b["backend"]), ours=True)
                r.version = (result.get("git_commit") or "")[:10] + (" (dirty)" if result.get("git_dirty") else "")
                for values, key in ((r.w1_p50, "w1_p50_ms"), (r.w1_p95, "w1_p95_ms"), (r.w1_p99, "w1_p99_ms")):
                    if b.get(key) is not None:
                        values.append(b[key])
                if b.get("w2_steps_per_s") is not None:
                    r.w2.append(b["w2_steps_per_s"])
                r.loads += loads
        elif name in WORKFLOW_PEERS:
            engine, backend = WORKFLOW_PEERS[name]
            r = row((name, ""), engine, backend)
            r.version = str(result.get("version", "")).split(",")[0]
            w1, w2 = result.get("w1"), result.get("w2")
            if w1:
                r.w1_p50.append(w1["p50_ms"])
                r.w1_p95.append(w1["p95_ms"])
                r.w1_p99.append(w1["p99_ms"])
            if w2:
                r.w2.append(w2["steps_per_s"])
            r.loads += loads
        elif name in QUEUE_FLOORS:
            engine, backend = QUEUE_FLOORS[name]
            r = row((name, ""), engine, backend, floor=True)
            r.version = str(result.get("version", ""))
            jobs = result.get("jobs")
            if jobs:
                r.w2.append(jobs["jobs_per_s"])
            r.loads += loads
    return rows


def best(rows: List[Row], metric: str, lowest: bool) -> Optional[Row]:
    scored = [(median(getattr(r, metric)), r) for r in rows if getattr(r, metric)]
    if not scored:
        return None
    pick = min if lowest else max
    return pick(scored, key=lambda s: s[0])[1]


def ratio(ours: Optional[float], theirs: Optional[float]) -> str:
    return "-" if ours is None or not theirs else f"{ours / theirs:.2f}"


def main() -> None:
    out_dir = sys.argv[1]
    rows = load_rows(out_dir)
    ours = [r for r in rows.values() if r.ours]
    peers = [r for r in rows.values() if not r.ours and not r.floor]
    floors = [r for r in rows.values() if r.floor]

    print("| engine | version | backend | W1 p50 ms | W1 p95 ms | W1 p99 ms | W2 steps/s | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in ours + peers:
        load = f"{min(r.loads):.1f}–{max(r.loads):.1f}" if r.loads else "-"
        print(
            f"| {r.engine} | {r.version} | {r.backend} | {cell(r.w1_p50, 2)} | {cell(r.w1_p95, 2)} "
            f"| {cell(r.w1_p99, 2)} | {cell(r.w2, 0)} | {load} |"
        )
    for r in floors:
        load = f"{min(r.loads):.1f}–{max(r.loads):.1f}" if r.loads else "-"
        print(f"| {r.engine} (queue floor) | {r.version} | {r.backend} | - | - | - | {cell(r.w2, 0)} jobs/s | {load} |")
    print()
    print("Medians over the rounds; each round's value in parentheses. W1: 200 runs after 20 warm-up;")
    print("W2: 1,000 diamonds (4,000 steps); queue floors: 4,000 single no-op jobs (no DAG, no results passed).")

    best_w1 = best(peers, "w1_p50", lowest=True)
    best_w2 = best(peers, "w2", lowest=False)
    best_floor = best(floors, "w2", lowest=False)
    same_backend = {
        "SQLite": next((r for r in peers if r.engine == "DBOS" and r.backend == "SQLite"), None),
        "PostgreSQL": next((r for r in peers if r.engine == "DBOS" and r.backend == "PostgreSQL"), None),
    }
    print()
    print("| ours | W1 p50: ours / best peer | W2 steps/s: ours / best peer | same backend (DBOS): W1 p50 / W2 | W2 steps/s ÷ best queue floor jobs/s |")
    print("|---|---|---|---|---|")

    def name(r: Optional[Row]) -> str:
        return "no peer" if r is None else f"{r.engine}, {r.backend}"

    for r in ours:
        same = same_backend.get(r.backend)
        print(
            f"| tasker {r.backend} "
            f"| {ratio(median(r.w1_p50), best_w1 and median(best_w1.w1_p50))} ({name(best_w1)}) "
            f"| {ratio(median(r.w2), best_w2 and median(best_w2.w2))} ({name(best_w2)}) "
            f"| {ratio(median(r.w1_p50), same and median(same.w1_p50))} / {ratio(median(r.w2), same and median(same.w2))} "
            f"| {ratio(median(r.w2), best_floor and median(best_floor.w2))} ({name(best_floor)}) |"
        )
    print()
    print("W1 ratio below 1: our latency is lower; W2 ratio above 1: our throughput is higher.")
    skipped_path = os.path.join(out_dir, "skipped.txt")
    if os.path.exists(skipped_path):
        skipped = open(skipped_path, encoding="utf-8").read().strip()
        if skipped:
            print()
            print("Skipped: " + "; ".join(skipped.splitlines()))


if __name__ == "__main__":
    main()
