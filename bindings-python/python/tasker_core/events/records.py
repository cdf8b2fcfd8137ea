"""The records of the event system: the catalog's entries, events as subscribers receive them,
deliveries, and the operators' view of subscriber groups and their dead letters."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Literal, Mapping, Optional

from .. import _native
from .._time import parse_time

__all__ = [
    "EventCategory",
    "DeliveryMode",
    "Event",
    "EventInfo",
    "Delivery",
    "EventGroupStatus",
    "EventDeadLetter",
    "catalog",
    "event_info",
    "envelope_schema",
    "pattern_matches",
]

EventCategory = Literal["task", "step", "operator", "dlq", "worker", "domain"]
"""What an event is about; ``domain`` for the events templates declare (``payment.charged``)."""

DeliveryMode = Literal["durable", "fast"]
"""``durable``: stored, delivered at least once to every subscriber group, in order per task.
``fast``: broadcast in the process that made the change, nothing stored."""


def _uuid(value: Optional[str]) -> Optional[uuid.UUID]:
    return uuid.UUID(value) if value else None


def _opt_time(value: Optional[str]) -> Optional[datetime]:
    return parse_time(value) if value else None


def _payload(value: Any) -> Dict[str, Any]:
    if isinstance(value, dict):
        return value
    # A domain event published without a schema by another language may carry any JSON value.
    return {} if value is None else {"value": value}


@dataclass(frozen=True)
class Event:
    """An event as subscribers receive it: an envelope around the payload the catalog (or the
    template, for a domain event) describes.

    ``event_id`` is a UUIDv7, unique and ordered by time: the key for idempotent consumers, as
    a durable event may be delivered more than once (after a crash, or a failed handler).
    """

    event_id: uuid.UUID
    name: str
    """``task.completed``, ``step.failed``, ``payment.charged``, …"""
    category: EventCategory
    occurred_at: datetime
    payload: Dict[str, Any]
    """The event's own fields (see :func:`event_info` for a system event's schema). A domain
    event's non-object payload is given as ``{"value": ...}``."""
    delivery: DeliveryMode = "durable"
    task_uuid: Optional[uuid.UUID] = None
    step_uuid: Optional[uuid.UUID] = None
    correlation_id: Optional[uuid.UUID] = None
    namespace: Optional[str] = None
    """The task's template: namespace, name and version."""
    task_name: Optional[str] = None
    task_version: Optional[str] = None
    position: Optional[int] = None
    """The event's place in the log (durable events only)."""
    attempt: int = 1
    """1 on the first delivery of a durable event, 2, 3 … after its handler failed."""

    @property
    def is_durable(self) -> bool:
        return self.delivery == "durable"

    def matches(self, pattern: str) -> bool:
        """Whether this event's name matches ``pattern`` (see :func:`pattern_matches`)."""
        return pattern_matches(pattern, self.name)

    def to_dict(self) -> Dict[str, Any]:
        """The event as JSON-ready values (uuids and the time as strings), as the engine
        writes it; log formatters and webhooks can serialise it as it is."""
        return {
            "event_id": str(self.event_id),
            "name": self.name,
            "category": self.category,
            "occurred_at": self.occurred_at.isoformat(),
            "task_uuid": None if self.task_uuid is None else str(self.task_uuid),
            "step_uuid": None if self.step_uuid is None else str(self.step_uuid),
            "correlation_id": None if self.correlation_id is None else str(self.correlation_id),
            "namespace": self.namespace,
            "task_name": self.task_name,
            "task_version": self.task_version,
            "payload": self.payload,
            "delivery": self.delivery,
            "position": self.position,
            "attempt": self.attempt,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], attempt: Optional[int] = None) -> Event:
        """An event from the engine's JSON (what :meth:`to_dict` gives back, too)."""
        return cls(
            event_id=uuid.UUID(d["event_id"]),
            name=d["name"],
            category=d.get("category") or "domain",
            occurred_at=parse_time(d["occurred_at"]),
            payload=_payload(d.get("payload")),
            delivery=d.get("delivery") or "durable",
            task_uuid=_uuid(d.get("task_uuid")),
            step_uuid=_uuid(d.get("step_uuid")),
            correlation_id=_uuid(d.get("correlation_id")),
            namespace=d.get("namespace"),
            task_name=d.get("task_name"),
            task_version=d.get("task_version"),
            position=d.get("position"),
            attempt=attempt if attempt is not None else int(d.get("attempt") or 1),
        )


@dataclass(frozen=True)
class EventInfo:
    """One entry of the catalog: a system event with its payload's JSON Schema and an example
    payload that satisfies it."""

    name: str
    category: EventCategory
    description: str
    payload_schema: Dict[str, Any]
    example: Dict[str, Any]

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> EventInfo:
        return cls(
            name=d["name"],
            category=d["category"],
            description=d["description"],
            payload_schema=d["payload_schema"],
            example=d["example"],
        )


@dataclass(frozen=True)
class Delivery:
    """An event handed to a member of a durable subscriber group: give it back with
    :meth:`~tasker_core.events.EventSubscription.ack` or
    :meth:`~tasker_core.events.EventSubscription.fail`."""

    delivery_id: int
    attempt: int
    event: Event


@dataclass(frozen=True)
class EventGroupStatus:
    """A subscriber group and how far behind it is."""

    group: str
    patterns: List[str]
    live_members: int
    """Members that heartbeated recently."""
    leased_partitions: int
    lag: int
    """Events in the log the group has not acknowledged yet."""
    oldest_pending_at: Optional[datetime]
    """When the oldest of those was written."""
    dead_letters: int
    created_at: datetime

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> EventGroupStatus:
        return cls(
            group=d["group"],
            patterns=list(d["patterns"]),
            live_members=d["live_members"],
            leased_partitions=d["leased_partitions"],
            lag=d["lag"],
            oldest_pending_at=_opt_time(d.get("oldest_pending_at")),
            dead_letters=d["dead_letters"],
            created_at=parse_time(d["created_at"]),
        )


@dataclass(frozen=True)
class EventDeadLetter:
    """An event a group's subscriber failed on ``attempts`` times: set aside so the group's
    other events go on."""

    id: int
    group: str
    event_id: uuid.UUID
    name: str
    task_uuid: Optional[uuid.UUID]
    event: Event
    """The whole event as it was delivered."""
    error: str
    """The last failure's message."""
    attempts: int
    dead_at: datetime

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> EventDeadLetter:
        return cls(
            id=d["id"],
            group=d["group"],
            event_id=uuid.UUID(d["event_id"]),
            name=d["name"],
            task_uuid=_uuid(d.get("task_uuid")),
            event=Event.from_dict(d["event"], attempt=d["attempts"]),
            error=d["error"],
            attempts=d["attempts"],
            dead_at=parse_time(d["dead_at"]),
        )


def catalog() -> List[EventInfo]:
    """Every system event the engine publishes (task and step lifecycle, operator actions, the
    DLQ, workers), each with its category, description, payload schema and an example."""
    return [EventInfo._from_json(d) for d in json.loads(_native.catalog())]


def event_info(name: str) -> Optional[EventInfo]:
    """The catalog entry of ``name``, or ``None`` for a name outside the catalog (a domain
    event's schema is in its template)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
    raw = _native.event_info(name)
    return None if raw is None else EventInfo._from_json(json.loads(raw))


def envelope_schema() -> Dict[str, Any]:
    """The JSON Schema of the envelope every event travels in (its ``payload`` is the event's)."""
    schema: Dict[str, Any] = json.loads(_native.envelope_schema())
    return schema


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether event ``name`` matches a subscription pattern: exactly, or with ``*`` standing
    for any run of characters (``step.*``, ``*.failed``, ``*``)."""
    if not isinstance(pattern, str) or not isinstance(name, str):
        raise TypeError("pattern and name must be str")
    return _native.pattern_matches(pattern, name)
