# frozen_string_literal: true

# Ruby handler of the cross-language recovery workflow
# (tests/fixtures/templates/manual_recovery_polyglot.yaml, tests/e2e/test_recovery.py):
#
#   recovery.charge  always fails for good (PermanentError "CardDeclined"): the card of the order
#                    `prepare` produced is declined; the error's metadata names the amount, the
#                    gateway (the template's initialization), the language and this process
#
# An operator completes the step by hand (tests/e2e/operator_complete_step.py), so the
# TypeScript `ship` below it receives the operator's result instead of this handler's.

require "tasker_core"

# The Ruby step of the manual_recovery template.
module RecoveryHandlers
  LANGUAGE = "ruby"

  CHARGE = TaskerCore.step_handler("recovery.charge") do |ctx|
    prepared = ctx.dependency_results.fetch("prepare")
    raise TaskerCore::PermanentError.new(
      "card declined for order #{prepared.fetch('order_id')}",
      error_type: "CardDeclined",
      metadata: { "amount_cents" => prepared.fetch("amount_cents"), "gateway" => ctx.config.fetch("gateway"),
                  "by" => LANGUAGE, "pid" => Process.pid }
    )
  end

  HANDLERS = [CHARGE].freeze
end
