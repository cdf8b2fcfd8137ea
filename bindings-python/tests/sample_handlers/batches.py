"""A batch workflow: `analyze` splits `total` items into batches, each `process_batch`
instance sums the integers of its cursor range with checkpoints, `aggregate` adds them up."""

import time

from tasker_core import RetryableError, StepContext, StepHandler, StepResult, TaskerError

from . import recorder


class Analyze(StepHandler):
    def call(self, context: StepContext):
        total = context.input["total"]
        # `input.worker` names another worker step, to test the engine's refusal.
        worker = context.input.get("worker", "process_batch")
        return StepResult.batches(
            worker=worker, total=total, batch_size=context.input["batch_size"], result={"total": total}
        )


def _interval(context: StepContext) -> int:
    assert context.batch is not None
    return int(context.batch.config.get("checkpoint_interval", 100))


class ProcessBatch(StepHandler):
    """Sums `range(start_cursor, end_cursor)`, checkpointing every `checkpoint_interval`
    items. Each item goes into a ledger (by task) so tests can check none ran twice."""

    def call(self, context: StepContext):
        batch = context.batch
        assert batch is not None, "process_batch runs as a batch worker instance"
        if batch.is_no_op:
            return {"count": 0, "sum": 0, "no_op": True}
        last = context.checkpoint
        count = last.items_done if last else 0
        total = last.accumulated["sum"] if last else 0
        interval = _interval(context)
        for i in range(batch.resume_cursor, batch.end_cursor):
            recorder.record(context.task_uuid, (context.step_name, context.attempt, i))
            total += i
            count += 1
            if count % interval == 0:
                batch.checkpoint(i + 1, items_done=count, accumulated={"sum": total})
        return {"count": count, "sum": total, "no_op": False, "resumed_from": last.cursor if last else None}


class FlakyProcessBatch(StepHandler):
    """ProcessBatch as an async handler whose first attempt fails right after the checkpoint
    at `input.fail_after` items of the batch: the retry must start where it left off."""

    async def call(self, context: StepContext):
        batch = context.batch
        assert batch is not None
        last = context.checkpoint
        count = last.items_done if last else 0
        total = last.accumulated["sum"] if last else 0
        interval = _interval(context)
        for i in range(batch.resume_cursor, batch.end_cursor):
            recorder.record(context.task_uuid, (context.step_name, context.attempt, i))
            total += i
            count += 1
            if count % interval == 0:
                await batch.checkpoint_async(i + 1, items_done=count, accumulated={"sum": total})
                if context.attempt == 1 and count == context.input["fail_after"]:
                    raise RetryableError(f"lost the connection after {count} items")
        return {
            "count": count,
            "sum": total,
            "resumed_from": last.cursor if last else None,
            "resumed_items": last.items_done if last else 0,
        }


class Aggregate(StepHandler):
    """Deferred convergence on the worker template: one result per instance, by name."""

    def call(self, context: StepContext):
        workers = sorted(context.dependency_results)
        return {
            "workers": workers,
            "count": sum(r["count"] for r in context.dependency_results.values()),
            "sum": sum(r["sum"] for r in context.dependency_results.values()),
        }


class OverrunningBatch(StepHandler):
    """Attempt 1 checkpoints, overruns the step's timeout, then tries to checkpoint again;
    attempt 2 reports what it resumed from. Both record what happened under the task."""

    def call(self, context: StepContext):
        batch = context.batch
        assert batch is not None
        if context.attempt > 1:
            recorder.record(context.task_uuid, ("resumed", context.checkpoint and context.checkpoint.cursor))
            return {"count": 0, "sum": 0}
        batch.checkpoint(1, items_done=1)
        deadline = time.monotonic() + 15
        while not context.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            batch.checkpoint(2, items_done=2)
        except TaskerError as e:
            recorder.record(context.task_uuid, ("refused", type(e).__name__, e.code))
        else:
            recorder.record(context.task_uuid, ("accepted",))
        recorder.event(context.task_uuid + ":late").set()
        return {"count": 2, "sum": 1}
