"""The worker: GIL release, graceful stop, signals, handler registration, and bad input that
must fail a step cleanly while the worker keeps serving."""

import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import tasker_core
from tasker_core import HandlerRegistry, StepHandler, StepResult, _native, step_handler
from tasker_core.errors import InvalidArgument, ValidationError

from sample_handlers import recorder


def run_linear(client, namespace, value=2):
    done = client.create_task(namespace, "linear_math", context={"value": value}).wait(timeout=30)
    assert done.state == "complete", [(s.name, s.last_error) for s in done.steps]
    return done.step("step_d").results["value"]


# --- GIL ---------------------------------------------------------------------------------


def _other_thread_progresses_during(blocking_call) -> bool:
    """Runs `blocking_call` in a thread; meanwhile this thread does pure-Python work (which
    needs the GIL). Returns whether that work finished while the call was still blocking."""
    t = threading.Thread(target=blocking_call)
    t.start()
    time.sleep(0.3)  # let the thread enter the call
    n = 0
    for _ in range(1_000_000):
        n += 1
    progressed_while_blocked = t.is_alive()
    t.join()
    return progressed_while_blocked


def test_poll_releases_the_gil(client, namespace, register):
    register("linear")  # creates the queue; no task is created, so poll waits idle
    native = _native.NativeWorker.start(client._native, _native.WorkerSettings([namespace], 1))
    try:
        results = []
        assert _other_thread_progresses_during(lambda: results.append(native.poll(3000)))
        assert results == [None]
    finally:
        native.shutdown(5)


def test_gil_control_a_call_holding_the_gil_blocks_other_threads():
    # The control for the test above: the same probe around a C call that keeps the GIL
    # (sum over a long range never returns to the interpreter) reports no progress.
    assert not _other_thread_progresses_during(lambda: sum(range(150_000_000)))


# --- graceful stop -----------------------------------------------------------------------


def test_stop_finishes_in_flight_handlers(client, namespace, register, start_worker):
    register("slow")
    worker = start_worker(concurrency=2)
    task = client.create_task(namespace, "slow", context={"sleep": 1.0})
    assert recorder.event(task.task_uuid + ":started").wait(30), "handler never started"
    started = time.monotonic()
    report = worker.stop(timeout=20)
    elapsed = time.monotonic() - started
    assert recorder.seen(task.task_uuid) == ["finished"]
    assert report.abandoned == 0 and not report.timed_out
    assert elapsed < 20
    assert not worker.running
    # The handler's result was recorded before stop returned.
    done = client.get_task(task.task_uuid)
    assert done.state == "complete" and done.step("sleepy").results == {"slept": 1.0}


def test_stop_returns_within_its_timeout_and_hands_the_step_over(client, namespace, register, start_worker):
    register("slow")
    worker = start_worker(concurrency=1)
    task = client.create_task(namespace, "slow", context={"sleep": 3.0})
    assert recorder.event(task.task_uuid + ":started").wait(30)
    started = time.monotonic()
    report = worker.stop(timeout=0.5)
    elapsed = time.monotonic() - started
    assert report.abandoned == 1 and report.timed_out
    assert elapsed < 0.5 + 2.0, elapsed  # the handler itself sleeps 3 s
    assert worker.stop() is report  # idempotent
    # The step was made visible again: another worker picks it up and finishes the task.
    start_worker(concurrency=1)
    done = task.wait(timeout=60)
    assert done.state == "complete"
    step = done.step("sleepy")
    assert step.attempts == 2 and step.results == {"slept": 3.0}


def test_context_manager_starts_and_stops(client, namespace, register):
    register("linear")
    with tasker_core.Worker(client, [namespace], concurrency=2) as worker:
        assert worker.running
        assert run_linear(client, namespace, 3) == 64  # ((3+1)*3-4)^2
    assert not worker.running
    with pytest.raises(RuntimeError, match="already started"):
        worker.start()


def test_run_stops_on_sigint(db_url, namespace, register, tmp_path):
    register("linear")
    script = tmp_path / "run_worker.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import faulthandler, signal, sys, threading, time, tasker_core
            faulthandler.register(signal.SIGUSR1)  # the test asks for stacks if stopping hangs
            client = tasker_core.connect({db_url!r})
            worker = tasker_core.Worker(client, [{namespace!r}], concurrency=2)
            worker.start()

            # What SIGINT does before run(): Python's default, or SIG_IGN when this process was
            # started with SIGINT ignored (as a background job of a shell is).
            initial = signal.getsignal(signal.SIGINT)

            def announce():
                # "ready" once run() has installed its SIGINT handler.
                while signal.getsignal(signal.SIGINT) is initial:
                    time.sleep(0.01)
                print("ready", flush=True)

            threading.Thread(target=announce, daemon=True).start()
            report = worker.run()
            print("stopped", report.abandoned, report.timed_out, flush=True)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the worker did not stop within 60 s of SIGINT; its threads:\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip() == "stopped 0 False"


# --- registration styles -----------------------------------------------------------------


class OnlyHandler(StepHandler):
    handler_name = "single.only"

    def call(self, context):
        return {"style": "class", "step": context.step_name}


def only_function(context):
    return StepResult.success({"style": "function"}, metadata={"m": 1})


_registry = HandlerRegistry()


@step_handler("single.only", registry=_registry)
async def only_async(context):
    return {"style": "async decorator"}


@pytest.mark.parametrize(
    "handlers, expected",
    [
        ([OnlyHandler], {"style": "class", "step": "only"}),
        ({"single.only": only_function}, {"style": "function"}),
        (_registry, {"style": "async decorator"}),
    ],
    ids=["class-list", "mapping", "registry"],
)
def test_explicit_registration(client, namespace, register, start_worker, handlers, expected):
    register("single")
    worker = start_worker(handlers=handlers)
    done = client.create_task(namespace, "single").wait(timeout=30)
    assert done.state == "complete" and done.step("only").results == expected
    assert worker.completed == 1 and worker.failed == 0


@pytest.mark.parametrize("value", [None, [1, "two", {"three": 3.0}], "text", 42])
def test_plain_return_values_are_results(client, namespace, register, start_worker, value):
    register("single")
    start_worker(handlers={"single.only": lambda ctx: value})
    done = client.create_task(namespace, "single").wait(timeout=30)
    assert done.state == "complete" and done.step("only").results == value


# --- bad input ---------------------------------------------------------------------------


def test_unknown_callable_fails_permanently_and_worker_keeps_serving(client, namespace, register, start_worker):
    register("unknown_handler", "linear")
    worker = start_worker()
    done = client.create_task(namespace, "unknown_handler").wait(timeout=30)
    assert done.state == "error"
    step = done.step("ghost")
    assert step.state == "error" and step.attempts == 1
    assert step.last_error["error_type"] == "handler_not_found"
    assert step.last_error["retryable"] is False
    assert "sample_handlers.nowhere.GhostHandler" in step.last_error["message"]
    assert run_linear(client, namespace) == 25
    assert worker.running


def test_unregistered_name_without_module_fails_with_handler_not_found(client, namespace, register, start_worker):
    register("single", "linear")
    start_worker()  # nothing registered for "single.only" and no module "single"
    done = client.create_task(namespace, "single").wait(timeout=30)
    step = done.step("only")
    assert step.last_error["error_type"] == "handler_not_found" and "single.only" in step.last_error["message"]
    assert run_linear(client, namespace) == 25


def test_unserialisable_result_fails_clearly_and_worker_keeps_serving(client, namespace, register, start_worker):
    register("unserializable", "linear")
    worker = start_worker()
    done = client.create_task(namespace, "unserializable").wait(timeout=30)
    assert done.state == "error"
    for name, detail in [("returns_a_set", "set"), ("returns_nan", "float")]:
        step = done.step(name)
        assert step.state == "error" and step.attempts == 1, (name, step.last_error)
        assert step.last_error["error_type"] == "result_not_serializable"
        assert f"step '{name}'" in step.last_error["message"] and detail in step.last_error["message"]
        assert recorder.seen(step.step_uuid) == [1]
    assert run_linear(client, namespace) == 25
    assert worker.failed == 2 and worker.running


def test_schema_violation_names_the_property_and_worker_keeps_serving(client, namespace, register, start_worker):
    register("bad_input", "linear")
    start_worker()
    with pytest.raises(ValidationError) as missing:
        client.create_task(namespace, "bad_input", context={"email": "a@b.c"})
    assert "order_id" in str(missing.value) and missing.value.code == "validation_failed"
    with pytest.raises(ValidationError) as wrong_type:
        client.create_task(namespace, "bad_input", context={"order_id": "seven"})
    assert wrong_type.value.path == "/order_id" and "order_id" in str(wrong_type.value)
    with pytest.raises(ValidationError) as too_small:
        client.create_task(namespace, "bad_input", context={"order_id": 0})
    assert too_small.value.path == "/order_id"
    assert client.list_tasks(namespace=namespace, name="bad_input") == []
    done = client.create_task(namespace, "bad_input", context={"order_id": 3}).wait(timeout=30)
    assert done.step("lookup").results == {"input": {"order_id": 3}}
    assert run_linear(client, namespace) == 25


def test_worker_argument_errors(client):
    with pytest.raises(InvalidArgument, match="at least one queue"):
        tasker_core.Worker(client, [])
    with pytest.raises(InvalidArgument, match="concurrency"):
        tasker_core.Worker(client, ["q"], concurrency=0)
    with pytest.raises(TypeError, match="Client"):
        tasker_core.Worker("not a client", ["q"])
    with pytest.raises(InvalidArgument, match="queue name 'Bad-Queue'"):
        tasker_core.Worker(client, ["Bad-Queue"]).start()
    with pytest.raises(InvalidArgument, match="dispatch mode 'sometimes'"):
        tasker_core.Worker(client, ["q"], dispatch_mode="sometimes").start()
    with pytest.raises(TypeError, match="no call"):
        tasker_core.Worker(client, ["q"], handlers=[type("NoCall", (), {})])


def test_fewer_threads_than_concurrency(client, namespace, register, start_worker):
    import sample_handlers.diamond  # noqa: F401

    register("diamond", "tree")
    worker = start_worker(concurrency=16, threads=2)
    assert worker.threads == 2 and worker.concurrency == 16
    tasks = [client.create_task(namespace, "diamond_pattern", context={"n": n}) for n in range(10)]
    tasks += [client.create_task(namespace, "hierarchical_tree", context={"base": n}) for n in range(5)]
    for t in tasks:
        assert t.wait(timeout=60).state == "complete"
    stats = worker.stats()
    assert stats["completed"] == 10 * 4 + 5 * 8 and stats["failed"] == 0 and stats["events"] == 80
    with pytest.raises(InvalidArgument, match="threads must be an int between 1 and concurrency"):
        tasker_core.Worker(client, [namespace], concurrency=2, threads=3)


def test_outcome_rejected_by_the_engine_fails_the_step_cleanly(client, namespace, register, start_worker):
    # Built past StepResult.failure's checks: the engine's own validation rejects it.
    def bad_outcome(context):
        return StepResult(False, error_message="x", error_type="t", retry_after=-1.0)

    register("single", "linear")
    start_worker(handlers={"single.only": bad_outcome})
    done = client.create_task(namespace, "single").wait(timeout=30)
    step = done.step("only")
    assert step.state == "error" and step.attempts == 1
    assert step.last_error["error_type"] == "invalid_outcome" and "retry_after" in step.last_error["message"]
    assert run_linear(client, namespace) == 25


def test_overrunning_handler_times_out_and_its_late_result_is_ignored(client, namespace, register, start_worker):
    register("timeout", "linear")
    worker = start_worker(concurrency=2)
    done = client.create_task(namespace, "overrun").wait(timeout=30)
    step = done.step("slow_first")
    assert done.state == "complete" and step.attempts == 2
    assert step.results == {"attempt": 2, "had_deadline": True}
    assert recorder.seen(step.step_uuid) == [1, 2]
    # The first attempt returns after the engine failed it; its result must not land.
    assert recorder.event(step.step_uuid + ":late").wait(10)
    time.sleep(0.3)
    again = client.get_task(done.task_uuid).step("slow_first")
    assert again.results == {"attempt": 2, "had_deadline": True} and again.attempts == 2
    assert worker.stats()["events"] == 2
    failed = [t for t in done.step_transitions if t.step_name == "slow_first" and t.to_state == "waiting_for_retry"]
    assert len(failed) == 1
    assert run_linear(client, namespace) == 25 and worker.running
