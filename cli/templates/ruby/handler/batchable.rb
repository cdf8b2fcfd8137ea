# The `{{step_name}}` batchable step: splits the task's "total_items" into batches of BATCH_SIZE.
#
# In the template, this step has `type: batchable`, and a `batch_worker` step depending on it
# processes each batch; its name is this handler's "worker" initialization value (default
# "process_batch"). The engine creates one instance of it per batch (process_batch_001, ...), and
# a `deferred_convergence` step after them receives all their results. No items still creates
# one no-op instance, so the convergence step runs.
class {{class_name}} < TaskerCore::StepHandler::Base
  BATCH_SIZE = 100

  def call(context)
    total = context.input.fetch("total_items", 0)
    return no_batches(result: { "total_items" => 0 }) if total.zero?

    worker = config.fetch("worker", "process_batch")
    create_batches(worker: worker, total: total, batch_size: BATCH_SIZE, result: { "total_items" => total })
  end
end
