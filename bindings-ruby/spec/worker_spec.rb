# frozen_string_literal: true

require "spec_helper"
require "open3"

RSpec.describe TaskerCore::Worker do
  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    # Runs `blocking` on this thread while another Ruby thread stamps the monotonic clock every
    # 10 ms. Returns how many stamps fall inside the call: many if the call released the GVL,
    # at most a couple (taken before the call started) if it held it.
    def stamps_during(&blocking)
      stamps = Queue.new
      ticker = Thread.new do
        loop do
          stamps << Process.clock_gettime(Process::CLOCK_MONOTONIC)
          sleep 0.01
        end
      end
      sleep 0.05 # the ticker is running
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      blocking.call
      t1 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      ticker.kill.join
      all = []
      all << stamps.pop until stamps.empty?
      all.count { |s| s > t0 && s < t1 }
    end

    describe "poll and the GVL" do
      it "lets other Ruby threads run while poll waits (and the same check fails when the GVL is held)" do
        ns = SpecSupport.unique_namespace
        native = TaskerCore::Native::Worker.start(client.native, [ns], 1, nil, nil, nil, false, nil)
        begin
          during_poll = stamps_during { expect(native.poll(0.5)).to be_nil }
          expect(during_poll).to be >= 10

          # Control: a native call that blocks as long without releasing the GVL.
          during_held = stamps_during { TaskerCore::Native.block_holding_gvl(0.5) }
          expect(during_held).to be < 10
        ensure
          native.shutdown(5)
        end
      end

      it "lets Thread#raise interrupt a thread waiting in poll" do
        ns = SpecSupport.unique_namespace
        native = TaskerCore::Native::Worker.start(client.native, [ns], 1, nil, nil, nil, false, nil)
        begin
          waiting = Queue.new
          poller = Thread.new do
            waiting << true
            native.poll(60)
            :returned
          rescue RuntimeError => e
            e.message
          end
          waiting.pop
          sleep 0.1 until poller.status == "sleep" || !poller.alive?
          poller.raise(RuntimeError, "interrupted by spec")
          within(10, "the interrupted poll") { expect(poller.value).to eq("interrupted by spec") }
        ensure
          native.shutdown(5)
        end
      end

      it "returns :shutdown from poll once shutdown begins" do
        ns = SpecSupport.unique_namespace
        native = TaskerCore::Native::Worker.start(client.native, [ns], 1, nil, nil, nil, false, nil)
        poller = Thread.new { native.poll(60) }
        sleep 0.05
        expect(native.shutdown(5)).to eq("released" => 0, "abandoned" => 0)
        within(10, "poll after shutdown") { expect(poller.value).to eq(:shutdown) }
        expect(native).to be_shutting_down
      end
    end

    describe "#stop" do
      before { RbSpec::Slow::GATE.clear && RbSpec::Slow::STARTED.clear }

      it "drains in-flight handlers before returning" do
        ns = register_fixture(client, "slow.yaml")
        worker = described_class.new(client, queues: [ns], concurrency: 2).start
        task = client.create_task(namespace: ns, name: "slow_workflow", context: {})
        within(30, "the slow handler to start") { RbSpec::Slow::STARTED.pop }
        releaser = Thread.new do
          sleep 0.3
          RbSpec::Slow::GATE << :go
        end
        report = within(30, "stop") { worker.stop(timeout: 20) }
        releaser.join
        expect(report).to eq(released: 0, abandoned: 0)
        expect(worker).not_to be_running
        task.reload
        expect(task).to be_complete
        expect(task.step("slow").results).to eq("released" => true)
      end

      it "abandons handlers still running at the deadline and returns" do
        ns = register_fixture(client, "slow.yaml")
        worker = described_class.new(client, queues: [ns], concurrency: 1).start
        task = client.create_task(namespace: ns, name: "slow_workflow", context: {})
        within(30, "the slow handler to start") { RbSpec::Slow::STARTED.pop }
        report = within(30, "stop") { worker.stop(timeout: 0.2) }
        expect(report).to eq(released: 0, abandoned: 1)
        expect(task.reload.step("slow").state).to eq("in_progress")
        # Another worker picks the step up again once the abandoned lease is released.
        RbSpec::Slow::GATE << :go
        with_worker(client, queues: [ns]) do
          task.wait(timeout: 60)
          expect(task).to be_complete
          expect(task.step("slow").attempts).to eq(2)
        end
      end

      it "is idempotent and refuses to restart" do
        worker = described_class.new(client, queues: [SpecSupport.unique_namespace]).start
        expect(worker).to be_running
        first = worker.stop(timeout: 1)
        expect(worker.stop(timeout: 1)).to equal(first)
        expect { worker.start }.to raise_error(TaskerCore::ShutDownError)
      end
    end

    describe "#run" do
      script = <<~'RUBY'
        require "tasker_core"
        client = TaskerCore.connect(database_url: ARGV[0])
        worker = TaskerCore::Worker.new(client, queues: [ARGV[1]], concurrency: 2)
        worker.start
        puts "ready"
        $stdout.flush
        report = worker.run(timeout: 5)
        puts "stopped #{report[:released]} #{report[:abandoned]}"
      RUBY

      %w[INT TERM].each do |signal|
        it "stops on #{signal} and exits cleanly" do
          Open3.popen3(ruby_subprocess_env, RbConfig.ruby, "-e", script, database_url,
                       SpecSupport.unique_namespace) do |stdin, stdout, stderr, wait|
            stdin.close
            within(60, "the worker process to start") { expect(stdout.gets).to eq("ready\n") }
            sleep 0.2
            Process.kill(signal, wait.pid)
            status = within(20, "the worker process to stop after #{signal}") { wait.value }
            expect(stdout.read).to eq("stopped 0 0\n")
            expect(status).to be_success, stderr.read
          end
        end
      end
    end

    describe "#run with a handler that does not finish" do
      script = <<~'RUBY'
        require "tasker_core"
        require "tmpdir"
        ns = ARGV[1]
        client = TaskerCore.connect(database_url: ARGV[0])
        Dir.mktmpdir do |d|
          File.write(File.join(d, "t.yaml"), <<~YAML)
            name: stuck
            namespace_name: #{ns}
            version: 1.0.0
            steps:
              - {name: stuck, handler: {callable: stuck}}
          YAML
          client.register_templates(d)
        end
        TaskerCore.step_handler("stuck") { puts "handler started"; $stdout.flush; sleep 60 }
        worker = TaskerCore::Worker.new(client, queues: [ns], concurrency: 1)
        client.create_task(namespace: ns, name: "stuck", context: {})
        worker.run(timeout: 60)
        puts "graceful stop returned"
      RUBY

      it "gives up draining on a second INT" do
        Open3.popen3(ruby_subprocess_env, RbConfig.ruby, "-e", script, database_url,
                     SpecSupport.unique_namespace) do |stdin, stdout, _stderr, wait|
          stdin.close
          within(60, "the handler to start") { expect(stdout.gets).to eq("handler started\n") }
          Process.kill("INT", wait.pid)
          sleep 0.3
          Process.kill("INT", wait.pid)
          status = within(20, "the process to exit after a second INT") { wait.value }
          expect(status).not_to be_success
          expect(stdout.read).not_to include("graceful stop returned")
        end
      end
    end

    describe "handler registration" do
      it "rejects a handler name that was never defined" do
        expect do
          described_class.new(client, queues: ["q"], handlers: ["never_defined_anywhere"])
        end.to raise_error(TaskerCore::HandlerNotFound, /never_defined_anywhere/)
      end

      it "rejects bad arguments with errors naming them" do
        expect { described_class.new(client, queues: []) }.to raise_error(TaskerCore::InvalidArgumentError, /queues/)
        expect { described_class.new(client, queues: ["q"], concurrency: 0) }
          .to raise_error(TaskerCore::InvalidArgumentError, /concurrency/)
        expect { described_class.new(:nope, queues: ["q"]) }.to raise_error(TaskerCore::InvalidArgumentError, /client/)
        expect { described_class.new(client, queues: ["Bad-Queue"]).start }
          .to raise_error(TaskerCore::InvalidArgumentError, /Bad-Queue/)
        expect { described_class.new(client, queues: ["q"], dispatch_mode: "sometimes").start }
          .to raise_error(TaskerCore::InvalidArgumentError, /sometimes/)
      end
    end
  end
end
