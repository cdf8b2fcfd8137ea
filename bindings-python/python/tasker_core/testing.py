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

Subscribers get their events from :func:`build_event` and run with :func:`run_subscriber`::

    def test_audit_handles_task_completed():
        run_subscriber(Audit, build_event("task.completed"))
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from . import outcome
from .batch import BatchContext, BatchCursor, Checkpoint
from .events import DeliveryMode, Event, Subscriber, event_info
from .handler import HandlerLike, HandlerRegistry, Resolver, StepContext, StepResult

__all__ = [
    "build_step_context",
    "build_batch_worker_context",
    "recorded_checkpoints",
    "read_decision",
    "read_batches",
    "read_events",
    "BatchOutcome",
    "run_handler",
    "run_handler_async",
    "assert_success",
    "assert_failure",
    "build_event",
    "run_subscriber",
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


def build_batch_worker_context(
    start_cursor: Any = 0,
    end_cursor: Any = 0,
    *,
    batch_id: str = "001",
    batch_size: Optional[int] = None,
    is_no_op: bool = False,
    batch_config: Optional[Mapping[str, Any]] = None,
    checkpoint: Union[Checkpoint, Mapping[str, Any], None] = None,
    on_checkpoint: Optional[Callable[[Checkpoint], None]] = None,
    step_name: Optional[str] = None,
    **step_context: Any,
) -> StepContext:
    """A :class:`StepContext` for an instance of a ``batch_worker`` step, as a worker builds
    it: ``context.batch`` holds the cursor and ``batch_config``, ``context.checkpoint`` the
    last checkpoint of an earlier attempt (a :class:`~tasker_core.Checkpoint` or a mapping
    with ``cursor``, ``items_done``, ``accumulated``).

    The checkpoints the handler records are kept: read them with
    :func:`recorded_checkpoints`. ``on_checkpoint`` is called with each one before it is
    kept; raising from it (e.g. :class:`~tasker_core.errors.Fenced`) is what the handler's
    ``checkpoint(...)`` call then raises, to test how it reacts.

    The other keyword arguments (``input``, ``attempt``, …) are those of
    :func:`build_step_context`. ``batch_size`` defaults to ``end_cursor - start_cursor`` for
    integer cursors; the step is called ``process_batch_<batch_id>`` unless ``step_name``
    says otherwise. A cursor from :func:`~tasker_core.batch_cursors` or :func:`read_batches`
    fits in as ``build_batch_worker_context(**cursor.to_json())``.

    ::

        ctx = build_batch_worker_context(0, 1000, batch_config={"checkpoint_interval": 100})
        assert_success(run_handler(ProcessBatch, ctx), processed=1000)
        assert [c.cursor for c in recorded_checkpoints(ctx)] == list(range(100, 1001, 100))
    """
    if not isinstance(batch_id, str) or not batch_id:
        raise TypeError(f"batch_id must be a non-empty str, got {batch_id!r}")
    if batch_size is None:
        ints = all(isinstance(c, int) and not isinstance(c, bool) for c in (start_cursor, end_cursor))
        batch_size = max(0, end_cursor - start_cursor) if ints else 0
    attempt = step_context.get("attempt", 1)
    last = _as_checkpoint(checkpoint, attempt)
    batch = BatchContext._from_json(
        {
            "batch_id": batch_id,
            "start_cursor": _roundtrip("start_cursor", start_cursor),
            "end_cursor": _roundtrip("end_cursor", end_cursor),
            "batch_size": batch_size,
            "is_no_op": bool(is_no_op),
            "batch_config": _roundtrip("batch_config", dict(batch_config or {})),
        },
        last,
        _RecordingSink(attempt, on_checkpoint),
    )
    context = build_step_context(step_name=step_name or f"process_batch_{batch_id}", **step_context)
    return dataclasses.replace(context, batch=batch, checkpoint=last)


class _RecordingSink:
    """The checkpoint sink of a test context: keeps what a worker would persist."""

    def __init__(self, attempt: int, on_checkpoint: Optional[Callable[[Checkpoint], None]]) -> None:
        self.attempt = attempt
        self.on_checkpoint = on_checkpoint
        self.log: List[Checkpoint] = []

    def __call__(self, text: str) -> None:
        doc = json.loads(text)
        recorded = Checkpoint(
            cursor=doc["cursor"],
            items_done=doc["items_done"],
            accumulated=doc.get("accumulated"),
            attempt=self.attempt,
            recorded_at=datetime.now(timezone.utc),
        )
        if self.on_checkpoint is not None:
            self.on_checkpoint(recorded)  # may raise, as the engine refuses a fenced attempt's
        self.log.append(recorded)


def _as_checkpoint(value: Union[Checkpoint, Mapping[str, Any], None], attempt: int) -> Optional[Checkpoint]:
    if value is None or isinstance(value, Checkpoint):
        return value
    if not isinstance(value, Mapping) or "cursor" not in value:
        raise TypeError(f"checkpoint must be a Checkpoint or a mapping with a 'cursor', got {value!r}")
    unknown = set(value) - {"cursor", "items_done", "accumulated", "attempt", "recorded_at"}
    if unknown:
        raise TypeError(f"checkpoint has unknown keys {sorted(unknown)}")
    recorded_at = value.get("recorded_at")
    return Checkpoint(
        cursor=_roundtrip("checkpoint cursor", value["cursor"]),
        items_done=value.get("items_done", 0),
        accumulated=_roundtrip("checkpoint accumulated", value.get("accumulated")),
        attempt=value.get("attempt", max(1, attempt - 1)),
        recorded_at=recorded_at if isinstance(recorded_at, datetime) else datetime.now(timezone.utc),
    )


def recorded_checkpoints(context: StepContext) -> List[Checkpoint]:
    """The checkpoints a handler recorded on a context from :func:`build_batch_worker_context`,
    oldest first (each one can be the ``checkpoint=`` of the next attempt's context)."""
    sink = context.batch._sink if context.batch is not None else None
    if not isinstance(sink, _RecordingSink):
        raise TypeError("recorded_checkpoints needs a context built with build_batch_worker_context")
    return list(sink.log)


def read_decision(result: StepResult) -> List[str]:
    """The steps a decision handler's result chose (``[]`` for no branches).

    Raises:
        AssertionError: the result is a failure or carries no decision outcome.
    """
    doc = _outcome_of(result, "decision_point_outcome")
    if doc.get("type") == "no_branches":
        return []
    if doc.get("type") != "create_steps" or not isinstance(doc.get("step_names"), list):
        raise AssertionError(f"malformed decision_point_outcome: {doc!r}")
    return list(doc["step_names"])


@dataclass(frozen=True)
class BatchOutcome:
    """A batchable handler's outcome as :func:`read_batches` reads it back."""

    worker: Optional[str]
    """The ``batch_worker`` step the instances are made of (``None`` for no batches)."""
    total_items: int
    cursors: List[BatchCursor]

    @property
    def worker_count(self) -> int:
        return len(self.cursors)

    @property
    def no_batches(self) -> bool:
        """Whether the outcome is ``no_batches`` (one no-op worker instance)."""
        return self.worker is None


def read_batches(result: StepResult) -> BatchOutcome:
    """The batches a batchable handler's result creates.

    Raises:
        AssertionError: the result is a failure, carries no batch outcome, or its
            ``worker_count`` does not match its cursors.
    """
    doc = _outcome_of(result, "batch_processing_outcome")
    if doc.get("type") == "no_batches":
        return BatchOutcome(worker=None, total_items=0, cursors=[])
    if doc.get("type") != "create_batches":
        raise AssertionError(f"malformed batch_processing_outcome: {doc!r}")
    cursors = [BatchCursor._coerce(c, i) for i, c in enumerate(doc.get("cursor_configs") or [])]
    if doc.get("worker_count") != len(cursors):
        raise AssertionError(f"worker_count {doc.get('worker_count')!r} != {len(cursors)} cursor configs")
    return BatchOutcome(worker=doc["worker_template_name"], total_items=doc["total_items"], cursors=cursors)


def read_events(result: StepResult) -> List[Tuple[str, Any]]:
    """The domain events a handler published (``context.publish``) with ``result``, as
    ``(name, payload)`` pairs in order. Works for failures too (an event whose ``condition``
    is ``failure`` or ``always``).

    ::

        result = run_handler(ChargeCard, build_step_context(input={"amount": 10}))
        assert read_events(result) == [("payment.charged", {"amount": 10})]
    """
    if not isinstance(result, StepResult):
        raise AssertionError(f"expected a StepResult, got {type(result).__name__}: {result!r}")
    listed = (result.metadata or {}).get("events") or []
    if not isinstance(listed, list):
        raise AssertionError(f"metadata['events'] must be a list, got {listed!r}")
    return [(e["name"], e.get("payload")) for e in listed]


def _outcome_of(result: StepResult, key: str) -> Dict[str, Any]:
    if not isinstance(result, StepResult):
        raise AssertionError(f"expected a StepResult, got {type(result).__name__}: {result!r}")
    if not result.is_success:
        raise AssertionError(f"expected success, got failure {result.error_type}: {result.error_message}")
    doc = result.result.get(key) if isinstance(result.result, Mapping) else None
    if not isinstance(doc, Mapping):
        raise AssertionError(f"the result carries no {key}: {result.result!r}")
    return dict(doc)


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
    return _as_recorded(outcome.with_events(result, context._events), context.step_name)


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
    return _as_recorded(outcome.with_events(result, context._events), context.step_name)


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


def build_event(
    name: str,
    payload: Optional[Mapping[str, Any]] = None,
    *,
    attempt: int = 1,
    delivery: DeliveryMode = "durable",
    **fields: Any,
) -> Event:
    """An :class:`~tasker_core.events.Event` as a subscriber receives it, without a database.

    The payload defaults to the catalog's example for a system event and to ``{}`` for a domain
    event; it goes through the JSON conversion a real event goes through. ``fields`` sets other
    envelope fields (``task_uuid=``, ``step_uuid=``, ``namespace=``, …; uuids as ``uuid.UUID``
    or text). Raises ``ValueError`` for a payload JSON cannot carry and ``TypeError`` for an
    unknown field.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"build_event: name must be a non-empty str, got {name!r}")
    if delivery not in ("durable", "fast"):
        raise ValueError(f"build_event: delivery must be 'durable' or 'fast', got {delivery!r}")
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(Event)} - {"payload", "attempt", "delivery"})
    if unknown:
        raise TypeError(f"build_event: unknown field(s) {', '.join(unknown)}")
    info = event_info(name)
    if payload is None:
        payload = info.example if info is not None else {}
    # A step's system events and a domain event (published by a step) carry a step.
    with_step = info is None or info.category == "step"
    envelope: Dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "category": info.category if info is not None else "domain",
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "task_uuid": str(uuid.uuid4()),
        "step_uuid": str(uuid.uuid4()) if with_step else None,
        "correlation_id": str(uuid.uuid4()),
        "namespace": "test",
        "task_name": "test_task",
        "task_version": "1.0.0",
        "payload": _roundtrip("build_event: payload", dict(payload)),
        "delivery": delivery,
        "position": 1 if delivery == "durable" else None,
    }
    for key, value in fields.items():
        envelope[key] = str(value) if isinstance(value, uuid.UUID) else value
    return Event.from_dict(envelope, attempt=attempt)


def run_subscriber(subscriber: Union[Subscriber, type], event: Event) -> None:
    """Hands ``event`` to ``subscriber`` (a :class:`~tasker_core.events.Subscriber` class,
    instantiated here, or an instance) as a runner would, running an ``async def handle`` to
    completion. What the handler raises is raised here: a runner would fail the delivery with
    it (and retry it)."""
    instance = subscriber() if inspect.isclass(subscriber) else subscriber
    if not isinstance(instance, Subscriber):
        raise TypeError(f"run_subscriber: expected a Subscriber class or instance, got {subscriber!r}")
    value = instance.handle(event)
    if inspect.isawaitable(value):
        asyncio.run(_await(value))
