# frozen_string_literal: true

module TaskerCore
  # Base class of event subscribers: the events it wants, by pattern, and a method per event.
  #
  #   class Audit < TaskerCore::Subscriber
  #     subscribe_to "task.completed", "step.failed", "payment.*"
  #     group "audit"                              # default: "audit" (the underscored class name)
  #
  #     def handle_task_completed(event)           # task.completed
  #       AuditLog.create!(task: event.task_uuid, at: event.occurred_at)
  #     end
  #
  #     def handle_payment_charged(event)          # payment.charged, a domain event
  #       Ledger.record(event.payload["amount"])
  #     end
  #
  #     def handle(event)                          # everything else it subscribes to
  #       Rails.logger.info("#{event.name} #{event.payload}")
  #     end
  #   end
  #
  #   TaskerCore::SubscriberRunner.new(client, Audit).run
  #
  # Routing: an event named `a.b_c` goes to `handle_a_b_c(event)` when the subscriber defines it
  # (dots become underscores), else to {#handle}. A method that returns settles the event (it is
  # acknowledged); one that raises fails it: it is delivered again with backoff, and after
  # `max_attempts` it goes to the group's dead letters ({Client#event_dead_letters}) while the
  # group moves on. Delivery is at least once: use {Event#event_id} to skip an event handled
  # before a crash.
  #
  # The members of a group share its events (one member gets each); every group gets them all.
  # The events of one task reach a group in order. A {SubscriberRunner} makes one instance and
  # calls it from `concurrency` threads (1 by default): with more, the instance must be
  # thread-safe (events of different tasks then run at once; one task's stay in order).
  class Subscriber
    class << self
      # Adds event patterns (`task.completed`, `step.*`, `*`): `*` matches any run of characters,
      # dots included. Inherited by subclasses, which may add more.
      # @param patterns [Array<String, Symbol>]
      # @return [Array<String>] every pattern of this class
      def subscribe_to(*patterns)
        @own_patterns = ((@own_patterns || []) + Events.patterns(*patterns)).uniq
        self.patterns
      end

      # The patterns of this class and its ancestors.
      # @return [Array<String>]
      def patterns
        inherited = superclass.respond_to?(:patterns) ? superclass.patterns : []
        (inherited + (@own_patterns || [])).uniq
      end

      # Sets or returns the subscriber group: the one set here or on a superclass, else the class
      # name underscored ("Billing::AuditLog" -> "billing/audit_log"). Processes running the same
      # group share its events.
      # @param name [String, Symbol, nil]
      # @return [String]
      # @raise [InvalidArgumentError] for an anonymous class without a group
      def group(name = nil)
        if name
          raise InvalidArgumentError, "group must be a non-empty String, got #{name.inspect}" if name.to_s.strip.empty?

          @group = name.to_s
        end
        @group || inherited_group || default_group
      end

      # Defaults for the {SubscriberRunner} of this class (its keyword arguments win):
      # `concurrency`, `max_attempts`, `backoff`, `max_backoff`, `lease`, `poll_interval`,
      # `batch_size`, `from_start`.
      #
      #   subscription_options max_attempts: 3, backoff: 1.0
      # @return [Hash{Symbol => Object}]
      def subscription_options(**options)
        unknown = options.keys - SubscriberRunner::OPTIONS
        raise InvalidArgumentError, "unknown subscription option(s) #{unknown.join(', ')}" unless unknown.empty?

        @subscription_options = (@subscription_options || {}).merge(options)
        inherited = superclass.respond_to?(:subscription_options) ? superclass.subscription_options : {}
        inherited.merge(@subscription_options)
      end

      # The method an event of `name` is routed to: `handle_` and the name, dots as underscores.
      # @param name [String]
      # @return [Symbol]
      def handler_method(name)
        :"handle_#{name.to_s.tr(".", "_")}"
      end

      # Whether a pattern of this class matches `name`.
      # @param name [String]
      def subscribed_to?(name)
        patterns.any? { |p| Events.matches?(p, name) }
      end

      private

      def inherited_group
        klass = superclass
        klass = klass.superclass while klass.respond_to?(:group) && !klass.instance_variable_get(:@group)
        klass.respond_to?(:group) ? klass.instance_variable_get(:@group) : nil
      end

      def default_group
        raise InvalidArgumentError, "an anonymous subscriber class needs `group \"name\"`" if name.nil?

        name.gsub("::", "/").gsub(/([A-Z]+)([A-Z][a-z])/, "\\1_\\2").gsub(/([a-z\d])([A-Z])/, "\\1_\\2").downcase
      end
    end

    # Routes `event` to `handle_<name>` or {#handle}.
    # @param event [Event]
    # @return [Object] what the handler method returned
    def call(event)
      method = self.class.handler_method(event.name)
      respond_to?(method) ? public_send(method, event) : handle(event)
    end

    # Handles the events no `handle_<name>` method takes. The default raises, so an event that
    # nothing handles ends in the dead letters rather than being acknowledged silently.
    # @param event [Event]
    def handle(event)
      raise NotImplementedError,
            "#{self.class.name || self.class} subscribes to #{event.name} but defines neither " \
            "#{self.class.handler_method(event.name)}(event) nor handle(event)"
    end
  end
end
