"""The `{{step_name}}` batchable step."""

from tasker_core import StepContext, StepHandler, StepResult

BATCH_SIZE = 100


class {{class_name}}(StepHandler):
    """Splits the task's `total_items` into batches of BATCH_SIZE.

    In the template, this step has `type: batchable`, and a `batch_worker` step depending on it
    processes each batch; its name is this handler's `worker` initialization value (default
    `process_batch`). The engine creates one instance of it per batch (process_batch_001, …),
    and a `deferred_convergence` step after them receives all their results. No items still
    creates one no-op instance, so the convergence step runs.
    """

    def call(self, context: StepContext) -> StepResult:
        total = context.get_input("total_items", 0)
        worker = context.config.get("worker", "process_batch")
        return StepResult.batches(worker=worker, total=total, batch_size=BATCH_SIZE, result={"total_items": total})
