"""Cancellation: ``context.cancelled`` turns true once the engine gives up on an attempt
(timeout, given up, shutdown deadline), for sync and async handlers alike."""

import asyncio
import threading
import time

import pytest

import tasker_core
from tasker_core import StepContext
from tasker_core.errors import StepCancelled, WorkerFailed
from tasker_core.testing import assert_failure, build_step_context, run_handler

# Upper bound for a handler's wait; the engine cancels after about 1 s (timeout_seconds: 1).
GIVE_UP_AFTER = 15.0


class Probe:
    """A handler that loops until its context says cancelled, and records what it saw."""

    def __init__(self) -> None:
        self.before = None
        self.became_true = threading.Event()
        self.raised = None

    def _finish(self, context: StepContext) -> None:
        self.became_true.set()
        try:
            context.raise_if_cancelled()
        except StepCancelled as e:
            self.raised = e
            raise

    def sync(self, context: StepContext):
        self.before = context.cancelled
        started = time.monotonic()
        while not context.cancelled:
            if time.monotonic() - started > GIVE_UP_AFTER:
                return {"cancelled": False}
            time.sleep(0.02)
        self._finish(context)

    async def asynchronous(self, context: StepContext):
        self.before = context.cancelled
        started = time.monotonic()
        while not context.cancelled:
            if time.monotonic() - started > GIVE_UP_AFTER:
                return {"cancelled": False}
            await asyncio.sleep(0.02)
        self._finish(context)


@pytest.mark.parametrize("style", ["sync", "asynchronous"])
def test_cancelled_turns_true_when_the_attempt_times_out(client, namespace, register, start_worker, style):
    probe = Probe()
    register("cancel")
    worker = start_worker(handlers={"cancel.loops": getattr(probe, style)})
    done = client.create_task(namespace, "cancel_on_timeout").wait(timeout=30)
    step = done.step("loops")
    assert step.state == "error" and step.attempts == 1, step.last_error
    assert step.last_error["error_type"] == "timeout" and step.last_error["retryable"] is True
    assert probe.became_true.wait(GIVE_UP_AFTER), "context.cancelled never became true"
    assert probe.before is False
    assert isinstance(probe.raised, StepCancelled) and "cancelled" in str(probe.raised)
    # The handler's own (late) failure is ignored: the recorded error stays the timeout.
    time.sleep(0.2)
    assert client.get_task(done.task_uuid).step("loops").last_error["error_type"] == "timeout"
    assert worker.running


def test_cancelled_is_false_for_an_attempt_that_runs_normally(client, namespace, register, start_worker):
    seen = []

    def quick(context):
        seen.append(context.cancelled)
        context.raise_if_cancelled()
        return {"ok": True}

    register("single")
    start_worker(handlers={"single.only": quick})
    done = client.create_task(namespace, "single").wait(timeout=30)
    assert done.state == "complete" and seen == [False]


def test_shutdown_deadline_cancels_a_running_handler(client, namespace, register):
    probe = Probe()
    register("single")
    # A step without a timeout: only the stop deadline can cancel it.
    worker = tasker_core.Worker(client, [namespace], {"single.only": probe.sync}, 1).start()
    client.create_task(namespace, "single")
    deadline = time.monotonic() + 30
    while probe.before is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert probe.before is False
    report = worker.stop(timeout=0.5)
    assert report.abandoned == 1
    assert probe.became_true.wait(GIVE_UP_AFTER), "context.cancelled never became true after stop"


def test_testing_helpers_build_cancelled_contexts():
    assert build_step_context().cancelled is False
    assert build_step_context(cancelled=True).cancelled is True
    flips = iter([False, True])
    ctx = build_step_context(cancelled=lambda: next(flips))
    assert ctx.cancelled is False and ctx.cancelled is True
    probe = Probe()
    result = run_handler(probe.sync, build_step_context(cancelled=True))
    assert_failure(result, "StepCancelled", retryable=True)
    with pytest.raises(TypeError, match="cancelled"):
        build_step_context(cancelled="yes")  # type: ignore[arg-type]


# --- a fatal worker error -----------------------------------------------------------------


class _FailedNative:
    """Stands in for the native worker after a background task died."""

    def __init__(self) -> None:
        self.polls = 0
        self.shut_down = False

    def poll(self, timeout_ms: int):
        self.polls += 1
        raise WorkerFailed("the worker's applier stopped: panicked: boom", code="worker_failed")

    @property
    def shutting_down(self) -> bool:
        return self.shut_down

    def shutdown(self, timeout_seconds: float):
        self.shut_down = True
        return (0, 0)


def test_worker_failed_from_poll_stops_the_worker_and_run_raises_it(client, monkeypatch):
    fake = _FailedNative()

    class FakeNativeWorker:
        @staticmethod
        def start(*args, **kwargs):
            return fake

    monkeypatch.setattr(tasker_core.worker._native, "NativeWorker", FakeNativeWorker)
    worker = tasker_core.Worker(client, ["anything"], concurrency=3)
    started = time.monotonic()
    with pytest.raises(WorkerFailed, match="applier stopped") as raised:
        worker.run(install_signal_handlers=False)
    assert time.monotonic() - started < 10
    assert raised.value.code == "worker_failed"
    assert worker.failure is raised.value and not worker.running
    # Each poller thread saw the error once and stopped: no retry loop.
    assert fake.polls == 3 and fake.shut_down
    assert worker.stop().failure is raised.value
