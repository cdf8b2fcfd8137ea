# frozen_string_literal: true

module TaskerCore
  # The engine's own log records (a step attempt that failed permanently, one that timed out, the
  # circuit breaker, database retries), written to {TaskerCore.logger}.
  #
  # {TaskerCore.connect} calls {start}: once per process (again in a forked child), a background
  # thread named {THREAD_NAME} waits for the engine's records in native code with the GVL
  # released and writes each one as
  #
  #   logger.add(severity, "step attempt failed permanently task_uuid=... step_name=charge ...", "tasker")
  #
  # The engine forwards records at the configured `logging.level` (default `info`; `TASKER_LOG`, a
  # full filter such as `tasker_core=debug`, wins); the logger's own level applies on top (the
  # default logger shows WARN and above). The logger is read for every record, so assigning
  # {TaskerCore.logger} later takes effect at once. A logger that raises loses that record (a
  # warning goes to `$stderr`) and the thread keeps going. The thread does not keep the process
  # from exiting; records still waiting at exit are written by an `at_exit` hook.
  module Logging
    # The forwarding thread's name.
    THREAD_NAME = "tasker-core-logs"
    # Milliseconds one native poll waits before going round again.
    POLL_TIMEOUT_MS = 500
    # The Logger severity of each engine level.
    SEVERITIES = {
      "error" => ::Logger::ERROR, "warn" => ::Logger::WARN, "info" => ::Logger::INFO,
      "debug" => ::Logger::DEBUG, "trace" => ::Logger::DEBUG
    }.freeze
    # The progname of every line.
    PROGNAME = "tasker"
    # The fields of a record about a step, written first and in this order; the others follow
    # sorted by name.
    STEP_FIELDS = %w[task_uuid step_uuid step_name attempt correlation_id].freeze
    # At most this many waiting records are written at exit.
    FLUSH_LIMIT = 10_000

    @lock = Mutex.new
    @pid = nil
    @thread = nil
    @filter = nil
    @failing = false

    class << self
      # Starts forwarding the engine's records to {TaskerCore.logger}; does nothing when this
      # process already does (a forked child starts its own thread). Thread-safe.
      # @return [Thread] the forwarding thread
      # @raise [ConfigurationError] the configuration does not load
      # @raise [InvalidArgumentError] `logging.level` / `TASKER_LOG` is not a log filter, or the
      #   process already has another `tracing` subscriber
      def start
        @lock.synchronize do
          return @thread if running?

          @filter = Native.forward_logs
          unless @exit_hook
            @exit_hook = true
            at_exit { flush if @pid == Process.pid }
          end
          @pid = Process.pid
          @thread = Thread.new { run }
          @thread.name = THREAD_NAME
          @thread.report_on_exception = false
          @thread
        end
      end

      # Whether this process's forwarding thread runs.
      # @return [Boolean]
      def running?
        @pid == Process.pid && @thread&.alive? == true
      end

      # The filter the engine forwards records at (`TASKER_LOG`, else `logging.level`); nil before
      # {start}.
      # @return [String, nil]
      attr_reader :filter

      # Writes the records waiting now, without waiting for more (at exit, or in a test).
      # @param max [Integer] at most this many
      # @return [Integer] how many were written
      def flush(max = FLUSH_LIMIT)
        written = 0
        while written < max
          record = Native.poll_log(0)
          break unless record

          write(record)
          written += 1
        end
        written
      end

      # The line written for `record`: its message, then ` key=value` for each field
      # ({STEP_FIELDS} first, then the others by name), a value with spaces, `"` or `=` quoted.
      # @param record [Hash{String => Object}] as {Native.poll_log} returns it
      # @return [String]
      def format_line(record)
        fields = record["fields"] || {}
        keys = STEP_FIELDS.select { |k| fields.key?(k) } + (fields.keys - STEP_FIELDS).sort
        keys.each_with_object(record["message"].to_s.dup) { |k, line| line << " #{k}=#{quote(fields[k])}" }
      end

      # The Logger severity of an engine level (`"warn"` => `Logger::WARN`).
      # @param level [String]
      # @return [Integer]
      def severity(level)
        SEVERITIES.fetch(level.to_s, ::Logger::WARN)
      end

      # Writes one record to {TaskerCore.logger}; a logger that raises loses the record, never
      # the thread.
      # @api private
      # @param record [Hash{String => Object}]
      # @return [void]
      def write(record)
        # The block is only run when the logger's level lets the record through.
        TaskerCore.logger.add(severity(record["level"]), nil, PROGNAME) { format_line(record) }
        @failing = false
      rescue StandardError, ScriptError => e
        report(e, "TaskerCore.logger raised")
      end

      private

      def run
        loop do
          record = Native.poll_log(POLL_TIMEOUT_MS)
          write(record) if record
        rescue StandardError => e
          # Not the logger (`write` rescues that): the native poll itself failed. Say so once
          # and go on after a pause rather than spin.
          report(e, "reading the engine's log records raised")
          sleep 1
        end
      end

      def quote(value)
        text = value.to_s
        text.empty? || text.match?(/[\s"=]/) ? text.inspect : text
      end

      # Reported when the failures start, not for every record lost after.
      def report(error, what)
        return if @failing

        @failing = true
        begin
          Kernel.warn("tasker: engine log records are lost: #{what} #{error.class}: #{error.message} " \
                      "(not reported again until a record is written)")
        rescue StandardError
          nil # $stderr itself is closed: nothing left to tell.
        end
      end
    end
  end
end
