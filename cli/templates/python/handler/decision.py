"""The `{{step_name}}` decision step."""

from tasker_core import StepContext, StepHandler, StepResult


class {{class_name}}(StepHandler):
    """Chooses which of the steps depending on `{{step_name}}` are created.

    In the template, this step has `type: decision` and each branch is a step with
    `dependencies: [{{step_name}}]`; only the branches named in the decision exist in the task.
    A `deferred_convergence` step after the branches receives the results of those created.
    """

    def call(self, context: StepContext) -> StepResult:
        amount = context.get_input("amount", 0)
        branch = "manual_review" if amount >= 1_000 else "auto_approve"
        return StepResult.decision(steps=[branch], result={"amount": amount})
