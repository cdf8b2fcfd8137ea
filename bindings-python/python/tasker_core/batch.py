"""Batches: the cursors a batchable step hands out, the slice a batch worker sees, and the
checkpoints it records.

A ``batchable`` step splits its work into cursors (:func:`batch_cursors` or its own) and
returns :meth:`StepResult.batches <tasker_core.StepResult.batches>`; the engine creates one
instance of the ``batch_worker`` step per cursor (``process_batch_001``, ``_002``, …). Each
instance's handler finds its cursor in ``context.batch`` (a :class:`BatchContext`), records
progress with ``context.batch.checkpoint(...)``, and on a retry finds the last checkpoint of
the earlier attempts in ``context.checkpoint``::

    def call(self, context):
        batch = context.batch
        done = context.checkpoint.items_done if context.checkpoint else 0
        for i in range(batch.resume_cursor, batch.end_cursor):
            process(i)
            done += 1
            if done % batch.config.get("checkpoint_interval", 100) == 0:
                batch.checkpoint(i + 1, items_done=done)
        return {"processed": done}
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Dict, List, Mapping, Optional

from ._time import parse_time
from .errors import InvalidArgument

__all__ = ["BatchCursor", "StepBatch", "BatchContext", "Checkpoint", "batch_cursors"]

# A batch id is at least this many digits ("001"), the width of the worker instances' suffix.
_ID_DIGITS = 3

CheckpointSink = Callable[[str], None]
"""Receives a checkpoint as the engine's JSON text; the worker's persists it."""


@dataclass(frozen=True)
class BatchCursor:
    """One batch of a ``create_batches`` outcome: the items one worker instance processes.

    Cursors are any JSON value: integer offsets usually (start inclusive, end exclusive), or
    keys, dates or page tokens that the batchable and worker handlers agree on.
    """

    batch_id: str
    """``"001"``, ``"002"``, …: the suffix of the worker instance's name."""
    start_cursor: Any
    end_cursor: Any
    batch_size: int
    """How many items the batch holds."""

    def to_json(self) -> Dict[str, Any]:
        """The cursor config of the wire format."""
        return {
            "batch_id": self.batch_id,
            "start_cursor": self.start_cursor,
            "end_cursor": self.end_cursor,
            "batch_size": self.batch_size,
        }

    @classmethod
    def _coerce(cls, value: Any, index: int) -> BatchCursor:
        """A user's cursor (a :class:`BatchCursor` or a mapping of its fields), checked."""
        if isinstance(value, BatchCursor):
            return BatchCursor(value.batch_id, value.start_cursor, value.end_cursor, value.batch_size)
        if not isinstance(value, Mapping):
            raise TypeError(f"cursors[{index}] must be a BatchCursor or a mapping, got {type(value).__name__}")
        missing = [k for k in ("batch_id", "start_cursor", "end_cursor", "batch_size") if k not in value]
        if missing:
            raise ValueError(f"cursors[{index}] lacks {', '.join(missing)}: {dict(value)!r}")
        batch_id, size = value["batch_id"], value["batch_size"]
        if not isinstance(batch_id, str) or not batch_id:
            raise TypeError(f"cursors[{index}].batch_id must be a non-empty str, got {batch_id!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"cursors[{index}].batch_size must be a non-negative int, got {size!r}")
        return cls(batch_id, value["start_cursor"], value["end_cursor"], size)


@dataclass(frozen=True)
class StepBatch(BatchCursor):
    """The cursor of a batch worker instance, as :meth:`Client.get_task
    <tasker_core.Client.get_task>` shows it on the step."""

    is_no_op: bool = False
    """``True`` for the one placeholder instance that ``no_batches`` creates (batch id
    ``"000"``, cursor 0..0): there is nothing to process, and its handler should return at
    once."""

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> StepBatch:
        return cls(
            batch_id=d["batch_id"],
            start_cursor=d.get("start_cursor"),
            end_cursor=d.get("end_cursor"),
            batch_size=d.get("batch_size", 0),
            is_no_op=bool(d.get("is_no_op", False)),
        )


@dataclass(frozen=True)
class Checkpoint:
    """Progress a batch worker recorded: where to resume and what it had so far."""

    cursor: Any
    """Where to resume: by convention the first item not yet done."""
    items_done: int = 0
    """Items of the batch done when the checkpoint was recorded."""
    accumulated: Any = None
    """Whatever the worker carries between checkpoints (a running total, …), or ``None``."""
    attempt: int = 1
    """The attempt that recorded it."""
    recorded_at: Optional[datetime] = None

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> Checkpoint:
        recorded_at = d.get("recorded_at")
        return cls(
            cursor=d.get("cursor"),
            items_done=d.get("items_done", 0),
            accumulated=d.get("accumulated"),
            attempt=d.get("attempt", 1),
            recorded_at=parse_time(recorded_at) if recorded_at else None,
        )


@dataclass(frozen=True)
class BatchContext(StepBatch):
    """``context.batch`` of a batch worker instance: its cursor, the template step's
    ``batch_config``, and :meth:`checkpoint` to record progress."""

    config: Dict[str, Any] = field(default_factory=dict)
    """The worker step's ``batch_config`` from the template (``{}`` when it has none),
    e.g. ``{"checkpoint_interval": 100}``."""
    _last_checkpoint: Optional[Checkpoint] = field(default=None, repr=False, compare=False)
    _sink: Optional[CheckpointSink] = field(default=None, repr=False, compare=False)

    @property
    def resume_cursor(self) -> Any:
        """Where this attempt starts: the cursor of the last checkpoint an earlier attempt
        recorded (``context.checkpoint``), else :attr:`start_cursor`."""
        last = self._last_checkpoint
        return last.cursor if last is not None else self.start_cursor

    def checkpoint(self, cursor: Any, items_done: int = 0, accumulated: Any = None) -> None:
        """Records progress, persisted before this returns: if the attempt then fails, times
        out or its worker dies, the next attempt gets it as ``context.checkpoint``.

        Args:
            cursor: where to resume (any JSON value except ``None``), usually the first item
                not yet done.
            items_done: items of this batch done so far.
            accumulated: JSON to carry to the next attempt (a running total, …).

        Raises:
            InvalidArgument: a value is missing, negative or not JSON-serialisable.
            Fenced: the attempt no longer holds the step (it timed out, was re-claimed or
                cancelled): stop working, the engine ignores this attempt from now on.
            UnknownEvent: the attempt already finished (a checkpoint after the handler
                returned).

        Blocks on the database, without the GIL; from ``async def`` handlers use
        :meth:`checkpoint_async`.
        """
        text = _encode_checkpoint(cursor, items_done, accumulated)
        sink = self._sink
        if sink is None:
            raise RuntimeError(
                "this batch context is not attached to a worker; build it with "
                "tasker_core.testing.build_batch_worker_context to record checkpoints in tests"
            )
        sink(text)

    async def checkpoint_async(self, cursor: Any, items_done: int = 0, accumulated: Any = None) -> None:
        """:meth:`checkpoint` for ``async def`` handlers (runs it in a thread)."""
        await asyncio.to_thread(self.checkpoint, cursor, items_done, accumulated)

    @classmethod
    def _from_json(
        cls,
        d: Mapping[str, Any],
        last_checkpoint: Optional[Checkpoint] = None,
        sink: Optional[CheckpointSink] = None,
    ) -> BatchContext:
        config = d.get("batch_config")
        return cls(
            batch_id=d["batch_id"],
            start_cursor=d.get("start_cursor"),
            end_cursor=d.get("end_cursor"),
            batch_size=d.get("batch_size", 0),
            is_no_op=bool(d.get("is_no_op", False)),
            config=config if config is not None else {},
            _last_checkpoint=last_checkpoint,
            _sink=sink,
        )


def _encode_checkpoint(cursor: Any, items_done: Any, accumulated: Any) -> str:
    """The checkpoint document the engine stores, checked here so that a mistake is reported
    where it was made, the same way in a worker and in a test."""
    if cursor is None:
        raise InvalidArgument("a checkpoint needs a cursor (where to resume), got None")
    if isinstance(items_done, bool) or not isinstance(items_done, int) or items_done < 0:
        raise InvalidArgument(f"items_done must be a non-negative int, got {items_done!r}")
    doc: Dict[str, Any] = {"cursor": cursor, "items_done": items_done}
    if accumulated is not None:
        doc["accumulated"] = accumulated
    try:
        return json.dumps(doc, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidArgument(f"the checkpoint's cursor or accumulated value is not JSON-serialisable: {e}") from e


def batch_cursors(total: int, batch_size: int) -> List[BatchCursor]:
    """Splits ``total`` items into batches of ``batch_size`` (the last one smaller).

    Batch ids are ``"001"``, ``"002"``, … (more digits past 999 batches); batch ``i`` covers
    items ``i * batch_size`` (inclusive) to ``min((i + 1) * batch_size, total)`` (exclusive).
    ``total == 0`` gives no cursors.

    >>> [(c.batch_id, c.start_cursor, c.end_cursor) for c in batch_cursors(2500, 1000)]
    [('001', 0, 1000), ('002', 1000, 2000), ('003', 2000, 2500)]

    Raises:
        TypeError: ``total`` or ``batch_size`` is not an int.
        ValueError: ``total`` is negative or ``batch_size`` is not positive.
    """
    for name, value in (("total", total), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if total < 0:
        raise ValueError(f"total must be a non-negative number of items, got {total}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of items, got {batch_size}")
    count = -(-total // batch_size)
    digits = max(_ID_DIGITS, len(str(count)))
    cursors = []
    for i in range(count):
        start = i * batch_size
        end = min(start + batch_size, total)
        cursors.append(BatchCursor(str(i + 1).zfill(digits), start, end, end - start))
    return cursors
