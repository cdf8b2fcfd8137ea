# frozen_string_literal: true

# Step handlers of the event fixtures (events_pair.yaml, events_payments.yaml).
module RbSpec
  module Events
    class Work < TaskerCore::StepHandler::Base
      def call(context)
        { "value" => context.step_name }
      end
    end

    # input "card": "ok" charges (and times it), "declined" raises after publishing
    # payment.declined, "undeclared" publishes an event the template does not declare,
    # "bad_payload" breaks payment.charged's schema.
    class Charge < TaskerCore::StepHandler::Base
      def call(context)
        amount = context.input.fetch("amount", 10.5)
        case context.input["card"]
        when "declined"
          context.publish("payment.declined", { reason: "insufficient funds" })
          raise TaskerCore::PermanentError.new("card declined", error_type: "CardDeclined")
        when "undeclared"
          context.publish("payment.refunded", { amount: amount })
        when "bad_payload"
          context.publish("payment.charged", { amount: "a lot" })
        else
          context.publish("payment.charged", { amount: amount })
          context.publish("metrics.charge_timed", { ms: 3 })
        end
        success(result: { "charged" => amount }, metadata: { "gateway" => "test" })
      end
    end
  end
end
