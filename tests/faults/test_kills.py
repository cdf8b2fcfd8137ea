"""Scenario 2: a worker and an orchestrator (`tasker serve`) SIGKILLed mid-run, on PostgreSQL
with 2-second leases. Every task completes; the steps the killed worker was running run again
(after their lease), and only those."""

from __future__ import annotations

import time
from collections import defaultdict

import ledger
from faultlib import FULL, attempt_closings, size, wait_terminal
from polyglot import WorkerProcess

TASKS = size(80, 350)  # x 6 steps: 480 reduced, 2,100 full
LEASE = 2.0


def _kill_when_busy(h, victim: WorkerProcess, in_flight: int = 3, timeout: float = 120) -> None:
    """SIGKILLs `victim` once it is running at least `in_flight` steps (per the ledger)."""
    deadline = time.monotonic() + timeout
    while ledger.count(h.ledger_url, pid=victim.pid, unfinished=True) < in_flight:
        assert time.monotonic() < deadline, f"{h.names[victim.pid]} never had {in_flight} steps in flight"
        time.sleep(0.01)
    h.kill(victim)


def test_worker_and_orchestrator_sigkilled_mid_run(harness_factory, pg_db: str) -> None:
    h = harness_factory("sigkill", "postgres", pg_db)
    serve_victim = h.serve()
    h.serve()
    victims = [h.worker("python", lease=LEASE)]
    h.worker("python", lease=LEASE)
    h.worker("ruby", lease=LEASE)
    h.worker("typescript", lease=LEASE)
    if FULL:
        # A second worker of each other language, so that each language can lose one.
        victims.append(h.worker("ruby", lease=LEASE))
        victims.append(h.worker("typescript", lease=LEASE))

    # Slow steps, so that each victim has steps in flight when it dies; some retries, so that
    # the orchestrators have due retries to enqueue.
    tasks = [
        h.create("diamond", {"sleep_ms": 150, **({"fail_steps": {"b": 1, "f": 1}} if i % 4 == 0 else {})})
        for i in range(TASKS)
    ]
    _kill_when_busy(h, victims[0])
    h.kill(serve_victim)
    for victim in victims[1:]:
        _kill_when_busy(h, victim)

    wait_terminal(h.db, tasks, timeout=size(180, 900))
    time.sleep(2)
    v = h.finish({u: {"complete"} for u in tasks})

    # The killed workers' steps ran again: every attempt a victim had started and not finished
    # was ended by the engine as worker_lost, and the step then completed in another process.
    closings = attempt_closings(h.db.step_transitions())
    steps = {s.step_uuid: s for s in h.db.steps()}
    runs = ledger.read(h.ledger_url)
    by_step = defaultdict(list)
    for r in runs:
        by_step[r.step_uuid].append(r)
    wrong, rerun = [], defaultdict(int)
    for r in runs:
        if r.pid not in h.killed or r.finished_at is not None:
            continue
        event, error_type = closings.get((r.step_uuid, r.attempt), (None, None))
        step = steps[r.step_uuid]
        later = [o for o in by_step[r.step_uuid] if o.attempt > r.attempt and o.pid not in h.killed]
        if error_type != "worker_lost":
            wrong.append(
                f"{r.step_name} {r.step_uuid} attempt {r.attempt} of killed pid {r.pid}: engine recorded "
                f"{event} {error_type}, expected worker_lost"
            )
        elif step.state != "complete" or not later:
            wrong.append(
                f"{r.step_name} {r.step_uuid}: lost with pid {r.pid} but did not run again elsewhere "
                f"({step.state}, attempts {step.attempts})"
            )
        else:
            rerun[h.names[r.pid]] += 1
    v.add("killed workers' steps not recovered", wrong)
    for victim in victims:
        if rerun[h.names[victim.pid]] == 0:
            v.problems.append(f"{h.names[victim.pid]} was killed with steps in flight, but none of them ran again")
    v.figures.extra["rerun_after_kill"] = dict(rerun)
    # A lost lease is the engine's failure: it must not count against the step's attempts.
    v.figures.extra["lost_lease_steps"] = sum(
        1 for s in steps.values() if s.last_error and s.last_error.get("error_type") == "worker_lost"
    )
    v.assert_ok()
