"""Events from Python: the catalog, subscribers of durable groups and of the fast broadcast,
domain events published by Python handlers, retries and dead letters, members of one group
sharing its events, and the logging bridge (also from the FastAPI lifespan)."""

import asyncio
import contextlib
import logging
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import datetime
from typing import Callable, List

import pytest

import tasker_core
from tasker_core.events import (
    Event,
    EventDeadLetter,
    LoggingSubscriber,
    Subscriber,
    SubscriberRunner,
    catalog,
    envelope_schema,
    event_info,
    pattern_matches,
)
from tasker_core.testing import build_step_context, read_events, run_handler

from sample_handlers.events import Charge

# Short leases and backoffs keep the tests quick.
FAST_OPTIONS = {"lease": 1.5, "backoff": 0.01, "poll_interval": 0.02}


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Recorder(Subscriber):
    """Keeps every event it handles."""

    subscribe_to = ["task.*", "step.*"]

    def __init__(self, patterns=None) -> None:
        if patterns is not None:
            self.subscribe_to = patterns
        self.events: List[Event] = []
        self._lock = threading.Lock()

    def handle(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of_task(self, task_uuid: str) -> List[Event]:
        with self._lock:
            return [e for e in self.events if e.task_uuid == uuid.UUID(task_uuid)]

    def names_of(self, task_uuid: str) -> List[str]:
        return [
            f"{e.name}:{e.payload['step_name']}" if e.step_uuid is not None else e.name for e in self.of_task(task_uuid)
        ]

    def has(self, task_uuid: str, name: str) -> bool:
        return any(e.name == name for e in self.of_task(task_uuid))


@pytest.fixture
def runners(client, namespace):
    """runners(subscriber, **options) starts a SubscriberRunner (group defaulting to one of this
    test's own) and stops it after the test; the groups made are deleted."""
    started: List[SubscriberRunner] = []

    def _start(subscriber, group="audit", **options) -> SubscriberRunner:
        for key, value in FAST_OPTIONS.items():
            options.setdefault(key, value)
        if options.get("delivery") == "fast":
            for key in FAST_OPTIONS:
                options.pop(key)
            runner = SubscriberRunner(client, subscriber, **options)
        else:
            runner = SubscriberRunner(client, subscriber, group=f"{namespace}_{group}", **options)
        started.append(runner.start())
        return runner

    yield _start
    for r in started:
        r.stop(5)
    for r in started:
        if r.delivery == "durable":
            client.delete_event_group(r.group)


# --- the catalog and the pure-Python parts -------------------------------------------------


def test_catalog_lists_the_lifecycle_events_with_schemas_and_examples():
    entries = catalog()
    names = {e.name for e in entries}
    for required in (
        "task.created",
        "task.started",
        "task.completed",
        "task.failed",
        "task.cancelled",
        "task.resolved",
        "step.enqueued",
        "step.started",
        "step.completed",
        "step.failed",
        "step.retry_scheduled",
        "step.timed_out",
        "step.resolved",
    ):
        assert required in names
    assert len(names) == len(entries)
    for e in entries:
        assert e.name.startswith(e.category + ".")
        assert e.payload_schema["type"] == "object" and isinstance(e.example, dict) and e.description
    completed = event_info("task.completed")
    assert completed is not None and completed.category == "task"
    assert {"namespace", "name", "to_state"} <= set(completed.payload_schema["properties"])
    assert event_info("payment.charged") is None
    assert "event_id" in envelope_schema()["properties"]
    assert pattern_matches("step.*", "step.failed") and pattern_matches("*", "a.b")
    assert not pattern_matches("task.completed", "task.completed_x")


def test_subscriber_group_and_routing():
    class PaymentAudit(Subscriber):
        subscribe_to = "payment.*"

        def __init__(self) -> None:
            self.seen: List[str] = []

        def handle_payment_charged(self, event: Event) -> None:
            self.seen.append(event.name)

    class HTTPHook(Subscriber):
        subscribe_to = ["*"]
        group = "hooks"

    audit = PaymentAudit()
    assert audit.group_name() == "payment_audit" and audit.patterns() == ["payment.*"]
    assert HTTPHook().group_name() == "hooks"

    class Unnamed(Subscriber):
        pass

    assert Unnamed().group_name() == "unnamed"
    event = Event(uuid.uuid4(), "payment.charged", "domain", datetime.now(), {"amount": 1})
    audit.handle(event)
    assert audit.seen == ["payment.charged"]
    with pytest.raises(NotImplementedError, match="handle_payment_refunded"):
        audit.handle(Event(uuid.uuid4(), "payment.refunded", "domain", datetime.now(), {}))
    with pytest.raises(tasker_core.errors.InvalidArgument, match="subscribe_to is empty"):
        Unnamed().patterns()
    assert Event.from_dict(event.to_dict()) == event


def test_publish_adds_events_to_the_outcome_and_keeps_other_metadata():
    context = build_step_context(input={"amount": 7})
    result = run_handler(Charge, context)
    assert read_events(result) == [("payment.charged", {"amount": 7})]
    assert result.metadata["provider"] == "test"
    declined = run_handler(Charge, build_step_context(input={"card": "declined"}))
    assert declined.is_failure and read_events(declined) == [("payment.declined", {"reason": "insufficient funds"})]
    context = build_step_context()
    with pytest.raises(TypeError, match="event name"):
        context.publish("", {})
    with pytest.raises(TypeError, match="mapping"):
        context.publish("a.b", [1])  # type: ignore[arg-type]
    context.publish("a.b")
    assert context.published_events == [{"name": "a.b", "payload": {}}]


def test_the_logging_bridge_formats_records(caplog):
    caplog.set_level(logging.INFO, logger="tasker.events")
    bridge = LoggingSubscriber(structlog=False)
    task_uuid = uuid.uuid4()
    payload = {"step_name": "charge", "to_state": "error", "attempt": 1}
    failed = Event(uuid.uuid4(), "step.failed", "step", datetime.now(), payload, task_uuid=task_uuid)
    bridge.handle(failed)
    record = caplog.records[-1]
    assert record.name == "tasker.events" and record.levelno == logging.WARNING
    assert record.getMessage() == f"step.failed task={task_uuid} step=charge (to error)"
    assert record.tasker_event["task_uuid"] == str(task_uuid)
    assert record.tasker_event["payload"] == payload
    assert bridge.patterns() == ["*"] and bridge.delivery == "fast"


def test_the_logging_bridge_logs_through_structlog():
    structlog = pytest.importorskip("structlog")
    bridge = LoggingSubscriber(structlog=True)
    event = Event(uuid.uuid4(), "task.completed", "task", datetime.now(), {"to_state": "complete"})
    try:
        with structlog.testing.capture_logs() as logs:
            bridge.handle(event)
    finally:
        structlog.reset_defaults()  # capture_logs leaves structlog "configured"
    assert logs == [
        {
            **event.to_dict(),
            "event": "tasker.event",
            "tasker_event": "task.completed",
            "log_level": "info",
        }
    ]


# --- durable subscribers -----------------------------------------------------------------


def test_a_subscriber_receives_a_tasks_lifecycle_events_in_order(client, namespace, register, start_worker, runners):
    register("linear")
    recorder = Recorder()
    runner = runners(recorder)
    start_worker()
    task = client.create_task(namespace, "linear_math", context={"value": 1})
    assert task.wait(timeout=30).state == "complete"
    wait_until(lambda: recorder.has(task.task_uuid, "task.completed"), what="task.completed")
    steps = ["step_a", "step_b", "step_c", "step_d"]
    expected = ["task.created", "task.started"]
    for s in steps:
        expected += [f"step.enqueued:{s}", f"step.started:{s}", f"step.completed:{s}"]
    assert recorder.names_of(task.task_uuid) == expected + ["task.completed"]
    events = recorder.of_task(task.task_uuid)
    for e in events:
        assert isinstance(e.event_id, uuid.UUID) and e.event_id.version == 7
        assert isinstance(e.occurred_at, datetime) and e.occurred_at.tzinfo is not None
        assert e.delivery == "durable" and e.attempt == 1 and isinstance(e.position, int)
        assert e.namespace == task.namespace and e.task_name == "linear_math"
    assert len({e.event_id for e in events}) == len(events)
    completed = events[-1]
    assert completed.category == "task" and completed.payload["to_state"] == "complete"
    assert completed.payload["name"] == "linear_math"
    assert runner.handled >= len(events) and runner.failed == 0
    group = next(g for g in client.event_groups() if g.group == runner.group)
    assert group.patterns == ["task.*", "step.*"] and group.live_members >= 1


def test_async_subscribers_run_on_the_runners_event_loop(client, namespace, register, start_worker, runners):
    register("linear")

    class AsyncRecorder(Subscriber):
        subscribe_to = ["task.completed"]

        def __init__(self) -> None:
            self.loops: List[asyncio.AbstractEventLoop] = []
            self.tasks: List[uuid.UUID] = []

        async def handle(self, event: Event) -> None:
            await asyncio.sleep(0)
            self.loops.append(asyncio.get_running_loop())
            self.tasks.append(event.task_uuid)

    subscriber = AsyncRecorder()
    runners(subscriber, group="async")
    start_worker()
    tasks = [client.create_task(namespace, "linear_math", context={"value": i}) for i in range(2)]
    for t in tasks:
        t.wait(timeout=30)
    wanted = {uuid.UUID(t.task_uuid) for t in tasks}
    wait_until(lambda: wanted <= set(subscriber.tasks), what="both task.completed")
    assert len(set(map(id, subscriber.loops))) == 1


def test_a_domain_event_published_by_a_python_handler_reaches_a_durable_subscriber(
    client, namespace, register, start_worker, runners
):
    register("payments")
    recorder = Recorder(["payment.*"])
    runners(recorder, group="payments")
    start_worker()
    task = client.create_task(namespace, "payments", context={"amount": 12.5}).wait(timeout=30)
    assert task.state == "complete"
    wait_until(lambda: recorder.has(task.task_uuid, "payment.charged"), what="payment.charged")
    (charged,) = recorder.of_task(task.task_uuid)  # payment.receipt_sent is fast: not in the log
    assert charged.category == "domain" and charged.payload == {"amount": 12.5}
    assert charged.step_uuid == uuid.UUID(task.step("charge").step_uuid)
    # The other metadata of the outcome stays in the audit trail.
    detail = client.get_step(task, "charge")
    assert any(isinstance(t.metadata, dict) and "provider" in str(t.metadata) for t in detail.transitions)


def test_fast_events_reach_a_fast_subscription_and_a_fast_runner(client, namespace, register, start_worker, runners):
    register("payments")
    recorder = Recorder(["payment.*"])
    runners(recorder, delivery="fast")
    start_worker()
    received: List[Event] = []
    with client.subscribe_fast(["payment.*", "task.completed"]) as fast:
        reader = threading.Thread(target=lambda: received.extend(fast), daemon=True)
        reader.start()
        ok = client.create_task(namespace, "payments", context={"email": "b@example.com"}).wait(timeout=30)
        declined = client.create_task(namespace, "payments", context={"card": "declined"}).wait(timeout=30)
        assert (ok.state, declined.state) == ("complete", "error")
        wait_until(lambda: recorder.has(declined.task_uuid, "payment.declined"), what="payment.declined")
        wait_until(lambda: recorder.has(ok.task_uuid, "payment.receipt_sent"), what="payment.receipt_sent")

        def names(task) -> List[str]:
            return [e.name for e in received if e.task_uuid == uuid.UUID(task.task_uuid)]

        wait_until(lambda: "task.completed" in names(ok), what="the fast reader's events")
    reader.join(5)
    assert not reader.is_alive(), "iterating a closed FastSubscription ends"
    # (The broadcast of one commit sends its lifecycle events before its domain events: the
    # last step's receipt comes after task.completed.)
    assert sorted(names(ok)) == ["payment.receipt_sent", "task.completed"]
    assert names(declined) == ["payment.declined"]
    sent = next(e for e in received if e.name == "payment.receipt_sent")
    assert sent.delivery == "fast" and sent.position is None and sent.payload == {"to": "b@example.com"}
    assert sent.namespace == namespace and sent.task_name == "payments"
    assert fast.closed and fast.missed == 0
    assert [e.name for e in recorder.of_task(ok.task_uuid)] == ["payment.receipt_sent"]


def test_a_fast_runner_counts_a_failing_handler_and_goes_on(client, namespace, register, start_worker, runners):
    register("linear")

    class Broken(Subscriber):
        subscribe_to = ["task.completed"]

        def handle(self, event: Event) -> None:
            raise ValueError("no metrics backend")

    runner = runners(Broken, delivery="fast")
    start_worker()
    for i in range(2):
        client.create_task(namespace, "linear_math", context={"value": i}).wait(timeout=30)
    wait_until(lambda: runner.failed >= 2, what="two failures")
    assert runner.running and runner.failure is None and runner.handled == 0


@pytest.mark.parametrize(
    ("card", "error_type"), [("undeclared", "event_not_declared"), ("bad_payload", "event_payload_invalid")]
)
def test_a_bad_publication_fails_the_step(client, namespace, register, start_worker, card, error_type):
    register("payments")
    start_worker()
    task = client.create_task(namespace, "payments", context={"card": card}).wait(timeout=30)
    assert task.state == "error"
    charge = task.step("charge")
    assert charge.state == "error" and charge.last_error["error_type"] == error_type, charge.last_error
    assert not charge.retryable or charge.attempts == 1


def test_a_failing_subscriber_is_retried_then_its_event_is_dead_lettered(client, namespace, register, runners):
    register("linear")

    class FlakyHook(Subscriber):
        subscribe_to = ["task.created"]

        def __init__(self) -> None:
            self.attempts: List[int] = []

        def handle(self, event: Event) -> None:
            if event.namespace != namespace:
                return  # another suite's task in a shared database
            self.attempts.append(event.attempt)
            raise RuntimeError("webhook returned 500")

    hook = FlakyHook()
    runner = runners(hook, group="flaky", max_attempts=3)
    tasks = [client.create_task(namespace, "linear_math", context={"value": i}) for i in range(2)]
    wanted = {uuid.UUID(t.task_uuid) for t in tasks}

    def dead() -> List[EventDeadLetter]:
        return [d for d in client.event_dead_letters(runner.group) if d.task_uuid in wanted]

    wait_until(lambda: len(dead()) == 2, what="two dead letters")
    letters = dead()
    assert all(d.name == "task.created" and d.attempts == 3 and d.error == "webhook returned 500" for d in letters)
    assert {d.event.task_uuid for d in letters} == wanted and all(d.group == runner.group for d in letters)
    assert all(isinstance(d.event, Event) and d.event.event_id == d.event_id for d in letters)
    assert sorted(hook.attempts) == [1, 1, 2, 2, 3, 3] and runner.failed == 6
    status = next(g for g in client.event_groups() if g.group == runner.group)
    assert status.dead_letters == 2
    assert client.event_dead_letters(runner.group, limit=1)[0].dead_at is not None
    # Dead-lettering moved the group on: nothing is pending for it, and it keeps running.
    wait_until(lambda: next(g for g in client.event_groups() if g.group == runner.group).lag == 0, what="lag 0")
    assert runner.running


def test_two_runners_of_one_group_split_the_events(client, namespace, register, start_worker, runners):
    register("linear")
    first, second = Recorder(["task.completed"]), Recorder(["task.completed"])
    a = runners(first, group="split", member_id="member-a")
    b = runners(second, group="split", member_id="member-b", concurrency=2)
    assert (a.member_id, b.member_id) == ("member-a", "member-b")
    # The first member holds every partition until its next renewal gives half back.
    time.sleep(1.2)
    status = next(g for g in client.event_groups() if g.group == a.group)
    assert status.live_members == 2
    start_worker()
    tasks = [client.create_task(namespace, "linear_math", context={"value": i}) for i in range(10)]
    for t in tasks:
        t.wait(timeout=30)
    wanted = {uuid.UUID(t.task_uuid) for t in tasks}

    def received() -> List[Event]:
        return [e for e in first.events + second.events if e.task_uuid in wanted]

    wait_until(lambda: {e.task_uuid for e in received()} == wanted, what="every task.completed")
    time.sleep(0.3)  # a duplicate would show up by now
    got = received()
    assert len(got) == len(wanted) == len({e.event_id for e in got})
    mine = {e.task_uuid for e in first.events} & wanted
    theirs = {e.task_uuid for e in second.events} & wanted
    assert not mine & theirs
    assert mine and theirs, "both members handled some of the ten tasks"


def test_a_stopped_runner_records_its_position_and_the_next_resumes(client, namespace, register, start_worker, runners):
    register("linear")
    start_worker()
    recorder = Recorder(["task.completed"])
    runner = runners(recorder, group="resume")
    one = client.create_task(namespace, "linear_math", context={"value": 1}).wait(timeout=30)
    wait_until(lambda: recorder.has(one.task_uuid, "task.completed"), what="the first task")
    runner.stop()
    assert not runner.running
    # The group still exists (no member): events go on being written for it.
    two = client.create_task(namespace, "linear_math", context={"value": 2}).wait(timeout=30)
    again = Recorder(["task.completed"])
    runners(again, group="resume")
    wait_until(lambda: again.has(two.task_uuid, "task.completed"), what="the second task")
    time.sleep(0.3)
    assert not again.of_task(one.task_uuid), "the acknowledged event is not delivered again"


def _line_reader(stream) -> "queue.Queue[str]":
    """Lines of a child's stdout, read by a thread: a test waits for one with a timeout instead
    of blocking forever on readline() when the child never prints it."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.strip())
        lines.put("<eof>")

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_a_subscriber_process_of_its_own_stops_on_sigterm_and_records_its_position(
    client, db_url, namespace, register, start_worker, tmp_path
):
    register("linear")
    group = f"{namespace}_process"
    script = tmp_path / "subscriber.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, tasker_core
            from tasker_core.events import Subscriber, SubscriberRunner

            class Printer(Subscriber):
                subscribe_to = ["task.completed"]

                def handle(self, event):
                    if event.namespace == {namespace!r}:
                        print(event.task_uuid, flush=True)

            client = tasker_core.connect({db_url!r})
            runner = SubscriberRunner(client, Printer, group={group!r}, lease=1.5, poll_interval=0.02).start()
            print("ready", flush=True)
            runner.run()
            print("stopped", runner.handled, flush=True)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = _line_reader(proc.stdout)
        assert lines.get(timeout=30) == "ready"
        start_worker()
        # This process's engine sees the other process's new group within events.group_check_ms
        # (1 s); until then it writes no lifecycle events for it. Create tasks until one arrives.
        created: List[str] = []
        delivered = None
        deadline = time.monotonic() + 30
        while delivered is None and time.monotonic() < deadline:
            task = client.create_task(namespace, "linear_math", context={"value": 1})
            created.append(task.wait(timeout=30).task_uuid)
            with contextlib.suppress(queue.Empty):
                delivered = lines.get(timeout=1.0)
        assert delivered in created, f"no task.completed reached the subscriber process; got {delivered!r}"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        err = proc.stderr.read() if proc.stderr is not None else ""
        assert proc.returncode == 0, err
        line = lines.get(timeout=5)
        while line in created:  # tasks completed after the first delivery
            line = lines.get(timeout=5)
        assert line.split()[0] == "stopped", line
        status = next(g for g in client.event_groups() if g.group == group)
        # Closed: it left the group and recorded what it had acknowledged.
        assert status.live_members == 0 and status.leased_partitions == 0
        again: List[str] = []
        with client.subscribe(group, ["task.completed"], **FAST_OPTIONS) as sub:
            deadline = time.monotonic() + 1.0  # (a shared database may never go quiet)
            while time.monotonic() < deadline:
                d = sub.poll(timeout=0.2)
                if d is not None:
                    again.append(str(d.event.task_uuid))
                    sub.ack(d)
        assert delivered not in again
    finally:
        if proc.poll() is None:
            proc.kill()
        client.delete_event_group(group)


def test_operator_calls(client, namespace):
    group = f"{namespace}_ops"
    with client.subscribe(group, ["task.*"], member_id="m1", **FAST_OPTIONS) as sub:
        assert (sub.group, sub.member_id) == (group, "m1")
        assert sub.poll(timeout=0.05) is None
        status = next(g for g in client.event_groups() if g.group == group)
        assert status.patterns == ["task.*"] and status.dead_letters == 0
    assert sub.closed and sub.poll(timeout=0) is None
    assert client.event_dead_letters(group) == []
    assert client.delete_event_group(group) is True
    assert client.delete_event_group(group) is False
    assert all(g.group != group for g in client.event_groups())
    assert isinstance(client.sequence_events(), int)
    with pytest.raises(tasker_core.errors.InvalidArgument, match="lease"):
        client.subscribe(group, ["*"], lease=0.01)
    with pytest.raises(tasker_core.errors.InvalidArgument, match="pattern"):
        client.subscribe(group, [])
    with pytest.raises(TypeError):
        client.subscribe_fast([""])


# --- the logging bridge, running -----------------------------------------------------------


def test_the_logging_bridge_logs_events_of_the_worker_beside_it(
    client, namespace, register, start_worker, runners, caplog
):
    caplog.set_level(logging.INFO, logger="tasker.events")
    caplog.set_level(logging.INFO, logger="tasker.audit")
    register("payments")
    runners(LoggingSubscriber(["task.*", "payment.*"], structlog=False), delivery="fast")
    runners(LoggingSubscriber(["task.completed"], group="durable_log", delivery="durable", logger="tasker.audit"))
    start_worker()
    task = client.create_task(namespace, "payments", context={"card": "declined"}).wait(timeout=30)
    ok = client.create_task(namespace, "payments", context={}).wait(timeout=30)

    def logged(logger: str, name: str, task) -> List[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == logger
            and getattr(r, "tasker_event", {}).get("name") == name
            and r.tasker_event.get("task_uuid") == task.task_uuid
        ]

    wait_until(lambda: logged("tasker.events", "task.failed", task), what="task.failed logged")
    wait_until(lambda: logged("tasker.audit", "task.completed", ok), what="task.completed logged durably")
    (failed,) = logged("tasker.events", "task.failed", task)
    assert failed.levelno == logging.WARNING and failed.tasker_event["payload"]["to_state"] == "error"
    (declined,) = logged("tasker.events", "payment.declined", task)
    assert declined.levelno == logging.INFO and declined.tasker_event["category"] == "domain"
    (durable,) = logged("tasker.audit", "task.completed", ok)
    assert durable.tasker_event["delivery"] == "durable" and f"{namespace}/payments@1.0.0" in durable.getMessage()


def test_the_fastapi_lifespan_runs_subscribers(client, db_url, namespace, register, caplog):
    pytest.importorskip("fastapi")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from tasker_core.contrib.fastapi import tasker_lifespan

    caplog.set_level(logging.INFO, logger="tasker.events")
    registered = register("linear")
    recorder = Recorder(["task.completed"])
    recorder.group = f"{namespace}_fastapi"
    app = FastAPI(
        lifespan=tasker_lifespan(
            database_url=db_url,
            queues=[namespace],
            concurrency=2,
            subscribers=[LoggingSubscriber(["task.*"], structlog=False), recorder],
        )
    )
    assert registered
    with TestClient(app):
        runners = app.state.tasker_subscribers
        assert [r.delivery for r in runners] == ["fast", "durable"] and all(r.running for r in runners)
        tasker = app.state.tasker_client
        task = tasker.create_task(namespace, "linear_math", context={"value": 3}).wait(timeout=30)
        wait_until(lambda: recorder.has(task.task_uuid, "task.completed"), what="task.completed")
        wait_until(
            lambda: any(
                getattr(r, "tasker_event", {}).get("task_uuid") == task.task_uuid
                and r.tasker_event["name"] == "task.completed"
                for r in caplog.records
            ),
            what="the log record",
        )
    assert not any(r.running for r in runners)
    client.delete_event_group(recorder.group)
