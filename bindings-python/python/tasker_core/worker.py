"""The worker: claims steps from queues and runs Python handlers for them.

::

    with tasker_core.Worker(client, queues=["orders"], handlers=[ValidateOrder], concurrency=4):
        ...  # steps of the "orders" queue run in background threads meanwhile

    # or, as a process's main loop (returns on SIGINT/SIGTERM, after a graceful stop):
    tasker_core.Worker(client, queues=["orders"]).run()

``concurrency`` threads each poll the engine (with the GIL released) and run sync handlers;
async handlers run on an asyncio event loop that the worker owns, in its own thread. The
engine never hands out more than ``concurrency`` steps at once.

Cancellation: ``context.cancelled`` turns true when the engine gives up on an attempt (it
overran ``timeout_seconds``, or the shutdown deadline passed); long handlers should check it
and return early, since their result is ignored by then.

Fatal errors: if a background task of the engine's worker dies, polling raises
:class:`~tasker_core.errors.WorkerFailed`. Every poller thread then stops, :attr:`Worker.failure`
holds the error and :meth:`Worker.run` stops the worker and raises it. Nothing is retried in a
loop: a failed worker claims nothing more, so it must be replaced.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import inspect
import json
import logging
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _native, outcome
from .client import Client
from .errors import InvalidArgument, TaskerError, UnknownEvent, WorkerFailed, WorkerShutDown
from .handler import HandlerLike, HandlerRegistry, Resolver, StepContext, StepResult

__all__ = ["Worker", "ShutdownReport"]

log = logging.getLogger("tasker_core.worker")

Handlers = Union[HandlerRegistry, Mapping[str, HandlerLike], Iterable[HandlerLike], None]

# poll() waits in slices this long, so stop() and Ctrl-C are noticed quickly.
_POLL_SLICE_MS = 200

# Workers still running when the interpreter exits are stopped first, so claimed steps go back
# to their queue at once (instead of when their lease expires) and no thread is inside the
# extension while Python finalizes.
_running: weakref.WeakSet[Worker] = weakref.WeakSet()
_AT_EXIT_TIMEOUT = 5.0


@atexit.register
def _stop_running_workers() -> None:
    for worker in list(_running):
        try:
            worker.stop(min(worker._shutdown_timeout, _AT_EXIT_TIMEOUT))
        except Exception:
            log.exception("stopping a worker at exit failed")


@dataclass(frozen=True)
class ShutdownReport:
    """What :meth:`Worker.stop` did."""

    released: int
    """Steps claimed but not started: given back to their queue."""
    abandoned: int
    """Steps still running at the deadline: made visible to other workers."""
    timed_out: bool
    """Whether some worker thread was still busy when ``stop`` returned."""
    failure: Optional[WorkerFailed] = None
    """The error that stopped the worker before ``stop`` was called, if one did."""


class Worker:
    """Runs the handlers of the steps in ``queues``.

    Args:
        client: a :class:`~tasker_core.Client`.
        queues: queue names to claim from (a template's steps go to the queue named after its
            namespace unless a step names another).
        handlers: handler classes/functions (registered under their ``handler_name``, their
            class path ``module.QualName`` and their bare name), a ``{name: handler}`` mapping,
            or a :class:`~tasker_core.handler.HandlerRegistry`. Handlers registered with
            :func:`~tasker_core.step_handler` and importable class paths are found too.
        concurrency: steps run at once (default: ``worker.concurrency``, 8).
        threads: threads that poll and run sync handlers (default: ``concurrency``). Fewer
            threads than ``concurrency`` suits async handlers, which run on the worker's
            event loop and do not hold a thread while they await.
        lease_seconds: how long a claimed step stays invisible to other workers; renewed
            while its handler runs (default: ``worker.lease_ms``, 30 s).
        dispatch_mode: ``"hybrid"``, ``"event_driven"`` or ``"polling"`` (default:
            ``worker.dispatch_mode``, hybrid).
        poll_interval: fallback polling interval in seconds (default:
            ``worker.poll_interval_ms``, else the engine's for the backend).
        embedded_orchestration: also run the engine's retry/timeout loop in this process
            (default: ``worker.embedded_orchestration``, true).
        worker_id: recorded in the audit trail (default ``host:pid``).
        shutdown_timeout: default for :meth:`stop`.

    Every option left out (``None``) comes from the configuration, as for the ``tasker worker``
    command (files under ``TASKER_CONFIG_ROOT`` or ``./config/tasker``, ``TASKER_WORKER__*``
    variables; see ``docs/configuration.md``); the defaults in parentheses apply without one.
    ``queues`` are added to the configured ``worker.queues``. The configuration is read when
    the worker is created.

    Raises:
        ConfigurationError: the configuration is invalid.
    """

    def __init__(
        self,
        client: Client,
        queues: Sequence[str],
        handlers: Handlers = None,
        concurrency: Optional[int] = None,
        *,
        threads: Optional[int] = None,
        lease_seconds: Optional[float] = None,
        dispatch_mode: Optional[str] = None,
        poll_interval: Optional[float] = None,
        embedded_orchestration: Optional[bool] = None,
        worker_id: Optional[str] = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        if not isinstance(client, Client):
            raise TypeError(f"client must be a tasker_core.Client, got {type(client).__name__}")
        if isinstance(queues, str):
            queues = [queues]
        queue_list = list(queues)
        for q in queue_list:
            if not isinstance(q, str):
                raise TypeError(f"queue names must be str, got {type(q).__name__} {q!r}")
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 10_000
        ):
            raise InvalidArgument(f"concurrency must be an int between 1 and 10000, got {concurrency!r}")
        self._settings = _native.WorkerSettings(
            queue_list,
            concurrency,
            lease_seconds=None if lease_seconds is None else float(lease_seconds),
            dispatch_mode=dispatch_mode,
            poll_interval_seconds=None if poll_interval is None else float(poll_interval),
            embedded_orchestration=None if embedded_orchestration is None else bool(embedded_orchestration),
            worker_id=worker_id,
        )
        if not self._settings.queues:
            raise InvalidArgument("a worker needs at least one queue (none given, none in worker.queues)")
        concurrency = self._settings.concurrency
        if threads is None:
            threads = concurrency
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= concurrency:
            raise InvalidArgument(f"threads must be an int between 1 and concurrency ({concurrency}), got {threads!r}")
        self._threads_wanted = threads
        self._client = client
        self._queues = self._settings.queues
        self._concurrency = concurrency
        self._shutdown_timeout = float(shutdown_timeout)
        self._registry = _as_registry(handlers)
        self._resolver = Resolver(self._registry)
        self._native: Optional[_native.NativeWorker] = None
        self._threads: List[threading.Thread] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
        self._lifecycle = threading.Lock()
        self._stop_requested = threading.Event()
        self._failure: Optional[WorkerFailed] = None
        self._report: Optional[ShutdownReport] = None
        self._counts_lock = threading.Lock()
        self.completed = 0
        """Steps whose handler succeeded."""
        self.failed = 0
        """Steps whose handler failed (or could not be run)."""
        # Per poller thread: [events, ns in poll calls that returned an event, ns from the
        # event's arrival in Python to `complete` returning]. Each thread writes only its own.
        self._timings: List[List[int]] = []

    def __repr__(self) -> str:
        state = "running" if self.running else ("stopped" if self._report else "new")
        return f"<tasker_core.Worker queues={self._queues} concurrency={self._concurrency} {state}>"

    @property
    def threads(self) -> int:
        return self._threads_wanted

    @property
    def queues(self) -> List[str]:
        return list(self._queues)

    @property
    def concurrency(self) -> int:
        """Steps run at once: the argument, else the configured ``worker.concurrency``."""
        return self._concurrency

    @property
    def lease_seconds(self) -> float:
        return self._settings.lease_seconds

    @property
    def dispatch_mode(self) -> str:
        return self._settings.dispatch_mode

    @property
    def poll_interval(self) -> Optional[float]:
        """``None``: the engine's default for the backend."""
        return self._settings.poll_interval_seconds

    @property
    def embedded_orchestration(self) -> bool:
        return self._settings.embedded_orchestration

    @property
    def worker_id(self) -> str:
        return self._settings.worker_id

    @property
    def registry(self) -> HandlerRegistry:
        """The handlers given to this worker; register more before :meth:`start`."""
        return self._registry

    @property
    def running(self) -> bool:
        return self._native is not None and self._report is None and self._failure is None

    @property
    def failure(self) -> Optional[WorkerFailed]:
        """The :class:`~tasker_core.errors.WorkerFailed` that stopped this worker, if any: a
        background task of the engine died and the worker claims nothing more."""
        return self._failure

    # lifecycle ---------------------------------------------------------------------------

    def start(self) -> Worker:
        """Starts claiming steps in background threads. Returns ``self``."""
        with self._lifecycle:
            if self._native is not None:
                raise RuntimeError("this worker was already started (a Worker runs once)")
            self._native = _native.NativeWorker.start(self._client._native, self._settings)
            self._start_loop()
            for i in range(self._threads_wanted):
                t = threading.Thread(target=self._poll_loop, name=f"tasker-worker-{i}", daemon=True)
                t.start()
                self._threads.append(t)
            _running.add(self)
        log.info("worker started on queues %s with concurrency %d", self._queues, self._concurrency)
        return self

    def stop(self, timeout: Optional[float] = None) -> ShutdownReport:
        """Stops gracefully: no new steps are claimed, claimed-but-unstarted steps go back to
        the queue, and running handlers get up to ``timeout`` seconds to finish (their results
        are recorded). Returns within about ``timeout`` seconds; steps still running then are
        handed to other workers. Idempotent. Call it from outside the worker's handlers (a
        handler that stops its own worker waits for itself until the timeout)."""
        timeout = self._shutdown_timeout if timeout is None else float(timeout)
        if timeout < 0 or timeout != timeout:
            raise InvalidArgument(f"timeout must be a non-negative number of seconds, got {timeout}")
        with self._lifecycle:
            self._stop_requested.set()
            if self._report is not None:
                return self._report
            if self._native is None:
                self._report = ShutdownReport(0, 0, False, self._failure)
                return self._report
            deadline = time.monotonic() + timeout
            released, abandoned = self._native.shutdown(timeout)
            me = threading.current_thread()
            for t in self._threads:
                if t is not me:
                    t.join(max(0.0, deadline - time.monotonic()))
            busy = any(t.is_alive() and t is not me for t in self._threads)
            self._stop_loop(max(0.0, deadline - time.monotonic()))
            busy = busy or (self._loop_thread is not None and self._loop_thread.is_alive())
            self._report = ShutdownReport(released, abandoned, busy, self._failure)
            _running.discard(self)
        log.info("worker stopped: %s", self._report)
        return self._report

    def run(self, install_signal_handlers: bool = True) -> ShutdownReport:
        """Starts (if needed) and blocks until SIGINT/SIGTERM or :meth:`stop`, then stops
        gracefully and returns the report.

        Raises:
            WorkerFailed: a background task of the engine's worker died (after stopping the
                worker); see :attr:`failure`.
        """
        if self._native is None:
            self.start()
        restore: List[Any] = []
        if install_signal_handlers and threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, _frame: Any) -> None:
                log.info("received %s; stopping", signal.Signals(signum).name)
                self._stop_requested.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                restore.append((sig, signal.signal(sig, on_signal)))
        try:
            # Short waits: the main thread must return to the interpreter for signal handlers
            # to run.
            while not self._stop_requested.wait(0.2):
                pass
        finally:
            for sig, previous in restore:
                signal.signal(sig, previous)
        report = self.stop()
        if self._failure is not None:
            raise self._failure
        return report

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # polling and dispatch ----------------------------------------------------------------

    def stats(self) -> Dict[str, float]:
        """Counters and the binding's own cost per step: ``poll_us`` (a poll that returned an
        event, waiting included) and ``dispatch_us`` (decode, run the handler, encode and
        hand the outcome back; async handlers counted until they are scheduled)."""
        events = sum(t[0] for t in self._timings)
        return {
            "completed": self.completed,
            "failed": self.failed,
            "events": events,
            "poll_us": sum(t[1] for t in self._timings) / events / 1000 if events else 0.0,
            "dispatch_us": sum(t[2] for t in self._timings) / events / 1000 if events else 0.0,
        }

    def _poll_loop(self) -> None:
        native = self._native
        assert native is not None
        timing = [0, 0, 0]
        self._timings.append(timing)
        clock = time.perf_counter_ns
        while True:
            started = clock()
            try:
                raw = native.poll(_POLL_SLICE_MS)
            except WorkerFailed as e:
                # Fatal: the engine's worker claims nothing more. Stop this thread (the others
                # see the same error) and let run() / stop() report it.
                self._fail(e)
                return
            except Exception:  # the native poll raises nothing else; be defensive anyway
                log.exception("polling failed")
                time.sleep(0.1)
                continue
            if raw is None:
                if native.shutting_down:
                    return
                continue
            polled = clock()
            self._dispatch(raw)
            timing[0] += 1
            timing[1] += polled - started
            timing[2] += clock() - polled

    def _fail(self, error: WorkerFailed) -> None:
        with self._counts_lock:
            first = self._failure is None
            if first:
                self._failure = error
        if first:
            log.error("worker failed, no more steps will be claimed: %s", error)
        self._stop_requested.set()

    def _dispatch(self, raw: str) -> None:
        event = json.loads(raw)
        event_id = event["event_id"]
        step_name = event.get("step_name", "")
        context: Optional[StepContext] = None
        try:
            native = self._native
            assert native is not None
            # Only batch worker instances checkpoint (context.batch.checkpoint).
            sink = functools.partial(native.checkpoint, event_id) if event.get("batch") else None
            context = StepContext._from_event(event, _Cancellation(native, event_id), sink)
            fn = self._resolver.resolve(context.handler_callable, context.handler_method)
            value = fn(context)
        except BaseException as e:  # even SystemExit: the step fails, the worker keeps serving
            self._finish(event_id, step_name, outcome.from_exception(e), context)
            return
        if inspect.isawaitable(value):
            self._submit_async(event_id, step_name, value, context)
            return
        self._finish(event_id, step_name, outcome.from_return(value), context)

    def _submit_async(self, event_id: int, step_name: str, awaitable: Any, context: StepContext) -> None:
        loop = self._loop
        assert loop is not None

        async def run() -> Any:
            return await awaitable

        def done(fut: Any) -> None:
            try:
                value = fut.result()
            except BaseException as e:  # CancelledError at shutdown included
                result = outcome.from_exception(e)
            else:
                result = outcome.from_return(value)
            self._finish(event_id, step_name, result, context)

        try:
            asyncio.run_coroutine_threadsafe(run(), loop).add_done_callback(done)
        except RuntimeError as e:  # loop already closed: the worker is stopping
            self._finish(event_id, step_name, outcome.from_exception(e), context)

    def _finish(self, event_id: int, step_name: str, result: StepResult, context: Optional[StepContext] = None) -> None:
        if context is not None and context._events:
            # What the handler published with context.publish travels in the outcome's metadata.
            result = outcome.with_events(result, context._events)
        text = outcome.encode(result, step_name)
        ok = result.is_success and text.startswith('{"status":"success"')
        with self._counts_lock:
            if ok:
                self.completed += 1
            else:
                self.failed += 1
        native = self._native
        assert native is not None
        try:
            native.complete(event_id, text)
        except (UnknownEvent, WorkerShutDown) as e:
            # The attempt timed out or the worker stopped before the handler returned: the
            # engine already gave the step to someone else, so this result is dropped.
            log.warning("result of step %r dropped: %s", step_name, e)
        except InvalidArgument as e:
            # The engine rejected the outcome document; report that instead, or the step's
            # slot would stay taken until its lease ran out.
            log.error("outcome of step %r rejected: %s", step_name, e)
            fallback = StepResult.failure(f"the handler's outcome was rejected: {e}", "invalid_outcome", False)
            try:
                native.complete(event_id, outcome.encode(fallback, step_name))
            except TaskerError:
                log.exception("could not report the result of step %r", step_name)
        except WorkerFailed as e:
            # The engine's worker died: this result cannot be recorded (the step comes back
            # through its lease); stop the worker instead of logging this for every step.
            log.warning("result of step %r dropped: %s", step_name, e)
            self._fail(e)
        except TaskerError:
            log.exception("could not report the result of step %r", step_name)

    # asyncio loop ------------------------------------------------------------------------

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                try:
                    pending = asyncio.all_tasks(loop)
                    for task in pending:
                        task.cancel()
                    if pending:
                        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()

        self._loop = loop
        self._loop_thread = threading.Thread(target=run, name="tasker-worker-asyncio", daemon=True)
        self._loop_thread.start()
        ready.wait(5)

    def _stop_loop(self, timeout: float) -> None:
        loop, thread = self._loop, self._loop_thread
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            pass  # already closed
        if thread is not threading.current_thread():
            thread.join(timeout)


_UNFETCHED: Any = object()


class _Cancellation:
    """``StepContext.cancelled`` of one attempt: looks the attempt's cancel signal up on first
    use (nothing on the hot path for handlers that never ask), then reads it lock-free."""

    __slots__ = ("_native", "_event_id", "_signal")

    def __init__(self, native: _native.NativeWorker, event_id: int) -> None:
        self._native = native
        self._event_id = event_id
        self._signal: Any = _UNFETCHED

    def __call__(self) -> bool:
        signal = self._signal
        if signal is _UNFETCHED:
            signal = self._signal = self._native.cancel_signal(self._event_id)
        # None: the event is no longer in flight (given up), so nobody uses its result.
        return signal is None or bool(signal.is_cancelled)


def _as_registry(handlers: Handlers) -> HandlerRegistry:
    if isinstance(handlers, HandlerRegistry):
        return handlers
    registry = HandlerRegistry()
    if handlers is None:
        return registry
    if isinstance(handlers, Mapping):
        for name, h in handlers.items():
            registry.register(h, name)
        return registry
    if callable(handlers):
        handlers = [handlers]
    for h in handlers:
        registry.register(h)
    return registry
