"""Recovering failed work: the records of the dead-letter queue (DLQ), the staleness report and
the worker registry, as :class:`~tasker_core.Client` returns them.

A task that gets stuck — a step failed for good, it made no progress for longer than its
template's ``lifecycle:`` allows, or its queue has no live worker — gets a :class:`DlqEntry`:
an investigation record with a snapshot of the task as it was, a status and notes. At most
one entry per task is open (``pending`` or ``investigating``); when an operator action lets
the task finish, the engine closes it (``manually_resolved``, credited to that operator)::

    for queued in client.dlq_queue(limit=10):          # most urgent first
        print(queued.score, queued.reason, queued.task_uuid)
    client.update_dlq_entry(entry, "investigating", note="looking at it", by="alice")

The step-level records (:class:`~tasker_core.StepDetail`) live with the other task records in
:mod:`tasker_core.client`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, FrozenSet, List, Literal, Mapping, Optional, cast, get_args

from ._time import parse_time

__all__ = [
    "DlqReason",
    "DlqStatus",
    "Health",
    "DLQ_REASONS",
    "DLQ_STATUSES",
    "OPEN_DLQ_STATUSES",
    "DlqNote",
    "DlqEntry",
    "QueuedDlqEntry",
    "DlqCount",
    "DlqStats",
    "TaskHealth",
    "WorkerInfo",
]

DlqReason = Literal["max_retries_exceeded", "permanent_failure", "staleness_timeout", "worker_unavailable", "manual"]
"""Why a task is in the DLQ: a step ran out of retries, failed with a permanent error, the
task made no progress in time, its queue had no live worker, or an operator put it there."""

DlqStatus = Literal["pending", "investigating", "manually_resolved", "permanently_failed", "cancelled"]
"""Where an investigation stands; ``pending`` and ``investigating`` are open."""

Health = Literal["healthy", "warning", "stale"]
"""A task's distance to its staleness threshold: under 80 %, 80 % or more, past it."""

DLQ_REASONS: FrozenSet[str] = frozenset(get_args(DlqReason))
DLQ_STATUSES: FrozenSet[str] = frozenset(get_args(DlqStatus))
OPEN_DLQ_STATUSES: FrozenSet[str] = frozenset({"pending", "investigating"})


def _opt_time(value: Optional[str]) -> Optional[datetime]:
    return parse_time(value) if value else None


@dataclass(frozen=True)
class DlqNote:
    """One note of an investigation: who wrote it, when, and the status it moved the entry to."""

    by: str
    text: str
    at: datetime
    status: Optional[DlqStatus] = None
    """The status the entry moved to with this note, or ``None`` if it stayed."""

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> DlqNote:
        return cls(by=d["by"], text=d["text"], at=parse_time(d["at"]), status=d.get("status"))


@dataclass(frozen=True)
class DlqEntry:
    """A task that needs a human.

    ``snapshot`` is the task as it was when it entered: ``{"task": {...state, context,
    counters...}, "template": {"namespace", "name", "version"}, "steps": [{"name", "state",
    "attempts", "max_attempts", "last_error", "created_by"}, ...]}``. The task itself may have
    moved on since (see :meth:`Client.get_task <tasker_core.Client.get_task>`).
    """

    entry_uuid: str
    task_uuid: str
    reason: DlqReason
    task_state: str
    """The task's state when it entered."""
    snapshot: Dict[str, Any]
    status: DlqStatus
    notes: List[DlqNote]
    """Oldest first: the first says who or what put the task here and why."""
    resolved_by: Optional[str]
    resolved_at: Optional[datetime]
    created_at: datetime
    updated_at: datetime
    task_priority: int
    """The task's priority now (part of the investigation queue's score)."""

    @property
    def uuid(self) -> str:
        return self.entry_uuid

    @property
    def is_open(self) -> bool:
        """Whether the investigation is still going on (``pending`` or ``investigating``)."""
        return self.status in OPEN_DLQ_STATUSES

    def snapshot_step(self, name: str) -> Dict[str, Any]:
        """The step called ``name`` as the snapshot recorded it."""
        steps: List[Dict[str, Any]] = self.snapshot.get("steps") or []
        for s in steps:
            if s.get("name") == name:
                return s
        raise KeyError(f"the snapshot of task {self.task_uuid} has no step '{name}'")

    @classmethod
    def _fields(cls, d: Mapping[str, Any]) -> Dict[str, Any]:
        return dict(
            entry_uuid=d["entry_uuid"],
            task_uuid=d["task_uuid"],
            reason=cast(DlqReason, d["reason"]),
            task_state=d["task_state"],
            snapshot=d.get("snapshot") or {},
            status=cast(DlqStatus, d["status"]),
            notes=[DlqNote._from_json(n) for n in d.get("notes") or ()],
            resolved_by=d.get("resolved_by"),
            resolved_at=_opt_time(d.get("resolved_at")),
            created_at=parse_time(d["created_at"]),
            updated_at=parse_time(d["updated_at"]),
            task_priority=d.get("task_priority", 0),
        )

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> DlqEntry:
        return cls(**cls._fields(d))


@dataclass(frozen=True)
class QueuedDlqEntry(DlqEntry):
    """An open entry in the investigation queue, with its priority ``score`` (highest first):
    the reason's weight (``permanent_failure`` 40, ``max_retries_exceeded`` 30,
    ``worker_unavailable`` 25, ``staleness_timeout`` 20, ``manual`` 10), plus a point per hour
    waited, plus the task's priority."""

    score: float = 0.0

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> QueuedDlqEntry:
        return cls(**cls._fields(d), score=float(d["score"]))


@dataclass(frozen=True)
class DlqCount:
    """How many entries have this reason and status."""

    reason: DlqReason
    status: DlqStatus
    count: int


@dataclass(frozen=True)
class DlqStats:
    """DLQ entries counted: all, open ones, by reason, by status, and by both (``counts``)."""

    total: int
    open: int
    by_reason: Dict[str, int]
    by_status: Dict[str, int]
    counts: List[DlqCount] = field(default_factory=list)

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> DlqStats:
        return cls(
            total=d["total"],
            open=d["open"],
            by_reason=dict(d.get("by_reason") or {}),
            by_status=dict(d.get("by_status") or {}),
            counts=[DlqCount(c["reason"], c["status"], c["count"]) for c in d.get("counts") or ()],
        )


@dataclass(frozen=True)
class TaskHealth:
    """An unfinished task in the staleness report. ``health`` compares the larger of
    ``idle_ms / threshold_ms`` (time without progress, against the threshold of its state) and
    ``age_ms / max_duration_ms`` (time since creation, against the task's limit) with 0.8 and
    1.0; a ``stale`` task is moved to ``error`` and the DLQ by the engine's detector."""

    task_uuid: str
    state: str
    health: Health
    idle_ms: int
    threshold_ms: int
    age_ms: int
    max_duration_ms: int

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> TaskHealth:
        return cls(
            task_uuid=d["task_uuid"],
            state=d["state"],
            health=cast(Health, d["health"]),
            idle_ms=d["idle_ms"],
            threshold_ms=d["threshold_ms"],
            age_ms=d["age_ms"],
            max_duration_ms=d["max_duration_ms"],
        )


@dataclass(frozen=True)
class WorkerInfo:
    """A worker process as it registered itself, and whether it is alive (heartbeating and not
    stopped). ``language`` is the language of its handlers (``"python"`` for a
    :class:`~tasker_core.Worker`)."""

    registration_uuid: str
    worker_id: str
    host: str
    pid: int
    language: str
    queues: List[str]
    concurrency: int
    in_flight: int
    """Steps it held at its last heartbeat."""
    started_at: datetime
    last_heartbeat_at: datetime
    stopped_at: Optional[datetime]
    live: bool

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> WorkerInfo:
        return cls(
            registration_uuid=d["registration_uuid"],
            worker_id=d["worker_id"],
            host=d["host"],
            pid=d["pid"],
            language=d["language"],
            queues=list(d.get("queues") or ()),
            concurrency=d["concurrency"],
            in_flight=d["in_flight"],
            started_at=parse_time(d["started_at"]),
            last_heartbeat_at=parse_time(d["last_heartbeat_at"]),
            stopped_at=_opt_time(d.get("stopped_at")),
            live=bool(d["live"]),
        )
