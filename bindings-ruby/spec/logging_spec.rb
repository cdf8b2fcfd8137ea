# frozen_string_literal: true

require "spec_helper"
require "open3"
require "stringio"

RSpec.describe "the engine's log records (TaskerCore::Logging)" do
  around do |example|
    previous = TaskerCore.instance_variable_get(:@logger)
    example.run
  ensure
    TaskerCore.logger = previous
  end

  # Waits until `io` has a line matching `pattern`; returns it.
  def line_matching(io, pattern, seconds: 15)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    loop do
      line = io.string.lines.find { |l| l.match?(pattern) }
      return line if line
      raise "no log line matching #{pattern.inspect} within #{seconds}s:\n#{io.string}" if
        Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.02
    end
  end

  # A logger whose every write raises, and the list its attempts are counted in.
  def raising_logger
    calls = Queue.new
    logger = Logger.new(File::NULL)
    logger.define_singleton_method(:add) do |*|
      calls << true
      raise IOError, "log device is gone"
    end
    [logger, calls]
  end

  def string_logger
    io = StringIO.new
    [Logger.new(io, level: Logger::DEBUG), io]
  end

  describe "formatting" do
    it "writes the message, then the step fields in order, then the others by name, quoting values with spaces" do
      record = { "level" => "warn", "message" => "step attempt failed permanently",
                 "fields" => { "error" => "card declined", "correlation_id" => "c-1", "attempt" => "1",
                               "step_name" => "charge", "task_uuid" => "t-1", "error_type" => "card_declined",
                               "empty" => "", "step_uuid" => "s-1" } }
      expect(TaskerCore::Logging.format_line(record)).to eq(
        "step attempt failed permanently task_uuid=t-1 step_uuid=s-1 step_name=charge attempt=1 " \
        'correlation_id=c-1 empty="" error="card declined" error_type=card_declined'
      )
    end

    it "maps the engine's levels to Logger severities" do
      expect(%w[error warn info debug trace].map { |l| TaskerCore::Logging.severity(l) })
        .to eq([Logger::ERROR, Logger::WARN, Logger::INFO, Logger::DEBUG, Logger::DEBUG])
    end

    it "refuses a negative poll timeout" do
      expect { TaskerCore::Native.poll_log(-1) }.to raise_error(TaskerCore::InvalidArgumentError, /timeout_ms/)
    end
  end

  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    def run_permanent_failure
      ns = register_fixture(client, "permanent.yaml")
      with_worker(client, queues: [ns]) do
        task = client.create_task(namespace: ns, name: template_name("permanent.yaml"), context: {})
        task.wait(timeout: 60)
      end
    end

    it "starts one forwarding thread when connecting" do
      thread = Thread.list.find { |t| t.name == TaskerCore::Logging::THREAD_NAME }
      expect(thread).to be_alive
      expect(TaskerCore::Logging).to be_running
      expect(TaskerCore::Logging.start).to be(thread)
      TaskerCore.connect(database_url: database_url).close
      expect(Thread.list.count { |t| t.name == TaskerCore::Logging::THREAD_NAME }).to eq(1)
      expect(TaskerCore::Logging.filter).to be_a(String)
    end

    it "writes a permanent failure as a WARN line with the step's fields" do
      logger, io = string_logger
      TaskerCore.logger = logger
      task = run_permanent_failure
      expect(task.state).to eq("error")
      line = line_matching(io, /step attempt failed permanently.*task_uuid=#{task.uuid}/)
      expect(line).to match(/\AW, \[.*\]  WARN -- tasker: step attempt failed permanently /)
      expect(line).to include(" task_uuid=#{task.uuid} ", " step_uuid=#{task.step('first').uuid} ",
                              " step_name=first ", " attempt=1 ", " correlation_id=#{task.correlation_id}")
      expect(line).to include("error_type=card_declined")
    end

    it "keeps forwarding after the logger raised, to the logger assigned later" do
      raising, calls = raising_logger
      stderr = StringIO.new
      original_stderr = $stderr
      # Before the logger: the first failure is the one reported.
      $stderr = stderr
      TaskerCore.logger = raising
      begin
        run_permanent_failure
        within(15, "the raising logger being called") { calls.pop }
      ensure
        $stderr = original_stderr
      end
      expect(stderr.string).to include("TaskerCore.logger raised IOError: log device is gone")
      expect(TaskerCore::Logging).to be_running

      logger, io = string_logger
      TaskerCore.logger = logger
      task = run_permanent_failure
      line = line_matching(io, /WARN -- tasker: step attempt failed permanently.*task_uuid=#{task.uuid}/)
      expect(line).to include(" step_name=first ", " attempt=1 ")
    end
  end

  it "starts a thread of its own in a forked child" do
    skip "no fork on this platform" unless Process.respond_to?(:fork)

    TaskerCore.connect(database_url: SpecSupport.sqlite_url).close
    parent_thread = Thread.list.find { |t| t.name == TaskerCore::Logging::THREAD_NAME }
    reader, writer = IO.pipe
    pid = fork do
      reader.close
      thread = TaskerCore::Logging.start
      writer.write([thread.name, thread.alive?, thread.equal?(parent_thread), TaskerCore::Logging.running?].inspect)
      writer.close
      exit!(0)
    end
    writer.close
    result = within(20, "the forked child") { reader.read }
    _, status = Process.wait2(pid)
    expect(status).to be_success
    expect(result).to eq(["tasker-core-logs", true, false, true].inspect)
  ensure
    reader&.close
    begin
      Process.kill(:KILL, pid) if pid && !status
    rescue Errno::ESRCH
      nil
    end
  end

  it "does not keep a process from exiting" do
    script = <<~RUBY
      require "tasker_core"
      TaskerCore.connect(database_url: ARGV[0])
      abort "not running" unless TaskerCore::Logging.running?
      puts "connected"
    RUBY
    out, err, status = within(60, "the child Ruby process") do
      Open3.capture3(ruby_subprocess_env, RbConfig.ruby, "-e", script, SpecSupport.sqlite_url)
    end
    expect(status).to be_success, err
    expect(out).to eq("connected\n")
  end
end
