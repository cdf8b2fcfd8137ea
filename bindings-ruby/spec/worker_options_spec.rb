# frozen_string_literal: true

require "spec_helper"

RSpec.describe "TaskerCore::Worker options and edge cases" do
  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    it "lets the engine time out an overrunning handler, retries, and ignores the late result" do
      ns = register_fixture(client, "timeout.yaml")
      with_worker(client, queues: [ns], concurrency: 2) do
        task = client.create_task(namespace: ns, name: "timeout_workflow", context: {})
        task.wait(timeout: 60)
        expect(task).to be_complete
        step = task.step("sleepy")
        expect(step.attempts).to eq(2)
        expect(step.results).to eq("attempt" => 2)
        expect(step.last_error).to include("error_type" => "timeout", "retryable" => true)
        # The first attempt's handler finishes later; its result must not change the step.
        within(30, "the overrunning handler to finish") { RbSpec::Sleepy::LATE.pop }
        sleep 0.2
        expect(task.reload.step("sleepy")).to have_attributes(attempts: 2, result: { "attempt" => 2 })
      end
    end

    it "runs every attempt inside the around hook" do
      ns = register_fixture(client, "diamond.yaml")
      wrapped = Queue.new
      around = lambda do |context, &run|
        wrapped << context.step_name
        run.call
      end
      with_worker(client, queues: [ns], around: around) do
        client.create_task(namespace: ns, name: "diamond_workflow", context: { "n" => 2 }).wait(timeout: 60)
      end
      names = []
      names << wrapped.pop until wrapped.empty?
      expect(names.sort).to eq(%w[diamond_branch_b diamond_branch_c diamond_end diamond_start])
    end

    it "fails an attempt whose around hook does not run the handler" do
      ns = register_fixture(client, "retries.yaml", steps: { "flaky" => { "retry" => { "max_attempts" => 1 } } })
      with_worker(client, queues: [ns], around: ->(_context, &_run) {}) do
        task = client.create_task(namespace: ns, name: "retry_workflow", context: {}).wait(timeout: 60)
        expect(task.state).to eq("error")
        expect(task.step("flaky").last_error).to include("error_type" => "around_hook_skipped")
      end
    end

    it "runs with fewer threads than slots" do
      ns = register_fixture(client, "tree.yaml")
      handlers = [RbSpec::Tree::Root, RbSpec::Tree::Scale, RbSpec::Tree::Offset, RbSpec::Tree::Sum]
      with_worker(client, queues: [ns], handlers: handlers, concurrency: 8, threads: 1) do |worker|
        expect(worker.thread_count).to eq(1)
        task = client.create_task(namespace: ns, name: "tree_workflow", context: { "n" => 1 }).wait(timeout: 60)
        expect(task.step("tree_final_convergence").results["value"]).to eq(2 + 1 + 2 + 2 + 3 + 3 + 3 + 4)
        expect(worker.stats["dispatched"]).to eq(8)
      end
      expect { TaskerCore::Worker.new(client, queues: ["q"], threads: 0) }
        .to raise_error(TaskerCore::InvalidArgumentError, /threads/)
    end

    it "returns from run when stop is called from another thread" do
      worker = TaskerCore::Worker.new(client, queues: [SpecSupport.unique_namespace])
      runner = Thread.new { worker.run(timeout: 5) }
      sleep 0.05 until worker.running?
      stopper = Thread.new { worker.stop(timeout: 5) }
      within(20, "run after stop") { expect(runner.value).to eq(released: 0, abandoned: 0) }
      stopper.join
      expect(TaskerCore::Worker.running).not_to include(worker)
    end

    it "lets Thread#raise interrupt Task#wait" do
      ns = register_fixture(client, "linear.yaml")
      task = client.create_task(namespace: ns, name: "linear_workflow", context: { "even_number" => 2 })
      waiter = Thread.new do
        task.wait(timeout: 120)
      rescue IOError => e
        e.message
      end
      sleep 0.1 until waiter.status == "sleep"
      waiter.raise(IOError, "stop waiting")
      within(10, "the interrupted wait") { expect(waiter.value).to eq("stop waiting") }
    end
  end
end
