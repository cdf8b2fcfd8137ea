"""The handlers of docs/getting-started-python.md (run by bindings-python/tests/test_docs_snippets.py)."""

from typing import Any, Dict

from tasker_core import PermanentError, StepContext, StepResult, step_handler


@step_handler("getting_started.validate_order")
def validate_order(context: StepContext) -> Dict[str, Any]:
    items = context.input["items"]
    if any(item["quantity"] > 100 for item in items):
        raise PermanentError("at most 100 of an item per order", error_type="quantity_too_large")
    return {"order_id": context.input["order_id"], "lines": len(items)}


@step_handler("getting_started.compute_total")
def compute_total(context: StepContext) -> StepResult:
    items = context.input["items"]
    subtotal = sum(item["price"] * item["quantity"] for item in items)
    total = round(subtotal * (1 + context.config["tax_rate"]), 2)
    order = context.get_dependency_result("validate_order")
    return StepResult.success({"order_id": order["order_id"], "total": total}, metadata={"lines": order["lines"]})
