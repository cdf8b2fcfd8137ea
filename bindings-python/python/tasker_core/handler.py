"""Step handlers: the classes and functions application code writes.

A handler receives a :class:`StepContext` and returns a :class:`StepResult`, or any
JSON-serialisable value (a plain ``dict`` is the usual), which means success. It may be a
method ``call`` of a :class:`StepHandler` subclass or a plain function; either may be
``async``. Raising :class:`~tasker_core.errors.PermanentError` fails the step for good,
:class:`~tasker_core.errors.RetryableError` asks for a retry, and any other exception is a
retryable failure.

Handlers are found by the step's ``handler.callable``: first among the handlers given to
the worker, then among those registered with :func:`step_handler`, then by importing it as
a class path ``package.module.ClassName``.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from ._time import parse_time as _parse_time
from .batch import BatchContext, BatchCursor, Checkpoint, batch_cursors
from .errors import HandlerNotFound, StepCancelled, _check_retry_after

__all__ = [
    "StepContext",
    "StepResult",
    "StepHandler",
    "step_handler",
    "HandlerRegistry",
    "default_registry",
]

JSON = Any
HandlerReturn = Union["StepResult", JSON]


@dataclass(frozen=True)
class StepContext:
    """Everything a handler knows about the step attempt it runs.

    Attributes:
        task_uuid: the task's uuid (string).
        step_uuid: the step's uuid (string).
        step_name: the step's name in the template.
        input: the task context (what the task was created with).
        dependency_results: results of the step's direct dependencies, by step name.
        config: the step's ``handler.initialization`` from the template.
        attempt: 1-based number of this attempt.
        max_attempts: attempts allowed in total.
        namespace, task_name, task_version: the template the task was created from.
        correlation_id: the task's correlation id.
        handler_callable, handler_method: the step's ``handler.callable`` / ``handler.method``.
        deadline: when the engine fails this attempt with ``timeout`` (``None``: no deadline).
        event_id: the worker's id for this attempt.
        cancelled: whether the engine cancelled this attempt (see :attr:`cancelled`).
        batch: for an instance of a ``batch_worker`` step, its cursor, the template's
            ``batch_config`` and ``checkpoint(...)`` to record progress; ``None`` otherwise.
        checkpoint: the last checkpoint an earlier attempt of this step recorded (where to
            resume), or ``None``.
        trace_context: the attempt's W3C ``traceparent`` when traces are exported
            (``telemetry.enabled``): extract it with your OpenTelemetry SDK's propagator and
            the spans you start nest under the attempt's span; ``None`` otherwise.

    :meth:`publish` adds a domain event to the attempt's outcome.
    """

    task_uuid: str
    step_uuid: str
    step_name: str
    input: Dict[str, Any] = field(default_factory=dict)
    dependency_results: Dict[str, Any] = field(default_factory=dict)
    config: Dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    max_attempts: int = 3
    namespace: str = ""
    task_name: str = ""
    task_version: str = ""
    correlation_id: str = ""
    handler_callable: str = ""
    handler_method: str = "call"
    deadline: Optional[datetime] = None
    event_id: int = 0
    batch: Optional[BatchContext] = None
    checkpoint: Optional[Checkpoint] = None
    trace_context: Optional[str] = None
    _cancelled: Optional[Callable[[], bool]] = field(default=None, repr=False, compare=False)
    _events: List[Dict[str, Any]] = field(default_factory=list, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """Whether the engine cancelled this attempt: it overran ``timeout_seconds`` (the
        attempt already failed with ``timeout``), the worker gave it up, or the worker's
        shutdown deadline passed. Its result will be ignored, so a long-running handler should
        check this between units of work and return (or raise) soon after it turns true.
        Cheap enough to check in a loop (one atomic read once looked up)."""
        check = self._cancelled
        return check is not None and check()

    def raise_if_cancelled(self) -> None:
        """Raises :class:`~tasker_core.errors.StepCancelled` if :attr:`cancelled` is true."""
        if self.cancelled:
            raise StepCancelled(f"step '{self.step_name}' attempt {self.attempt} was cancelled by the engine")

    def publish(self, name: str, payload: Optional[Mapping[str, Any]] = None) -> None:
        """Publishes the domain event ``name`` with this attempt's outcome: it travels in the
        outcome's ``metadata["events"]`` (next to any other metadata) and the engine publishes
        it when the outcome is recorded — durably in the same transaction, or on the fast
        broadcast, as the step's ``publishes_events`` says, and only if its ``condition``
        (``success``, ``failure``, ``always``) holds for the outcome (an event published
        before raising counts for a failure).

        The template must declare it (``domain_events:``, and the step's
        ``publishes_events:``) and ``payload`` must satisfy its schema, or the step fails
        permanently with ``event_not_declared`` / ``event_payload_invalid``.

        ::

            context.publish("payment.charged", {"amount": 10.5, "currency": "EUR"})

        Raises:
            TypeError: ``name`` is not a non-empty str, or ``payload`` not a mapping.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"an event name must be a non-empty str like 'payment.charged', got {name!r}")
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise TypeError(f"an event payload must be a mapping (a JSON object), got {type(payload).__name__}")
        self._events.append({"name": name, "payload": dict(payload)})

    @property
    def published_events(self) -> List[Dict[str, Any]]:
        """The events :meth:`publish` added so far, as ``{"name", "payload"}`` dicts."""
        return [dict(e) for e in self._events]

    @property
    def is_retry(self) -> bool:
        """Whether an earlier attempt of this step failed."""
        return self.attempt > 1

    @property
    def is_last_retry(self) -> bool:
        """Whether a failure of this attempt will not be retried."""
        return self.attempt >= self.max_attempts

    def get_dependency_result(self, name: str, default: Any = None) -> Any:
        """The result of dependency ``name``, or ``default`` if the step has no such dependency."""
        return self.dependency_results.get(name, default)

    def get_input(self, key: str, default: Any = None) -> Any:
        """``input[key]``, or ``default``."""
        if isinstance(self.input, Mapping):
            return self.input.get(key, default)
        return default

    @classmethod
    def _from_event(
        cls,
        event: Mapping[str, Any],
        cancelled: Optional[Callable[[], bool]] = None,
        checkpoint_sink: Optional[Callable[[str], None]] = None,
    ) -> StepContext:
        handler = event["handler"]
        deadline = event.get("deadline")
        raw_checkpoint = event.get("checkpoint")
        checkpoint = Checkpoint._from_json(raw_checkpoint) if raw_checkpoint else None
        raw_batch = event.get("batch")
        batch = BatchContext._from_json(raw_batch, checkpoint, checkpoint_sink) if raw_batch else None
        return cls(
            task_uuid=event["task_uuid"],
            step_uuid=event["step_uuid"],
            step_name=event["step_name"],
            input=event["task_context"],
            dependency_results=event["dependency_results"],
            config=handler.get("initialization") or {},
            attempt=event["attempt"],
            max_attempts=event["max_attempts"],
            namespace=event["namespace"],
            task_name=event["task_name"],
            task_version=event["task_version"],
            correlation_id=event["correlation_id"],
            handler_callable=handler["callable"],
            handler_method=handler.get("method") or "call",
            deadline=_parse_time(deadline) if deadline else None,
            event_id=event["event_id"],
            batch=batch,
            checkpoint=checkpoint,
            trace_context=event.get("trace_context"),
            _cancelled=cancelled,
        )


class StepResult:
    """What a handler returns: a success with a result, or a failure.

    Build one with :meth:`success` or :meth:`failure`. Returning a plain value (a ``dict``,
    usually) from a handler is the same as ``StepResult.success(value)``.
    """

    __slots__ = (
        "_success",
        "result",
        "metadata",
        "error_message",
        "error_type",
        "retryable",
        "retry_after",
        "backtrace",
    )

    def __init__(
        self,
        success: bool,
        result: JSON = None,
        metadata: Optional[Mapping[str, Any]] = None,
        error_message: Optional[str] = None,
        error_type: Optional[str] = None,
        retryable: bool = True,
        retry_after: Optional[float] = None,
        backtrace: Optional[str] = None,
    ) -> None:
        self._success = success
        self.result = result
        self.metadata = dict(metadata) if metadata else None
        self.error_message = error_message
        self.error_type = error_type
        self.retryable = retryable
        self.retry_after = retry_after
        self.backtrace = backtrace

    @classmethod
    def success(cls, result: JSON = None, metadata: Optional[Mapping[str, Any]] = None) -> StepResult:
        """A successful attempt whose ``result`` (any JSON-serialisable value) is stored and
        handed to dependent steps."""
        return cls(True, result=result, metadata=metadata)

    @classmethod
    def failure(
        cls,
        message: str,
        error_type: str = "step_failed",
        retryable: bool = True,
        retry_after: Optional[float] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> StepResult:
        """A failed attempt. ``retryable=False`` fails the step at once; otherwise the engine
        retries while attempts remain, after ``retry_after`` seconds if given."""
        if not isinstance(message, str):
            raise TypeError(f"failure message must be a str, got {type(message).__name__}")
        if not isinstance(error_type, str) or not error_type:
            raise TypeError(f"error_type must be a non-empty str, got {error_type!r}")
        if retry_after is not None:
            retry_after = _check_retry_after(retry_after)
        return cls(
            False,
            metadata=metadata,
            error_message=message,
            error_type=error_type,
            retryable=bool(retryable),
            retry_after=retry_after,
        )

    # Decision points and batches: successes whose result carries the engine's outcome
    # document next to the handler's own keys (which dependents receive as usual).

    @classmethod
    def decision(
        cls,
        steps: Sequence[str],
        result: Optional[Mapping[str, Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> StepResult:
        """The outcome of a ``decision`` step: the engine creates the steps named in
        ``steps`` (direct dependents of this step in the template) and what depends only on
        them. An empty ``steps`` is :meth:`no_branches`; a name given twice counts once.

        ::

            return StepResult.decision(steps=["manager_approval", "finance_review"], result={"amount": amount})

        Raises:
            TypeError: ``steps`` is not a sequence of non-empty str (a bare str is refused:
                write ``steps=["auto_approve"]``).
        """
        if isinstance(steps, str) or not isinstance(steps, Sequence):
            raise TypeError(f"steps must be a list of step names, got {type(steps).__name__} {steps!r}")
        names: List[str] = []
        for name in steps:
            if not isinstance(name, str) or not name:
                raise TypeError(f"step names must be non-empty str, got {name!r}")
            if name not in names:
                names.append(name)
        if not names:
            return cls.no_branches(result, metadata)
        outcome = {"type": "create_steps", "step_names": names}
        return cls.success(_with_outcome(result, "decision_point_outcome", outcome), metadata)

    @classmethod
    def no_branches(
        cls, result: Optional[Mapping[str, Any]] = None, metadata: Optional[Mapping[str, Any]] = None
    ) -> StepResult:
        """The outcome of a ``decision`` step that takes no branch: nothing below it is
        created (a ``deferred_convergence`` step after it still runs)."""
        return cls.success(_with_outcome(result, "decision_point_outcome", {"type": "no_branches"}), metadata)

    @classmethod
    def batches(
        cls,
        worker: str,
        cursors: Optional[Sequence[Union[BatchCursor, Mapping[str, Any]]]] = None,
        *,
        total: Optional[int] = None,
        batch_size: Optional[int] = None,
        result: Optional[Mapping[str, Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> StepResult:
        """The outcome of a ``batchable`` step: one instance of the ``batch_worker`` step
        ``worker`` per cursor, named ``<worker>_<batch_id>``.

        Give the cursors (:class:`~tasker_core.BatchCursor` values or mappings of their
        fields; ``total`` then states ``total_items``, else it is the sum of the batch
        sizes), or ``total`` and ``batch_size`` to split ``range(total)`` with
        :func:`~tasker_core.batch_cursors`. No cursors (``total=0``) is :meth:`no_batches`.

        ::

            return StepResult.batches(worker="process_batch", total=len(rows), batch_size=1000)

        Raises:
            TypeError / ValueError: a missing or malformed argument (named in the message).
        """
        if not isinstance(worker, str) or not worker:
            raise TypeError(f"worker must be the name of the batch_worker step, got {worker!r}")
        if cursors is not None:
            if batch_size is not None:
                raise TypeError("give cursors, or total and batch_size, not both")
            if isinstance(cursors, (str, Mapping)) or not isinstance(cursors, Sequence):
                raise TypeError(f"cursors must be a list of BatchCursor, got {type(cursors).__name__}")
            configs = [BatchCursor._coerce(c, i) for i, c in enumerate(cursors)]
            ids = [c.batch_id for c in configs]
            if len(set(ids)) != len(ids):
                raise ValueError(f"batch ids must be unique, got {ids}")
            if total is None:
                total = sum(c.batch_size for c in configs)
            elif isinstance(total, bool) or not isinstance(total, int) or total < 0:
                raise ValueError(f"total must be a non-negative int, got {total!r}")
        elif total is None or batch_size is None:
            raise TypeError("StepResult.batches needs cursors, or total and batch_size")
        else:
            configs = batch_cursors(total, batch_size)
        if not configs:
            return cls.no_batches(result, metadata)
        outcome = {
            "type": "create_batches",
            "worker_template_name": worker,
            "worker_count": len(configs),
            "total_items": total,
            "cursor_configs": [c.to_json() for c in configs],
        }
        return cls.success(_with_outcome(result, "batch_processing_outcome", outcome), metadata)

    @classmethod
    def no_batches(
        cls, result: Optional[Mapping[str, Any]] = None, metadata: Optional[Mapping[str, Any]] = None
    ) -> StepResult:
        """The outcome of a ``batchable`` step with nothing to split: the engine creates one
        placeholder worker instance (``context.batch.is_no_op``), so the convergence step
        after the workers still runs."""
        return cls.success(_with_outcome(result, "batch_processing_outcome", {"type": "no_batches"}), metadata)

    @property
    def is_success(self) -> bool:
        return self._success

    @property
    def is_failure(self) -> bool:
        return not self._success

    def __repr__(self) -> str:
        if self._success:
            return f"StepResult.success({self.result!r}, metadata={self.metadata!r})"
        return (
            f"StepResult.failure({self.error_message!r}, error_type={self.error_type!r}, "
            f"retryable={self.retryable!r}, retry_after={self.retry_after!r})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StepResult) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__ if k != "backtrace"
        )


def _with_outcome(result: Optional[Mapping[str, Any]], key: str, outcome: Dict[str, Any]) -> Dict[str, Any]:
    if result is None:
        return {key: outcome}
    if not isinstance(result, Mapping):
        raise TypeError(
            f"result must be a mapping (its keys sit next to {key!r}), got {type(result).__name__} {result!r}"
        )
    if key in result:
        raise ValueError(f"result already has a {key!r} key; pass the other keys only")
    return {**result, key: outcome}


class StepHandler:
    """Base class for class-style handlers.

    Override ``call(self, context)`` (sync or ``async def``). One instance per worker serves
    every step that names the class, from several threads at once: keep per-step state in
    local variables.

    Set ``handler_name`` to register the class under a short name (the decorator
    :func:`step_handler` does this too).
    """

    handler_name: Optional[str] = None

    def call(self, context: StepContext) -> Union[HandlerReturn, Awaitable[HandlerReturn]]:
        raise NotImplementedError(f"{type(self).__name__} must implement call(self, context)")

    # Convenience constructors, so handlers can write `return self.success({...})`.
    @staticmethod
    def success(result: JSON = None, metadata: Optional[Mapping[str, Any]] = None) -> StepResult:
        return StepResult.success(result, metadata)

    @staticmethod
    def failure(
        message: str,
        error_type: str = "step_failed",
        retryable: bool = True,
        retry_after: Optional[float] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> StepResult:
        return StepResult.failure(message, error_type, retryable, retry_after, metadata)


HandlerLike = Union[type, Callable[..., Any]]
T = TypeVar("T", bound=HandlerLike)


class HandlerRegistry:
    """Maps callable names to handler classes or functions. Thread-safe."""

    def __init__(self) -> None:
        self._by_name: Dict[str, HandlerLike] = {}
        self._lock = threading.Lock()

    def register(self, handler: HandlerLike, name: Optional[str] = None) -> HandlerLike:
        """Registers a :class:`StepHandler` subclass or a function under ``name``; without a
        name, under its ``handler_name``, its class path ``module.QualName`` and its bare name."""
        if not callable(handler):
            raise TypeError(f"a handler must be a StepHandler subclass or a function, got {handler!r}")
        if inspect.isclass(handler) and not callable(getattr(handler, "call", None)):
            raise TypeError(f"handler class {handler.__qualname__} has no call(self, context) method")
        names = [name] if name else _names_of(handler)
        with self._lock:
            for n in names:
                if not isinstance(n, str) or not n:
                    raise TypeError(f"a handler name must be a non-empty str, got {n!r}")
                self._by_name[n] = handler
        return handler

    def get(self, name: str) -> Optional[HandlerLike]:
        return self._by_name.get(name)

    def names(self) -> Tuple[str, ...]:
        return tuple(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)


def _names_of(handler: HandlerLike) -> Iterable[str]:
    names = []
    explicit = getattr(handler, "handler_name", None)
    if isinstance(explicit, str) and explicit:
        names.append(explicit)
    module = getattr(handler, "__module__", None)
    qualname = getattr(handler, "__qualname__", None)
    if module and qualname:
        names.append(f"{module}.{qualname}")
    bare = getattr(handler, "__name__", None)
    if bare and bare not in names:
        names.append(bare)
    return names


default_registry = HandlerRegistry()
"""Handlers registered with :func:`step_handler` (used by every worker)."""


def step_handler(name: str, *, registry: Optional[HandlerRegistry] = None) -> Callable[[T], T]:
    """Registers a function or :class:`StepHandler` subclass under ``name``.

    ::

        @step_handler("orders.validate")
        def validate(context):
            return {"valid": True}
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"step_handler needs a non-empty name, got {name!r}")

    def decorate(handler: T) -> T:
        try:
            handler.handler_name = name  # type: ignore[union-attr]
        except (AttributeError, TypeError):
            pass
        (registry if registry is not None else default_registry).register(handler, name)
        return handler

    return decorate


class Resolver:
    """Turns a step's ``handler.callable`` (and ``method``) into something to call.

    Order: explicitly given handlers, the decorator registry, then a class path
    ``package.module.ClassName`` imported on first use. Classes are instantiated once and
    cached; lookups are cached too.
    """

    def __init__(self, explicit: HandlerRegistry, fallback: HandlerRegistry = default_registry) -> None:
        self._explicit = explicit
        self._fallback = fallback
        self._cache: Dict[Tuple[str, str], Callable[[StepContext], Any]] = {}
        self._instances: Dict[type, Any] = {}
        self._lock = threading.Lock()

    def resolve(self, callable_name: str, method: str = "call") -> Callable[[StepContext], Any]:
        key = (callable_name, method)
        found = self._cache.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._cache.get(key)
            if found is None:
                found = self._bind(self._lookup(callable_name), callable_name, method)
                self._cache[key] = found
        return found

    def _lookup(self, name: str) -> HandlerLike:
        handler = self._explicit.get(name) or self._fallback.get(name)
        if handler is not None:
            return handler
        return import_class_path(name)

    def _bind(self, handler: HandlerLike, name: str, method: str) -> Callable[[StepContext], Any]:
        if inspect.isclass(handler):
            instance = self._instances.get(handler)
            if instance is None:
                try:
                    instance = handler()
                except Exception as e:  # a constructor that needs arguments, or fails
                    raise HandlerNotFound(
                        f"handler class '{name}' could not be instantiated: {type(e).__name__}: {e}",
                        callable=name,
                    ) from e
                self._instances[handler] = instance
            bound = getattr(instance, method, None)
            if not callable(bound):
                raise HandlerNotFound(f"handler class '{name}' has no method '{method}'", callable=name)
            return bound
        if method != "call":
            bound = getattr(handler, method, None)
            if callable(bound):
                return bound
            raise HandlerNotFound(f"handler '{name}' has no method '{method}'", callable=name)
        return handler


def import_class_path(path: str) -> HandlerLike:
    """Imports ``package.module.ClassName`` (or a function) and returns it.

    Raises:
        HandlerNotFound: naming ``path`` and why it could not be imported.
    """
    if not isinstance(path, str) or "." not in path or path.startswith(".") or path.endswith("."):
        raise HandlerNotFound(
            f"no handler registered for callable '{path}' (and it is not an importable "
            "'package.module.ClassName' path)",
            callable=path,
        )
    parts = path.split(".")
    last_error: Optional[BaseException] = None
    # Longest importable module prefix first, then attribute access for the rest
    # (nested classes: package.module.Outer.Inner).
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # Only "this prefix does not exist" is a reason to try a shorter one; a module that
            # exists but fails inside its own imports is a real error to report.
            if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
                last_error = e
                continue
            raise HandlerNotFound(
                f"handler '{path}': importing module '{module_name}' failed: {e}", callable=path
            ) from e
        except Exception as e:
            raise HandlerNotFound(
                f"handler '{path}': importing module '{module_name}' failed: {type(e).__name__}: {e}",
                callable=path,
            ) from e
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError as e:
            raise HandlerNotFound(
                f"handler '{path}': module '{module_name}' has no attribute '{'.'.join(parts[split:])}'",
                callable=path,
            ) from e
        if not callable(obj):
            raise HandlerNotFound(f"handler '{path}' is not a class or function", callable=path)
        return obj
    raise HandlerNotFound(
        f"no handler registered for callable '{path}' and no module of it can be imported",
        callable=path,
    ) from last_error
