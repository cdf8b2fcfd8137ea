# frozen_string_literal: true

module TaskerCore
  # Runs a subscriber as a member of its group: joins the group, takes its events on background
  # threads, routes each to the subscriber, acknowledges it when the subscriber returns and fails
  # it (with the exception's class and message) when it raises.
  #
  #   runner = TaskerCore::SubscriberRunner.new(client, Audit)    # group "audit"
  #   runner.start                      # beside a Worker in the same process, or:
  #   runner.run                        # in a process of its own, until INT or TERM
  #
  # `subscriber` is a {Subscriber} class (one instance is made), an instance, or any object with
  # `call(event)`; for the last kind give `patterns:` and `group:`. `fast: true` reads this
  # process's fast events instead ({Client#subscribe_fast}): no group, nothing acknowledged,
  # nothing retried (a failure is logged).
  #
  # Each of the `concurrency` threads (1 by default: strictly one event at a time) waits for its
  # next event in native code with the GVL released, in slices of {POLL_SLICE} seconds, so {#stop}
  # takes effect at once. The group hands out a task's next event only once its previous one is
  # settled, so a task's events stay in order whatever the concurrency.
  #
  # {#stop} lets running handlers finish (up to `timeout`), then leaves the group, recording the
  # positions acknowledged: a runner started later in the group resumes there. Events a handler
  # had not finished go to another member (or the next to join).
  class SubscriberRunner
    # Seconds a thread waits in one native poll before looking at its stop flag again.
    POLL_SLICE = 0.1
    # Default seconds {#stop} waits for running handlers.
    DEFAULT_SHUTDOWN_TIMEOUT = 30
    # Options a {Subscriber.subscription_options} may default.
    OPTIONS = %i[concurrency max_attempts backoff max_backoff lease poll_interval batch_size from_start].freeze

    @running = []
    @running_lock = Mutex.new

    class << self
      # @api private
      def track(runner)
        @running_lock.synchronize do
          unless @exit_hook
            @exit_hook = true
            at_exit { running.each { |r| r.stop if r.started_in_this_process? } }
          end
          @running << runner
        end
      end

      # @api private
      def untrack(runner)
        @running_lock.synchronize { @running.delete(runner) }
      end

      # Runners started in this process and not yet stopped.
      # @return [Array<SubscriberRunner>]
      def running
        @running_lock.synchronize { @running.dup }
      end
    end

    # @return [Client]
    attr_reader :client
    # @return [#call] the subscriber instance events are routed to
    attr_reader :subscriber
    # @return [Array<String>]
    attr_reader :patterns
    # @return [String, nil] the group joined (nil for a fast runner)
    attr_reader :group
    # @return [Integer]
    attr_reader :concurrency
    # @return [Exception, nil] what stopped the subscription (a database error the core gave up on)
    attr_reader :failure

    # @param client [Client]
    # @param subscriber [Class<Subscriber>, Subscriber, #call]
    # @param group [String, nil] default: the subscriber class's {Subscriber.group}
    # @param patterns [Array<String>, nil] default: the subscriber class's {Subscriber.patterns}
    # @param concurrency [Integer, nil] events handled at once (default 1)
    # @param member_id [String, nil] this member's name in the group (default host:pid:n)
    # @param from_start [Boolean, nil] a group created by this join starts at the log's start
    #   instead of its end (default false)
    # @param max_attempts [Integer, nil] deliveries of one event before it goes to the dead
    #   letters (default 5)
    # @param backoff [Numeric, nil] seconds before the second delivery, doubling after (0.2)
    # @param max_backoff [Numeric, nil] (30)
    # @param lease [Numeric, nil] seconds a dead member's partitions stay held (15)
    # @param poll_interval [Numeric, nil] seconds between looks for new events when idle (0.05)
    # @param batch_size [Integer, nil] events read per partition at once (500)
    # @param fast [Boolean] read this process's fast events instead of joining a group
    # @param around [#call, nil] called as `around.call(event) { handle it }` around every event
    #   (the Railtie wraps them in the Rails reloader)
    # @param shutdown_timeout [Numeric] default for {#stop}
    # @param logger [Logger, nil]
    def initialize(client, subscriber, group: nil, patterns: nil, concurrency: nil, member_id: nil, from_start: nil,
                   max_attempts: nil, backoff: nil, max_backoff: nil, lease: nil, poll_interval: nil, batch_size: nil,
                   fast: false, around: nil, shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT, logger: nil)
      raise InvalidArgumentError, "client must be a TaskerCore::Client, got #{client.class}" unless client.is_a?(Client)

      @client = client
      klass = subscriber.is_a?(Class) ? subscriber : subscriber.class
      @subscriber = subscriber.is_a?(Class) ? subscriber.new : subscriber
      unless @subscriber.respond_to?(:call)
        raise InvalidArgumentError, "subscriber must respond to call(event), got #{@subscriber.inspect}"
      end

      from_class = klass.respond_to?(:subscription_options) ? klass.subscription_options : {}
      given = { concurrency: concurrency, max_attempts: max_attempts, backoff: backoff, max_backoff: max_backoff,
                lease: lease, poll_interval: poll_interval, batch_size: batch_size, from_start: from_start }
      @options = from_class.merge(given.compact)
      @patterns = Events.patterns(patterns || (klass.respond_to?(:patterns) ? klass.patterns : []))
      @fast = fast ? true : false
      @group = @fast ? nil : (group || klass_group(klass)).to_s
      @concurrency = @options.delete(:concurrency) || 1
      unless @concurrency.is_a?(Integer) && @concurrency.positive?
        raise InvalidArgumentError, "concurrency must be a positive Integer, got #{@concurrency.inspect}"
      end

      @member_id = member_id
      @around = around
      @shutdown_timeout = shutdown_timeout
      @logger = logger
      @lock = Mutex.new
      @threads = []
      @subscription = nil
      @stopping = false
      @stopped = false
      @failure = nil
      @counts = { handled: 0, failed: 0 }
    end

    # Joins the group (creating it if needed) and starts the threads. Idempotent. Lifecycle events
    # are written from the moment a group exists, so start runners before creating the tasks they
    # should hear about.
    # @return [self]
    # @raise [InvalidArgumentError] for a bad option
    def start
      @lock.synchronize do
        raise ShutDownError, "subscriber runner was stopped; create a new one" if @stopped
        return self if @subscription

        @subscription = @fast ? @client.subscribe_fast(@patterns) : join
        @pid = Process.pid
        @threads = Array.new(@concurrency) do |i|
          Thread.new do
            Thread.current.name = "tasker-subscriber-#{@group || 'fast'}-#{i}"
            Thread.current.report_on_exception = false
            serve
          end
        end
      end
      self.class.track(self)
      self
    end

    # Whether it is started and not stopped (nor failed).
    def running?
      !@subscription.nil? && !@stopping && @failure.nil?
    end

    # This member's name in its group (nil before {#start}, and for a fast runner).
    # @return [String, nil]
    def member_id
      @subscription.respond_to?(:member_id) ? @subscription.member_id : @member_id
    end

    # Events handled so far: `handled:` (acknowledged) and `failed:` (the handler raised).
    # @return [Hash{Symbol => Integer}]
    def stats
      @lock.synchronize { @counts.dup }
    end

    # Stops taking events, waits up to `timeout` seconds for running handlers, then leaves the
    # group (positions recorded; the threads of handlers still running are killed and their events
    # go to another member). Idempotent.
    # @param timeout [Numeric]
    # @return [Hash{Symbol => Integer}] {#stats}, and `abandoned:` handlers still running at the deadline
    def stop(timeout: @shutdown_timeout)
      subscription = @lock.synchronize do
        return @report if @report
        return (@report = stats.merge(abandoned: 0)) unless @subscription

        @stopping = true
        @subscription
      end
      wake_run
      deadline = monotonic + timeout.to_f
      others = @threads.reject { |t| t.equal?(Thread.current) }
      abandoned = others.count { |t| !t.join([deadline - monotonic, 0].max) }
      others.each { |t| t.kill if t.alive? }
      close(subscription)
      @stopped = true
      self.class.untrack(self)
      @report = stats.merge(abandoned: abandoned)
    end

    # Starts (if needed) and blocks until INT or TERM arrives, or {#stop} is called from another
    # thread, then stops. A second INT or TERM gives up waiting for running handlers.
    # @param timeout [Numeric] passed to {#stop}
    # @return [Hash] the {#stop} report
    # @raise [Error] what stopped the subscription, if it failed (raised after stopping)
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

    # @api private
    def started_in_this_process?
      !@subscription.nil? && @pid == Process.pid
    end

    def inspect
      "#<TaskerCore::SubscriberRunner #{@group || 'fast'} #{@patterns.join(',')} concurrency=#{@concurrency}>"
    end

    private

    def logger
      @logger || TaskerCore.logger
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def klass_group(klass)
      return klass.group if klass.respond_to?(:group)

      raise InvalidArgumentError, "group: is required for a subscriber that is not a TaskerCore::Subscriber"
    end

    def join
      o = @options
      @client.subscribe(group: @group, patterns: @patterns, member_id: @member_id, from_start: o[:from_start],
                        max_attempts: o[:max_attempts], backoff: o[:backoff], max_backoff: o[:max_backoff],
                        lease: o[:lease], poll_interval: o[:poll_interval], batch_size: o[:batch_size])
    end

    def close(subscription)
      subscription.close
    rescue TaskerCore::Error => e
      logger.warn("tasker subscriber #{@group || 'fast'}: leaving the group failed: #{e.message}")
    end

    def wake_run
      @wake&.write_nonblock(".", exception: false)
    rescue IOError
      nil
    end

    def serve
      until @stopping
        event =
          begin
            @subscription.poll(timeout: POLL_SLICE)
          rescue InvalidStateError => e
            # The subscription stopped (the core gave up after database errors): nothing more comes.
            fail!(e) unless @stopping
            break
          rescue TaskerCore::Error => e
            logger.error("tasker subscriber #{@group}: poll failed: #{e.class}: #{e.message}")
            sleep POLL_SLICE
            next
          end
        dispatch(event) if event
      end
    end

    def dispatch(event)
      handle(event)
    rescue StandardError, ScriptError => e
      settle(:failed) { @subscription.fail(event, e) unless @fast }
      logger.warn("tasker subscriber #{@group || 'fast'}: #{event.name} #{event.event_id} failed " \
                  "(attempt #{event.attempt || 1}): #{e.class}: #{e.message}")
    rescue Exception => e # rubocop:disable Lint/RescueException
      # exit/Interrupt/kill inside a handler: fail the delivery (it is retried), then let it go on.
      settle(:failed) { @subscription.fail(event, e) unless @fast }
      raise
    else
      settle(:handled) { @subscription.ack(event) unless @fast }
    end

    def handle(event)
      if @around
        @around.call(event) { @subscriber.call(event) }
      else
        @subscriber.call(event)
      end
    end

    # Counts the outcome and reports it; a subscription closed meanwhile (a stop that did not wait
    # for this handler) has nothing to report to.
    def settle(outcome)
      yield
      @lock.synchronize { @counts[outcome] += 1 }
    rescue TaskerCore::Error => e
      logger.warn("tasker subscriber #{@group}: could not report an event #{outcome}: #{e.message}")
    end

    def fail!(error)
      first = @lock.synchronize { @failure.nil? && (@failure = error) }
      logger.error("tasker subscriber #{@group}: stopped: #{error.message}") if first
      wake_run
    end
  end
end
