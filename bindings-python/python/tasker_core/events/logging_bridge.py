"""The logging bridge: Tasker's events as log records, through the standard library's
:mod:`logging` and, when it is installed and configured, through structlog.

::

    import logging
    from tasker_core.events import LoggingSubscriber, SubscriberRunner

    logging.basicConfig(level=logging.INFO)
    with SubscriberRunner(client, LoggingSubscriber(["task.*", "payment.*"])):
        ...
    # INFO tasker.events: task.completed orders/process_order@1.0.0 task=0190c7... (to complete)

Each record is on the logger ``tasker.events`` and carries the event's fields, JSON-ready, as
``record.tasker_event`` (a JSON log formatter picks them up as they are). With the FastAPI
integration::

    app = FastAPI(lifespan=tasker_lifespan(queues=["orders"], subscribers=[LoggingSubscriber()]))
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from .records import DeliveryMode, Event, pattern_matches
from .subscriber import Subscriber
from .subscription import check_patterns

__all__ = ["LoggingSubscriber", "DEFAULT_LEVELS"]

DEFAULT_LEVELS: Mapping[str, int] = {
    "task.failed": logging.WARNING,
    "step.failed": logging.WARNING,
    "step.timed_out": logging.WARNING,
    "dlq.*": logging.WARNING,
}
"""Events logged above ``level`` by default: failures and the dead-letter queue's."""


def _structlog() -> Any:
    try:
        import structlog
    except ImportError:
        return None
    return structlog


class LoggingSubscriber(Subscriber):
    """Logs every event it gets: one record per event on ``logger`` (default
    ``tasker.events``) with ``extra={"tasker_event": event.to_dict()}``, and the same fields
    through structlog when it is installed and configured.

    Args:
        patterns: the events to log (default every one, ``["*"]``).
        logger: a logger or a logger name.
        level: the level of most events (default INFO).
        levels: ``{pattern: level}`` for some events, checked in order before ``level``
            (default :data:`DEFAULT_LEVELS`: failures and DLQ events at WARNING).
        structlog: ``None`` (default): also log through structlog when it is installed and
            ``structlog.configure`` was called; ``True``: whenever it is installed; ``False``:
            never (use it when structlog forwards to the standard library, to get one line per
            event).
        group, delivery: as for any :class:`Subscriber`. The default delivery is ``fast``:
            this process's events, nothing stored, so logging costs the engine nothing; with
            ``delivery="durable"`` (group ``tasker_logging`` by default) every event of every
            process is logged once per group, at least once, and the engine writes lifecycle
            events while the group exists.
    """

    group = "tasker_logging"
    delivery: DeliveryMode = "fast"

    def __init__(
        self,
        patterns: Optional[Sequence[str]] = None,
        *,
        logger: Union[str, logging.Logger] = "tasker.events",
        level: int = logging.INFO,
        levels: Optional[Mapping[str, int]] = None,
        structlog: Optional[bool] = None,
        group: Optional[str] = None,
        delivery: Optional[DeliveryMode] = None,
    ) -> None:
        self.subscribe_to = check_patterns(patterns) if patterns is not None else ["*"]
        if group is not None:
            self.group = group
        if delivery is not None:
            self.delivery = delivery
        self.logger = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
        self.level = level
        self.levels = dict(DEFAULT_LEVELS if levels is None else levels)
        module = _structlog()
        if structlog and module is None:
            raise ImportError("LoggingSubscriber(structlog=True) needs structlog installed (pip install structlog)")
        self._structlog_module = module
        self._structlog_wanted = structlog

    def level_of(self, event: Event) -> int:
        """The level ``event`` is logged at."""
        for pattern, level in self.levels.items():
            if pattern_matches(pattern, event.name):
                return level
        return self.level

    def fields(self, event: Event) -> Dict[str, Any]:
        """The structured fields of ``event``'s record (override to add or drop some)."""
        return event.to_dict()

    def message(self, event: Event) -> str:
        """The record's message: the event's name, the task's template and uuid, the step and
        the state it moved to."""
        parts = [event.name]
        if event.namespace and event.task_name:
            parts.append(f"{event.namespace}/{event.task_name}@{event.task_version or '?'}")
        if event.task_uuid is not None:
            parts.append(f"task={event.task_uuid}")
        step = event.payload.get("step_name")
        if isinstance(step, str):
            parts.append(f"step={step}")
        to_state = event.payload.get("to_state")
        if isinstance(to_state, str):
            parts.append(f"(to {to_state})")
        return " ".join(parts)

    def handle(self, event: Event) -> None:
        level = self.level_of(event)
        fields = self.fields(event)
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", self.message(event), extra={"tasker_event": fields})
        module = self._structlog_module
        wanted = self._structlog_wanted
        if module is not None and (wanted or (wanted is None and module.is_configured())):
            module.get_logger(self.logger.name).log(level, "tasker.event", tasker_event=event.name, **_flat(fields))


def _flat(fields: Mapping[str, Any]) -> Dict[str, Any]:
    # structlog's own keys ("event" is the message) must not be overwritten by an event's.
    return {(f"tasker_{k}" if k in ("event", "level", "timestamp", "logger") else k): v for k, v in fields.items()}
