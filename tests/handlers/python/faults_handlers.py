"""Python handler of the fault-injection tests (tests/faults): `faults.work`.

The same handler exists in Ruby and TypeScript (tests/handlers/{ruby,node}/faults_handlers.*)
and behaves identically. What it does is read from the task context and the step's config:

  sleep_ms: n                  (context or step config) sleep n ms; slow_steps[name] wins
  slow_steps: {name: ms}       sleep that long in these steps
  fail_steps: {name: n}        (or config fail_attempts: n) attempts 1..n fail, retryable
  hostile: {name: kind}        return a hostile result instead (see HOSTILE below)

A normal run returns {"n": 1 + the sum of the dependencies' n, "step", "attempt", "by"}.
Every run is written to the ledger named by TASKER_FAULT_LEDGER (tests/faults/ledger.py)
when it starts and when it ends: that row is the step's side effect.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any, Dict

from tasker_core import RetryableError, StepContext, StepResult, step_handler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "faults"))

from ledger import Ledger  # noqa: E402

LANGUAGE = "python"
MIB = 1024 * 1024
_URL = os.environ.get("TASKER_FAULT_LEDGER")
_LEDGER = Ledger(_URL) if _URL else None


def deep(levels: int) -> Any:
    """`levels` nested containers, alternating arrays and objects."""
    value: Any = "bottom"
    for i in range(levels):
        value = [value] if i % 2 == 0 else {"d": value}
    return value


def hostile(kind: str, context: StepContext) -> Any:
    if kind == "nul_value":
        return {"text": "a\u0000b", "nested": {"list": ["x\u0000", "\u0000"]}, "by": LANGUAGE}
    if kind == "nul_key":
        return {"k\u0000ey": 1, "nested": {"\u0000": "v"}, "by": LANGUAGE}
    if kind == "nul_metadata":
        return StepResult.success({"by": LANGUAGE}, metadata={"note": "m\u0000", "k\u0000": 1})
    if kind == "nul_failure":
        if context.attempt == 1:
            return StepResult(
                False,
                error_message="boom\u0000here",
                error_type="HostileFailure",
                retryable=True,
                backtrace="frame one\u0000frame two",
            )
        return {"recovered": True, "by": LANGUAGE}
    if kind == "nul_failure_permanent":
        return StepResult(
            False,
            error_message="fatal\u0000here",
            error_type="HostileFailure",
            retryable=False,
            backtrace="frame one\u0000frame two",
        )
    if kind == "oversize":
        return {"blob": "x" * (2 * MIB), "by": LANGUAGE}
    if kind == "oversize_metadata":
        return StepResult.success({"by": LANGUAGE}, metadata={"blob": "x" * (2 * MIB)})
    if kind == "deep":
        return deep(200)
    if kind == "deep_metadata":
        return StepResult.success({"by": LANGUAGE}, metadata={"deep": deep(200)})
    if kind == "large_ok":
        return {"blob": "y" * 600_000, "by": LANGUAGE}
    if kind == "deep_ok":
        return {"deep": deep(20), "by": LANGUAGE}
    raise ValueError(f"unknown hostile kind {kind!r}")


def _sleep_ms(context: StepContext) -> float:
    slow = (context.input.get("slow_steps") or {}).get(context.step_name)
    if slow is not None:
        return float(slow)
    return float(context.config.get("sleep_ms", context.input.get("sleep_ms", 0)) or 0)


def _fail_attempts(context: StepContext) -> int:
    n = (context.input.get("fail_steps") or {}).get(context.step_name)
    return int(n if n is not None else context.config.get("fail_attempts", 0) or 0)


@step_handler("faults.work")
def work(context: StepContext) -> Any:
    token = str(uuid.uuid4())
    if _LEDGER is not None:
        _LEDGER.start(
            token,
            str(context.step_uuid),
            str(context.task_uuid),
            context.step_name,
            context.attempt,
            LANGUAGE,
            os.getpid(),
            time.time(),
        )
    outcome = "ok"
    try:
        ms = _sleep_ms(context)
        if ms > 0:
            time.sleep(ms / 1000)
        if context.attempt <= _fail_attempts(context):
            outcome = "retryable"
            raise RetryableError(f"{LANGUAGE}: injected failure of attempt {context.attempt}", error_type="Injected")
        kind = (context.input.get("hostile") or {}).get(context.step_name)
        if kind:
            outcome = f"hostile:{kind}"
            return hostile(kind, context)
        deps: Dict[str, Any] = context.dependency_results or {}
        n = 1 + sum(int(r.get("n", 0)) for r in deps.values() if isinstance(r, dict))
        return {"n": n, "step": context.step_name, "attempt": context.attempt, "by": LANGUAGE}
    except RetryableError:
        raise
    except BaseException as e:
        outcome = f"error:{type(e).__name__}"
        raise
    finally:
        if _LEDGER is not None:
            _LEDGER.finish(token, outcome, time.time())


HANDLERS = [work]
