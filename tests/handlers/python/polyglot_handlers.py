"""Python handlers of the cross-language fixtures (validate_order, ship_order, math).

Behaviour switches read from the task context, shared by all three languages:
  fail_once_at: [step names]      fail attempt 1 of these steps with a retryable error
  fail_permanently_at: step name  fail that step with a permanent error
  slow_ms: n                      sleep n ms in every handler (to cancel tasks mid-flight)
Every run is appended to the ledger file named by TASKER_LEDGER, if set, and printed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable, Dict

from tasker_core import PermanentError, RetryableError, StepContext, step_handler

LANGUAGE = "python"


def _record(context: StepContext, started: float, outcome: str) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000
    entry = {
        "language": LANGUAGE,
        "pid": os.getpid(),
        "task_uuid": str(context.task_uuid),
        "step_uuid": str(context.step_uuid),
        "step": context.step_name,
        "attempt": context.attempt,
        "outcome": outcome,
        "ms": round(elapsed_ms, 2),
    }
    ledger = os.environ.get("TASKER_LEDGER")
    if ledger:
        with open(ledger, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
    if not os.environ.get("TASKER_QUIET"):
        order = context.input.get("order_id", "-")
        # One write per line: handler threads print concurrently.
        sys.stdout.write(
            f"  [{LANGUAGE:<10} pid {os.getpid():>6}] {context.step_name:<18} order {order}  "
            f"attempt {context.attempt}  {elapsed_ms:6.2f} ms  {outcome}\n"
        )
        sys.stdout.flush()


def traced(fn: Callable[[StepContext], Dict[str, Any]]) -> Callable[[StepContext], Dict[str, Any]]:
    """Applies the behaviour switches around a handler body and records the run."""

    def run(context: StepContext) -> Dict[str, Any]:
        started = time.perf_counter()
        try:
            slow = context.input.get("slow_ms")
            if slow:
                time.sleep(slow / 1000)
            if context.input.get("fail_permanently_at") == context.step_name:
                raise PermanentError(f"{context.step_name} rejected the order", error_type="OrderRejected")
            if context.step_name in context.input.get("fail_once_at", []) and context.attempt == 1:
                raise RetryableError(f"{LANGUAGE} dependency unavailable", error_type="TemporaryOutage")
            result = fn(context)
        except Exception as e:
            _record(context, started, f"failed: {type(e).__name__}")
            raise
        _record(context, started, "ok")
        return result

    run.__name__ = fn.__name__
    return run


@step_handler("polyglot.validate_order")
@traced
def validate_order(context: StepContext) -> Dict[str, Any]:
    items = context.input["items"]
    total = round(sum(i["quantity"] * i["price"] for i in items), 2)
    return {"order_id": context.input["order_id"], "total": total, "item_count": len(items), "by": LANGUAGE}


@step_handler("polyglot.ship_order")
@traced
def ship_order(context: StepContext) -> Dict[str, Any]:
    reservation = context.get_dependency_result("reserve_inventory")
    payment = context.get_dependency_result("charge_payment")
    return {
        "tracking_number": f"TRK-{context.input['order_id']}",
        "reservation_id": reservation["reservation_id"],
        "payment_id": payment["payment_id"],
        "carrier": context.config["carrier"],
        "by": LANGUAGE,
    }


@step_handler("polyglot.math")
@traced
def math(context: StepContext) -> Dict[str, Any]:
    deps = context.dependency_results
    base = sum(r["value"] for r in deps.values()) if deps else context.input["value"]
    return {"value": base * context.config.get("mul", 1) + context.config.get("add", 0), "by": LANGUAGE}


HANDLERS = [validate_order, ship_order, math]
