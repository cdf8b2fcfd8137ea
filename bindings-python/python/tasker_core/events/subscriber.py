"""Subscribers: classes that handle events, and the runner that feeds them.

::

    from tasker_core.events import Subscriber, SubscriberRunner

    class Audit(Subscriber):
        subscribe_to = ["task.completed", "payment.*"]
        group = "audit"                     # default: the class name in snake_case

        def handle(self, event):            # or: async def handle(self, event)
            audit_log.write(event.event_id, event.name, event.payload)

    with SubscriberRunner(client, Audit):   # beside a Worker, or alone
        ...

A handler that returns acknowledges the event; one that raises has it delivered again after a
backoff, and after ``max_attempts`` the event goes to the group's dead letters
(:meth:`Client.event_dead_letters <tasker_core.Client.event_dead_letters>`) while the group's
other events go on. Delivery is at least once: dedupe by ``event.event_id`` where handling twice
matters.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import logging
import re
import signal
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Awaitable, List, Optional, Sequence, Type, Union

from ..errors import InvalidArgument, TaskerError
from .records import Delivery, DeliveryMode, Event
from .subscription import EventSubscription, FastSubscription, check_patterns

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["Subscriber", "SubscriberRunner"]

log = logging.getLogger("tasker_core.events")

# Poll waits are sliced so stop() and Ctrl-C are noticed quickly.
_POLL_SLICE = 0.2
_AT_EXIT_TIMEOUT = 5.0

_running: weakref.WeakSet[SubscriberRunner] = weakref.WeakSet()


@atexit.register
def _stop_running_runners() -> None:
    # Runners still running at exit close their subscriptions, so what they acknowledged is
    # recorded (else the group gets it again) and their partitions go to the others at once.
    for runner in list(_running):
        try:
            runner.stop(min(runner._shutdown_timeout, _AT_EXIT_TIMEOUT))
        except Exception:
            log.exception("stopping a subscriber runner at exit failed")


def snake_case(name: str) -> str:
    """``PaymentAudit`` → ``payment_audit``, ``HTTPHook`` → ``http_hook``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class Subscriber:
    """Base class of event subscribers.

    Class attributes (an instance may set its own):

    * ``subscribe_to``: event names or patterns (``"task.completed"``, ``"payment.*"``,
      ``"*"``); ``*`` stands for any run of characters.
    * ``group``: the durable subscriber group (default: the class name in snake_case). Every
      group gets every event; runners of one group share its events.
    * ``delivery``: ``"durable"`` (default; stored, retried, survives restarts) or ``"fast"``
      (this process's events only, nothing stored or retried: metrics and logs).

    Override ``handle(self, event)`` (sync or ``async def``), or write one method per event,
    ``handle_<name with dots as underscores>`` (``handle_task_completed``), which the default
    ``handle`` calls. One instance serves every delivery, from several threads when the
    runner's ``concurrency`` is above 1.
    """

    subscribe_to: Sequence[str] = ()
    group: Optional[str] = None
    delivery: DeliveryMode = "durable"

    def handle(self, event: Event) -> Union[None, Awaitable[None]]:
        method = getattr(self, "handle_" + event.name.replace(".", "_"), None)
        if method is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no handle(self, event) nor "
                f"handle_{event.name.replace('.', '_')}(self, event) for '{event.name}'"
            )
        result: Union[None, Awaitable[None]] = method(event)
        return result

    def group_name(self) -> str:
        """The group this subscriber joins: ``group``, else the class name in snake_case."""
        explicit = getattr(self, "group", None)
        if explicit is not None:
            if not isinstance(explicit, str) or not explicit:
                raise TypeError(f"{type(self).__name__}.group must be a non-empty str, got {explicit!r}")
            return explicit
        return snake_case(type(self).__name__)

    def patterns(self) -> List[str]:
        """``subscribe_to`` as a list."""
        subscribed = getattr(self, "subscribe_to", ())
        if isinstance(subscribed, str):
            subscribed = [subscribed]
        if not subscribed:
            raise InvalidArgument(
                f"{type(self).__name__}.subscribe_to is empty: name the events to handle, "
                'e.g. subscribe_to = ["task.completed", "payment.*"]'
            )
        return check_patterns(subscribed)


class _Loop:
    """An asyncio event loop in a thread of its own, for ``async def handle`` (started on the
    first coroutine)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def run(self, awaitable: Awaitable[Any]) -> Any:
        """Runs ``awaitable`` on the loop and waits for its result (raising what it raises)."""

        async def wrapper() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self._started()).result()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                    finally:
                        try:
                            # Handlers still running at the stop deadline are cancelled.
                            pending = asyncio.all_tasks(loop)
                            for task in pending:
                                task.cancel()
                            if pending:
                                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                            loop.run_until_complete(loop.shutdown_asyncgens())
                        finally:
                            loop.close()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait(5)
                self._loop = loop
            return self._loop

    def stop(self, timeout: float) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            pass  # already closed
        if thread is not threading.current_thread():
            thread.join(timeout)


class SubscriberRunner:
    """Runs a :class:`Subscriber`: joins its group, polls on background threads, hands each
    event to ``handle``, acknowledges it when ``handle`` returns and fails it (with the
    exception's message) when it raises.

    Args:
        client: a :class:`~tasker_core.Client`.
        subscriber: a :class:`Subscriber` subclass (instantiated without arguments) or instance.
        group, patterns, delivery: override the subscriber's ``group``, ``subscribe_to`` and
            ``delivery``.
        concurrency: deliveries handled at once (default 1: one after the other). Events of
            one task are never handled concurrently, whatever the value; with more than 1,
            events of different tasks may be.
        member_id: this member's name in the group (default ``host:pid:n``).
        from_start: a group created by this runner starts at the log's beginning instead of
            its end (an existing group keeps its position).
        max_attempts: deliveries of one event before it goes to the dead letters.
        backoff, max_backoff: seconds before the second delivery of a failed event, doubling
            per attempt up to ``max_backoff``.
        lease: seconds this member's hold on its share of the group's events outlives its last
            renewal (a crashed member's share goes to the others after it).
        poll_interval: seconds between looks for new events while idle.
        batch_size: events read from the log at once per partition.
        shutdown_timeout: default for :meth:`stop`.

    Durable runners of one group, in one process or several, share its events; start as many
    as you want handled in parallel. A ``fast`` runner reads this process's broadcast: a
    failing ``handle`` is logged and counted, nothing is retried.
    """

    def __init__(
        self,
        client: Client,
        subscriber: Union[Subscriber, Type[Subscriber]],
        *,
        group: Optional[str] = None,
        patterns: Optional[Sequence[str]] = None,
        delivery: Optional[DeliveryMode] = None,
        concurrency: int = 1,
        member_id: Optional[str] = None,
        from_start: bool = False,
        max_attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 30.0,
        lease: float = 15.0,
        poll_interval: float = 0.05,
        batch_size: int = 500,
        shutdown_timeout: float = 30.0,
    ) -> None:
        from ..client import Client

        if not isinstance(client, Client):
            raise TypeError(f"client must be a tasker_core.Client, got {type(client).__name__}")
        if inspect.isclass(subscriber):
            if not issubclass(subscriber, Subscriber):
                raise TypeError(f"{subscriber.__qualname__} is not a tasker_core.events.Subscriber subclass")
            subscriber = subscriber()
        if not isinstance(subscriber, Subscriber):
            raise TypeError(f"subscriber must be a Subscriber subclass or instance, got {type(subscriber).__name__}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 1_000:
            raise InvalidArgument(f"concurrency must be an int between 1 and 1000, got {concurrency!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= 2**32 - 1:
            raise InvalidArgument(f"max_attempts must be an int of at least 1, got {max_attempts!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int, got {batch_size!r}")
        mode: Any = delivery if delivery is not None else getattr(subscriber, "delivery", "durable")
        if mode not in ("durable", "fast"):
            raise InvalidArgument(f"delivery must be 'durable' or 'fast', got {mode!r}")
        self._client = client
        self._subscriber = subscriber
        self._group = group if group is not None else subscriber.group_name()
        if not isinstance(self._group, str) or not self._group:
            raise TypeError(f"group must be a non-empty str, got {self._group!r}")
        self._patterns = check_patterns(patterns) if patterns is not None else subscriber.patterns()
        self._delivery: DeliveryMode = mode
        self._concurrency = concurrency
        self._member_id = member_id
        self._from_start = bool(from_start)
        self._max_attempts = max_attempts
        self._backoff = (float(backoff), float(max_backoff))
        self._lease = float(lease)
        self._poll_interval = float(poll_interval)
        self._batch_size = batch_size
        self._shutdown_timeout = float(shutdown_timeout)
        self._durable: Optional[EventSubscription] = None
        self._fast: Optional[FastSubscription] = None
        self._threads: List[threading.Thread] = []
        self._loop = _Loop(f"tasker-subscriber-{self._group}-asyncio")
        self._lifecycle = threading.Lock()
        self._stop_requested = threading.Event()
        self._started = False
        self._stopped = False
        self._failure: Optional[TaskerError] = None
        self._counts = threading.Lock()
        self.handled = 0
        """Deliveries whose ``handle`` returned."""
        self.failed = 0
        """Deliveries whose ``handle`` raised."""

    def __repr__(self) -> str:
        state = "running" if self.running else ("stopped" if self._stopped else "new")
        return (
            f"<tasker_core.events.SubscriberRunner {type(self._subscriber).__name__} group={self._group!r} "
            f"{self._delivery} {state}>"
        )

    @property
    def subscriber(self) -> Subscriber:
        return self._subscriber

    @property
    def group(self) -> str:
        return self._group

    @property
    def patterns(self) -> List[str]:
        return list(self._patterns)

    @property
    def delivery(self) -> DeliveryMode:
        return self._delivery

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @property
    def member_id(self) -> Optional[str]:
        """This member's name in its group, once started (durable runners)."""
        return self._durable.member_id if self._durable is not None else None

    @property
    def running(self) -> bool:
        return self._started and not self._stopped and self._failure is None

    @property
    def failure(self) -> Optional[TaskerError]:
        """The error that stopped this runner's subscription (a database error the core gave
        up on), if one did; it then handles nothing more."""
        return self._failure

    # lifecycle ---------------------------------------------------------------------------

    def start(self) -> SubscriberRunner:
        """Joins the group (durable) or the broadcast (fast) and starts handling events in
        background threads. Lifecycle events are written from the moment a group exists, so
        start durable runners before creating the tasks they should see. Returns ``self``.

        Raises:
            InvalidArgument: an option out of range (named).
        """
        with self._lifecycle:
            if self._started:
                raise RuntimeError("this runner was already started (a SubscriberRunner runs once)")
            if self._delivery == "durable":
                self._durable = self._client.subscribe(
                    self._group,
                    self._patterns,
                    member_id=self._member_id,
                    from_start=self._from_start,
                    max_attempts=self._max_attempts,
                    backoff=self._backoff[0],
                    max_backoff=self._backoff[1],
                    lease=self._lease,
                    poll_interval=self._poll_interval,
                    batch_size=self._batch_size,
                )
            else:
                self._fast = self._client.subscribe_fast(self._patterns)
            self._started = True
            for i in range(self._concurrency):
                t = threading.Thread(target=self._poll_loop, name=f"tasker-subscriber-{self._group}-{i}", daemon=True)
                t.start()
                self._threads.append(t)
            _running.add(self)
        log.info(
            "subscriber %s started: group %r, %s events %s",
            type(self._subscriber).__name__,
            self._group,
            self._delivery,
            self._patterns,
        )
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stops gracefully: takes no new events, lets the ones being handled finish (up to
        ``timeout`` seconds; async handlers still running then are cancelled), records what
        was acknowledged and leaves the group. Events delivered but not acknowledged go to
        another member. Idempotent.

        Raises:
            TaskerError: closing the subscription failed on the error that had stopped it
                (also in :attr:`failure`).
        """
        timeout = self._shutdown_timeout if timeout is None else float(timeout)
        if not timeout >= 0:
            raise InvalidArgument(f"timeout must be a non-negative number of seconds, got {timeout}")
        with self._lifecycle:
            self._stop_requested.set()
            if self._stopped or not self._started:
                self._stopped = True
                return
            self._stopped = True
            deadline = time.monotonic() + timeout
            me = threading.current_thread()
            for t in self._threads:
                if t is not me:
                    t.join(max(0.0, deadline - time.monotonic()))
            self._loop.stop(max(0.0, deadline - time.monotonic()))
            _running.discard(self)
            try:
                if self._durable is not None:
                    self._durable.close()
                if self._fast is not None:
                    self._fast.close()
            except TaskerError as e:
                if self._failure is None:
                    self._failure = e
                raise
            finally:
                log.info(
                    "subscriber %s stopped: %d handled, %d failed",
                    type(self._subscriber).__name__,
                    self.handled,
                    self.failed,
                )

    def run(self, install_signal_handlers: bool = True) -> None:
        """Starts (if needed) and blocks until SIGINT/SIGTERM or :meth:`stop`, then stops
        gracefully: a subscriber process's main loop.

        Raises:
            TaskerError: the error that stopped the subscription (see :attr:`failure`).
        """
        if not self._started:
            self.start()
        restore: List[Any] = []
        if install_signal_handlers and threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, _frame: Any) -> None:
                log.info("received %s; stopping", signal.Signals(signum).name)
                self._stop_requested.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                restore.append((sig, signal.signal(sig, on_signal)))
        try:
            while not self._stop_requested.wait(0.2):
                pass
        finally:
            for sig, previous in restore:
                signal.signal(sig, previous)
        self.stop()
        if self._failure is not None:
            raise self._failure

    def __enter__(self) -> SubscriberRunner:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # polling and dispatch ----------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop_requested.is_set():
            try:
                if self._durable is not None:
                    delivery = self._durable.poll(_POLL_SLICE)
                    if delivery is not None:
                        self._deliver(self._durable, delivery)
                elif self._fast is not None:
                    event = self._fast.poll(_POLL_SLICE)
                    if event is not None:
                        self._handle_fast(event)
            except TaskerError as e:
                if not self._stop_requested.is_set():
                    self._fail(e)
                return

    def _run_handler(self, event: Event) -> None:
        value = self._subscriber.handle(event)
        if inspect.isawaitable(value):
            self._loop.run(value)

    def _deliver(self, subscription: EventSubscription, delivery: Delivery) -> None:
        event = delivery.event
        try:
            self._run_handler(event)
        except BaseException as e:  # even SystemExit: the event fails, the runner goes on
            with self._counts:
                self.failed += 1
            log.warning(
                "subscriber %s failed on %s %s (attempt %d): %s",
                type(self._subscriber).__name__,
                event.name,
                event.event_id,
                delivery.attempt,
                e,
                exc_info=e,
            )
            self._give_back(subscription.fail, delivery, e)
            return
        with self._counts:
            self.handled += 1
        self._give_back(subscription.ack, delivery)

    def _give_back(self, how: Any, delivery: Delivery, *error: BaseException) -> None:
        try:
            how(delivery, *error)
        except TaskerError as e:
            # Closed at the stop deadline while this handler ran: the event goes to another
            # member (or this group's next one), as if this member had crashed.
            if not self._stop_requested.is_set():
                self._fail(e)

    def _handle_fast(self, event: Event) -> None:
        try:
            self._run_handler(event)
        except BaseException as e:
            with self._counts:
                self.failed += 1
            log.warning(
                "subscriber %s failed on fast event %s: %s", type(self._subscriber).__name__, event.name, e, exc_info=e
            )
            return
        with self._counts:
            self.handled += 1

    def _fail(self, error: TaskerError) -> None:
        with self._counts:
            first = self._failure is None
            if first:
                self._failure = error
        if first:
            log.error("subscriber %s stopped: %s", type(self._subscriber).__name__, error)
        self._stop_requested.set()
