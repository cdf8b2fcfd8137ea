"""Exceptions raised by tasker_core.

Every exception derives from :class:`TaskerError`, whose ``code`` is a stable,
machine-readable string (the engine's error code). Errors coming from the engine are
created by the native extension, which looks these classes up by name, so they are
ordinary Python classes: catch them, subclass them, pickle them.

Two exceptions are meant to be *raised by step handlers*:

* :class:`PermanentError` fails the step at once (no retry);
* :class:`RetryableError` fails the attempt and lets the engine retry, optionally after
  ``retry_after`` seconds instead of the template's backoff.

Any other exception raised by a handler is a retryable failure carrying the exception's
type name, message and traceback.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

__all__ = [
    "TaskerError",
    "TemplateError",
    "TemplateProblem",
    "TemplateNotFound",
    "TemplateConflict",
    "ConfigurationError",
    "ConfigProblem",
    "ValidationError",
    "TaskNotFound",
    "StepNotFound",
    "InvalidState",
    "DlqEntryNotFound",
    "IllegalTransition",
    "InvalidArgument",
    "DatabaseError",
    "DatabaseConnectionError",
    "InvalidDatabaseUrl",
    "WaitTimeout",
    "WorkerShutDown",
    "WorkerFailed",
    "UnknownEvent",
    "Fenced",
    "Unavailable",
    "Backpressure",
    "StepCancelled",
    "HandlerNotFound",
    "PermanentError",
    "RetryableError",
]


class TaskerError(Exception):
    """Root of every tasker_core exception.

    Attributes:
        code: stable machine-readable error code, e.g. ``"template_invalid"``.
        message: the human-readable message (also ``str(error)``).
    """

    default_code = "tasker_error"

    def __init__(self, message: str = "", *, code: Optional[str] = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self._details = details
        for key, value in details.items():
            setattr(self, key, value)

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.message, self.code, self._details))


def _rebuild(cls: type, message: str, code: str, details: Dict[str, Any]) -> TaskerError:
    return cls(message, code=code, **details)


class TemplateProblem:
    """One problem found in a template: where it is and what is wrong."""

    __slots__ = ("file", "template", "step", "field", "message")

    def __init__(
        self,
        message: str,
        file: Optional[str] = None,
        template: Optional[str] = None,
        step: Optional[str] = None,
        field: Optional[str] = None,
    ) -> None:
        self.message = message
        self.file = file
        self.template = template
        self.step = step
        self.field = field

    def __repr__(self) -> str:
        parts = [f"{k}={getattr(self, k)!r}" for k in ("file", "template", "step", "field") if getattr(self, k)]
        parts.append(f"message={self.message!r}")
        return f"TemplateProblem({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TemplateProblem) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)


class TemplateError(TaskerError, ValueError):
    """A template could not be read, parsed or validated.

    Attributes:
        problems: one :class:`TemplateProblem` per problem found (file, step, field, message).
    """

    default_code = "template_invalid"
    problems: List[TemplateProblem]

    def __init__(self, message: str = "", *, code: Optional[str] = None, problems: Any = (), **details: Any) -> None:
        items = [p if isinstance(p, TemplateProblem) else TemplateProblem(**p) for p in problems]
        super().__init__(message, code=code, problems=items, **details)


class ConfigProblem:
    """One problem with the configuration: the file or environment variable at fault
    (``source``), the key (``section.key``, the section, or ``-``) and what is wrong."""

    __slots__ = ("source", "key", "message")

    def __init__(self, message: str, source: str = "", key: str = "") -> None:
        self.message = message
        self.source = source
        self.key = key

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.message}"

    def __repr__(self) -> str:
        return f"ConfigProblem(source={self.source!r}, key={self.key!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigProblem) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)


class ConfigurationError(TaskerError, ValueError):
    """The configuration (``TASKER_CONFIG_ROOT`` or ``./config/tasker`` files, or
    ``TASKER_<SECTION>__<KEY>`` variables) is invalid: an unknown file, section or key, a
    wrong type, a value out of range, a missing ``${VAR}``. Raised by :func:`~tasker_core.connect`,
    :class:`~tasker_core.Worker` and :func:`~tasker_core.config`.

    Attributes:
        problems: one :class:`ConfigProblem` per problem (source, key, message); the message
            lists them all.
    """

    default_code = "config_invalid"
    problems: List[ConfigProblem]

    def __init__(self, message: str = "", *, code: Optional[str] = None, problems: Any = (), **details: Any) -> None:
        items = [p if isinstance(p, ConfigProblem) else ConfigProblem(**p) for p in problems]
        super().__init__(message, code=code, problems=items, **details)


class TemplateNotFound(TaskerError, LookupError):
    """No registered template matches ``(namespace, name, version)``."""

    default_code = "template_not_found"
    namespace: str
    name: str
    version: Optional[str]


class TemplateConflict(TaskerError, ValueError):
    """The same template version is already registered with different content."""

    default_code = "template_conflict"


class ValidationError(TaskerError, ValueError):
    """The task context does not satisfy the template's ``input_schema``.

    Attributes:
        path: JSON pointer of the failing value inside the context (``""`` for the whole
            context), e.g. ``"/customer/email"``.
        detail: what is wrong with it.
    """

    default_code = "validation_failed"
    path: str
    detail: str


class TaskNotFound(TaskerError, LookupError):
    """No task has this uuid."""

    default_code = "task_not_found"
    task_uuid: str


class StepNotFound(TaskerError, LookupError):
    """The task has no step of that name (or uuid).

    Attributes:
        task_uuid: the task.
        step: the name or uuid that was asked for.
    """

    default_code = "step_not_found"
    task_uuid: str
    step: str


class InvalidState(TaskerError):
    """An operator action that the step's or task's current state does not allow, e.g.
    resetting a step that completed. The message names the current state and the states the
    action accepts ("step 'charge' is complete; only error, waiting_for_retry, enqueued steps
    can be reset"), and nothing was changed. Also raised when a DLQ entry cannot be added or
    re-opened because the task already has an open one."""

    default_code = "invalid_state"


class DlqEntryNotFound(TaskerError, LookupError):
    """No dead-letter queue entry has this uuid."""

    default_code = "dlq_entry_not_found"
    entry_uuid: str


class IllegalTransition(TaskerError):
    """The requested change is not allowed from the current state (e.g. cancelling a finished task)."""

    default_code = "illegal_transition"


class InvalidArgument(TaskerError, ValueError):
    """An argument was rejected; the message names it and the value at fault."""

    default_code = "invalid_argument"


class DatabaseError(TaskerError):
    """The database failed (query, migration, queue or corrupt data)."""

    default_code = "database_error"


class DatabaseConnectionError(DatabaseError):
    """The database could not be reached. The message names the host or file, never credentials."""

    default_code = "database_unreachable"


class InvalidDatabaseUrl(DatabaseError, ValueError):
    """The database URL is malformed or names an unsupported scheme."""

    default_code = "database_url_invalid"


class WaitTimeout(TaskerError, TimeoutError):
    """A task did not finish within the time given to ``wait``."""

    default_code = "timeout"
    timeout: float


class WorkerShutDown(TaskerError):
    """The worker is shut down."""

    default_code = "shut_down"


class WorkerFailed(TaskerError):
    """A background task of the worker died; it claims nothing more (see the message).

    The worker's threads stop polling when they see it; :meth:`~tasker_core.Worker.run`
    stops the worker and raises it, and :attr:`~tasker_core.Worker.failure` holds it. Steps
    still in flight come back to other workers through their leases. Start a new worker (or
    let the process exit and be restarted)."""

    default_code = "worker_failed"


class Unavailable(TaskerError):
    """The database is unreachable and the circuit breaker around it is open: the call was
    refused at once instead of waiting on it. Nothing was written; retry after
    :attr:`retry_after` seconds.

    Attributes:
        resource: what is unavailable (``"database"``).
        retry_after: seconds until the breaker lets the next probe through.
    """

    default_code = "unavailable"
    resource: str
    retry_after: float


class Backpressure(TaskerError):
    """Creating the task would put more waiting steps on a queue than
    ``backpressure.max_queue_depth`` allows: workers are not keeping up. Nothing was written;
    retry after :attr:`retry_after` seconds, or add workers.

    Attributes:
        queue: the queue at its limit.
        depth: steps waiting on it.
        limit: the configured limit.
        retry_after: seconds until the depths are read again.
    """

    default_code = "backpressure"
    queue: str
    depth: int
    limit: int
    retry_after: float


class StepCancelled(TaskerError):
    """Raised by :meth:`~tasker_core.StepContext.raise_if_cancelled` once the engine cancelled
    the attempt (timeout, given up, shutdown deadline). The attempt's outcome is ignored by
    then; raising just ends the handler early."""

    default_code = "step_cancelled"


class UnknownEvent(TaskerError):
    """A completion referred to a step event the worker never handed out, or already completed."""

    default_code = "unknown_event"


class Fenced(TaskerError):
    """The attempt no longer holds its step (it timed out, was re-claimed by another worker or
    cancelled), so what it reports is refused: raised by ``context.batch.checkpoint(...)``.
    The handler should stop; another attempt owns the step and resumes from the last
    checkpoint that this one recorded while it still held it."""

    default_code = "fenced"


class HandlerNotFound(TaskerError, LookupError):
    """No handler matches a step's ``handler.callable``.

    A worker that meets such a step fails it permanently with error type
    ``handler_not_found``; this exception is what resolution raises.
    """

    default_code = "handler_not_found"
    callable: str


class PermanentError(TaskerError):
    """Raise from a handler to fail the step without retrying.

    Args:
        message: why the step failed.
        error_type: machine-readable kind (defaults to the exception's class name).
        metadata: JSON-serialisable details stored with the error.
    """

    default_code = "permanent_error"

    def __init__(
        self,
        message: str = "",
        *,
        error_type: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        code: Optional[str] = None,
        **details: Any,
    ) -> None:
        super().__init__(message, code=code, error_type=error_type, metadata=metadata, **details)


class RetryableError(TaskerError):
    """Raise from a handler to fail this attempt and have the engine retry the step.

    Args:
        message: why the attempt failed.
        retry_after: seconds to wait before the next attempt (overrides the template's
            backoff); ``None`` uses the backoff.
        error_type: machine-readable kind (defaults to the exception's class name).
        metadata: JSON-serialisable details stored with the error.
    """

    default_code = "retryable_error"

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: Optional[float] = None,
        error_type: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        code: Optional[str] = None,
        **details: Any,
    ) -> None:
        if retry_after is not None:
            _check_retry_after(retry_after)
        super().__init__(
            message, code=code, retry_after=retry_after, error_type=error_type, metadata=metadata, **details
        )


def _check_retry_after(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"retry_after must be a number of seconds, got {type(value).__name__} {value!r}")
    if not (value >= 0) or value == float("inf"):
        raise ValueError(f"retry_after must be a finite, non-negative number of seconds, got {value!r}")
    return float(value)
