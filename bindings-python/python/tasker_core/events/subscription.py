"""Reading events: a member of a durable subscriber group (:class:`EventSubscription`) and a
reader of the in-process broadcast (:class:`FastSubscription`). Both are pull-based;
:class:`~tasker_core.events.SubscriberRunner` drives them for :class:`Subscriber` classes.

::

    with client.subscribe("billing", ["payment.*"]) as subscription:
        while (delivery := subscription.poll(timeout=5)) is not None:
            try:
                charge_ledger(delivery.event.payload)
            except Exception as e:
                subscription.fail(delivery, e)     # retried with backoff, then dead-lettered
            else:
                subscription.ack(delivery)

    for event in client.subscribe_fast(["task.*"]):   # blocks; stop with .close()
        metrics.count(event.name)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any, AsyncIterator, Iterator, List, Optional, Sequence, Union

from .. import _native
from ..errors import InvalidArgument, InvalidState
from .records import Delivery, Event

__all__ = ["EventSubscription", "FastSubscription", "check_patterns"]

# Waits are sliced so close() and Ctrl-C are noticed quickly.
_SLICE = 0.2


def check_patterns(patterns: Union[str, Sequence[str]]) -> List[str]:
    """``patterns`` as a list of non-empty str (a single str is one pattern)."""
    if isinstance(patterns, str):
        patterns = [patterns]
    try:
        listed = list(patterns)
    except TypeError:
        raise TypeError(f"patterns must be a list of str, got {type(patterns).__name__}") from None
    if not listed:
        raise InvalidArgument('at least one event pattern is needed (e.g. "task.*" or "*")')
    for p in listed:
        if not isinstance(p, str) or not p:
            raise TypeError(f"event patterns must be non-empty str, got {p!r}")
    return listed


def _timeout(value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidArgument(f"timeout must be a non-negative number of seconds or None, got {value!r}")
    return float(value)


def _delivery_id(delivery: Union[Delivery, int]) -> int:
    if isinstance(delivery, Delivery):
        return delivery.delivery_id
    if isinstance(delivery, int) and not isinstance(delivery, bool):
        return delivery
    raise TypeError(f"expected a Delivery or its delivery_id, got {type(delivery).__name__}")


class EventSubscription:
    """A member of a durable subscriber group, from :meth:`Client.subscribe
    <tasker_core.Client.subscribe>`.

    Each group gets every matching event once; its members share them, one event at a time
    per task (so a task's events stay in order): **every** delivery :meth:`poll` returns must
    be given back with :meth:`ack` or :meth:`fail`, or that task's next event waits. Deliveries
    of different tasks may be handled concurrently, from several threads.

    :meth:`close` records the acknowledged positions and leaves the group; a member that
    stops without closing (a crash) loses its partitions when its lease runs out and the
    events it had not recorded are delivered again.
    """

    def __init__(self, native: _native.NativeEventSubscription) -> None:
        self._native = native
        self._closed = False
        self._close_lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<tasker_core.events.EventSubscription group={self.group!r} member={self.member_id!r} {state}>"

    @property
    def group(self) -> str:
        return self._native.group

    @property
    def member_id(self) -> str:
        """This member's name in the group (``host:pid:n`` unless given)."""
        return self._native.member_id

    @property
    def closed(self) -> bool:
        return self._closed

    def poll(self, timeout: Optional[float] = 1.0) -> Optional[Delivery]:
        """The next delivery, waiting up to ``timeout`` seconds (``None``: until one comes);
        ``None`` when nothing came or the subscription is closed.

        Raises:
            InvalidState: the subscription stopped on a database error (named in the message).
        """
        limit = _timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            left = _SLICE if deadline is None else min(_SLICE, max(0.0, deadline - time.monotonic()))
            try:
                got = self._native.poll(int(left * 1000))
            except InvalidState:
                if self._closed:
                    return None
                raise
            if got is not None:
                delivery_id, attempt, raw = got
                return Delivery(delivery_id, attempt, Event.from_dict(json.loads(raw), attempt))
            if self._closed or (deadline is not None and time.monotonic() >= deadline):
                return None

    def ack(self, delivery: Union[Delivery, int]) -> None:
        """The event was handled: the group will not get it again."""
        self._native.ack(_delivery_id(delivery))

    def fail(self, delivery: Union[Delivery, int], error: Union[str, BaseException]) -> None:
        """The handler failed: the event is delivered again after a backoff (doubling per
        attempt), and after ``max_attempts`` it goes to the group's dead letters
        (:meth:`Client.event_dead_letters <tasker_core.Client.event_dead_letters>`) with
        ``error`` (an exception's message, or its class name when it has none)."""
        if isinstance(error, BaseException):
            error = str(error) or type(error).__name__
        if not isinstance(error, str):
            raise TypeError(f"error must be a str or an exception, got {type(error).__name__}")
        self._native.fail(_delivery_id(delivery), error)

    def close(self) -> None:
        """Records what was acknowledged, gives the partitions back and leaves the group; the
        deliveries not acknowledged go to another member. Idempotent.

        Raises:
            TaskerError: the error that had stopped the subscription, if one did.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._native.close()

    async def poll_async(self, timeout: Optional[float] = 1.0) -> Optional[Delivery]:
        """:meth:`poll` for asyncio code (waits in a thread)."""
        return await asyncio.to_thread(self.poll, timeout)

    async def close_async(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FastSubscription:
    """A reader of this process's fast events, from :meth:`Client.subscribe_fast
    <tasker_core.Client.subscribe_fast>`: the lifecycle events of the changes this process
    commits and the ``delivery: fast`` domain events of the steps it completes. Nothing is
    stored or retried; a reader that falls more than the broadcast's buffer behind skips
    ahead (counted in :attr:`missed`).

    Iterate it (``for event in sub``, or ``async for``) to read until :meth:`close`, or call
    :meth:`poll`.
    """

    def __init__(self, native: _native.NativeFastSubscription, patterns: Sequence[str]) -> None:
        self._native: Optional[_native.NativeFastSubscription] = native
        self._patterns = list(patterns)
        self._missed = 0

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<tasker_core.events.FastSubscription patterns={self._patterns!r} {state}>"

    @property
    def patterns(self) -> List[str]:
        return list(self._patterns)

    @property
    def closed(self) -> bool:
        return self._native is None

    @property
    def missed(self) -> int:
        """Events skipped because this reader fell behind."""
        native = self._native
        return self._missed if native is None else native.missed

    def poll(self, timeout: Optional[float] = 1.0) -> Optional[Event]:
        """The next matching event, waiting up to ``timeout`` seconds (``None``: until one
        comes); ``None`` when nothing came or the subscription is closed.

        Raises:
            InvalidState: the client was closed.
        """
        limit = _timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            native = self._native
            if native is None:
                return None
            left = _SLICE if deadline is None else min(_SLICE, max(0.0, deadline - time.monotonic()))
            raw = native.poll(int(left * 1000))
            if raw is not None:
                return Event.from_dict(json.loads(raw))
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        """Stops reading (iterations end within a fraction of a second). Idempotent."""
        native, self._native = self._native, None
        if native is not None:
            self._missed = native.missed

    def __iter__(self) -> Iterator[Event]:
        while not self.closed:
            event = self.poll(_SLICE)
            if event is not None:
                yield event

    async def __aiter__(self) -> AsyncIterator[Event]:
        while not self.closed:
            event = await asyncio.to_thread(self.poll, _SLICE)
            if event is not None:
                yield event

    def __enter__(self) -> FastSubscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
