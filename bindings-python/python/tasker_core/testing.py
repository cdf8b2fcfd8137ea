"""Test helpers: run handlers on plain data, without a database or a worker.

::

    from tasker_core.testing import build_step_context, run_handler, assert_success

    def test_validate_order():
        ctx = build_step_context(input={"order_id": 7})
        result = run_handler(ValidateOrder, ctx)
        assert_success(result, {"valid": True})

:func:`run_handler` treats return values and exceptions exactly like a worker does
(including ``async`` handlers, which it runs to completion), and reports a result that JSON
cannot carry as the same ``result_not_serializable`` failure.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from typing import Any, Callable, Mapping, Optional, Union

from . import outcome
from .handler import HandlerLike, HandlerRegistry, Resolver, StepContext, StepResult

__all__ = [
    "build_step_context",
    "run_handler",
    "run_handler_async",
    "assert_success",
    "assert_failure",
]


def build_step_context(
    input: Optional[Mapping[str, Any]] = None,
    dependency_results: Optional[Mapping[str, Any]] = None,
    config: Optional[Mapping[str, Any]] = None,
    attempt: int = 1,
    max_attempts: int = 3,
    *,
    step_name: str = "test_step",
    task_uuid: Optional[str] = None,
    step_uuid: Optional[str] = None,
    namespace: str = "test",
    task_name: str = "test_task",
    task_version: str = "1.0.0",
    handler_callable: str = "",
    handler_method: str = "call",
    cancelled: Union[bool, Callable[[], bool]] = False,
) -> StepContext:
    """A :class:`StepContext` from plain data, as a worker would build it.

    ``input``, ``dependency_results`` and ``config`` go through a JSON round trip, so a test
    sees what a handler sees in production (and a non-JSON value fails here, loudly).
    ``cancelled`` is what ``context.cancelled`` returns: a bool, or a function asked on every
    check (to cancel an attempt part-way through a test).
    """
    if not callable(cancelled) and not isinstance(cancelled, bool):
        raise TypeError(f"cancelled must be a bool or a function returning one, got {cancelled!r}")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt must be an int >= 1, got {attempt!r}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
    return StepContext(
        task_uuid=task_uuid or str(uuid.uuid4()),
        step_uuid=step_uuid or str(uuid.uuid4()),
        step_name=step_name,
        input=_roundtrip("input", input or {}),
        dependency_results=_roundtrip("dependency_results", dependency_results or {}),
        config=_roundtrip("config", config or {}),
        attempt=attempt,
        max_attempts=max_attempts,
        namespace=namespace,
        task_name=task_name,
        task_version=task_version,
        correlation_id=str(uuid.uuid4()),
        handler_callable=handler_callable,
        handler_method=handler_method,
        _cancelled=cancelled if callable(cancelled) else (_ALWAYS if cancelled else None),
    )


def _ALWAYS() -> bool:
    return True


def _roundtrip(name: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} is not JSON-serialisable: {e}") from e


HandlerRef = Union[HandlerLike, str, Any]


def _callable_of(handler: HandlerRef, method: str) -> Callable[[StepContext], Any]:
    if isinstance(handler, str):
        return Resolver(HandlerRegistry()).resolve(handler, method)
    if inspect.isclass(handler):
        return getattr(handler(), method)
    if callable(handler) and method == "call" and not hasattr(handler, "call"):
        return handler
    bound = getattr(handler, method, None)
    if callable(bound):
        return bound
    raise TypeError(f"{handler!r} is not a handler (no callable '{method}')")


def run_handler(handler: HandlerRef, context: Optional[StepContext] = None, *, method: str = "call") -> StepResult:
    """Runs ``handler`` (a class, an instance, a function or a class path) on ``context``
    and returns the :class:`StepResult` a worker would record. Never raises for a handler
    failure: exceptions become failed results."""
    if context is None:
        context = build_step_context()
    try:
        value = _callable_of(handler, method)(context)
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
        result = outcome.from_return(value)
    except Exception as e:
        result = outcome.from_exception(e)
    return _as_recorded(result, context.step_name)


async def run_handler_async(
    handler: HandlerRef, context: Optional[StepContext] = None, *, method: str = "call"
) -> StepResult:
    """:func:`run_handler` for tests that already run an event loop."""
    if context is None:
        context = build_step_context()
    try:
        value = _callable_of(handler, method)(context)
        if inspect.isawaitable(value):
            value = await value
        result = outcome.from_return(value)
    except Exception as e:
        result = outcome.from_exception(e)
    return _as_recorded(result, context.step_name)


async def _await(value: Any) -> Any:
    return await value


def _as_recorded(result: StepResult, step_name: str) -> StepResult:
    """The result as the engine would store it (after the JSON round trip)."""
    doc = json.loads(outcome.encode(result, step_name))
    if doc["status"] == "success":
        return StepResult.success(doc["result"], doc.get("metadata"))
    recorded = StepResult.failure(
        doc["message"],
        error_type=doc["error_type"],
        retryable=doc["retryable"],
        retry_after=doc.get("retry_after"),
        metadata=doc.get("metadata"),
    )
    recorded.backtrace = doc.get("backtrace")
    return recorded


def assert_success(result: StepResult, expected: Any = ..., **fields: Any) -> None:
    """Asserts ``result`` succeeded; optionally that its result equals ``expected`` and/or
    that ``result[key] == value`` for each keyword."""
    if not isinstance(result, StepResult):
        raise AssertionError(f"expected a StepResult, got {type(result).__name__}: {result!r}")
    if not result.is_success:
        raise AssertionError(
            f"expected success, got failure {result.error_type}: {result.error_message}"
            + (f"\n{result.backtrace}" if result.backtrace else "")
        )
    if expected is not ... and result.result != expected:
        raise AssertionError(f"result {result.result!r} != expected {expected!r}")
    for key, value in fields.items():
        if not isinstance(result.result, Mapping) or key not in result.result:
            raise AssertionError(f"result has no key {key!r}: {result.result!r}")
        if result.result[key] != value:
            raise AssertionError(f"result[{key!r}] == {result.result[key]!r}, expected {value!r}")


def assert_failure(
    result: StepResult,
    error_type: Optional[str] = None,
    *,
    retryable: Optional[bool] = None,
    message_contains: Optional[str] = None,
    retry_after: Optional[float] = None,
) -> None:
    """Asserts ``result`` failed, optionally with this error type, retryability, message
    fragment and ``retry_after``."""
    if not isinstance(result, StepResult):
        raise AssertionError(f"expected a StepResult, got {type(result).__name__}: {result!r}")
    if result.is_success:
        raise AssertionError(f"expected failure, got success with result {result.result!r}")
    if error_type is not None and result.error_type != error_type:
        raise AssertionError(f"error_type {result.error_type!r} != expected {error_type!r} ({result.error_message})")
    if retryable is not None and result.retryable != retryable:
        raise AssertionError(f"retryable is {result.retryable!r}, expected {retryable!r}")
    if message_contains is not None and message_contains not in (result.error_message or ""):
        raise AssertionError(f"message {result.error_message!r} does not contain {message_contains!r}")
    if retry_after is not None and result.retry_after != retry_after:
        raise AssertionError(f"retry_after is {result.retry_after!r}, expected {retry_after!r}")
