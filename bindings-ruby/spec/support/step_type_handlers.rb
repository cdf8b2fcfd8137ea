# frozen_string_literal: true

# Handlers of the decision (approval.yaml) and batch (batch.yaml) fixtures.
module RbSpec
  module Approval
    class Validate < TaskerCore::StepHandler::Base
      def call(context)
        amount = context.input.fetch("amount")
        raise TaskerCore::PermanentError, "amount must not be negative" if amount.negative?

        { "amount" => amount }
      end
    end

    # amount < 1000 -> auto_approve; < 5000 -> manager_approval; else manager_approval and
    # finance_review; a withdrawn request creates no branch.
    class Route < TaskerCore::StepHandler::Base
      def call(context)
        amount = context.dependency_result("validate_request").fetch("amount")
        return decision_no_branches(result: { "route" => "withdrawn" }) if context.input["withdrawn"]
        # A bad outcome on purpose (the engine must refuse it).
        return decision_success(steps: context.input["force_steps"]) if context.input["force_steps"]

        steps =
          if amount < 1000 then ["auto_approve"]
          elsif amount < 5000 then ["manager_approval"]
          else
            %w[manager_approval finance_review]
          end
        decision_success(steps: steps, result: { "route" => steps.join("+") })
      end
    end

    class Branch < TaskerCore::StepHandler::Base
      def call(context)
        { "approved_by" => context.step_name, "seen" => RbSpec.seen(context) }
      end
    end

    # Deferred convergence: reports which branches' results it received.
    class Finalize < TaskerCore::StepHandler::Base
      def call(context)
        { "branches" => context.dependency_results.keys.sort }
      end
    end
  end

  module Batches
    # Every item a worker attempt added to its sum, by task: [step name, attempt, item].
    LEDGER = Hash.new { |h, k| h[k] = [] }
    LEDGER_LOCK = Mutex.new
    # FencedErrors seen by workers, and batch contexts kept past their attempt (`stash: true`).
    FENCED = Queue.new
    STASHED = Queue.new

    def self.ledger(task_uuid)
      LEDGER_LOCK.synchronize { LEDGER[task_uuid].dup }
    end

    def self.record(context, items)
      LEDGER_LOCK.synchronize do
        LEDGER[context.task_uuid].concat(items.map { |i| [context.step_name, context.attempt, i] })
      end
    end

    class Analyze < TaskerCore::StepHandler::Base
      def call(context)
        total = context.input.fetch("total")
        return no_batches(result: { "total" => 0 }) if total.zero?

        create_batches(worker: "process_batch", total: total, batch_size: context.input.fetch("batch_size"),
                       result: { "total" => total })
      end
    end

    # Sums the integers of its range from where an earlier attempt stopped, checkpointing every
    # checkpoint_interval items. With `fail_after_checkpoints: n` in the task context, its first
    # attempt fails (retryably) right after its n-th checkpoint. With `stall_seconds`, its first
    # attempt sleeps that long before its first checkpoint (to overrun timeout_seconds).
    class SumRange < TaskerCore::StepHandler::Base
      def call(context)
        batch = context.batch
        return { "sum" => 0, "count" => 0, "no_op" => true } if batch.no_op?

        STASHED << batch if context.input["stash"]
        stall(context) if context.attempt == 1 && context.input["stall_seconds"]

        interval = batch.config.fetch("checkpoint_interval")
        fail_after = context.input["fail_after_checkpoints"]
        sum = context.checkpoint&.accumulated&.fetch("sum") || 0
        checkpoints = 0
        (batch.resume_cursor...batch.end_cursor).each_slice(interval) do |slice|
          sum += slice.sum
          Batches.record(context, slice)
          batch.checkpoint(slice.last + 1, items_done: slice.last + 1 - batch.start_cursor, accumulated: { "sum" => sum })
          checkpoints += 1
          if context.attempt == 1 && fail_after == checkpoints
            raise IOError, "lost the connection after #{checkpoints} checkpoints"
          end
        end
        { "sum" => sum, "count" => batch.end_cursor - batch.start_cursor,
          "resumed_from" => context.checkpoint&.cursor, "no_op" => false }
      end

      private

      def stall(context)
        sleep context.input["stall_seconds"]
        context.batch.checkpoint(context.batch.start_cursor)
      rescue TaskerCore::FencedError => e
        FENCED << e
        raise
      end
    end

    # Deferred convergence over every worker instance.
    class Aggregate < TaskerCore::StepHandler::Base
      def call(context)
        results = context.dependency_results
        { "sum" => results.values.sum { |r| r["sum"] }, "count" => results.values.sum { |r| r["count"] },
          "workers" => results.keys.sort }
      end
    end
  end
end
