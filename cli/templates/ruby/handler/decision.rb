# The `{{step_name}}` decision step: chooses which of the steps depending on it are created.
#
# In the template, this step has `type: decision` and each branch is a step with
# `dependencies: [{{step_name}}]`; only the branches named in the decision exist in the task. A
# `deferred_convergence` step after the branches receives the results of those created.
class {{class_name}} < TaskerCore::StepHandler::Base
  def call(context)
    amount = context.input.fetch("amount", 0)
    branch = amount >= 1_000 ? "manual_review" : "auto_approve"
    decision_success(steps: [branch], result: { "amount" => amount })
  end
end
