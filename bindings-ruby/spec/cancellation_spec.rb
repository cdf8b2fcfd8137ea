# frozen_string_literal: true

require "spec_helper"

RSpec.describe "cancellation and fatal worker errors" do
  # Upper bound for a handler's wait; the engine cancels after about 1 s (timeout_seconds: 1).
  give_up_after = 15.0

  # A handler that loops until its context says cancelled, and records what it saw.
  let(:probe) do
    Class.new do
      attr_reader :before

      def initialize(give_up_after)
        @give_up_after = give_up_after
        @before = nil
        @became_true = false
      end

      def call(context)
        @before = context.cancelled?
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        until context.cancelled?
          return { "cancelled" => false } if Process.clock_gettime(Process::CLOCK_MONOTONIC) - started > @give_up_after

          sleep 0.02
        end
        @became_true = true
        raise TaskerCore::RetryableError, "cancelled"
      end

      # Waits up to `timeout` seconds for the handler to see context.cancelled? turn true.
      def became_true?(timeout)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
        sleep 0.02 until @became_true || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        @became_true
      end
    end.new(give_up_after)
  end

  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    it "turns context.cancelled? true when the attempt times out, and fails it with timeout" do
      ns = register_fixture(client, "cancel.yaml")
      task = with_worker(client, queues: [ns], handlers: { "cancel.loops" => probe }) do |worker|
        done = client.create_task(namespace: ns, name: "cancel_workflow", context: {}).wait(timeout: 30)
        expect(probe.became_true?(give_up_after)).to be(true), "context.cancelled? never became true"
        expect(worker).to be_running
        done
      end
      expect(probe.before).to be(false)
      step = task.step("loops")
      expect(step).to have_attributes(state: "error", attempts: 1)
      expect(step.last_error).to include("error_type" => "timeout", "retryable" => true)
      # The handler's own late failure is ignored: the recorded error stays the timeout.
      expect(client.get_task(task.uuid).step("loops").last_error["error_type"]).to eq("timeout")
    end

    it "leaves context.cancelled? false for an attempt that runs normally" do
      ns = register_fixture(client, "single.yaml")
      seen = []
      handler = lambda { |c|
        seen << c.cancelled?
        { "ok" => true }
      }
      task = with_worker(client, queues: [ns], handlers: { "single.only" => handler }) do
        client.create_task(namespace: ns, name: "single_workflow", context: {}).wait(timeout: 30)
      end
      expect(task).to be_complete
      expect(seen).to eq([false])
    end

    it "cancels a handler still running at the shutdown deadline" do
      ns = register_fixture(client, "single.yaml")
      worker = TaskerCore::Worker.new(client, queues: [ns], handlers: { "single.only" => probe }, concurrency: 1).start
      client.create_task(namespace: ns, name: "single_workflow", context: {})
      within(30, "the handler starting") { sleep 0.02 while probe.before.nil? }
      expect(probe.before).to be(false)
      report = worker.stop(timeout: 0.5)
      expect(report[:abandoned]).to eq(1)
      expect(probe.became_true?(give_up_after)).to be(true), "context.cancelled? never became true after stop"
    end
  end

  describe "testing helpers" do
    it "build contexts that are cancelled or not" do
      expect(TaskerCore::Testing.build_step_context.cancelled?).to be(false)
      expect(TaskerCore::Testing.build_step_context(cancelled: true).cancelled?).to be(true)
      flips = [false, true]
      context = TaskerCore::Testing.build_step_context(cancelled: -> { flips.shift })
      expect([context.cancelled?, context.cancelled?]).to eq([false, true])
      result = TaskerCore::Testing.run_handler(probe, TaskerCore::Testing.build_step_context(cancelled: true))
      expect(result).to have_error_type("TaskerCore::RetryableError")
    end
  end

  describe "a WorkerFailedError from poll" do
    # Stands in for the native worker after one of its background tasks died.
    let(:failed_native) do
      Class.new do
        attr_reader :polls

        def initialize
          @polls = 0
          @lock = Mutex.new
          @shut_down = false
        end

        def poll(_timeout)
          @lock.synchronize { @polls += 1 }
          error = TaskerCore::WorkerFailedError.new("the worker's applier stopped: panicked: boom")
          error.instance_variable_set(:@code, "worker_failed")
          raise error
        end

        def shutdown(_timeout)
          @shut_down = true
          { "released" => 0, "abandoned" => 0 }
        end

        def shut_down? = @shut_down

        def config
          { "queues" => ["anything"], "concurrency" => 3, "lease" => 30.0, "poll_interval" => nil,
            "dispatch_mode" => "hybrid", "embedded_orchestration" => true, "worker_id" => "double", "language" => "ruby" }
        end
      end.new
    end

    it "stops every handler thread, and run stops the worker and raises it" do
      allow(TaskerCore::Native::Worker).to receive(:start).and_return(failed_native)
      client = TaskerCore.connect(database_url: SpecSupport.sqlite_url)
      worker = TaskerCore::Worker.new(client, queues: ["anything"], concurrency: 3)
      error = nil
      within(10, "run") do
        worker.run
      rescue TaskerCore::WorkerFailedError => e
        error = e
      end
      expect(error).to be_a(TaskerCore::WorkerFailedError)
      expect(error.code).to eq("worker_failed")
      expect(error.message).to include("applier stopped")
      expect(worker.failure).to be(error)
      expect(worker).not_to be_running
      # Each thread polled at most once (those that saw the error stopped; the others saw the
      # stop first): no retry loop.
      expect(failed_native.polls).to be_between(1, 3)
      expect(failed_native.shut_down?).to be(true)
    ensure
      client&.close
    end
  end
end
