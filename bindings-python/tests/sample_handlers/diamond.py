"""Decorator-style handlers registered under Tasker's Ruby-style callable names."""

from tasker_core import StepResult, step_handler

PREFIX = "DiamondWorkflow::StepHandlers::"


@step_handler(PREFIX + "DiamondStartHandler")
def diamond_start(context):
    return {"n": context.input["n"]}


@step_handler(PREFIX + "DiamondBranchBHandler")
def diamond_branch_b(context):
    n = context.get_dependency_result("diamond_start")["n"]
    return {"square": n * n}


@step_handler(PREFIX + "DiamondBranchCHandler")
async def diamond_branch_c(context):
    n = context.get_dependency_result("diamond_start")["n"]
    return StepResult.success({"plus_ten": n + 10}, metadata={"async": True})


@step_handler(PREFIX + "DiamondEndHandler")
def diamond_end(context):
    b = context.get_dependency_result("diamond_branch_b")["square"]
    c = context.get_dependency_result("diamond_branch_c")["plus_ten"]
    return {"sum": b + c, "inputs": [b, c]}
