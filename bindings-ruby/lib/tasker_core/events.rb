# frozen_string_literal: true

module TaskerCore
  # One entry of the event catalog ({Events.catalog}): a system event the engine publishes about
  # the task and step lifecycle, operator actions, the dead-letter queue or workers.
  #
  # - `name`: e.g. "task.completed"
  # - `category`: "task", "step", "operator", "dlq" or "worker"
  # - `description`
  # - `payload_schema`: the JSON Schema of the event's payload (String-keyed Hash)
  # - `example`: a payload that satisfies it
  EventInfo = Struct.new(:name, :category, :description, :payload_schema, :example, keyword_init: true) do
    # @api private
    # @return [EventInfo]
    def self.from_h(hash)
      new(name: hash["name"], category: hash["category"], description: hash["description"],
          payload_schema: hash["payload_schema"], example: hash["example"]).freeze
    end
  end

  # An event as subscribers receive it: an envelope around the payload the catalog (or, for a
  # domain event, the template's `domain_events:`) describes. JSON data comes as String-keyed
  # Hashes, like `JSON.parse` returns.
  #
  # - `event_id`: a UUIDv7, unique and ordered by time: the key for idempotent consumers
  #   (delivery is at least once)
  # - `name`, `category` ("task", "step", "operator", "dlq", "worker", or "domain")
  # - `occurred_at` (Time)
  # - `task_uuid`, `step_uuid` (step events and domain events), `correlation_id`
  # - `namespace`, `task_name`, `task_version`: the task's template
  # - `payload` (Hash)
  # - `delivery`: "durable" or "fast"
  # - `position`: the event's place in the log (durable events only)
  # - `attempt`: 1 on the first delivery to a group, 2, 3 ... after failures (nil for fast events)
  Event = Struct.new(:event_id, :name, :category, :occurred_at, :task_uuid, :step_uuid, :correlation_id, :namespace,
                     :task_name, :task_version, :payload, :delivery, :position, :attempt, keyword_init: true) do
    # @api private
    # @param hash [Hash{String => Object}] the engine's event
    # @param attempt [Integer, nil]
    # @return [Event]
    def self.from_h(hash, attempt: nil)
      new(event_id: hash["event_id"], name: hash["name"], category: hash["category"],
          occurred_at: TaskerCore.parse_time(hash["occurred_at"]), task_uuid: hash["task_uuid"],
          step_uuid: hash["step_uuid"], correlation_id: hash["correlation_id"], namespace: hash["namespace"],
          task_name: hash["task_name"], task_version: hash["task_version"], payload: hash["payload"] || {},
          delivery: hash["delivery"], position: hash["position"], attempt: attempt).freeze
    end

    # Whether the event came from the durable log (at least once, to a group).
    def durable?
      delivery == "durable"
    end

    # Whether the event came from this process's in-process broadcast (nothing stored).
    def fast?
      delivery == "fast"
    end

    # Whether it is a template-declared domain event (e.g. "payment.charged").
    def domain?
      category == "domain"
    end

    # Whether an earlier delivery of it to this group failed.
    def redelivery?
      !attempt.nil? && attempt > 1
    end

    # The envelope as the engine serialises it (String keys, `occurred_at` as ISO 8601).
    # @return [Hash{String => Object}]
    def to_envelope
      to_h.except(:attempt).transform_keys(&:to_s).merge("occurred_at" => occurred_at&.utc&.iso8601(6))
    end

    def inspect
      "#<TaskerCore::Event #{name} #{event_id} task=#{task_uuid.inspect}#{" attempt=#{attempt}" if redelivery?}>"
    end
  end

  # A subscriber group and how far behind it is ({Client#event_groups}).
  #
  # - `group`, `patterns`
  # - `live_members`: members that heartbeated recently; `leased_partitions`: partitions held
  # - `lag`: events in the log after the group's positions (not yet acknowledged by it)
  # - `oldest_pending_at` (Time, nil): when the oldest of those was written
  # - `dead_letters`: events the group gave up on; `created_at` (Time)
  EventGroupStatus = Struct.new(:group, :patterns, :live_members, :leased_partitions, :lag, :oldest_pending_at,
                                :dead_letters, :created_at, keyword_init: true) do
    # @api private
    # @return [EventGroupStatus]
    def self.from_h(hash)
      new(group: hash["group"], patterns: hash["patterns"], live_members: hash["live_members"],
          leased_partitions: hash["leased_partitions"], lag: hash["lag"],
          oldest_pending_at: TaskerCore.parse_time(hash["oldest_pending_at"]), dead_letters: hash["dead_letters"],
          created_at: TaskerCore.parse_time(hash["created_at"])).freeze
    end
  end

  # An event a subscriber group gave up on after `max_attempts` failed deliveries
  # ({Client#event_dead_letters}): `id`, `group`, `event_id`, `name`, `task_uuid`, `event` (the
  # whole {Event} as delivered), `error` (the last failure's message), `attempts`, `dead_at` (Time).
  EventDeadLetter = Struct.new(:id, :group, :event_id, :name, :task_uuid, :event, :error, :attempts, :dead_at,
                               keyword_init: true) do
    # @api private
    # @return [EventDeadLetter]
    def self.from_h(hash)
      new(id: hash["id"], group: hash["group"], event_id: hash["event_id"], name: hash["name"],
          task_uuid: hash["task_uuid"], event: Event.from_h(hash["event"] || {}), error: hash["error"],
          attempts: hash["attempts"], dead_at: TaskerCore.parse_time(hash["dead_at"])).freeze
    end
  end

  # The event catalog and the event names.
  #
  #   TaskerCore::Events.catalog.map(&:name)        # => ["task.created", "task.started", ...]
  #   TaskerCore::Events.event_info("task.completed").payload_schema
  #   TaskerCore::Events.matches?("payment.*", "payment.charged")  # => true
  #
  # Durable lifecycle events (task.*, step.*) are written while at least one subscriber group
  # exists (configuration `events.lifecycle`), from the moment it exists: join the group before
  # creating the tasks you want to hear about.
  module Events
    class << self
      # Every system event, by category, then in lifecycle order.
      # @return [Array<EventInfo>]
      def catalog
        Native.event_catalog.map { |h| EventInfo.from_h(h) }
      end

      # The catalog entry of `name`, or nil (domain events are declared by templates, not here).
      # @param name [String, Symbol]
      # @return [EventInfo, nil]
      def event_info(name)
        info = Native.event_info(name.to_s)
        info && EventInfo.from_h(info)
      end

      # The JSON Schema of the envelope every event travels in.
      # @return [Hash{String => Object}]
      def envelope_schema
        Native.event_envelope_schema
      end

      # Whether `pattern` (`*` matches any run of characters, dots included) matches `name`.
      # @param pattern [String, Symbol]
      # @param name [String, Symbol]
      def matches?(pattern, name)
        Native.event_pattern_matches(pattern.to_s, name.to_s)
      end

      # @api private
      # Patterns as Strings: `*patterns` may be Strings, Symbols or Arrays of them.
      # @return [Array<String>]
      def patterns(*given)
        list = given.flatten.map do |p|
          raise InvalidArgumentError, "event patterns must be Strings, got #{p.inspect}" unless p.is_a?(String) || p.is_a?(Symbol)
          raise InvalidArgumentError, "event patterns must not be empty" if p.to_s.empty?

          p.to_s
        end
        raise InvalidArgumentError, "name at least one event pattern (e.g. \"task.*\" or \"*\")" if list.empty?

        list.uniq
      end
    end
  end

  # A member of a durable subscriber group ({Client#subscribe}): the low-level pull API under
  # {SubscriberRunner}. Every event taken with {#poll} must be acknowledged ({#ack}) or failed
  # ({#fail}): the group hands out the next event of the same partition (the same task's next
  # event) only then. {#poll} waits with the GVL released; {#ack} and {#fail} never wait, so they
  # may be called from other threads.
  class EventSubscription
    # @api private
    def initialize(native)
      @native = native
      @deliveries = {}
      @lock = Mutex.new
      @closed = false
    end

    # @return [String]
    def group
      @native.group
    end

    # @return [String] this member's name in the group
    def member_id
      @native.member_id
    end

    # The next event, waiting up to `timeout` seconds; nil when none came.
    # @param timeout [Numeric]
    # @return [Event, nil] with {Event#attempt} set
    # @raise [InvalidStateError] the subscription is closed, or stopped on a database error
    def poll(timeout: 1.0)
      delivery = @native.poll(Float(timeout))
      return nil if delivery.nil?

      event = Event.from_h(delivery["event"], attempt: delivery["attempt"])
      @lock.synchronize { @deliveries[event.event_id] = delivery["delivery_id"] }
      event
    end

    # The event was handled: the group will not get it again (once the position is recorded, at
    # most 100 ms later and at {#close}).
    # @param event [Event] as returned by {#poll}
    # @return [nil]
    def ack(event)
      @native.ack(take(event))
      nil
    end

    # The handler failed: the event is delivered again after a backoff (doubling per attempt), and
    # after `max_attempts` it goes to the group's dead letters ({Client#event_dead_letters}).
    # @param event [Event] as returned by {#poll}
    # @param error [String, Exception] recorded with the dead letter
    # @return [nil]
    def fail(event, error)
      message = error.is_a?(Exception) ? "#{error.class}: #{error.message}" : error.to_s
      @native.fail(take(event), message)
      nil
    end

    # Yields events until {#close} is called (from another thread, or the block), acking each
    # after the block returns and failing it when the block raises (the exception is not
    # re-raised: the event is retried).
    # @yieldparam event [Event]
    # @return [nil]
    # @raise [InvalidStateError] the subscription stopped on a database error
    def each(timeout: 0.1)
      until @closed
        event =
          begin
            poll(timeout: timeout)
          rescue InvalidStateError
            break if @closed

            raise
          end
        next if event.nil?

        begin
          yield event
        rescue StandardError => e
          fail(event, e)
        else
          ack(event)
        end
      end
      nil
    end

    # Records what was acknowledged, gives the partitions back and leaves the group. Events taken
    # but not acknowledged go to another member (or the next to join).
    # @return [nil]
    def close
      @closed = true
      @native.close
      nil
    end

    # Whether {#close} was called.
    def closed?
      @closed
    end

    def inspect
      "#<TaskerCore::EventSubscription group=#{group} member=#{member_id}>"
    end

    private

    def take(event)
      id = event.is_a?(Event) ? event.event_id : event.to_s
      @lock.synchronize { @deliveries.delete(id) } ||
        raise(InvalidArgumentError, "event #{id} was not handed out by this subscription, or was already settled")
    end
  end

  # A reader of this process's fast events ({Client#subscribe_fast}): lifecycle events of the
  # changes this process commits and the `delivery: fast` domain events of its completions.
  # Nothing is stored or retried; a reader that falls more than 8,192 events behind skips ahead
  # ({#missed} counts what it skipped). For metrics and logs, not business logic.
  #
  #   fast = client.subscribe_fast("step.*")
  #   Thread.new { fast.each { |event| StatsD.increment(event.name) } }
  class FastSubscription
    include Enumerable

    # @api private
    def initialize(native)
      @native = native
      @closed = false
    end

    # The next matching event, waiting up to `timeout` seconds; nil when none came.
    # @param timeout [Numeric]
    # @return [Event, nil]
    def poll(timeout: 1.0)
      hash = @native.poll(Float(timeout))
      hash && Event.from_h(hash)
    end

    # Yields events until {#close} (waiting in slices of `timeout` seconds).
    # @yieldparam event [Event]
    # @return [Enumerator, nil] an Enumerator without a block
    def each(timeout: 0.1)
      return enum_for(:each, timeout: timeout) unless block_given?

      until @closed
        event = poll(timeout: timeout)
        yield event if event
      end
      nil
    end

    # Events skipped because this reader fell behind.
    # @return [Integer]
    def missed
      @native.missed
    end

    # Ends {#each} (at its next slice).
    # @return [nil]
    def close
      @closed = true
      nil
    end

    def closed?
      @closed
    end
  end
end
