"""The client: register templates, create tasks, follow them to the end.

::

    import tasker_core

    client = tasker_core.connect()            # TASKER_DATABASE_URL / DATABASE_URL / config / ./tasker.db
    client.register_templates("templates/")
    task = client.create_task("orders", "process_order", context={"order_id": 7})
    done = task.wait(timeout=60)
    print(done.state, done.step("ship_order").results)

Every blocking method has an ``*_async`` twin for asyncio code; it runs the call in a
thread (the native call releases the GIL), so the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid as _uuid
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from . import _logs, _native
from ._time import parse_time as _parse_time
from .batch import Checkpoint, StepBatch
from .errors import InvalidArgument
from .events.records import EventDeadLetter, EventGroupStatus
from .events.subscription import EventSubscription, FastSubscription, check_patterns
from .recovery import DlqEntry, DlqReason, DlqStats, DlqStatus, QueuedDlqEntry, TaskHealth, WorkerInfo

__all__ = [
    "connect",
    "Client",
    "Task",
    "Step",
    "StepDetail",
    "Transition",
    "RegisteredTemplate",
    "TemplateInfo",
    "TERMINAL_STATES",
]

TERMINAL_STATES = frozenset({"complete", "error", "cancelled", "resolved_manually"})

UuidLike = Union[str, _uuid.UUID, "Task"]
StepRef = Union[str, _uuid.UUID, "Step"]
"""A step of a task: its name, its uuid, or the :class:`Step` itself."""
EntryRef = Union[str, _uuid.UUID, DlqEntry]

_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_I64_MAX = 2**63 - 1


def connect(database_url: Optional[str] = None, *, max_connections: Optional[int] = None) -> Client:
    """Connects to the engine's database (running migrations when needed).

    The engine's options come from the configuration, as for the ``tasker`` CLI (files under
    ``TASKER_CONFIG_ROOT`` or ``./config/tasker``, and ``TASKER_<SECTION>__<KEY>`` variables;
    see ``docs/configuration.md``); the arguments given here win over it.

    Args:
        database_url: ``sqlite://path/to/file.db``, a plain file path, or ``postgres://…``.
            ``None`` uses ``TASKER_DATABASE_URL``, then ``DATABASE_URL``, then the
            configuration's ``database.url``, then ``sqlite://./tasker.db`` — the same order as
            the ``tasker`` CLI.
        max_connections: PostgreSQL pool size (``None``: ``database.max_connections``,
            default 10).

    From then on the engine's log records go to :mod:`logging`, under ``tasker_core.engine``
    (see ``tasker_core._logs``).

    Raises:
        ConfigurationError: the configuration is invalid.
        InvalidDatabaseUrl: the URL is malformed or its scheme unsupported.
        DatabaseConnectionError: the database cannot be reached.
    """
    if database_url is not None:
        database_url = os.fspath(database_url)
        if not isinstance(database_url, str):
            raise TypeError(f"database_url must be a str, got {type(database_url).__name__}")
    if max_connections is not None and (
        isinstance(max_connections, bool) or not isinstance(max_connections, int) or not 1 <= max_connections <= 10_000
    ):
        raise InvalidArgument(f"max_connections must be an int between 1 and 10000, got {max_connections!r}")
    native = _native.NativeClient.connect(database_url, max_connections)
    # The engine's log records go to `logging` from now on (tasker_core/_logs.py).
    _logs.start()
    return Client(native)


async def connect_async(database_url: Optional[str] = None, *, max_connections: Optional[int] = None) -> Client:
    """:func:`connect` for asyncio code."""
    return await asyncio.to_thread(connect, database_url, max_connections=max_connections)


@dataclass(frozen=True)
class RegisteredTemplate:
    """A template version that :meth:`Client.register_templates` stored."""

    namespace: str
    name: str
    version: str
    id: int
    queues: List[str]
    warnings: List[str]


@dataclass(frozen=True)
class TemplateInfo:
    """A registered template version (:meth:`Client.list_templates`, :meth:`Client.get_template`)."""

    namespace: str
    name: str
    version: str
    description: Optional[str]
    steps: List[str]
    """Step names, in template order."""
    queues: List[str]
    """The queues its steps are dispatched to."""
    source_path: Optional[str]
    """The file it was registered from, when it came from one."""
    registered_at: datetime
    definition: Dict[str, Any]
    """The whole template (after the environment merge), as stored."""

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> TemplateInfo:
        return cls(
            namespace=d["namespace"],
            name=d["name"],
            version=d["version"],
            description=d.get("description"),
            steps=list(d["steps"]),
            queues=list(d["queues"]),
            source_path=d.get("source_path"),
            registered_at=_parse_time(d["registered_at"]),
            definition=d["definition"],
        )


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated, use {new} (the name every language uses)", DeprecationWarning, stacklevel=3)


@dataclass(frozen=True)
class Transition:
    """One audited state change of a task (``step_name is None``) or of a step."""

    step_name: Optional[str]
    from_state: Optional[str]
    to_state: str
    event: str
    metadata: Any
    most_recent: bool
    created_at: datetime

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> Transition:
        return cls(
            step_name=d.get("step_name"),
            from_state=d.get("from_state"),
            to_state=d["to_state"],
            event=d["event"],
            metadata=d.get("metadata"),
            most_recent=d["most_recent"],
            created_at=_parse_time(d["created_at"]),
        )


@dataclass(frozen=True)
class Step:
    """A workflow step of a task: its state, attempts, result and last error.

    Steps created at run time say by what: ``created_by`` names the ``decision`` step that
    chose them or the ``batchable`` step whose batches they process (``None`` for steps
    created with the task); a batch worker instance has its cursor in ``batch`` and the last
    progress it recorded in ``checkpoint``.
    """

    step_uuid: str
    name: str
    state: str
    attempts: int
    max_attempts: int
    retryable: bool
    results: Any
    """What the step's handler returned (``None`` until it completes)."""
    last_error: Optional[Dict[str, Any]]
    """The newest failed attempt's error: ``error_type``, ``message``, ``retryable``, …"""
    queue: str
    dependencies: List[str]
    next_retry_at: Optional[datetime]
    created_at: datetime
    first_attempted_at: Optional[datetime]
    last_attempted_at: Optional[datetime]
    completed_at: Optional[datetime]
    created_by: Optional[str] = None
    batch: Optional[StepBatch] = None
    checkpoint: Optional[Checkpoint] = None
    free_attempts: int = 0
    """Attempts that do not count against ``max_attempts``: claims given back, leases lost
    with their worker, and every attempt before an operator's reset."""

    @property
    def is_complete(self) -> bool:
        return self.state == "complete"

    @property
    def result(self) -> Any:
        """Deprecated alias of :attr:`results` (removed in the next release)."""
        _deprecated("Step.result", "Step.results")
        return self.results

    @property
    def error(self) -> Optional[Dict[str, Any]]:
        """Deprecated alias of :attr:`last_error` (removed in the next release)."""
        _deprecated("Step.error", "Step.last_error")
        return self.last_error

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> Step:
        return cls(**Step._fields(d))

    @staticmethod
    def _fields(d: Mapping[str, Any]) -> Dict[str, Any]:
        return dict(
            step_uuid=d["step_uuid"],
            name=d["name"],
            state=d["state"],
            attempts=d["attempts"],
            max_attempts=d["max_attempts"],
            retryable=d["retryable"],
            results=d.get("results"),
            last_error=d.get("last_error"),
            queue=d["queue"],
            dependencies=list(d.get("dependencies") or ()),
            next_retry_at=_opt_time(d.get("next_retry_at")),
            created_at=_parse_time(d["created_at"]),
            first_attempted_at=_opt_time(d.get("first_attempted_at")),
            last_attempted_at=_opt_time(d.get("last_attempted_at")),
            completed_at=_opt_time(d.get("completed_at")),
            created_by=d.get("created_by"),
            batch=StepBatch._from_json(d["batch"]) if d.get("batch") else None,
            checkpoint=Checkpoint._from_json(d["checkpoint"]) if d.get("checkpoint") else None,
            free_attempts=d.get("free_attempts", 0),
        )


@dataclass(frozen=True)
class StepDetail(Step):
    """A step as an operator sees it (:meth:`Client.get_step`, :meth:`Client.list_steps` and
    what every operator action returns): the :class:`Step`, plus every failed attempt's error,
    whether its dependencies are satisfied, whether the engine will still run it by itself,
    and its audit trail.

    ``last_error`` is the newest error; ``errors`` holds one per failed attempt, oldest first, each
    ``{"error_type", "message", "retryable", "backtrace", "metadata"}`` like ``last_error``.
    """

    errors: List[Dict[str, Any]] = field(default_factory=list)
    dependencies_satisfied: bool = False
    """Every dependency is ``complete`` or ``resolved_manually``."""
    retry_possible: bool = False
    """The engine runs it again by itself: it waits for a retry, or is still open with
    attempts left. A step in ``error`` needs an operator (:meth:`Client.reset_step`, …)."""
    transitions: List[Transition] = field(default_factory=list)
    """The step's audit rows, oldest first; an operator's name who and why (``metadata["by"]``,
    ``metadata["reason"]``)."""

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> StepDetail:
        return cls(
            **Step._fields(d),
            errors=list(d.get("errors") or ()),
            dependencies_satisfied=bool(d.get("dependencies_satisfied", False)),
            retry_possible=bool(d.get("retry_possible", False)),
            transitions=[Transition._from_json(t) for t in d.get("transitions") or ()],
        )


@dataclass(frozen=True)
class Task:
    """A task as last read from the database.

    ``steps`` and the transitions are filled in by :meth:`Client.get_task`,
    :meth:`wait` and :meth:`refresh`; a task returned by :meth:`Client.create_task`,
    :meth:`Client.list_tasks` or :meth:`Client.cancel_task` is a summary (``detailed`` is
    ``False``, ``steps`` empty).
    """

    task_uuid: str
    namespace: str
    name: str
    version: str
    state: str
    context: Any
    initiator: Optional[str]
    source_system: Optional[str]
    reason: Optional[str]
    tags: List[str]
    priority: int
    correlation_id: str
    idempotency_key: Optional[str]
    total_steps: int
    completed_steps: int
    active_steps: int
    failed_steps: int
    created_at: datetime
    updated_at: datetime
    completed_at: Optional[datetime]
    steps: List[Step] = field(default_factory=list)
    transitions: List[Transition] = field(default_factory=list)
    step_transitions: List[Transition] = field(default_factory=list)
    detailed: bool = False
    created: bool = True
    """``False`` when ``create_task`` found an existing task with the same idempotency key."""
    _client: Optional[Client] = field(default=None, repr=False, compare=False)

    @property
    def uuid(self) -> str:
        return self.task_uuid

    @property
    def is_terminal(self) -> bool:
        """Whether the task reached ``complete``, ``error``, ``cancelled`` or ``resolved_manually``."""
        return self.state in TERMINAL_STATES

    @property
    def is_complete(self) -> bool:
        return self.state == "complete"

    def step(self, name: str) -> Step:
        """The step called ``name`` (needs a detailed task)."""
        for s in self.steps:
            if s.name == name:
                return s
        if not self.detailed:
            raise KeyError(f"task {self.task_uuid} was read as a summary; call refresh() or wait() for its steps")
        raise KeyError(f"task {self.task_uuid} has no step '{name}' (steps: {', '.join(s.name for s in self.steps)})")

    @property
    def results(self) -> Dict[str, Any]:
        """Each step's result, by step name."""
        return {s.name: s.results for s in self.steps}

    def wait(self, timeout: float = 60.0) -> Task:
        """Waits until the task is terminal and returns it with every step.

        Raises:
            WaitTimeout: still running after ``timeout`` seconds (a ``TimeoutError``).
        """
        return self._require_client().wait_for_task(self.task_uuid, timeout=timeout)

    async def wait_async(self, timeout: float = 60.0) -> Task:
        """:meth:`wait` for asyncio code."""
        return await asyncio.to_thread(self.wait, timeout)

    def refresh(self) -> Task:
        """Reads the task again, with its steps."""
        return self._require_client().get_task(self.task_uuid)

    async def refresh_async(self) -> Task:
        return await asyncio.to_thread(self.refresh)

    def cancel(self) -> Task:
        return self._require_client().cancel_task(self.task_uuid)

    def _require_client(self) -> Client:
        if self._client is None:
            raise RuntimeError("this Task is not bound to a client")
        return self._client

    @classmethod
    def _from_summary(cls, d: Mapping[str, Any], client: Optional[Client], created: bool = True) -> Task:
        return cls(
            task_uuid=d["task_uuid"],
            namespace=d["namespace"],
            name=d["name"],
            version=d["version"],
            state=d["state"],
            context=d.get("context"),
            initiator=d.get("initiator"),
            source_system=d.get("source_system"),
            reason=d.get("reason"),
            tags=list(d.get("tags") or ()),
            priority=d["priority"],
            correlation_id=d["correlation_id"],
            idempotency_key=d.get("idempotency_key"),
            total_steps=d["total_steps"],
            completed_steps=d["completed_steps"],
            active_steps=d["active_steps"],
            failed_steps=d["failed_steps"],
            created_at=_parse_time(d["created_at"]),
            updated_at=_parse_time(d["updated_at"]),
            completed_at=_opt_time(d.get("completed_at")),
            created=created,
            _client=client,
        )

    @classmethod
    def _from_detail(cls, d: Mapping[str, Any], client: Optional[Client]) -> Task:
        task = cls._from_summary(d["task"], client)
        return replace(
            task,
            steps=[Step._from_json(s) for s in d["steps"]],
            transitions=[Transition._from_json(t) for t in d["task_transitions"]],
            step_transitions=[Transition._from_json(t) for t in d["step_transitions"]],
            detailed=True,
        )


class Client:
    """A connection to Tasker's database. Thread-safe; share one per process.

    Create it with :func:`connect`.
    """

    def __init__(self, native: _native.NativeClient) -> None:
        self._native = native

    def __repr__(self) -> str:
        return f"<tasker_core.Client {self.backend} {self.database}>"

    @property
    def database(self) -> str:
        """Where the client is connected (host/database or file), without credentials."""
        return self._native.database

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgres"``."""
        return self._native.backend

    def register_templates(self, path: Union[str, os.PathLike[str]]) -> List[RegisteredTemplate]:
        """Loads, validates and registers every template in a YAML file or a directory.

        Nothing is registered unless every file is valid.

        Raises:
            TemplateError: with one :class:`~tasker_core.errors.TemplateProblem` per problem
                (file, step, field, message).
        """
        raw = self._native.register_templates(os.fspath(path))
        return [RegisteredTemplate(**d) for d in json.loads(raw)]

    def list_templates(self) -> List[TemplateInfo]:
        """Every registered template version."""
        return [TemplateInfo._from_json(d) for d in json.loads(self._native.list_templates())]

    def get_template(self, namespace: str, name: str, version: Optional[str] = None) -> TemplateInfo:
        """One registered template version; the highest one unless ``version``.

        Raises:
            TemplateNotFound: no such template (version).
        """
        _check_str("namespace", namespace)
        _check_str("name", name)
        if version is not None and not isinstance(version, str):
            raise TypeError(f"version must be a str or None, got {type(version).__name__} {version!r}")
        return TemplateInfo._from_json(json.loads(self._native.get_template(namespace, name, version)))

    def create_task(
        self,
        namespace: str,
        name: str,
        version: Optional[str] = None,
        *,
        context: Optional[Mapping[str, Any]] = None,
        initiator: Optional[str] = None,
        source_system: Optional[str] = None,
        reason: Optional[str] = None,
        tags: Sequence[str] = (),
        priority: int = 0,
        idempotency_key: Optional[str] = None,
        strict_identity: bool = False,
        traceparent: Optional[str] = None,
    ) -> Task:
        """Creates a task from template ``namespace/name`` (highest version unless ``version``)
        and enqueues its root steps.

        Args:
            context: the task's input, a JSON-serialisable mapping validated against the
                template's ``input_schema``.
            priority: higher runs first; each point is worth a second of waiting on the
                queue, so a low priority is never starved.
            idempotency_key: creating twice with the same key returns the first task
                (``task.created`` is then ``False``).
            strict_identity: identify the task by a hash of namespace, name, version and
                context instead: creating the same request twice returns the first task. Not
                combinable with ``idempotency_key``.
            traceparent: a W3C ``traceparent`` (e.g. from your OpenTelemetry SDK's
                propagator): the task joins that trace, its span a child of the caller's.

        Raises:
            TemplateNotFound: no such template (version).
            ValidationError: ``context`` violates the input schema; ``path`` names the value.
        """
        _check_str("namespace", namespace)
        _check_str("name", name)
        for field_name, value in (
            ("version", version),
            ("initiator", initiator),
            ("source_system", source_system),
            ("reason", reason),
            ("idempotency_key", idempotency_key),
            ("traceparent", traceparent),
        ):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{field_name} must be a str or None, got {type(value).__name__} {value!r}")
        if context is None:
            context = {}
        if not isinstance(context, Mapping):
            raise TypeError(f"context must be a mapping (a JSON object), got {type(context).__name__}")
        try:
            context_json = json.dumps(context, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as e:
            raise InvalidArgument(f"context is not JSON-serialisable: {e}") from e
        if isinstance(tags, str):
            raise TypeError("tags must be a sequence of str, not a single str")
        tag_list = list(tags)
        for t in tag_list:
            if not isinstance(t, str):
                raise TypeError(f"tags must be str, got {type(t).__name__} {t!r}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, got {type(priority).__name__} {priority!r}")
        if not _I32_MIN <= priority <= _I32_MAX:
            raise InvalidArgument(f"priority must fit in 32 bits, got {priority}")
        raw = self._native.create_task(
            namespace,
            name,
            version,
            context_json,
            initiator,
            source_system,
            reason,
            tag_list,
            priority,
            idempotency_key,
            bool(strict_identity),
            traceparent,
        )
        doc = json.loads(raw)
        return Task._from_summary(doc["task"], self, created=doc["created"])

    def prometheus_metrics(self) -> str:
        """The engine's metrics in the Prometheus text format (serve it at ``/metrics``); the
        metric names are listed in docs/operations.md."""
        return self._native.prometheus_metrics()

    def metrics(self) -> Dict[str, Any]:
        """The engine's metrics: ``{"samples": [{"name", "labels", "value"}, ...], ...}``."""
        return json.loads(self._native.metrics())

    def health(self) -> Dict[str, Any]:
        """Liveness and readiness: ``{"live": bool, "ready": bool, "checks": [{"name", "ok",
        "detail"}]}`` (the database answers within ``telemetry.health_probe_timeout_ms``, 2 s by
        default; the migrations ran; the circuit breaker around PostgreSQL is closed; and each
        worker this process started on this client is alive: a ``worker <id>`` check each,
        failed with the reason when one of its loops died)."""
        return json.loads(self._native.health())

    def get_task(self, task_uuid: UuidLike) -> Task:
        """The task with its steps (state, attempts, result, error) and transitions.

        Raises:
            TaskNotFound: no task has this uuid.
        """
        return Task._from_detail(json.loads(self._native.get_task(_uuid_str(task_uuid))), self)

    def list_tasks(
        self,
        namespace: Optional[str] = None,
        name: Optional[str] = None,
        state: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> List[Task]:
        """Task summaries, newest first (at most ``limit``, default 100)."""
        raw = self._native.list_tasks(namespace, name, state, limit)
        return [Task._from_summary(d, self) for d in json.loads(raw)]

    def cancel_task(self, task_uuid: UuidLike) -> Task:
        """Cancels a task that has not finished. Steps already running finish, but their
        results are ignored.

        Raises:
            IllegalTransition: the task already finished.
        """
        return Task._from_summary(json.loads(self._native.cancel_task(_uuid_str(task_uuid))), self)

    def wait_for_task(self, task_uuid: UuidLike, timeout: float = 60.0) -> Task:
        """Waits until the task is terminal; returns it with every step.

        Raises:
            WaitTimeout: still running after ``timeout`` seconds.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
        raw = self._native.wait_for_task(_uuid_str(task_uuid), float(timeout))
        return Task._from_detail(json.loads(raw), self)

    # Recovering failed work --------------------------------------------------------------
    #
    # Operator actions record ``by`` (who) and ``reason`` (why) in the audit row they write,
    # and refuse a state they do not apply to with InvalidState, whose message names the
    # step's state and the states the action accepts. A step is named by its name or uuid.

    def reset_step(self, task_uuid: UuidLike, step: StepRef, *, by: str, reason: str) -> StepDetail:
        """Sends an ``error`` step (or one stuck in ``waiting_for_retry`` / ``enqueued``) back to
        ``pending`` with a fresh retry budget; it runs again as soon as its dependencies allow,
        and a failed task re-opens. Attempt numbers keep growing, so a late result of an earlier
        attempt is refused. Returns the step afterwards.

        Raises:
            InvalidState: the step is in another state (the message says which are allowed).
            StepNotFound, TaskNotFound: no such step or task.
        """
        raw = self._native.reset_step(_uuid_str(task_uuid), _step_str(step), _text("by", by), _text("reason", reason))
        return StepDetail._from_json(json.loads(raw))

    def resolve_step_manually(self, task_uuid: UuidLike, step: StepRef, *, by: str, reason: str) -> StepDetail:
        """Marks a step that has not finished (or failed) ``resolved_manually``: it satisfies
        its dependents, which run next (with no result from it), and a failed task re-opens
        and can complete.

        Raises:
            InvalidState: the step already finished (``complete``, ``cancelled``, …).
            StepNotFound, TaskNotFound: no such step or task.
        """
        raw = self._native.resolve_step_manually(
            _uuid_str(task_uuid), _step_str(step), _text("by", by), _text("reason", reason)
        )
        return StepDetail._from_json(json.loads(raw))

    def complete_step_manually(
        self,
        task_uuid: UuidLike,
        step: StepRef,
        result: Any,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        by: str,
        reason: str,
    ) -> StepDetail:
        """Completes a step that has not finished (or failed) with the operator's ``result``
        (any JSON value), which its dependents receive as the step's dependency result; a
        failed task re-opens. ``metadata`` is kept in the audit row. For a ``decision`` or
        ``batchable`` step, an outcome in ``result`` creates steps as the handler's would.

        Raises:
            InvalidState: the step already finished.
            InvalidArgument: ``result`` or ``metadata`` is not JSON, or over the engine's
                limits (1 MiB, 64 levels), or an outcome in it is invalid.
            StepNotFound, TaskNotFound: no such step or task.
        """
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
        raw = self._native.complete_step_manually(
            _uuid_str(task_uuid),
            _step_str(step),
            _json_text("result", result),
            _json_text("metadata", metadata),
            _text("by", by),
            _text("reason", reason),
        )
        return StepDetail._from_json(json.loads(raw))

    def cancel_step(self, task_uuid: UuidLike, step: StepRef, *, by: str, reason: str) -> StepDetail:
        """Cancels a step that has not finished, and the pending steps below it (they could
        never run). Cancelled steps count as done: the task finishes as its other steps allow.
        A running attempt's result, when it comes, is refused.

        Raises:
            InvalidState: the step already finished or failed (reset or resolve it instead).
            StepNotFound, TaskNotFound: no such step or task.
        """
        raw = self._native.cancel_step(_uuid_str(task_uuid), _step_str(step), _text("by", by), _text("reason", reason))
        return StepDetail._from_json(json.loads(raw))

    def retry_task(self, task_uuid: UuidLike, *, by: str, reason: str) -> Task:
        """Resets every ``error`` step of a task in ``error`` (as :meth:`reset_step`), in one
        transaction; returns the task's summary.

        Raises:
            InvalidState: the task is not in ``error``.
            TaskNotFound: no such task.
        """
        raw = self._native.retry_task(_uuid_str(task_uuid), _text("by", by), _text("reason", reason))
        return Task._from_summary(json.loads(raw), self)

    def resolve_task(self, task_uuid: UuidLike, *, by: str, reason: str) -> Task:
        """Closes a failed or unfinished task by hand: it becomes ``resolved_manually``, its
        open steps are cancelled and its open DLQ entry is closed. Returns its summary.

        Raises:
            InvalidState: the task already finished otherwise (``complete``, ``cancelled``,
                ``resolved_manually``).
            TaskNotFound: no such task.
        """
        raw = self._native.resolve_task(_uuid_str(task_uuid), _text("by", by), _text("reason", reason))
        return Task._from_summary(json.loads(raw), self)

    def get_step(self, task_uuid: UuidLike, step: StepRef) -> StepDetail:
        """A step of a task (by name or uuid) with every attempt's error, whether its
        dependencies are satisfied, whether a retry is still possible, and its audit trail.

        Raises:
            StepNotFound, TaskNotFound: no such step or task.
        """
        raw = self._native.get_step(_uuid_str(task_uuid), _step_str(step))
        return StepDetail._from_json(json.loads(raw))

    def list_steps(self, task_uuid: UuidLike) -> List[StepDetail]:
        """Every step of a task in template order, as :meth:`get_step` shows it.

        Raises:
            TaskNotFound: no such task.
        """
        return [StepDetail._from_json(d) for d in json.loads(self._native.list_steps(_uuid_str(task_uuid)))]

    def list_dlq(
        self,
        status: Optional[DlqStatus] = None,
        reason: Optional[DlqReason] = None,
        task_uuid: Optional[UuidLike] = None,
        open_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> List[DlqEntry]:
        """Dead-letter queue entries, newest first, filtered by ``status``, ``reason``,
        ``task_uuid`` and ``open_only`` (``pending`` and ``investigating``); ``limit`` and
        ``offset`` page through them.

        Raises:
            InvalidArgument: an unknown status or reason, ``limit < 1`` or ``offset < 0``.
        """
        for name, value in (("status", status), ("reason", reason)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__} {value!r}")
        raw = self._native.list_dlq(
            status,
            reason,
            None if task_uuid is None else _uuid_str(task_uuid),
            bool(open_only),
            _int("limit", limit, 1),
            _int("offset", offset, 0),
        )
        return [DlqEntry._from_json(d) for d in json.loads(raw)]

    def get_dlq_entry(self, entry_uuid: EntryRef) -> DlqEntry:
        """One DLQ entry, as it is now.

        Raises:
            DlqEntryNotFound: no entry has this uuid.
        """
        return DlqEntry._from_json(json.loads(self._native.get_dlq_entry(_entry_str(entry_uuid))))

    def update_dlq_entry(
        self,
        entry_uuid: EntryRef,
        status: Optional[DlqStatus] = None,
        *,
        note: str,
        by: str,
    ) -> DlqEntry:
        """Records a step of the investigation: a ``note`` by ``by`` and, with ``status``, the
        entry's new status (``manually_resolved``, ``permanently_failed`` or ``cancelled``
        close it and record ``by`` as its resolver). Nothing happens to the task: use the
        operator actions for that. Returns the entry.

        Raises:
            InvalidState: re-opening an entry while its task has another open one.
            InvalidArgument: an unknown status.
            DlqEntryNotFound: no entry has this uuid.
        """
        if status is not None and not isinstance(status, str):
            raise TypeError(f"status must be a str or None, got {type(status).__name__} {status!r}")
        raw = self._native.update_dlq_entry(_entry_str(entry_uuid), status, _text("note", note), _text("by", by))
        return DlqEntry._from_json(json.loads(raw))

    def add_to_dlq(self, task_uuid: UuidLike, *, by: str, note: str) -> DlqEntry:
        """Puts a task in the DLQ by hand (reason ``manual``) with a first note; nothing happens
        to the task itself.

        Raises:
            InvalidState: the task already has an open entry.
            TaskNotFound: no such task.
        """
        raw = self._native.add_to_dlq(_uuid_str(task_uuid), _text("by", by), _text("note", note))
        return DlqEntry._from_json(json.loads(raw))

    def dlq_stats(self) -> DlqStats:
        """DLQ entries counted: all, open, by reason, by status."""
        return DlqStats._from_json(json.loads(self._native.dlq_stats()))

    def dlq_queue(self, limit: int = 50) -> List[QueuedDlqEntry]:
        """The investigation queue: open entries, most urgent first (see
        :class:`~tasker_core.recovery.QueuedDlqEntry` for the score), at most ``limit``."""
        return [QueuedDlqEntry._from_json(d) for d in json.loads(self._native.dlq_queue(_int("limit", limit, 1)))]

    def staleness_report(self, min_ratio: float = 0.0, limit: int = 100) -> List[TaskHealth]:
        """Unfinished tasks with their distance to the staleness threshold (``healthy`` under
        80 %, ``warning``, ``stale`` past it), most overdue first, at most ``limit``. Thresholds
        are per task state, with defaults, overridden by a template's ``lifecycle:`` block;
        ``min_ratio=0.8`` lists only the tasks worth a warning.

        Raises:
            InvalidArgument: ``min_ratio`` negative or not finite, ``limit < 1``.
        """
        if isinstance(min_ratio, bool) or not isinstance(min_ratio, (int, float)):
            raise TypeError(f"min_ratio must be a number, got {type(min_ratio).__name__} {min_ratio!r}")
        raw = self._native.staleness_report(float(min_ratio), _int("limit", limit, 1))
        return [TaskHealth._from_json(d) for d in json.loads(raw)]

    def list_workers(self) -> List[WorkerInfo]:
        """Worker processes seen within the last hour, live ones first: id, host, pid,
        language, queues, concurrency, steps in flight, heartbeats, and whether each is live."""
        return [WorkerInfo._from_json(d) for d in json.loads(self._native.list_workers())]

    # events ------------------------------------------------------------------------------

    def subscribe(
        self,
        group: str,
        patterns: Union[str, Sequence[str]],
        *,
        member_id: Optional[str] = None,
        from_start: bool = False,
        max_attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 30.0,
        lease: float = 15.0,
        poll_interval: float = 0.05,
        batch_size: int = 500,
    ) -> EventSubscription:
        """Joins the durable subscriber group ``group`` (creating it) as a new member that
        handles the events matching ``patterns``; see
        :class:`~tasker_core.events.EventSubscription`. A
        :class:`~tasker_core.events.SubscriberRunner` does the polling for a
        :class:`~tasker_core.events.Subscriber`.

        Args:
            member_id: this member's name in the group (default ``host:pid:n``).
            from_start: a group created by this call starts at the log's beginning, not its end.
            max_attempts: deliveries of one event before it goes to the group's dead letters.
            backoff, max_backoff: seconds before a failed event's next delivery, doubling.
            lease: seconds this member's hold on its partitions outlives its last renewal.
            poll_interval: seconds between looks for new events while idle.
            batch_size: events read at once per partition (1 to 10000).

        Raises:
            InvalidArgument: an empty group or pattern list, an option out of range.
        """
        _check_str("group", group)
        pattern_list = check_patterns(patterns)
        if member_id is not None and not isinstance(member_id, str):
            raise TypeError(f"member_id must be a str or None, got {type(member_id).__name__}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise TypeError(f"max_attempts must be an int, got {max_attempts!r}")
        if not 1 <= max_attempts <= 2**32 - 1:
            raise InvalidArgument(f"max_attempts must be at least 1, got {max_attempts}")
        durations = {}
        for name, value in (
            ("backoff", backoff),
            ("max_backoff", max_backoff),
            ("lease", lease),
            ("poll_interval", poll_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, got {value!r}")
            durations[name] = float(value)
        native = self._native.subscribe(
            group,
            pattern_list,
            member_id,
            bool(from_start),
            max_attempts,
            durations["backoff"],
            durations["max_backoff"],
            durations["lease"],
            durations["poll_interval"],
            _int("batch_size", batch_size, 1),
        )
        return EventSubscription(native)

    def subscribe_fast(self, patterns: Union[str, Sequence[str]]) -> FastSubscription:
        """Reads this process's fast events matching ``patterns``: the lifecycle events of the
        changes it commits and the ``delivery: fast`` domain events of the steps it completes
        (see :class:`~tasker_core.events.FastSubscription`)."""
        pattern_list = check_patterns(patterns)
        return FastSubscription(self._native.subscribe_fast(pattern_list), pattern_list)

    def event_groups(self) -> List[EventGroupStatus]:
        """Every subscriber group: its patterns, live members, lag (events not acknowledged
        yet), the oldest pending event's time and its dead letters."""
        return [EventGroupStatus._from_json(d) for d in json.loads(self._native.event_groups())]

    def event_dead_letters(self, group: Optional[str] = None, limit: int = 100) -> List[EventDeadLetter]:
        """Events subscribers gave up on after ``max_attempts``, newest first: ``group``'s,
        or every group's."""
        if group is not None and not isinstance(group, str):
            raise TypeError(f"group must be a str or None, got {type(group).__name__}")
        raw = self._native.event_dead_letters(group, _int("limit", limit, 1))
        return [EventDeadLetter._from_json(d) for d in json.loads(raw)]

    def delete_event_group(self, group: str) -> bool:
        """Deletes a subscriber group with its positions and members (its dead letters stay);
        whether it existed. Lifecycle events stop being written once no group is left."""
        _check_str("group", group)
        return self._native.delete_event_group(group)

    def sequence_events(self) -> int:
        """Stamps positions on the events committed so far (PostgreSQL; SQLite stamps them at
        commit and returns 0). Subscribers do it as they read; tools call it to see the log
        up to now. Returns how many were stamped."""
        return self._native.sequence_events()

    def close(self) -> None:
        """Closes the connection pool. Workers and subscriber runners using this client must be
        stopped first."""
        self._native.close()

    # asyncio twins -----------------------------------------------------------------------

    async def register_templates_async(self, path: Union[str, os.PathLike[str]]) -> List[RegisteredTemplate]:
        return await asyncio.to_thread(self.register_templates, path)

    async def list_templates_async(self) -> List[TemplateInfo]:
        return await asyncio.to_thread(self.list_templates)

    async def get_template_async(self, namespace: str, name: str, version: Optional[str] = None) -> TemplateInfo:
        return await asyncio.to_thread(self.get_template, namespace, name, version)

    async def create_task_async(
        self,
        namespace: str,
        name: str,
        version: Optional[str] = None,
        **kwargs: Any,
    ) -> Task:
        """:meth:`create_task` for asyncio code (same keyword arguments)."""
        return await asyncio.to_thread(lambda: self.create_task(namespace, name, version, **kwargs))

    async def get_task_async(self, task_uuid: UuidLike) -> Task:
        return await asyncio.to_thread(self.get_task, task_uuid)

    async def list_tasks_async(self, **kwargs: Any) -> List[Task]:
        return await asyncio.to_thread(lambda: self.list_tasks(**kwargs))

    async def cancel_task_async(self, task_uuid: UuidLike) -> Task:
        return await asyncio.to_thread(self.cancel_task, task_uuid)

    async def wait_for_task_async(self, task_uuid: UuidLike, timeout: float = 60.0) -> Task:
        return await asyncio.to_thread(self.wait_for_task, task_uuid, timeout)

    async def reset_step_async(self, task_uuid: UuidLike, step: StepRef, *, by: str, reason: str) -> StepDetail:
        return await asyncio.to_thread(lambda: self.reset_step(task_uuid, step, by=by, reason=reason))

    async def resolve_step_manually_async(
        self, task_uuid: UuidLike, step: StepRef, *, by: str, reason: str
    ) -> StepDetail:
        return await asyncio.to_thread(lambda: self.resolve_step_manually(task_uuid, step, by=by, reason=reason))

    async def complete_step_manually_async(
        self,
        task_uuid: UuidLike,
        step: StepRef,
        result: Any,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        by: str,
        reason: str,
    ) -> StepDetail:
        return await asyncio.to_thread(
            lambda: self.complete_step_manually(task_uuid, step, result, metadata, by=by, reason=reason)
        )

    async def cancel_step_async(self, task_uuid: UuidLike, step: StepRef, *, by: str, reason: str) -> StepDetail:
        return await asyncio.to_thread(lambda: self.cancel_step(task_uuid, step, by=by, reason=reason))

    async def retry_task_async(self, task_uuid: UuidLike, *, by: str, reason: str) -> Task:
        return await asyncio.to_thread(lambda: self.retry_task(task_uuid, by=by, reason=reason))

    async def resolve_task_async(self, task_uuid: UuidLike, *, by: str, reason: str) -> Task:
        return await asyncio.to_thread(lambda: self.resolve_task(task_uuid, by=by, reason=reason))

    async def get_step_async(self, task_uuid: UuidLike, step: StepRef) -> StepDetail:
        return await asyncio.to_thread(self.get_step, task_uuid, step)

    async def list_steps_async(self, task_uuid: UuidLike) -> List[StepDetail]:
        return await asyncio.to_thread(self.list_steps, task_uuid)

    async def list_dlq_async(
        self,
        status: Optional[DlqStatus] = None,
        reason: Optional[DlqReason] = None,
        task_uuid: Optional[UuidLike] = None,
        open_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> List[DlqEntry]:
        return await asyncio.to_thread(self.list_dlq, status, reason, task_uuid, open_only, limit, offset)

    async def get_dlq_entry_async(self, entry_uuid: EntryRef) -> DlqEntry:
        return await asyncio.to_thread(self.get_dlq_entry, entry_uuid)

    async def update_dlq_entry_async(
        self, entry_uuid: EntryRef, status: Optional[DlqStatus] = None, *, note: str, by: str
    ) -> DlqEntry:
        return await asyncio.to_thread(lambda: self.update_dlq_entry(entry_uuid, status, note=note, by=by))

    async def add_to_dlq_async(self, task_uuid: UuidLike, *, by: str, note: str) -> DlqEntry:
        return await asyncio.to_thread(lambda: self.add_to_dlq(task_uuid, by=by, note=note))

    async def dlq_stats_async(self) -> DlqStats:
        return await asyncio.to_thread(self.dlq_stats)

    async def dlq_queue_async(self, limit: int = 50) -> List[QueuedDlqEntry]:
        return await asyncio.to_thread(self.dlq_queue, limit)

    async def staleness_report_async(self, min_ratio: float = 0.0, limit: int = 100) -> List[TaskHealth]:
        return await asyncio.to_thread(self.staleness_report, min_ratio, limit)

    async def list_workers_async(self) -> List[WorkerInfo]:
        return await asyncio.to_thread(self.list_workers)

    async def subscribe_async(
        self, group: str, patterns: Union[str, Sequence[str]], **options: Any
    ) -> EventSubscription:
        """:meth:`subscribe` for asyncio code (same keyword arguments)."""
        return await asyncio.to_thread(lambda: self.subscribe(group, patterns, **options))

    async def event_groups_async(self) -> List[EventGroupStatus]:
        return await asyncio.to_thread(self.event_groups)

    async def event_dead_letters_async(self, group: Optional[str] = None, limit: int = 100) -> List[EventDeadLetter]:
        return await asyncio.to_thread(self.event_dead_letters, group, limit)

    async def delete_event_group_async(self, group: str) -> bool:
        return await asyncio.to_thread(self.delete_event_group, group)


def _uuid_str(value: UuidLike) -> str:
    if isinstance(value, Task):
        return value.task_uuid
    if isinstance(value, _uuid.UUID):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"task_uuid must be a str, uuid.UUID or Task, got {type(value).__name__}")


def _step_str(value: StepRef) -> str:
    if isinstance(value, Step):
        return value.step_uuid
    if isinstance(value, _uuid.UUID):
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise TypeError(f"step must be a step name, a uuid or a Step, got {type(value).__name__} {value!r}")


def _entry_str(value: EntryRef) -> str:
    if isinstance(value, DlqEntry):
        return value.entry_uuid
    if isinstance(value, _uuid.UUID):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"entry_uuid must be a str, uuid.UUID or DlqEntry, got {type(value).__name__}")


def _text(name: str, value: Any) -> str:
    """Who and why of an operator action: recorded as given (the engine cleans control
    characters), so only the type is checked."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    return value


def _json_text(name: str, value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidArgument(f"{name} is not JSON-serialisable: {e}") from e


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not minimum <= value <= _I64_MAX:
        raise InvalidArgument(f"{name} must be between {minimum} and {_I64_MAX}, got {value}")
    return value


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, got {value!r}")


def _opt_time(value: Optional[str]) -> Optional[datetime]:
    return _parse_time(value) if value else None
