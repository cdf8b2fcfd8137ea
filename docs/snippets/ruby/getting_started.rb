# frozen_string_literal: true

# The handlers of docs/getting-started-ruby.md (run by bindings-ruby/spec/snippets_spec.rb).
require "tasker_core"

module GettingStarted
  # Refuses orders nobody should ship; a PermanentError is not retried.
  class ValidateOrder < TaskerCore::StepHandler::Base
    def call(context)
      items = context.input.fetch("items")
      raise TaskerCore::PermanentError.new("at most 100 of an item per order", error_type: "quantity_too_large") if
        items.any? { |item| item.fetch("quantity") > 100 }

      success(result: { "order_id" => context.input.fetch("order_id"), "lines" => items.size })
    end
  end

  # Totals the order with the tax rate of the template's `initialization`.
  class ComputeTotal < TaskerCore::StepHandler::Base
    def call(context)
      subtotal = context.input.fetch("items").sum { |item| item.fetch("price") * item.fetch("quantity") }
      total = (subtotal * (1 + context.config.fetch("tax_rate"))).round(2)
      order = context.get_dependency_result("validate_order")
      success(result: { "order_id" => order.fetch("order_id"), "total" => total }, metadata: { "lines" => order.fetch("lines") })
    end
  end
end

TaskerCore.handlers.register(GettingStarted::ValidateOrder, name: "getting_started.validate_order")
TaskerCore.handlers.register(GettingStarted::ComputeTotal, name: "getting_started.compute_total")
