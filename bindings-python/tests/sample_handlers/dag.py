"""Linear and mixed-DAG handlers: values flow from step to step through dependency results."""

import asyncio

from tasker_core import StepContext, StepHandler, StepResult

OPS = {
    "add": lambda v, x: v + x,
    "sub": lambda v, x: v - x,
    "mul": lambda v, x: v * x,
    "square": lambda v, _x: v * v,
}


class Arith(StepHandler):
    """Applies `config.op` to the single parent's value (or the task input at the root)."""

    def call(self, context: StepContext):
        deps = context.dependency_results
        if deps:
            (parent,) = deps.values()
            value = parent["value"]
        else:
            value = context.input["value"]
        op = context.config["op"]
        return {"value": OPS[op](value, context.config.get("operand")), "op": op, "parents": sorted(deps)}


class DagInit(StepHandler):
    def call(self, context):
        return StepResult.success({"value": context.get_input("seed")}, metadata={"stage": "init"})


class DagDouble(StepHandler):
    def call(self, context):
        return {"value": context.get_dependency_result("dag_init")["value"] * 2}


async def dag_triple_async(context):
    await asyncio.sleep(0.005)
    return {"value": context.get_dependency_result("dag_init")["value"] * 3}


class DagValidate(StepHandler):
    def call(self, context):
        left = context.get_dependency_result("dag_process_left")["value"]
        right = context.get_dependency_result("dag_process_right")["value"]
        return {"valid": True, "sum": left + right, "saw": sorted(context.dependency_results)}


class DagTransform:
    """Not a StepHandler subclass: any class with the template's `method` works."""

    def transform(self, context):
        return {"value": context.get_dependency_result("dag_process_left")["value"] + 100}


class AsyncAnalyze(StepHandler):
    async def call(self, context):
        await asyncio.sleep(0.005)
        right = context.get_dependency_result("dag_process_right")["value"]
        return self.success({"value": right * right})


class DagFinalize(StepHandler):
    def call(self, context):
        r = context.dependency_results
        total = r["dag_validate"]["sum"] + r["dag_transform"]["value"] + r["dag_analyze"]["value"]
        return {"total": total, "saw": sorted(r)}
