"""Python handlers of the batch fault test (tests/faults/test_batch_kill.py), run by
tests/workers/python_worker.py with `--handlers faults_batch`:

  faults.batch_split      batchable: `items` items (task context) in batches of `batch_size`
  faults.batch_process    batch_worker: processes its cursor range item by item (`item_ms` ms
                          each), checkpointing every `checkpoint_interval` items
                          (the template's batch_config); resumes from `context.checkpoint`
  faults.batch_aggregate  deferred_convergence: adds up every instance's sum

Item `i` is worth `value(i)`; a worker's result is {"sum", "items", "resumed_from", "attempt"}.

Every run writes its row of the run ledger (tests/faults/ledger.py, like `faults.work`), and a
batch worker also writes the item ledger (tests/faults/batch_ledger.py): the items since its
last checkpoint, just before it records the next checkpoint (and the rest just before it
returns), and, when it starts, where it resumed and which checkpoint it received.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import uuid
from typing import Any, Callable, List, Optional, Tuple

from tasker_core import RetryableError, StepContext, StepResult, step_handler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "faults"))

from batch_ledger import BatchLedger  # noqa: E402
from ledger import Ledger  # noqa: E402

LANGUAGE = "python"
_URL = os.environ.get("TASKER_FAULT_LEDGER")
_LEDGER = Ledger(_URL) if _URL else None
_ITEMS = BatchLedger(_URL) if _URL else None


def value(item: int) -> int:
    """What item `item` is worth (the test computes the expected total the same way)."""
    return 3 * item + 1


def _ledgered(fn: Callable[[StepContext], Any]) -> Callable[[StepContext], Any]:
    """Writes the run ledger's row around a handler (see faults_handlers.work)."""

    @functools.wraps(fn)
    def run(context: StepContext) -> Any:
        token = str(uuid.uuid4())
        if _LEDGER is not None:
            _LEDGER.start(
                token,
                str(context.step_uuid),
                str(context.task_uuid),
                context.step_name,
                context.attempt,
                LANGUAGE,
                os.getpid(),
                time.time(),
            )
        outcome = "ok"
        try:
            return fn(context)
        except RetryableError:
            outcome = "retryable"
            raise
        except BaseException as e:
            outcome = f"error:{type(e).__name__}"
            raise
        finally:
            if _LEDGER is not None:
                _LEDGER.finish(token, outcome, time.time())

    return run


@step_handler("faults.batch_split")
@_ledgered
def batch_split(context: StepContext) -> StepResult:
    items = int(context.input["items"])
    return StepResult.batches(
        worker="process", total=items, batch_size=int(context.input["batch_size"]), result={"items": items}
    )


@step_handler("faults.batch_process")
@_ledgered
def batch_process(context: StepContext) -> Any:
    batch = context.batch
    assert batch is not None, "faults.batch_process runs batch_worker instances only"
    if batch.is_no_op:
        return {"sum": 0, "items": 0, "resumed_from": None, "attempt": context.attempt}
    start, end = int(batch.start_cursor), int(batch.end_cursor)
    interval = int(batch.config["checkpoint_interval"])
    item_ms = float(context.input.get("item_ms", 0))
    cp = context.checkpoint
    resume = int(batch.resume_cursor)
    total = int(cp.accumulated["sum"]) if cp is not None else 0
    received: Optional[Tuple[int, int, int]] = (cp.attempt, cp.items_done, total) if cp is not None else None
    ids = (str(context.step_uuid), str(context.task_uuid), context.step_name, context.attempt, os.getpid())
    if _ITEMS is not None:
        _ITEMS.resumed(*ids, resume, received, time.time())

    pending: List[Tuple[int, int]] = []  # items done since the last checkpoint
    for item in range(resume, end):
        if item_ms > 0:
            time.sleep(item_ms / 1000)
        v = value(item)
        total += v
        pending.append((item, v))
        done = item + 1 - start
        if done % interval == 0 and item + 1 < end:
            # The items' rows first, then the checkpoint that covers them: a persisted checkpoint
            # always has its rows (rows without one are told apart by the next attempt's resume).
            if _ITEMS is not None:
                _ITEMS.items(*ids, pending, upto=item + 1, final=False)
            batch.checkpoint(item + 1, items_done=done, accumulated={"sum": total})
            pending = []
    if _ITEMS is not None:
        _ITEMS.items(*ids, pending, upto=end, final=True)
    return {"sum": total, "items": end - start, "resumed_from": resume, "attempt": context.attempt}


@step_handler("faults.batch_aggregate")
@_ledgered
def batch_aggregate(context: StepContext) -> Any:
    parts = {name: r for name, r in (context.dependency_results or {}).items() if name.startswith("process_")}
    return {
        "total": sum(int(r["sum"]) for r in parts.values()),
        "items": sum(int(r["items"]) for r in parts.values()),
        "instances": sorted(parts),
    }


HANDLERS = [batch_split, batch_process, batch_aggregate]
