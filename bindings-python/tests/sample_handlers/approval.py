"""An approval workflow: a decision step routes a request to one or two approval branches, and
a deferred convergence step finalizes whatever branches ran."""

from tasker_core import StepContext, StepHandler, StepResult

from . import recorder

# Branches the routing decision may choose (the convergence step's declared dependencies).
BRANCHES = ("auto_approve", "manager_approval", "finance_review")


class ValidateRequest(StepHandler):
    def call(self, context: StepContext):
        amount = context.input["amount"]
        if amount < 0:
            raise ValueError(f"amount must not be negative, got {amount}")
        return {"amount": amount, "requester": context.input.get("requester", "anonymous")}


class RoutingDecision(StepHandler):
    """amount 0: nothing to approve; < 1,000: auto; < 5,000: a manager; else manager + finance."""

    def call(self, context: StepContext):
        amount = context.get_dependency_result("validate_request")["amount"]
        if "force_steps" in context.input:  # to test the engine's refusal of unknown names
            return StepResult.decision(steps=context.input["force_steps"])
        if amount == 0:
            return StepResult.no_branches(result={"route": "none"})
        if amount < 1000:
            steps = ["auto_approve"]
        elif amount < 5000:
            steps = ["manager_approval"]
        else:
            steps = ["manager_approval", "finance_review"]
        return StepResult.decision(steps=steps, result={"route": "+".join(steps)})


class Approve(StepHandler):
    """One approval branch; `config.approver` says who approves."""

    def call(self, context: StepContext):
        recorder.record(context.task_uuid, context.step_name)
        amount = context.get_dependency_result("validate_request", {}).get("amount")
        routing = context.get_dependency_result("routing_decision")
        return {"approved": True, "by": context.config["approver"], "amount": amount, "route": routing["route"]}


class FinalizeApproval(StepHandler):
    """Deferred convergence: receives the results of the branches that were created."""

    def call(self, context: StepContext):
        received = sorted(context.dependency_results)
        approvers = [context.dependency_results[name]["by"] for name in received]
        return {
            "branches": received,
            "approvers": approvers,
            "approved": all(context.dependency_results[name]["approved"] for name in received),
        }
