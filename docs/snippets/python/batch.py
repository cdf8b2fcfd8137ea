"""A batchable step and the batch worker that checkpoints its progress (Python).

The template's steps::

    - name: analyze
      type: batchable
      handler: {callable: ledger.Analyze}
    - name: process_batch
      type: batch_worker
      handler: {callable: ledger.ProcessBatch}
      dependencies: [analyze]
      batch_config: {checkpoint_interval: 100}
    - name: aggregate
      type: deferred_convergence
      handler: {callable: ledger.Aggregate}
      dependencies: [process_batch]
"""

from tasker_core import StepContext, StepHandler, StepResult


class Analyze(StepHandler):
    """Splits the items into batches of 1,000."""

    def call(self, context: StepContext) -> StepResult:
        total = context.input["total"]
        # Workers process_batch_001, _002, ...: cursors 0..1000, 1000..2000, ... (end
        # exclusive). total == 0 is no_batches: one no-op worker, then aggregate.
        return StepResult.batches(worker="process_batch", total=total, batch_size=1_000, result={"total": total})


class ProcessBatch(StepHandler):
    """Sums its range, checkpointing every checkpoint_interval items."""

    def call(self, context: StepContext) -> dict:
        batch = context.batch
        assert batch is not None  # a batch_worker step always has one
        if batch.is_no_op:
            return {"sum": 0}
        # A retry (after a failure, a timeout or a lost worker) starts where the last attempt's
        # checkpoint left off.
        last = context.checkpoint
        total = last.accumulated["sum"] if last else 0
        interval = batch.config["checkpoint_interval"]
        for start in range(batch.resume_cursor, batch.end_cursor, interval):
            end = min(start + interval, batch.end_cursor)
            total += sum(range(start, end))
            batch.checkpoint(end, items_done=end - batch.start_cursor, accumulated={"sum": total})
        return {"sum": total}


class Aggregate(StepHandler):
    """Receives every worker instance's result, keyed by instance name."""

    def call(self, context: StepContext) -> dict:
        return {"sum": sum(r["sum"] for r in context.dependency_results.values())}


# Unit test, no database:
#
#   from tasker_core.testing import build_batch_worker_context, recorded_checkpoints, run_handler
#
#   context = build_batch_worker_context(0, 250, batch_config={"checkpoint_interval": 100})
#   assert run_handler(ProcessBatch, context).result == {"sum": sum(range(250))}
#   assert [c.cursor for c in recorded_checkpoints(context)] == [100, 200, 250]
