"""The core's log records, written to Python's :mod:`logging`.

The Rust engine logs with ``tracing`` (a step attempt that failed, one that timed out, a database
retry, the circuit breaker). :func:`tasker_core.connect` starts forwarding those records, once per
process, at the configured ``logging.level`` (``TASKER_LOG`` wins; see docs/configuration.md): a
daemon thread takes each record and logs it to the logger ``tasker_core.engine.<module>`` (for
example ``tasker_core.engine.worker``), so the application's handlers, formatters and levels
apply. Nothing is written to stderr behind the application's back.

Each record's fields are on the :class:`logging.LogRecord` as ``record.tasker`` (a dict) and, where
the name is free, as attributes of their own: a record about a step has ``task_uuid``,
``step_uuid``, ``step_name``, ``attempt`` and ``correlation_id``, which a JSON formatter such as
python-json-logger writes out.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Dict, List, Optional, Tuple

from . import _native
from .errors import TaskerError

_LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}
# Attribute names a LogRecord already has: a field of that name is only in ``record.tasker``.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "tasker"}
_POLL_MS = 200

_lock = threading.Lock()
_started_in: Optional[int] = None  # the pid that started forwarding (a fork starts its own)


def start() -> None:
    """Starts forwarding, once per process (again in a forked child). Idempotent, thread-safe."""
    global _started_in
    with _lock:
        if _started_in == os.getpid():
            return
        # Tried once per process, like the other packages: a failure is said once, not at every
        # connect (each retry would read the configuration again).
        _started_in = os.getpid()
        try:
            _native.forward_logs()
        except TaskerError as e:
            # A TASKER_LOG that is not a filter must not stop the client from connecting.
            logging.getLogger("tasker_core").warning("the engine's log records are not forwarded: %s", e)
            return
        threading.Thread(target=_run, name="tasker-core-logs", daemon=True).start()


def _run() -> None:
    while True:
        record = _native.next_log(_POLL_MS)
        if record is not None:
            _emit(record)


def _flush() -> None:
    """Logs what is still waiting (at interpreter exit)."""
    for record in _native.drain_logs():
        _emit(record)


def _emit(record: Tuple[str, str, str, List[Tuple[str, str]], float]) -> None:
    level_name, target, message, fields, created = record
    level = _LEVELS.get(level_name, logging.INFO)
    logger = logging.getLogger(_logger_name(target))
    if not logger.isEnabledFor(level):
        return
    values: Dict[str, str] = dict(fields)
    extra: Dict[str, object] = {k: v for k, v in values.items() if k not in _RESERVED}
    extra["tasker"] = values
    try:
        log_record = logger.makeRecord(logger.name, level, target, 0, message, (), None, extra=extra)
        log_record.created = created
        log_record.msecs = (created - int(created)) * 1000
        logger.handle(log_record)
    except Exception:  # noqa: BLE001 - a broken handler must not stop the forwarding thread
        pass


def _logger_name(target: str) -> str:
    """``tasker_core::worker`` → ``tasker_core.engine.worker``."""
    parts = target.split("::")
    rest = parts[1:] if parts and parts[0] == "tasker_core" else parts
    return ".".join(["tasker_core", "engine", *rest])


atexit.register(_flush)
