# frozen_string_literal: true

# A Ruby step that publishes a domain event, and a Ruby subscriber of it.
#
#   domain_events:
#     - name: payment.charged
#       schema: {type: object, required: [amount], properties: {amount: {type: number}}}
#   steps:
#     - name: charge
#       handler: {callable: Payments::Charge}
#       publishes_events: [{name: payment.charged, condition: success}]
#
# Run the subscriber beside a worker, or alone:
#
#   TaskerCore::SubscriberRunner.new(client, Payments::Ledger).run
require "tasker_core"

module Payments
  # Charges the card and tells the rest of the system.
  class Charge < TaskerCore::StepHandler::Base
    def call(context)
      amount = context.input.fetch("amount")
      context.publish("payment.charged", { "amount" => amount })
      success(result: { "charged" => amount })
    end
  end

  # Books every charge once (delivery is at least once: a redelivered event has the same
  # event_id), and logs failed tasks.
  class Ledger < TaskerCore::Subscriber
    subscribe_to "payment.charged", "task.failed"
    group "ledger"

    class << self
      # event_id => amount
      def entries
        @entries ||= {}
      end
    end

    def handle_payment_charged(event)
      self.class.entries[event.event_id] ||= event.payload.fetch("amount")
    end

    def handle_task_failed(event)
      TaskerCore.logger.warn("task #{event.task_uuid} (#{event.task_name}) failed")
    end
  end
end
