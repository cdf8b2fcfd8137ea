# frozen_string_literal: true

require "spec_helper"

RSpec.describe "decision points, deferred convergence and batches run by Ruby handlers" do
  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    def run_task(file, context, steps: {})
      ns = register_fixture(client, file, steps: steps)
      with_worker(client, queues: [ns], concurrency: 4) do |worker|
        task = client.create_task(namespace: ns, name: template_name(file), context: context)
        task.wait(timeout: 60)
        yield task, worker if block_given?
        task
      end
    end

    describe "approval routing (decision + deferred convergence)" do
      static = %w[validate_request routing_decision]

      { 500 => ["auto_approve"], 2500 => ["manager_approval"],
        7500 => %w[finance_review manager_approval] }.each do |amount, chosen|
        it "creates only #{chosen.join(' and ')} for #{amount}, and the convergence sees exactly those" do
          task = run_task("approval.yaml", { "amount" => amount })
          expect(task).to be_complete
          expect(task.steps.map(&:name)).to match_array(static + chosen + ["finalize_approval"])
          expect(task.steps.map(&:state).uniq).to eq(["complete"])
          expect(task.total_steps).to eq(task.steps.size)
          static.each { |name| expect(task.step(name).created_by).to be_nil }
          (chosen + ["finalize_approval"]).each { |name| expect(task.step(name).created_by).to eq("routing_decision") }
          expect(task.step("finalize_approval").results).to eq("branches" => chosen)
          expect(TaskerCore::StepResult::Decision.from(task.step("routing_decision").results).steps.sort).to eq(chosen)
          expect(task.step(chosen.first).results["seen"]).to eq(["routing_decision"])
        end
      end

      it "creates no branch for decision_no_branches and still converges, with no branch results" do
        task = run_task("approval.yaml", { "amount" => 10, "withdrawn" => true })
        expect(task).to be_complete
        expect(task.steps.map(&:name)).to match_array(static + ["finalize_approval"])
        expect(task.step("routing_decision").results).to include("route" => "withdrawn")
        expect(TaskerCore::StepResult::Decision.from(task.step("routing_decision").results)).to be_no_branches
        expect(task.step("finalize_approval")).to have_attributes(state: "complete", created_by: "routing_decision",
                                                                  result: { "branches" => [] })
      end

      it "fails the decision step permanently when it names a step it cannot create" do
        task = run_task("approval.yaml", { "amount" => 10, "force_steps" => %w[auto_approve no_such_step] })
        expect(task.state).to eq("error")
        step = task.step("routing_decision")
        expect(step).to have_attributes(state: "error", attempts: 1)
        expect(step.last_error).to include("error_type" => "invalid_decision", "retryable" => false)
        expect(step.last_error["message"]).to include("no_such_step")
        expect(task.steps.map(&:name)).to match_array(static)
      end
    end

    describe "batches (batchable + batch_worker + deferred convergence)" do
      def instances(task)
        task.steps.select { |s| s.name.start_with?("process_batch_") }.sort_by(&:name)
      end

      it "runs 2,500 items in batches of 1,000 as 3 workers and converges on the right total" do
        task = run_task("batch.yaml", { "total" => 2500, "batch_size" => 1000 })
        expect(task).to be_complete
        workers = instances(task)
        expect(workers.map(&:name)).to eq(%w[process_batch_001 process_batch_002 process_batch_003])
        expect(workers.map(&:created_by).uniq).to eq(["analyze"])
        expect(workers.map { |w| [w.batch.start_cursor, w.batch.end_cursor, w.batch.batch_size] })
          .to eq([[0, 1000, 1000], [1000, 2000, 1000], [2000, 2500, 500]])
        expect(workers.map { |w| w.batch.batch_id }).to eq(%w[001 002 003])
        expect(workers.map { |w| w.batch.no_op? }.uniq).to eq([false])
        expect(workers.map { |w| w.results["sum"] }).to eq([(0...1000).sum, (1000...2000).sum, (2000...2500).sum])
        # every checkpoint_interval (100) items: the last one is the end of the range
        expect(workers.map { |w| [w.checkpoint.cursor, w.checkpoint.items_done, w.checkpoint.attempt] })
          .to eq([[1000, 1000, 1], [2000, 1000, 1], [2500, 500, 1]])
        expect(workers.first.checkpoint.recorded_at).to be_a(Time)
        aggregate = task.step("aggregate")
        expect(aggregate.results).to eq("sum" => (0...2500).sum, "count" => 2500, "workers" => workers.map(&:name))
        expect(task.step("analyze").results["batch_processing_outcome"]).to include("worker_count" => 3,
                                                                                    "total_items" => 2500)
        expect(task.step("analyze").created_by).to be_nil
        expect(task.step("analyze").batch).to be_nil
        expect(RbSpec::Batches.ledger(task.uuid).map(&:last).sort).to eq((0...2500).to_a)
      end

      it "runs one no-op worker for no_batches, and the convergence still runs" do
        task = run_task("batch.yaml", { "total" => 0, "batch_size" => 1000 })
        expect(task).to be_complete
        workers = instances(task)
        expect(workers.size).to eq(1)
        expect(workers.first.created_by).to eq("analyze")
        expect(workers.first.batch).to have_attributes(batch_id: "000", start_cursor: 0, end_cursor: 0)
        expect(workers.first.batch).to be_no_op
        expect(workers.first.result).to include("no_op" => true)
        expect(task.step("aggregate").results).to eq("sum" => 0, "count" => 0, "workers" => workers.map(&:name))
      end

      it "resumes a retried worker from its last checkpoint, processing no item twice" do
        task = run_task("batch.yaml", { "total" => 1000, "batch_size" => 500, "fail_after_checkpoints" => 2 })
        expect(task).to be_complete
        workers = instances(task)
        expect(workers.size).to eq(2)
        workers.each do |w|
          start = w.batch.start_cursor
          expect(w.attempts).to eq(2)
          expect(w.last_error).to include("error_type" => "IOError")
          expect(w.result).to include("resumed_from" => start + 200, "sum" => (start...(start + 500)).sum)
          expect(w.checkpoint).to have_attributes(cursor: start + 500, items_done: 500, attempt: 2)
        end
        ledger = RbSpec::Batches.ledger(task.uuid)
        expect(ledger.map(&:last).sort).to eq((0...1000).to_a) # each item exactly once over both attempts
        second = ledger.select { |(_, attempt, _)| attempt == 2 }.group_by(&:first)
        resumed_at = second.transform_values { |rows| rows.map(&:last).min }
        expect(resumed_at).to eq(workers.to_h { |w| [w.name, w.batch.start_cursor + 200] })
        expect(task.step("aggregate").results).to include("sum" => (0...1000).sum, "count" => 1000)
      end

      it "raises FencedError for a checkpoint from an attempt that timed out, and the retry finishes" do
        error = nil
        task = run_task("batch.yaml", { "total" => 200, "batch_size" => 200, "stall_seconds" => 2.5 },
                        steps: { "process_batch" => { "timeout_seconds" => 1 } }) do |t, _worker|
          expect(t).to be_complete # the retry finished while the first attempt still sleeps
          # The stalled attempt wakes up, still in this running worker, and tries to checkpoint.
          error = within(10, "the stalled attempt's checkpoint") { RbSpec::Batches::FENCED.pop }
        end
        expect(error).to be_a(TaskerCore::FencedError)
        expect(error.code).to eq("fenced")
        worker = instances(task).first
        expect(worker.attempts).to eq(2)
        expect(worker.last_error).to include("error_type" => "timeout")
        expect(worker.checkpoint.attempt).to eq(2)
      end

      it "raises UnknownEventError for a checkpoint once the attempt is over" do
        run_task("batch.yaml", { "total" => 100, "batch_size" => 100, "stash" => true }) do |task, _worker|
          expect(task).to be_complete
          batch = within(5, "the stashed batch") { RbSpec::Batches::STASHED.pop }
          expect { batch.checkpoint(1) }.to raise_error(TaskerCore::UnknownEventError) { |e|
            expect(e.code).to eq("unknown_event")
          }
        end
      end
    end
  end
end
