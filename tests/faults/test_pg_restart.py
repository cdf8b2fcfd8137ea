"""Scenario 1: PostgreSQL restarted (`pg_ctl restart -m fast`, three times) in the middle of a run.

Python, Ruby and TypeScript workers and a `tasker serve` orchestrator share a cluster that this
test owns. Every connection they hold is killed three times while steps run; every task must still
complete, each successful attempt's effect must be in the ledger exactly once, and no step may
run twice at once."""

from __future__ import annotations

import shutil
import time

import ledger
from faultlib import FULL, PgCluster, create_pg_database, size, wait_terminal

TASKS = size(150, 400)  # x 6 steps: 900 reduced, 2,400 full


def test_postgres_restarted_three_times_mid_run(harness_factory) -> None:
    cluster = PgCluster().start()
    h = None
    try:
        url, _ = create_pg_database(cluster.url)
        h = harness_factory("pg_restart", "postgres", url, pg_log=cluster.log)
        # Long leases: a lease that expires during a restart would be the engine's failure to
        # renew it, not the test's doing.
        h.serve()
        h.worker("python", lease=15)
        h.worker("ruby", lease=15)
        h.worker("typescript", lease=15)
        if FULL:
            h.worker("python", lease=15)
            h.worker("ruby", lease=15)

        contexts = [{"sleep_ms": 15, **({"fail_steps": {"c": 1}} if i % 5 == 0 else {})} for i in range(TASKS)]
        tasks = [h.create("diamond", c) for c in contexts]
        total = TASKS * 6
        durations = []
        fractions = (0.2, 0.45, 0.7)
        for fraction in fractions:
            deadline = time.monotonic() + 300
            while ledger.count(h.ledger_url) < fraction * total:
                assert time.monotonic() < deadline, (
                    f"the run stalled before {fraction:.0%} of its steps\n{h.log_excerpt()}"
                )
                time.sleep(0.05)
            durations.append(round(cluster.restart(), 2))
        h.figures.restarts = cluster.restarts
        h.figures.extra["restart_seconds"] = durations
        h.figures.extra["runs_at_restarts"] = [int(f * total) for f in fractions]

        states = wait_terminal(h.db, tasks, timeout=size(240, 1200))
        time.sleep(2)  # let the processes settle before measuring them idle
        v = h.finish({u: {"complete"} for u in tasks})
        # The data flowed through every language: n = 1 + the sum of the dependencies' n.
        expected_n = {"a": 1, "b": 2, "c": 2, "d": 5, "e": 6, "f": 6}
        wrong = []
        for s in h.db.steps():
            if s.state == "complete":
                r = h.db.step_results(s.step_uuid)
                if not isinstance(r, dict) or r.get("n") != expected_n[s.name]:
                    wrong.append(f"{s.name} {s.step_uuid}: {r}")
        v.add("wrong results", wrong)
        if any(st != "complete" for st in states.values()) and not any("process logs" in p for p in v.problems):
            v.problems.append("process logs (tail):\n" + h.log_excerpt())
        v.assert_ok()
    finally:
        if h is not None:
            h.stop()  # before the cluster goes away
            shutil.copy(cluster.log, h.tmp / "postgres.log")
        cluster.stop()
