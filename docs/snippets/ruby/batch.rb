# frozen_string_literal: true

# A batchable step and the batch worker that checkpoints its progress (Ruby).
#
#   - name: analyze
#     type: batchable
#     handler: {callable: Ledger::Analyze}
#   - name: process_batch
#     type: batch_worker
#     handler: {callable: Ledger::ProcessBatch}
#     dependencies: [analyze]
#     batch_config: {checkpoint_interval: 100}
#   - name: aggregate
#     type: deferred_convergence
#     handler: {callable: Ledger::Aggregate}
#     dependencies: [process_batch]
require "tasker_core"

module Ledger
  # Splits the items into batches of 1,000.
  class Analyze < TaskerCore::StepHandler::Base
    def call(context)
      total = context.input.fetch("total")
      return no_batches(result: { "total" => 0 }) if total.zero? # one no-op worker, then aggregate

      # Workers process_batch_001, _002, ...: cursors 0...1000, 1000...2000, ...
      create_batches(worker: "process_batch", total: total, batch_size: 1_000, result: { "total" => total })
    end
  end

  # Sums its range, checkpointing every checkpoint_interval items.
  class ProcessBatch < TaskerCore::StepHandler::Base
    def call(context)
      batch = context.batch
      return { "sum" => 0 } if batch.no_op?

      # A retry (after a failure, a timeout or a lost worker) starts where the last attempt's
      # checkpoint left off.
      sum = context.checkpoint&.accumulated&.fetch("sum") || 0
      (batch.resume_cursor...batch.end_cursor).each_slice(batch.config.fetch("checkpoint_interval")) do |items|
        sum += items.sum
        batch.checkpoint(items.last + 1, items_done: items.last + 1 - batch.start_cursor, accumulated: { "sum" => sum })
      end
      { "sum" => sum }
    end
  end

  # Receives every worker instance's result, keyed by instance name.
  class Aggregate < TaskerCore::StepHandler::Base
    def call(context)
      { "sum" => context.dependency_results.values.sum { |r| r["sum"] } }
    end
  end
end

# Unit test, no database (require "tasker_core/testing/rspec"):
#
#   context = build_batch_context(start_cursor: 0, end_cursor: 250, batch_config: { checkpoint_interval: 100 })
#   expect(run_handler(Ledger::ProcessBatch, context)).to have_result("sum" => (0...250).sum)
#   expect(recorded_checkpoints(context).map(&:cursor)).to eq([100, 200, 250])
