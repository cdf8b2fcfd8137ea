"""Tree handlers, all async: each node adds its weight to the sum of its parents' values."""

import asyncio

from tasker_core import StepContext, StepHandler


class TreeNode(StepHandler):
    async def call(self, context: StepContext):
        await asyncio.sleep(0)
        parents = context.dependency_results
        base = sum(p["value"] for p in parents.values()) if parents else context.input["base"]
        path = next(iter(parents.values()))["path"] if parents else []
        return {"value": base + context.config["weight"], "path": path + [context.step_name]}


class TreeConverge(StepHandler):
    async def call(self, context: StepContext):
        leaves = context.dependency_results
        return {
            "total": sum(v["value"] for v in leaves.values()),
            "leaves": sorted(leaves),
            "paths": sorted("/".join(v["path"]) for v in leaves.values()),
        }
