# The `{{step_name}}` batch worker step: processes one batch (here: adds up the item numbers),
# checkpointing as it goes.
#
# In the template, this step has `type: batch_worker` and depends on the batchable step that
# splits the work; `batch_config: {checkpoint_interval: N}` there sets how often it records its
# progress. A retry (after a failure, a timeout or a lost worker) resumes from the last
# checkpoint instead of starting over.
class {{class_name}} < TaskerCore::StepHandler::Base
  def call(context)
    batch = context.batch
    return { "items" => 0, "sum" => 0 } if batch.nil? || batch.no_op?

    sum = context.checkpoint&.accumulated&.fetch("sum") || 0
    interval = batch.config.fetch("checkpoint_interval", 100)
    (batch.resume_cursor...batch.end_cursor).each_slice(interval) do |items|
      sum += items.sum # the work on these items
      batch.checkpoint(items.last + 1, items_done: items.last + 1 - batch.start_cursor, accumulated: { "sum" => sum })
    end
    { "items" => batch.end_cursor - batch.start_cursor, "sum" => sum }
  end
end
