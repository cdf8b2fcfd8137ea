# frozen_string_literal: true

require "active_support/notifications"

module TaskerCore
  # Re-publishes Tasker events on `ActiveSupport::Notifications` as `tasker.<event name>`
  # (`tasker.task.completed`, `tasker.payment.charged`, ...). The Railtie runs it when
  # `config.tasker.events_bridge` is set; elsewhere run it like any subscriber:
  #
  #   TaskerCore::SubscriberRunner.new(client, TaskerCore::NotificationsBridge, group: "myapp.notifications",
  #                                    patterns: ["*"]).start
  #
  #   ActiveSupport::Notifications.subscribe(/\Atasker\./) do |name, _start, _finish, _id, payload|
  #     payload[:event]          # the TaskerCore::Event
  #     payload[:payload]        # its payload (String keys)
  #   end
  #
  # The notification's payload is {Event#to_h} (Symbol keys: `:event_id`, `:name`, `:task_uuid`,
  # `:payload`, ...) plus `:event`. A listener that raises fails the delivery (durable bridge): the
  # event is delivered again with backoff and, after `max_attempts`, goes to the group's dead
  # letters. Every listener then sees it again, so listeners should be idempotent (by `:event_id`).
  class NotificationsBridge < Subscriber
    # Prefix of the notification names.
    PREFIX = "tasker."

    # The notification name of an event: `tasker.` and the event's name.
    # @param event_name [String]
    # @return [String]
    def self.notification_name(event_name)
      "#{PREFIX}#{event_name}"
    end

    # @param event [Event]
    # @return [nil]
    def handle(event)
      ActiveSupport::Notifications.instrument(self.class.notification_name(event.name), event.to_h.merge(event: event))
      nil
    end
  end
end
