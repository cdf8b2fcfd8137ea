"""Tasker: workflow orchestration with step handlers written as Python classes.

The engine (persistence, queueing, retries, concurrency) is Tasker's Rust core; this
package connects to it, registers templates, creates and follows tasks, and runs Python
step handlers in a :class:`Worker`.

::

    import tasker_core
    from tasker_core import StepHandler, StepContext

    class ValidateOrder(StepHandler):
        def call(self, context: StepContext):
            return {"valid": context.input["order_id"] > 0}

    client = tasker_core.connect()
    client.register_templates("templates/")
    with tasker_core.Worker(client, queues=["orders"], handlers=[ValidateOrder]):
        task = client.create_task("orders", "process_order", context={"order_id": 7})
        print(task.wait(timeout=30).state)
"""

from . import errors, events
from ._native import __version__
from .batch import BatchContext, BatchCursor, Checkpoint, StepBatch, batch_cursors
from .client import (
    TERMINAL_STATES,
    Client,
    RegisteredTemplate,
    Step,
    StepDetail,
    Task,
    TemplateInfo,
    Transition,
    connect,
    connect_async,
)
from .configuration import Configuration, ConfigValue, config
from .errors import (
    ConfigurationError,
    DlqEntryNotFound,
    Fenced,
    HandlerNotFound,
    InvalidState,
    PermanentError,
    RetryableError,
    StepNotFound,
    TaskerError,
    TaskNotFound,
    TemplateError,
    TemplateNotFound,
    ValidationError,
    WaitTimeout,
)
from .handler import HandlerRegistry, StepContext, StepHandler, StepResult, step_handler
from .recovery import DlqEntry, DlqNote, DlqStats, QueuedDlqEntry, TaskHealth, WorkerInfo
from .worker import ShutdownReport, Worker


def resolve_database_url(database_url: "str | None" = None) -> str:
    """The database :func:`connect` uses for ``database_url``: it, else
    ``TASKER_DATABASE_URL``, else ``DATABASE_URL``, else the configuration's ``database.url``,
    else ``sqlite://./tasker.db``. Raises :class:`ConfigurationError` when the configuration
    is invalid."""
    from . import _native

    return _native.NativeClient.resolve_database_url(database_url)


__all__ = [
    "__version__",
    "connect",
    "connect_async",
    "resolve_database_url",
    "config",
    "Configuration",
    "ConfigValue",
    "Client",
    "Task",
    "Step",
    "StepDetail",
    "Transition",
    "RegisteredTemplate",
    "TemplateInfo",
    "TERMINAL_STATES",
    "Worker",
    "ShutdownReport",
    "StepHandler",
    "StepContext",
    "StepResult",
    "HandlerRegistry",
    "step_handler",
    "BatchCursor",
    "BatchContext",
    "StepBatch",
    "Checkpoint",
    "batch_cursors",
    "DlqEntry",
    "DlqNote",
    "QueuedDlqEntry",
    "DlqStats",
    "TaskHealth",
    "WorkerInfo",
    "errors",
    "events",
    "TaskerError",
    "TemplateError",
    "ConfigurationError",
    "TemplateNotFound",
    "ValidationError",
    "TaskNotFound",
    "StepNotFound",
    "InvalidState",
    "DlqEntryNotFound",
    "WaitTimeout",
    "HandlerNotFound",
    "PermanentError",
    "RetryableError",
    "Fenced",
]
