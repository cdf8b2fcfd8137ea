# frozen_string_literal: true

require "spec_helper"

# The Ruby examples of the docs (docs/snippets/ruby/), run with the testing helpers so that they
# keep working.
RSpec.describe "docs/snippets/ruby" do
  dir = File.expand_path("../../docs/snippets/ruby", __dir__)

  before(:all) do
    skip "not in a checkout (no #{dir})" unless File.directory?(dir)
    load File.join(dir, "conditional.rb")
    load File.join(dir, "batch.rb")
  end

  it "conditional.rb routes by amount and converges on the branches taken" do
    route = ->(amount) { build_step_context(dependency_results: { validate_request: { amount: amount } }) }
    expect(run_handler(Approvals::RoutingDecision, route.call(10))).to choose_steps("auto_approve")
    expect(run_handler(Approvals::RoutingDecision, route.call(2_000))).to choose_steps("manager_approval")
    expect(run_handler(Approvals::RoutingDecision, route.call(7_500))).to choose_steps("manager_approval", "finance_review")
    withdrawn = build_step_context(input: { withdrawn: true }, dependency_results: { validate_request: { amount: 1 } })
    expect(run_handler(Approvals::RoutingDecision, withdrawn)).to choose_no_branches
    finalize = build_step_context(dependency_results: { manager_approval: { approved: true } })
    expect(run_handler(Approvals::Finalize, finalize)).to have_result("approved" => true, "by" => ["manager_approval"])
  end

  it "batch.rb splits, sums with checkpoints, resumes, and aggregates" do
    expect(run_handler(Ledger::Analyze, build_step_context(input: { total: 2_500 })))
      .to have_batches(worker: "process_batch", count: 3, total: 2_500)
    expect(run_handler(Ledger::Analyze, build_step_context(input: { total: 0 }))).to have_no_batches
    context = build_batch_context(start_cursor: 0, end_cursor: 250, batch_config: { checkpoint_interval: 100 })
    expect(run_handler(Ledger::ProcessBatch, context)).to have_result("sum" => (0...250).sum)
    expect(recorded_checkpoints(context).map(&:cursor)).to eq([100, 200, 250])
    resumed = build_batch_context(start_cursor: 0, end_cursor: 250, batch_config: { checkpoint_interval: 100 }, attempt: 2,
                                  checkpoint: { cursor: 200, items_done: 200, accumulated: { sum: (0...200).sum } })
    expect(run_handler(Ledger::ProcessBatch, resumed)).to have_result("sum" => (0...250).sum)
    expect(recorded_checkpoints(resumed).map(&:cursor)).to eq([250])
    expect(run_handler(Ledger::ProcessBatch, build_batch_context(no_op: true))).to have_result("sum" => 0)
    aggregate = build_step_context(dependency_results: { "process_batch_001" => { sum: 1 }, "process_batch_002" => { sum: 2 } })
    expect(run_handler(Ledger::Aggregate, aggregate)).to have_result("sum" => 3)
  end
end
