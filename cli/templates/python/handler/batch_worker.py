"""The `{{step_name}}` batch worker step."""

from tasker_core import StepContext, StepHandler


class {{class_name}}(StepHandler):
    """Processes one batch (here: adds up the item numbers), checkpointing as it goes.

    In the template, this step has `type: batch_worker` and depends on the batchable step that
    splits the work; `batch_config: {checkpoint_interval: N}` there sets how often it records its
    progress. A retry (after a failure, a timeout or a lost worker) resumes from the last
    checkpoint instead of starting over.
    """

    def call(self, context: StepContext) -> dict:
        batch = context.batch
        if batch is None or batch.is_no_op:
            return {"items": 0, "sum": 0}
        interval = batch.config.get("checkpoint_interval", 100)
        last = context.checkpoint
        total = last.accumulated["sum"] if last else 0
        for start in range(batch.resume_cursor, batch.end_cursor, interval):
            end = min(start + interval, batch.end_cursor)
            total += sum(range(start, end))  # the work on items start..end
            batch.checkpoint(end, items_done=end - batch.start_cursor, accumulated={"sum": total})
        return {"items": batch.end_cursor - batch.start_cursor, "sum": total}
