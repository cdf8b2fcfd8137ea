"""Python handlers of the cross-language decision and batch workflow
(tests/fixtures/templates/approval_batches_polyglot.yaml, tests/e2e/test_step_types.py):

  step_types.route     decision: the approval branches for the task's `amount`
  step_types.finalize  deferred convergence: what the chosen branches and every batch
                       instance returned, and the batches' total

The Ruby branches, approval collection and batch planning are in ../ruby/step_types_handlers.rb,
the TypeScript batch worker in ../node/step_types_handlers.ts.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

from tasker_core import StepContext, StepResult, step_handler

LANGUAGE = "python"
INSTANCE_PREFIX = "process_items_"


def branches_for(amount: float) -> List[str]:
    if amount < 1_000:
        return ["auto_approve"]
    if amount < 10_000:
        return ["manager_approval"]
    return ["manager_approval", "finance_review"]


@step_handler("step_types.route")
def route(context: StepContext) -> StepResult:
    amount = float(context.input["amount"])
    chosen = branches_for(amount)
    return StepResult.decision(steps=chosen, result={"amount": amount, "chosen": chosen, "by": LANGUAGE})


@step_handler("step_types.finalize")
def finalize(context: StepContext) -> Dict[str, Any]:
    deps: Dict[str, Any] = context.dependency_results or {}
    instances = {name: r for name, r in deps.items() if name.startswith(INSTANCE_PREFIX)}
    branches = {name: r for name, r in deps.items() if not name.startswith(INSTANCE_PREFIX)}
    return {
        "received": sorted(deps),
        "approvers": sorted(r["approver"] for r in branches.values()),
        "branch_languages": sorted({r["by"] for r in branches.values()}),
        "instance_languages": sorted({r["by"] for r in instances.values()}),
        "total": sum(int(r["sum"]) for r in instances.values()),
        "items": sum(int(r["items"]) for r in instances.values()),
        "resumed": sorted(name for name, r in instances.items() if r.get("attempt", 1) > 1),
        "by": LANGUAGE,
        "pid": os.getpid(),
    }


HANDLERS = [route, finalize]
