"""Scenario 6 (issue 9): batch workers SIGKILLed mid-batch resume from their checkpoints, on SQLite and
PostgreSQL (2-second leases).

`batch_checkpoint` (templates/batch_checkpoint.yaml): `split` cuts the task's items into
batches, each `process_NNN` instance processes its range item by item and checkpoints every 25
items, `aggregate` adds the instances up. The only worker is killed once every batch it runs
has persisted a checkpoint of its current attempt; a second worker takes the lost attempts
over and is killed in turn once some of its resumed attempts have checkpointed; a third one
finishes. Then, besides `Harness.finish`:

* every instance the kills interrupted ran again, the engine ended the killed attempt as
  `worker_lost`, and the next attempt received the last checkpoint persisted (at least as far
  as the one seen before the kill) and resumed from its cursor;
* exactly once, through the item ledger (batch_ledger.py): counting the items a persisted
  checkpoint or the final result covers — a killed attempt's items up to the cursor the next
  attempt resumed from, and all of the successful attempt's — every item of every batch was
  processed exactly once (the work after a killed attempt's last checkpoint is redone by
  design and not counted); the checkpoint each attempt received carries the sum of exactly
  the items counted before it;
* each instance's result and the aggregate's total are the sums of the items' values.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Set, Tuple

import batch_ledger
import ledger
from faultlib import _j, _u, attempt_closings, size, wait_terminal
from polyglot import WorkerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "handlers" / "python"))

from faults_batch_handlers import value  # noqa: E402

TASKS = size(2, 20)
ITEMS = size(600, 2_500)  # per task: 1,200 items reduced, 50,000 full
BATCH = size(200, 250)  # items per instance: 6 instances reduced, 200 full
ITEM_MS = size(8, 4)  # per item: an instance runs 1.6 s reduced, 1 s full
CONCURRENCY = size(8, 16)
INTERVAL = 25  # checkpoint_interval of the template
LEASE = 2.0
HANDLERS = "faults_batch"

CheckpointSeen = Dict[Tuple[str, int], int]  # (step, attempt) -> cursor of its last checkpoint


def _checkpointed_runs(h, pid: int) -> CheckpointSeen:
    """The batch attempts `pid` is running (per the run ledger) that have persisted a checkpoint
    of that attempt (per the engine's table), with the checkpoint's cursor."""
    running = {
        (r.step_uuid, r.attempt)
        for r in ledger.read(h.ledger_url)
        if r.pid == pid and r.finished_at is None and r.step_name.startswith("process_")
    }
    uuid_col = "step_uuid::text" if h.db.pg else "step_uuid"
    seen: CheckpointSeen = {}
    for step_uuid, attempts, checkpoint in h.db.rows(
        f"SELECT {uuid_col}, attempts, checkpoint FROM tasker_steps WHERE state = 'in_progress'"
    ):
        cp = _j(checkpoint)
        key = (_u(step_uuid), int(attempts))
        if key in running and isinstance(cp, dict) and cp.get("attempt") == int(attempts):
            seen[key] = int(cp["cursor"])
    return seen


def _kill_after_checkpoints(h, victim: WorkerProcess, want: int, timeout: float = 60) -> CheckpointSeen:
    """SIGKILLs `victim` once at least `want` of its batch attempts have persisted a checkpoint
    (and are still running); returns what it had checkpointed by then."""
    deadline = time.monotonic() + timeout
    while True:
        seen = _checkpointed_runs(h, victim.pid)
        if len(seen) >= want:
            h.kill(victim)
            return seen
        assert time.monotonic() < deadline, (
            f"{h.names[victim.pid]} never had {want} checkpointed batches in flight (had {len(seen)})\n"
            + h.log_excerpt()
        )
        time.sleep(0.02)


def _item_problems(
    step_name: str,
    start: int,
    end: int,
    final_attempt: int,
    resumes: Dict[int, batch_ledger.ResumeRow],
    items: Dict[int, List[batch_ledger.ItemRow]],
    figures: Dict[str, int],
) -> Tuple[List[str], int]:
    """Walks one instance's attempts in order and counts the items that a persisted checkpoint
    or the final result covers: when an attempt resumes from attempt k's checkpoint at cursor c,
    attempt k's rows up to c are covered; the successful attempt's rows all are. Checks each
    resume against what came before it. Returns the problems and the counted items' sum."""
    problems: List[str] = []
    counted: Counter = Counter()
    counted_rows: Set[Tuple[int, int]] = set()
    counted_sum = 0
    cursor = start  # how far the counted items reach
    if final_attempt not in resumes:
        problems.append(f"{step_name}: its successful attempt {final_attempt} has no resume row")

    def count(attempt: int, rows: List[batch_ledger.ItemRow]) -> None:
        nonlocal counted_sum
        for x in rows:
            counted[x.item] += 1
            counted_rows.add((attempt, x.item))
            counted_sum += x.value

    for attempt in sorted(set(resumes) | set(items)):
        r = resumes.get(attempt)
        if r is None:
            problems.append(f"{step_name} attempt {attempt}: item rows without a resume row")
            continue
        where = f"{step_name} attempt {attempt}"
        if r.checkpoint_attempt is None:
            if r.resume_cursor != start or cursor != start:
                problems.append(
                    f"{where}: received no checkpoint, resumed at {r.resume_cursor}, but items up to {cursor} "
                    "were covered by one"
                )
        else:
            figures["resumed_with_checkpoint"] += 1
            k = r.checkpoint_attempt
            reach = start + (r.checkpoint_items_done or 0)  # what the persisted checkpoint covers
            if k >= attempt:
                problems.append(f"{where}: received a checkpoint of attempt {k}")
            if r.resume_cursor != reach:
                problems.append(
                    f"{where}: resumed at {r.resume_cursor}, but the checkpoint it received says "
                    f"{r.checkpoint_items_done} items done from {start}"
                )
            if reach < cursor:
                problems.append(f"{where}: received a checkpoint at {reach}, behind {cursor}: it went backwards")
            elif reach > cursor:
                if not any(x.upto == reach for x in items.get(k, [])):
                    problems.append(
                        f"{where}: received attempt {k}'s checkpoint at {reach}, which has no item rows "
                        "(a checkpoint persisted before its items were recorded?)"
                    )
                count(k, [x for x in items.get(k, []) if cursor <= x.item < reach])
            if r.checkpoint_sum != counted_sum:
                problems.append(
                    f"{where}: the checkpoint it received carries sum {r.checkpoint_sum}, the items it covers "
                    f"sum to {counted_sum}"
                )
            cursor = max(cursor, reach)
        if attempt == final_attempt:
            mine = items.get(attempt, [])
            early = [x.item for x in mine if x.item < cursor]
            if early:
                problems.append(f"{where}: items {early[:5]} redone, though a checkpoint it received covers {cursor}")
            if r.resume_cursor < end and not any(x.final and x.upto == end for x in mine):
                problems.append(f"{where}: succeeded without its final item rows")
            count(attempt, mine)
    # Rows whose checkpoint never persisted: their items were redone by a later attempt.
    figures["uncovered_rows"] += sum(1 for a, rows in items.items() for x in rows if (a, x.item) not in counted_rows)
    missing = [i for i in range(start, end) if counted[i] == 0]
    twice = sorted(i for i, n in counted.items() if n > 1)
    stray = sorted(i for i in counted if not start <= i < end)
    if missing:
        problems.append(f"{step_name}: {len(missing)} items never covered by a checkpoint or result: {missing[:10]}")
    if twice:
        problems.append(f"{step_name}: {len(twice)} items covered twice: {twice[:10]}")
    if stray:
        problems.append(f"{step_name}: items outside its batch {start}..{end}: {stray[:10]}")
    return problems, counted_sum


def test_batch_workers_killed_mid_batch_resume_from_their_checkpoints(harness_factory, backend_db) -> None:
    backend, url = backend_db
    h = harness_factory("batch_kill", backend, url)
    batch_ledger.create(h.ledger_url)
    instances_per_task = -(-ITEMS // BATCH)
    # A worker on a queue nobody uses stays up throughout: on SQLite the test process reads the
    # engine's tables with Python's sqlite3, a second SQLite library in a process that also has
    # the database open through tasker_core, and each close of its descriptors drops the
    # process's POSIX locks, the engine client's shared-memory lock included. Were the test
    # process then the only one left with the file open (both workers killed), the next worker
    # would rebuild the WAL index under the test's client, whose reads then fail with
    # "database disk image is malformed" (other processes read the file fine).
    h.worker("python", concurrency=1, lease=LEASE, handlers=HANDLERS, queues=["faults_idle"])
    first = h.worker("python", concurrency=CONCURRENCY, lease=LEASE, handlers=HANDLERS)
    context = {"items": ITEMS, "batch_size": BATCH, "item_ms": ITEM_MS}
    tasks = [h.create("batch_checkpoint", context) for _ in range(TASKS)]

    # Kill 1: every batch the first worker runs has checkpointed (all of them, reduced).
    seen = _kill_after_checkpoints(h, first, want=min(CONCURRENCY, TASKS * instances_per_task))
    # Kill 2: the second worker, once some of the attempts it took over have checkpointed.
    second = h.worker("python", concurrency=CONCURRENCY, lease=LEASE, handlers=HANDLERS)
    seen.update(_kill_after_checkpoints(h, second, want=size(2, 8)))
    h.worker("python", concurrency=CONCURRENCY, lease=LEASE, handlers=HANDLERS)

    wait_terminal(h.db, tasks, timeout=size(90, 300))
    time.sleep(1)
    v = h.finish({u: {"complete"} for u in tasks})

    runs = ledger.read(h.ledger_url)
    closings = attempt_closings(h.db.step_transitions())
    resumes: Dict[str, Dict[int, batch_ledger.ResumeRow]] = defaultdict(dict)
    for r in batch_ledger.read_resumes(h.ledger_url):
        if r.attempt in resumes[r.step_uuid]:
            v.problems.append(f"{r.step_name} {r.step_uuid}: attempt {r.attempt} has two resume rows")
        resumes[r.step_uuid][r.attempt] = r
    items: Dict[str, Dict[int, List[batch_ledger.ItemRow]]] = defaultdict(lambda: defaultdict(list))
    for x in batch_ledger.read_items(h.ledger_url):
        items[x.step_uuid][x.attempt].append(x)

    figures = {"resumed_with_checkpoint": 0, "uncovered_rows": 0}
    wrong: List[str] = []
    killed_instances: Set[str] = set()
    expected_total = sum(value(i) for i in range(ITEMS))
    for u in tasks:
        task = h.client.get_task(u)
        names = sorted(s.name for s in task.steps)
        want = sorted(["split", "aggregate"] + [f"process_{n:03d}" for n in range(1, instances_per_task + 1)])
        if names != want:
            wrong.append(f"task {u}: steps {names}, expected {want}")
            continue
        for s in task.steps:
            if not s.name.startswith("process_"):
                continue
            if s.created_by != "split" or s.batch is None:
                wrong.append(f"{s.name} {s.step_uuid}: created_by {s.created_by!r}, batch {s.batch!r}")
                continue
            start, end = int(s.batch.start_cursor), int(s.batch.end_cursor)
            problems, counted_sum = _item_problems(
                s.name, start, end, s.attempts, resumes[s.step_uuid], items[s.step_uuid], figures
            )
            wrong += [f"task {u} {p}" for p in problems]
            batch_sum = sum(value(i) for i in range(start, end))
            result = s.result or {}
            if result.get("sum") != batch_sum or counted_sum != batch_sum:
                wrong.append(
                    f"{s.name} {s.step_uuid}: result sum {result.get('sum')}, ledger sum {counted_sum}, "
                    f"expected {batch_sum}"
                )
            final = resumes[s.step_uuid].get(s.attempts)
            if final is not None and result.get("resumed_from") != final.resume_cursor:
                wrong.append(f"{s.name}: result says resumed from {result.get('resumed_from')}, ledger {final}")
            # The kills: each interrupted attempt was given back as worker_lost, and the next
            # attempt received a checkpoint at least as far as the one seen before the kill.
            for r in runs:
                if r.step_uuid != s.step_uuid or r.pid not in h.killed or r.finished_at is not None:
                    continue
                killed_instances.add(s.step_uuid)
                event, error_type = closings.get((r.step_uuid, r.attempt), (None, None))
                if error_type != "worker_lost":
                    wrong.append(f"{s.name} attempt {r.attempt} (killed): ended {event} {error_type}, not worker_lost")
                later = sorted(a for a in resumes[s.step_uuid] if a > r.attempt)
                if not later:
                    wrong.append(f"{s.name} attempt {r.attempt} (killed): no later attempt ran")
                    continue
                nxt = resumes[s.step_uuid][later[0]]
                before = seen.get((s.step_uuid, r.attempt))
                if before is not None and (nxt.checkpoint_attempt is None or nxt.resume_cursor < before):
                    wrong.append(
                        f"{s.name} attempt {r.attempt} (killed) had checkpointed at {before}, but attempt "
                        f"{nxt.attempt} received {nxt.checkpoint_attempt and nxt.resume_cursor} "
                        f"(checkpoint of attempt {nxt.checkpoint_attempt})"
                    )
        agg = task.step("aggregate").result or {}
        want_instances = [n for n in want if n.startswith("process_")]
        if (agg.get("total"), agg.get("items"), agg.get("instances")) != (expected_total, ITEMS, want_instances):
            wrong.append(
                f"task {u}: aggregate {agg.get('total')} over {agg.get('items')} items from "
                f"{agg.get('instances')}, expected {expected_total} over {ITEMS} from {want_instances}"
            )
    v.add("batch checkpoints and items against the contract", wrong, limit=30)

    checkpointed_kills = set(seen)
    if len(checkpointed_kills) < min(CONCURRENCY, TASKS * instances_per_task) + size(2, 8):
        v.problems.append(f"only {len(checkpointed_kills)} checkpointed attempts were killed")
    if figures["resumed_with_checkpoint"] < len(checkpointed_kills):
        v.problems.append(
            f"{figures['resumed_with_checkpoint']} attempts resumed from a checkpoint, "
            f"fewer than the {len(checkpointed_kills)} checkpointed attempts killed"
        )
    v.figures.extra.update(
        instances=TASKS * instances_per_task,
        items=TASKS * ITEMS,
        killed_instances=len(killed_instances),
        killed_checkpointed=len(checkpointed_kills),
        **figures,
    )
    v.assert_ok()


# The item check itself, on made-up ledgers (no database): it passes a correct resume chain
# and catches what it is meant to catch.


def _rows(attempt: int, lo: int, hi: int, upto_every: int = 25, end: int = 100) -> List[batch_ledger.ItemRow]:
    rows = []
    for i in range(lo, hi):
        upto = min(end, (i // upto_every + 1) * upto_every)
        rows.append(batch_ledger.ItemRow("s", "t", "process_001", attempt, 1, i, value(i), upto, upto == end))
    return rows


def _resume(attempt: int, cursor: int, cp_attempt=None) -> batch_ledger.ResumeRow:
    return batch_ledger.ResumeRow(
        "s",
        "t",
        "process_001",
        attempt,
        1,
        cursor,
        cp_attempt,
        None if cp_attempt is None else cursor,
        None if cp_attempt is None else sum(value(i) for i in range(cursor)),
        0.0,
    )


def _check(resumes, items, final=2):
    figures = {"resumed_with_checkpoint": 0, "uncovered_rows": 0}
    problems, total = _item_problems("process_001", 0, 100, final, resumes, items, figures)
    return problems, total, figures


def test_item_check_passes_a_resumed_batch() -> None:
    # Attempt 1 checkpointed at 25 and 50, wrote the rows up to 75 but died before that
    # checkpoint persisted; attempt 2 resumed at 50.
    problems, total, figures = _check(
        {1: _resume(1, 0), 2: _resume(2, 50, 1)}, {1: _rows(1, 0, 75), 2: _rows(2, 50, 100)}
    )
    assert problems == [] and total == sum(value(i) for i in range(100))
    assert figures == {"resumed_with_checkpoint": 1, "uncovered_rows": 25}


def test_item_check_catches_a_resume_that_ignored_the_checkpoint() -> None:
    resumes = {1: _resume(1, 0), 2: _resume(2, 50, 1)}
    resumes[2].resume_cursor = 0
    problems, _, _ = _check(resumes, {1: _rows(1, 0, 50), 2: _rows(2, 0, 100)})
    assert any("checkpoint it received says 50 items done" in p for p in problems), problems
    assert any("covered twice" in p for p in problems), problems


def test_item_check_catches_a_lost_checkpoint_and_missing_items() -> None:
    # Attempt 2 received no checkpoint although attempt 1's persisted: it starts over.
    problems, _, _ = _check({1: _resume(1, 0), 2: _resume(2, 0)}, {1: _rows(1, 0, 50), 2: _rows(2, 0, 100)})
    assert problems == []  # a redo from scratch is legal when nothing was received …
    # … but a resume past items nobody recorded is not.
    problems, _, _ = _check({1: _resume(1, 0), 2: _resume(2, 50, 1)}, {1: _rows(1, 0, 20), 2: _rows(2, 50, 100)})
    assert any("no item rows" in p for p in problems), problems
    assert any("never covered" in p for p in problems), problems
