"""Scenario 5: the race test (issue 18, items 1, 2 and 7). On PostgreSQL, several worker
processes and two orchestrators run fan-outs (a root, twelve children, a join) whose steps fail
and retry with short backoffs or run slowly, while threads and processes cancel many of the
tasks — some twice at once — as their steps run, fail and retry.

Afterwards: no step is open under a terminal task, no process logged a deadlock (nor did
PostgreSQL count one), every task that was not cancelled completed, and every orchestrator and
idle worker is idle."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Set

from faultlib import FULL, size, wait_terminal
from polyglot import TASKER_BIN

from tasker_core.errors import IllegalTransition

TASKS = size(80, 160)  # x 14 steps: 1,120 reduced, 2,240 full
CANCEL_SHARE = 0.5


def _context(rng: random.Random, i: int) -> dict:
    children = [f"k{n:02d}" for n in range(1, 13)]
    fail = {name: rng.choice([1, 1, 2, 3]) for name in rng.sample(children, 4)}
    if i % 3 == 0:
        fail["join"] = 1
    if i % 5 == 0:
        fail["root"] = 1
    slow = {name: rng.choice([200, 400, 800]) for name in rng.sample(children, 2)}
    return {"sleep_ms": 10, "fail_steps": fail, "slow_steps": slow}


def test_cancels_race_retries_fanouts_and_slow_steps(harness_factory, pg_db: str) -> None:
    h = harness_factory("races", "postgres", pg_db)
    h.serve()
    h.serve()
    for language in ("python", "python", "ruby", "typescript") + (("ruby", "typescript") if FULL else ()):
        h.worker(language, concurrency=8, lease=5)

    rng = random.Random(18)
    outcomes: Dict[str, List[str]] = {}  # task -> what each cancel call returned
    errors: List[str] = []
    lock = threading.Lock()
    tasker = str(TASKER_BIN)

    def cancel_in_thread(u: str, at: float) -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        try:
            state = h.client.cancel_task(u).state
            result = "cancelled" if state == "cancelled" else f"returned:{state}"
        except IllegalTransition:
            result = "too_late"
        except Exception as e:  # noqa: BLE001 - any other failure is a finding
            result = "error"
            with lock:
                errors.append(f"cancel_task({u}) raised {type(e).__name__}: {e}")
        with lock:
            outcomes.setdefault(u, []).append(result)

    def cancel_in_process(u: str, at: float) -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        p = subprocess.run(
            [tasker, "--database-url", pg_db, "task", "cancel", u], capture_output=True, text=True, timeout=60
        )
        text = (p.stdout + p.stderr).lower()
        if p.returncode == 0:
            result = "cancelled"
        elif "illegal task transition" in text:
            result = "too_late"
        else:
            result = "error"
            with lock:
                errors.append(f"`tasker task cancel {u}` exited {p.returncode}: {p.stderr.strip()[-300:]}")
        with lock:
            outcomes.setdefault(u, []).append(result)

    tasks: List[str] = []
    targets: Set[str] = set()
    futures = []
    # Enough threads that every cancel runs at its time (`at`), many at once.
    with ThreadPoolExecutor(max_workers=48) as pool:
        for i in range(TASKS):
            u = h.create("fanout", _context(rng, i))
            tasks.append(u)
            if rng.random() < CANCEL_SHARE:
                targets.add(u)
                # Mostly while the fan-out runs and retries, some while the join does.
                at = time.monotonic() + (rng.uniform(0.0, 2.0) if rng.random() < 0.7 else rng.uniform(2.0, 6.0))
                how = rng.random()
                if how < 0.3:  # twice at once, from two threads
                    futures.append(pool.submit(cancel_in_thread, u, at))
                    futures.append(pool.submit(cancel_in_thread, u, at))
                elif how < 0.5:  # from another process, racing a thread
                    futures.append(pool.submit(cancel_in_process, u, at))
                    futures.append(pool.submit(cancel_in_thread, u, at + rng.uniform(0, 0.05)))
                else:
                    futures.append(pool.submit(cancel_in_thread, u, at))
            time.sleep(rng.uniform(0, 0.05))

    errors += [f"a canceller raised {type(e).__name__}: {e}" for e in (f.exception() for f in futures) if e]
    wait_terminal(h.db, tasks, timeout=size(240, 900))
    time.sleep(3)  # let the engine settle: running handlers finish, late results are fenced
    states = h.db.task_states()
    # A task whose cancel succeeded must end cancelled; one no cancel reached must complete.
    expected: Dict[str, Set[str]] = {}
    for u in tasks:
        said = outcomes.get(u, [])
        if "cancelled" in said:
            expected[u] = {"cancelled"}
        elif u in targets:
            expected[u] = {"complete"} if "too_late" in said else {"complete", "cancelled"}
        else:
            expected[u] = {"complete"}
    # No task should end in error here, and no step may stay open under one that does.
    v = h.finish(expected, open_under=("cancelled", "complete", "error"))
    v.add("cancel calls that failed", errors)
    v.add(
        "cancel calls that returned a task that is not cancelled",
        [f"{u}: {r}" for u, rs in outcomes.items() for r in rs if r.startswith("returned:")],
    )
    v.figures.cancels = sum(1 for u in tasks if states.get(u) == "cancelled")
    v.figures.extra.update(
        cancel_calls=sum(len(r) for r in outcomes.values()),
        cancel_too_late=sum(r.count("too_late") for r in outcomes.values()),
        completed=sum(1 for u in tasks if states.get(u) == "complete"),
    )
    v.assert_ok()
