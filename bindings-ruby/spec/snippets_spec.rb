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
    load File.join(dir, "events.rb")
    load File.join(dir, "getting_started.rb")
  end

  it "getting_started.rb runs as docs/getting-started-ruby.md says" do
    client = TaskerCore.connect(database_url: SpecSupport.sqlite_url)
    client.register_templates(File.join(dir, "..", "getting_started.yaml"))
    worker = TaskerCore::Worker.new(client, queues: ["getting_started"]).start
    task = client.create_task(namespace: "getting_started", name: "order_total",
                              context: { "order_id" => 7, "items" => [{ "price" => 10.0, "quantity" => 3 }] })
    done = task.wait(timeout: 30)
    expect(done.state).to eq("complete")
    expect(done.step("compute_total").results).to eq("order_id" => 7, "total" => 36.0)
  ensure
    worker&.stop(timeout: 10)
    client&.close
  end

  it "getting_started.rb handlers run without a database" do
    refused = run_handler(GettingStarted::ValidateOrder,
                          build_step_context(input: { order_id: 1, items: [{ price: 1, quantity: 101 }] }))
    expect(refused).to have_attributes(error_type: "quantity_too_large", retryable?: false)
    context = build_step_context(input: { order_id: 7, items: [{ price: 10.0, quantity: 3 }] },
                                 dependency_results: { validate_order: { order_id: 7, lines: 1 } },
                                 config: { tax_rate: 0.2 })
    expect(run_handler(GettingStarted::ComputeTotal, context).result).to eq("order_id" => 7, "total" => 36.0)
  end

  it "events.rb publishes payment.charged and books each charge once" do
    expect(run_handler(Payments::Charge, build_step_context(input: { amount: 5 })))
      .to have_published_event("payment.charged", "amount" => 5)
    event = build_event("payment.charged", payload: { amount: 5 })
    2.times { run_subscriber(Payments::Ledger, event) }
    run_subscriber(Payments::Ledger, build_event("task.failed"))
    expect(Payments::Ledger.entries).to eq(event.event_id => 5)
    expect(Payments::Ledger.group).to eq("ledger")
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
