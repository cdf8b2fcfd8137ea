# frozen_string_literal: true

# Ruby handler of the fault-injection tests (tests/faults): `faults.work`. It behaves like the
# Python one (tests/handlers/python/faults_handlers.py, which documents the switches) and writes
# its ledger rows through the helper process of tests/faults/ledger.py.

require "json"
require "securerandom"
require "tasker_core"

# The `faults.work` handler and the ledger helper it writes through.
module FaultsHandlers
  LANGUAGE = "ruby"
  MIB = 1024 * 1024
  ROOT = File.expand_path("../../..", __dir__)

  # The ledger helper: one per worker process, started on first use, spoken to one request at
  # a time (it answers once the row is committed).
  module Ledger
    @mutex = Mutex.new
    @io = nil

    module_function

    def url
      ENV.fetch("TASKER_FAULT_LEDGER", "")
    end

    def python
      venv = File.join(ROOT, "bindings-python/.venv/bin/python")
      ENV.fetch("TASKER_FAULT_PYTHON") { File.executable?(venv) ? venv : "python3" }
    end

    def call(doc)
      return if url.empty?

      @mutex.synchronize do
        @io ||= IO.popen([python, File.join(ROOT, "tests/faults/ledger.py"), "serve", url], "r+")
        @io.puts(JSON.generate(doc))
        @io.flush
        line = @io.gets
        raise "ledger helper exited" if line.nil?
        raise "ledger: #{line.strip}" unless line.start_with?("ok")
      end
    end
  end

  module_function

  def now
    Process.clock_gettime(Process::CLOCK_REALTIME)
  end

  def deep(levels)
    value = "bottom"
    levels.times { |i| value = i.even? ? [value] : { "d" => value } }
    value
  end

  def hostile(kind, ctx)
    case kind
    when "nul_value" then { "text" => "a\u0000b", "nested" => { "list" => ["x\u0000", "\u0000"] }, "by" => LANGUAGE }
    when "nul_key" then { "k\u0000ey" => 1, "nested" => { "\u0000" => "v" }, "by" => LANGUAGE }
    when "nul_metadata"
      TaskerCore::StepResult::Success.new(result: { "by" => LANGUAGE }, metadata: { "note" => "m\u0000", "k\u0000" => 1 })
    when "nul_failure"
      if ctx.attempt == 1
        TaskerCore::StepResult::Failure.new(message: "boom\u0000here", error_type: "HostileFailure", retryable: true,
                                            backtrace: "frame one\u0000frame two")
      else
        { "recovered" => true, "by" => LANGUAGE }
      end
    when "nul_failure_permanent"
      TaskerCore::StepResult::Failure.new(message: "fatal\u0000here", error_type: "HostileFailure", retryable: false,
                                          backtrace: "frame one\u0000frame two")
    when "oversize" then { "blob" => "x" * (2 * MIB), "by" => LANGUAGE }
    when "oversize_metadata"
      TaskerCore::StepResult::Success.new(result: { "by" => LANGUAGE }, metadata: { "blob" => "x" * (2 * MIB) })
    when "deep" then deep(200)
    when "deep_metadata"
      TaskerCore::StepResult::Success.new(result: { "by" => LANGUAGE }, metadata: { "deep" => deep(200) })
    when "large_ok" then { "blob" => "y" * 600_000, "by" => LANGUAGE }
    when "deep_ok" then { "deep" => deep(20), "by" => LANGUAGE }
    else raise ArgumentError, "unknown hostile kind #{kind.inspect}"
    end
  end

  def sleep_ms(ctx)
    slow = (ctx.input["slow_steps"] || {})[ctx.step_name]
    return slow.to_f unless slow.nil?

    (ctx.config["sleep_ms"] || ctx.input["sleep_ms"] || 0).to_f
  end

  def fail_attempts(ctx)
    n = (ctx.input["fail_steps"] || {})[ctx.step_name]
    (n.nil? ? ctx.config["fail_attempts"] || 0 : n).to_i
  end

  def run(ctx)
    ms = sleep_ms(ctx)
    sleep(ms / 1000.0) if ms.positive?
    if ctx.attempt <= fail_attempts(ctx)
      raise TaskerCore::RetryableError.new("#{LANGUAGE}: injected failure of attempt #{ctx.attempt}",
                                           error_type: "Injected")
    end

    kind = (ctx.input["hostile"] || {})[ctx.step_name]
    return [hostile(kind, ctx), "hostile:#{kind}"] if kind

    deps = ctx.dependency_results || {}
    n = 1 + deps.values.sum { |r| r.is_a?(Hash) ? r["n"].to_i : 0 }
    [{ "n" => n, "step" => ctx.step_name, "attempt" => ctx.attempt, "by" => LANGUAGE }, "ok"]
  end

  WORK = TaskerCore.step_handler("faults.work") do |ctx|
    token = SecureRandom.uuid
    Ledger.call(op: "start", token: token, step_uuid: ctx.step_uuid.to_s, task_uuid: ctx.task_uuid.to_s,
                step_name: ctx.step_name, attempt: ctx.attempt, language: LANGUAGE, pid: Process.pid, t: FaultsHandlers.now)
    outcome = "ok"
    begin
      result, outcome = FaultsHandlers.run(ctx)
      result
    rescue TaskerCore::RetryableError
      outcome = "retryable"
      raise
    rescue Exception => e # rubocop:disable Lint/RescueException
      outcome = "error:#{e.class.name}"
      raise
    ensure
      Ledger.call(op: "finish", token: token, outcome: outcome, t: FaultsHandlers.now)
    end
  end

  HANDLERS = [WORK].freeze
end
