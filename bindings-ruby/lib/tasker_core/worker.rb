# frozen_string_literal: true

require "logger"

module TaskerCore
  # Runs step handlers for the steps of some queues (a queue is a template namespace, unless a
  # step names another).
  #
  #   worker = TaskerCore::Worker.new(client, queues: ["payments"], handlers: [ChargeCard], concurrency: 4)
  #   worker.run # until INT or TERM
  #
  # Handlers run on `concurrency` Ruby threads. Each thread waits for its next step in native code
  # with the GVL released, in slices of {POLL_SLICE} seconds, so other threads keep running and
  # {#stop} or a signal take effect at once.
  #
  # Cancellation: a handler's `context.cancelled?` turns true once the engine gives up on its
  # attempt (it overran `timeout_seconds`, or the shutdown deadline passed); its result is ignored
  # from then on, so long handlers should check it and return early.
  #
  # Checkpoints: `context.batch.checkpoint(...)` in a batch worker instance is stored at once
  # through the native worker (the handler's thread waits for the commit with the GVL released).
  #
  # Configuration: every option left out (or nil) takes its value from the configuration the
  # `tasker` CLI reads (`[worker]` in the `config/tasker` tree, `TASKER_WORKER__*` variables; see
  # docs/configuration.md), else the engine's default; queues configured in `worker.queues` are
  # added to `queues`. The configuration is read when the worker starts; {#concurrency},
  # {#queues} and {#settings} then report what it runs with.
  #
  # Fatal errors: if a background task of the engine's worker dies, polling raises
  # {WorkerFailedError}. The handler threads then stop (no retry loop: a failed worker claims
  # nothing more), {#failure} holds the error, and {#run} stops the worker and raises it.
  class Worker
    # Seconds a handler thread waits in one native poll before looking at its stop flag again.
    POLL_SLICE = 0.1
    # Default seconds {#stop} waits for in-flight handlers.
    DEFAULT_SHUTDOWN_TIMEOUT = 30

    @running = []
    @running_lock = Mutex.new

    class << self
      # @api private
      def track(worker)
        @running_lock.synchronize do
          install_exit_hook
          @running << worker
        end
      end

      # @api private
      def untrack(worker)
        @running_lock.synchronize { @running.delete(worker) }
      end

      # Workers started in this process and not yet stopped.
      # @return [Array<Worker>]
      def running
        @running_lock.synchronize { @running.dup }
      end

      private

      def install_exit_hook
        return if @exit_hook

        @exit_hook = true
        at_exit { running.each { |w| w.stop if w.started_in_this_process? } }
      end
    end

    # @return [Client]
    attr_reader :client
    # @return [HandlerRegistry] handlers given explicitly to this worker
    attr_reader :registry
    # @return [WorkerFailedError, nil] the error that stopped this worker, if a background task of
    #   the engine's worker died
    attr_reader :failure

    # @param client [Client]
    # @param queues [Array<String>, String] queues to claim steps from
    # @param handlers [Array<Class, String, Symbol>, Hash{String => Class, #call}, nil] handler
    #   classes (registered under their `handler_name`), names of handlers defined with
    #   {TaskerCore.step_handler}, or a Hash of callable name => handler. Steps whose callable is
    #   not found here are looked up in {TaskerCore.handlers}, then with `Object.const_get`.
    # @param concurrency [Integer, nil] steps claimed and running at once (default
    #   `worker.concurrency`, 8)
    # @param threads [Integer, nil] Ruby threads running handlers (default: `concurrency`). Handlers
    #   that wait on I/O want one thread per slot; for CPU-light handlers fewer threads contend
    #   less for the GVL.
    # @param lease [Numeric, nil] seconds a claimed step stays hidden from other workers (renewed;
    #   default `worker.lease_ms`, 30 s)
    # @param poll_interval [Numeric, nil] fallback queue polling interval in seconds (default
    #   `worker.poll_interval_ms`, else 3 ms on SQLite and 1 s on PostgreSQL)
    # @param dispatch_mode [String, Symbol, nil] "hybrid", "event_driven" or "polling" (default
    #   `worker.dispatch_mode`, "hybrid")
    # @param embedded_orchestration [Boolean, nil] also run due retries and timeouts in this
    #   process (default `worker.embedded_orchestration`, true)
    # @param worker_id [String, nil] recorded in audit rows and in the registry of workers
    #   ({Client#list_workers}, where this worker shows with language "ruby"; default host:pid)
    # @param shutdown_timeout [Numeric] default for {#stop}
    # @param around [#call, nil] called as `around.call(context) { run the handler }` around every
    #   attempt (the Railtie wraps handlers in the Rails executor with it)
    # @param logger [Logger, nil]
    def initialize(client, queues:, handlers: nil, concurrency: nil, threads: nil, lease: nil, poll_interval: nil,
                   dispatch_mode: nil, embedded_orchestration: nil, worker_id: nil, shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
                   around: nil, logger: nil)
      raise InvalidArgumentError, "client must be a TaskerCore::Client, got #{client.class}" unless client.is_a?(Client)

      @client = client
      @queues = Array(queues).map(&:to_s)
      raise InvalidArgumentError, "queues must name at least one queue" if @queues.empty?

      check_count!(:concurrency, concurrency)
      check_count!(:threads, threads)
      @concurrency = concurrency
      @threads_wanted = threads
      # nil (not given) lets the configuration decide; anything else is a Ruby truth value.
      orchestration = (embedded_orchestration ? true : false) unless embedded_orchestration.nil?
      @options = { lease: lease, poll_interval: poll_interval, dispatch_mode: dispatch_mode&.to_s,
                   embedded_orchestration: orchestration, worker_id: worker_id }
      @settings = nil
      @shutdown_timeout = shutdown_timeout
      @around = around
      @logger = logger
      @registry = build_registry(handlers)
      @lock = Mutex.new
      @threads = []
      @native = nil
      @stopping = false
      @failure = nil
      @report = nil
    end

    # Starts claiming steps and the handler threads. Idempotent.
    # @return [self]
    def start
      @lock.synchronize do
        raise ShutDownError, "worker was stopped; create a new one" if @report
        return self if @native

        o = @options
        @native = Native::Worker.start(@client.native, @queues, @concurrency, o[:lease]&.to_f, o[:poll_interval]&.to_f,
                                       o[:dispatch_mode], o[:embedded_orchestration], o[:worker_id])
        @settings = @native.config.transform_keys(&:to_sym).freeze
        @pid = Process.pid
        @dispatch = Array.new(thread_count) { [0, 0, 0] }
        @threads = Array.new(thread_count) do |i|
          Thread.new(@dispatch[i]) do |counters|
            Thread.current.name = "tasker-worker-#{i}"
            Thread.current.report_on_exception = false
            serve(counters)
          end
        end
      end
      self.class.track(self)
      self
    end

    # Queues claimed from: those given, and once started also those configured in `worker.queues`.
    # @return [Array<String>]
    def queues
      @settings ? @settings[:queues] : @queues
    end

    # Steps claimed and running at once: the `concurrency:` given, else (once started) the
    # configured value; nil before {#start} when none was given.
    # @return [Integer, nil]
    def concurrency
      @settings ? @settings[:concurrency] : @concurrency
    end

    # Ruby threads running handlers: `threads:` (default {#concurrency}), at most {#concurrency};
    # nil before {#start} when it depends on the configuration.
    # @return [Integer, nil]
    def thread_count
      slots = concurrency
      return nil if slots.nil?

      [@threads_wanted || slots, slots].min
    end

    # What the worker runs with once started (configuration and arguments merged): `:queues`,
    # `:concurrency`, `:lease` and `:poll_interval` (seconds; poll_interval nil for the
    # backend's default), `:dispatch_mode`, `:embedded_orchestration`, `:worker_id`, `:language`.
    # nil before {#start}.
    # @return [Hash{Symbol => Object}, nil]
    attr_reader :settings

    # Whether the worker is started and not stopped.
    def running?
      !@native.nil? && @report.nil? && !@stopping && @failure.nil?
    end

    # Stops claiming, gives unstarted steps back to their queue, waits up to `timeout` seconds
    # for running handlers to finish, and releases the steps of those still running to other
    # workers (their threads are then killed and their results discarded). Idempotent.
    # @param timeout [Numeric]
    # @return [Hash{Symbol => Integer}] `released:` steps given back unstarted, `abandoned:` steps
    #   still running at the deadline
    def stop(timeout: @shutdown_timeout)
      native = @lock.synchronize do
        return @report if @report
        return (@report = { released: 0, abandoned: 0 }) unless @native

        @stopping = true
        @native
      end
      wake_run
      report = native.shutdown(timeout.to_f)
      others = @threads.reject { |t| t.equal?(Thread.current) }
      # Every handler has completed or was abandoned: give threads a moment to return, then end
      # the abandoned ones.
      grace = monotonic + 1.0
      others.each { |t| t.join([grace - monotonic, 0].max) || t.kill }
      self.class.untrack(self)
      @report = { released: report["released"], abandoned: report["abandoned"] }
    end

    # Starts (if needed) and blocks until INT or TERM arrives, or {#stop} is called from another
    # thread, then stops. A second INT or TERM while stopping gives up waiting for running
    # handlers: the signal's previous handler takes over (by default, Interrupt or exit).
    # @param timeout [Numeric] passed to {#stop}
    # @return [Hash] the {#stop} report
    # @raise [WorkerFailedError] a background task of the engine's worker died (raised after
    #   stopping the worker)
    def run(timeout: @shutdown_timeout)
      reader, writer = IO.pipe
      @wake = writer
      previous = {}
      received = 0
      %w[INT TERM].each do |sig|
        previous[sig] = Signal.trap(sig) do
          received += 1
          if received == 1
            writer.write_nonblock(sig[0], exception: false)
          else
            Signal.trap(sig, previous[sig] || "DEFAULT")
            Process.kill(sig, Process.pid)
          end
        end
      end
      start
      reader.read(1) unless @stopping || @failure
      report = stop(timeout: timeout)
      raise @failure if @failure

      report
    ensure
      previous&.each { |sig, handler| Signal.trap(sig, handler || "DEFAULT") }
      @wake = nil
      [reader, writer].each { |io| io&.close unless io&.closed? }
    end

    # Counters for benchmarks: `polled` events; `poll_hop_ns`, the native time between events
    # leaving the engine's channel and reaching Ruby as Hashes (waiting to re-take the GVL
    # included); `dispatched` events; `dispatch_ns`, the time from poll returning an event to its
    # `complete` returning (context, handler resolution and call, result conversion, hand-over);
    # `hop_cpu_ns`, the handler threads' CPU time from calling poll to complete returning, for
    # the same events (the binding's cost, without time spent waiting for the GVL).
    # @return [Hash{String => Integer}]
    def stats
      native = @native ? @native.stats : { "polled" => 0, "poll_hop_ns" => 0 }
      counters = @dispatch || []
      native.merge("dispatched" => counters.sum { |c| c[0] }, "dispatch_ns" => counters.sum { |c| c[1] },
                   "hop_cpu_ns" => counters.sum { |c| c[2] })
    end

    # @api private
    def started_in_this_process?
      !@native.nil? && @pid == Process.pid
    end

    private

    def logger
      @logger || TaskerCore.logger
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def wake_run
      @wake&.write_nonblock(".", exception: false)
    rescue IOError
      nil
    end

    def check_count!(name, value)
      return if value.nil? || (value.is_a?(Integer) && value.positive?)

      raise InvalidArgumentError, "#{name} must be a positive Integer, got #{value.inspect}"
    end

    def build_registry(handlers)
      registry = HandlerRegistry.new
      case handlers
      when nil then nil
      when Hash then handlers.each { |name, h| registry.register(resolve_given(h, name), name: name) }
      when Array then handlers.each { |h| register_given(registry, h) }
      else register_given(registry, handlers)
      end
      registry
    end

    def register_given(registry, handler)
      case handler
      when String, Symbol
        entry = TaskerCore.handlers[handler]
        unless entry
          raise HandlerNotFound.new("no handler named '#{handler}' was defined with TaskerCore.step_handler",
                                    callable: handler.to_s)
        end

        registry.register(entry.target, name: handler)
      else
        registry.register(handler)
      end
    end

    def resolve_given(handler, name)
      return handler unless handler.is_a?(String) || handler.is_a?(Symbol)

      entry = TaskerCore.handlers[handler] ||
              HandlerRegistry.constant_entry(handler.to_s)
      raise HandlerNotFound.new("no handler '#{handler}' for '#{name}'", callable: handler.to_s) unless entry

      entry.target
    end

    # One handler thread: poll, run, complete, until shutdown. `counters` is this thread's
    # [events, wall ns from poll returning to complete returning, thread CPU ns from poll called
    # to complete returning] for {#stats}.
    def serve(counters)
      until @stopping
        cpu = Process.clock_gettime(Process::CLOCK_THREAD_CPUTIME_ID, :nanosecond)
        event =
          begin
            @native.poll(POLL_SLICE)
          rescue WorkerFailedError => e
            # Fatal: the engine's worker claims nothing more. Every thread sees it and stops.
            fail!(e)
            break
          rescue TaskerCore::Error => e
            logger.error("tasker worker: poll failed: #{e.class}: #{e.message}")
            sleep POLL_SLICE
            next
          end
        break if event == :shutdown
        next if event.nil?

        started = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
        begin
          process(event)
        rescue StandardError => e
          # A bug in this layer must not cost the worker a thread.
          logger.error("tasker worker: step #{event['step_name']} could not be processed: #{e.class}: #{e.message}")
        end
        counters[0] += 1
        counters[1] += Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond) - started
        counters[2] += Process.clock_gettime(Process::CLOCK_THREAD_CPUTIME_ID, :nanosecond) - cpu
      end
    end

    def process(event)
      result =
        begin
          id = event["event_id"]
          # Only batch worker instances record checkpoints: no allocation for the other steps.
          checkpointer = event["batch"] && Checkpointer.new(@native, id)
          context = StepContext.from_event(event, cancelled: Cancellation.new(@native, id), checkpointer: checkpointer)
          entry = @registry.resolve(event["callable"], fallback: [TaskerCore.handlers])
          if @around
            outcome = nil
            @around.call(context) { outcome = Execution.run(entry, context) }
            outcome || StepResult::Failure.new(message: "the worker's around hook did not run the handler",
                                               error_type: "around_hook_skipped", retryable: true)
          else
            Execution.run(entry, context)
          end
        rescue HandlerNotFound => e
          Execution.handler_not_found(e)
        rescue StandardError, ScriptError => e
          StepResult.from_exception(e)
        rescue Exception => e # rubocop:disable Lint/RescueException
          # exit/Interrupt/kill inside a handler: record the attempt, then let it propagate.
          complete(event, StepResult.from_exception(e))
          raise
        end
      complete(event, result)
    end

    def complete(event, result)
      id = event["event_id"]
      begin
        send_result(id, result)
      rescue SerializationError => e
        send_result(id, Execution.not_serializable(e))
      end
    rescue UnknownEventError, ShutDownError => e
      logger.warn("tasker worker: result of step #{event['step_name']} not accepted: #{e.message}")
    rescue WorkerFailedError => e
      logger.warn("tasker worker: result of step #{event['step_name']} dropped: #{e.message}")
      fail!(e)
    rescue TaskerCore::Error => e
      logger.error("tasker worker: completing step #{event['step_name']} failed: #{e.class}: #{e.message}")
    end

    def fail!(error)
      first = @lock.synchronize { @failure.nil? && (@failure = error) }
      logger.error("tasker worker: failed, no more steps will be claimed: #{error.message}") if first
      wake_run
    end

    def send_result(id, result)
      if result.success?
        @native.complete_success(id, result.result, result.metadata)
      else
        begin
          @native.complete_failure(id, result.message, result.error_type, result.retryable?, result.retry_after&.to_f,
                                   result.backtrace, result.metadata)
        rescue SerializationError => e
          # Failure metadata without a JSON form: record the failure without it.
          @native.complete_failure(id, "#{result.message} (metadata dropped: #{e.message})", result.error_type,
                                   result.retryable?, result.retry_after&.to_f, result.backtrace, nil)
        end
      end
    end

    # @api private
    # {StepContext#cancelled?} of one attempt: looks the attempt's cancel signal up on first use
    # (nothing on the hot path for handlers that never ask), then reads it without a lock.
    class Cancellation
      def initialize(native, event_id)
        @native = native
        @event_id = event_id
        @fetched = false
        @signal = nil
      end

      # @return [Boolean]
      def call
        unless @fetched
          @signal = @native.cancel_signal(@event_id)
          @fetched = true
        end
        # nil: the event is no longer in flight (given up), so nobody uses its result.
        @signal.nil? || @signal.cancelled?
      end
    end

    # @api private
    # Stores the checkpoints of one attempt ({BatchContext#checkpoint}) through the native worker,
    # which commits each before returning and refuses one from an attempt that lost its step
    # ({FencedError}).
    class Checkpointer
      def initialize(native, event_id)
        @native = native
        @event_id = event_id
      end

      # @param payload [Hash{String => Object}] `cursor`, `items_done`, optional `accumulated`
      # @return [nil]
      def call(payload)
        @native.checkpoint(@event_id, payload)
        nil
      end
    end
  end
end
