"""A decision step and the deferred convergence step after its branches (Python).

The template's steps::

    - name: routing_decision
      type: decision
      handler: {callable: approvals.RoutingDecision}
      dependencies: [validate_request]
    - {name: auto_approve, handler: {callable: approvals.AutoApprove}, dependencies: [routing_decision]}
    - {name: manager_approval, handler: {callable: approvals.ManagerApproval}, dependencies: [routing_decision]}
    - {name: finance_review, handler: {callable: approvals.FinanceReview}, dependencies: [routing_decision]}
    - name: finalize_approval
      type: deferred_convergence
      handler: {callable: approvals.Finalize}
      dependencies: [auto_approve, manager_approval, finance_review]
"""

from tasker_core import StepContext, StepHandler, StepResult


class RoutingDecision(StepHandler):
    """Chooses the branches by amount."""

    def call(self, context: StepContext) -> StepResult:
        amount = context.get_dependency_result("validate_request")["amount"]
        if context.get_input("withdrawn"):
            return StepResult.no_branches(result={"route": "withdrawn"})
        if amount < 1_000:
            steps = ["auto_approve"]
        elif amount < 5_000:
            steps = ["manager_approval"]
        else:
            steps = ["manager_approval", "finance_review"]
        # Only these steps (and the convergence below them) are created; the other result keys
        # are handed to them like any result.
        return StepResult.decision(steps=steps, result={"amount": amount})


class Finalize(StepHandler):
    """Runs once every branch that was created is done; it receives only theirs."""

    def call(self, context: StepContext) -> dict:
        approvals = context.dependency_results  # e.g. {"manager_approval": {...}}
        return {"approved": all(r["approved"] for r in approvals.values()), "by": sorted(approvals)}


# Unit test, no database:
#
#   from tasker_core.testing import build_step_context, read_decision, run_handler
#
#   context = build_step_context(dependency_results={"validate_request": {"amount": 7_500}})
#   assert read_decision(run_handler(RoutingDecision, context)) == ["manager_approval", "finance_review"]
