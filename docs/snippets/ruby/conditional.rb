# frozen_string_literal: true

# A decision step and the deferred convergence step after its branches (Ruby).
#
#   - name: routing_decision
#     type: decision
#     handler: {callable: Approvals::RoutingDecision}
#     dependencies: [validate_request]
#   - {name: auto_approve, handler: {callable: Approvals::AutoApprove}, dependencies: [routing_decision]}
#   - {name: manager_approval, handler: {callable: Approvals::ManagerApproval}, dependencies: [routing_decision]}
#   - {name: finance_review, handler: {callable: Approvals::FinanceReview}, dependencies: [routing_decision]}
#   - name: finalize_approval
#     type: deferred_convergence
#     handler: {callable: Approvals::Finalize}
#     dependencies: [auto_approve, manager_approval, finance_review]
require "tasker_core"

module Approvals
  # Chooses the branches by amount.
  class RoutingDecision < TaskerCore::StepHandler::Base
    def call(context)
      amount = context.dependency_result("validate_request").fetch("amount")
      return decision_no_branches(result: { "route" => "withdrawn" }) if context.input["withdrawn"]

      steps =
        if amount < 1_000 then ["auto_approve"]
        elsif amount < 5_000 then ["manager_approval"]
        else
          %w[manager_approval finance_review]
        end
      # Only these steps (and the convergence below them) are created; other result keys are
      # handed to them like any result.
      decision_success(steps: steps, result: { "amount" => amount })
    end
  end

  # Runs once every branch that was created is done; it receives only theirs.
  class Finalize < TaskerCore::StepHandler::Base
    def call(context)
      approvals = context.dependency_results # e.g. {"manager_approval" => {...}}
      { "approved" => approvals.values.all? { |r| r["approved"] }, "by" => approvals.keys.sort }
    end
  end
end

# Unit test, no database (require "tasker_core/testing/rspec"):
#
#   context = build_step_context(dependency_results: { validate_request: { amount: 7_500 } })
#   expect(run_handler(Approvals::RoutingDecision, context)).to choose_steps("manager_approval", "finance_review")
