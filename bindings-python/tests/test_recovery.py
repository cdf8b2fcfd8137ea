"""Recovering failed work through the public client, with Python handlers: operator actions on
steps and tasks, the dead-letter queue, the staleness report and the worker registry.

The DLQ and the worker registry are shared by everything using the database (other tests of
this module, and on PostgreSQL other suites), so these tests look at their own tasks' entries
and workers, and check global figures (stats, the queue) only for what must hold regardless.
"""

import asyncio
import math
import os
import pickle
import time
import uuid
from typing import Callable

import pytest

import tasker_core
from tasker_core import (
    DlqEntry,
    DlqEntryNotFound,
    InvalidState,
    QueuedDlqEntry,
    StepDetail,
    StepNotFound,
    TaskNotFound,
    errors,
)

from sample_handlers import recorder
from sample_handlers.recovery import fix


def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def failed_task(client, namespace, name="recovery_chain", **context):
    done = client.create_task(namespace, name, context=context).wait(timeout=30)
    assert done.state == "error", done
    return done


def only_entry(client, task) -> DlqEntry:
    entries = client.list_dlq(task_uuid=task)
    assert len(entries) == 1, entries
    return entries[0]


def held_task(client, namespace):
    """A recovery_hold task whose step `s` is running (until `release(task)`)."""
    task = client.create_task(namespace, "recovery_hold", context={"hold": 20})
    assert recorder.event(task.task_uuid + ":started").wait(20), "s never started"
    return task


def release(task) -> None:
    recorder.event(task.task_uuid + ":release").set()


def test_completing_a_failed_step_by_hand_finishes_the_task_and_closes_its_dlq_entry(
    client, namespace, register, start_worker
):
    register("recovery_chain")
    start_worker()
    task = failed_task(client, namespace, fail="permanent")
    assert task.step("b").state == "error" and task.step("c").state == "pending"

    # The failure put the task in the DLQ, with a snapshot of its steps and template.
    entry = only_entry(client, task)
    assert (entry.reason, entry.status, entry.task_state) == ("permanent_failure", "pending", "error")
    assert entry.is_open and entry.resolved_by is None and entry.task_uuid == task.task_uuid
    assert entry.snapshot["template"] == {"namespace": namespace, "name": "recovery_chain", "version": "1.0.0"}
    assert [s["name"] for s in entry.snapshot["steps"]] == ["a", "b", "c"]
    b = entry.snapshot_step("b")
    assert b["state"] == "error" and b["attempts"] == 1
    assert b["last_error"]["error_type"] == "broken" and b["last_error"]["message"] == "b is broken"

    # The operator supplies b's result; c receives it as b's dependency result.
    step = client.complete_step_manually(
        task, "b", {"manual": 42}, {"ticket": "OPS-1"}, by="alice", reason="fixed upstream"
    )
    assert isinstance(step, StepDetail) and isinstance(step, tasker_core.Step)
    assert (step.name, step.state, step.results) == ("b", "complete", {"manual": 42})
    manual = step.transitions[-1]
    assert manual.event == "complete_manually" and (manual.from_state, manual.to_state) == ("error", "complete")
    assert manual.metadata["by"] == "alice" and manual.metadata["reason"] == "fixed upstream"
    assert manual.metadata["metadata"] == {"ticket": "OPS-1"}

    done = client.wait_for_task(task, timeout=30)
    assert done.state == "complete"
    assert done.step("c").results == {"received": {"b": {"manual": 42}}}
    # Re-opened on the way: error -> enqueuing_steps -> steps_in_process -> ... -> complete.
    states = [t.to_state for t in done.transitions]
    assert states.index("error") < states.index("complete")
    reopen = next(t for t in done.transitions if t.event == "reopen")
    assert (reopen.from_state, reopen.to_state) == ("error", "enqueuing_steps")
    assert reopen.metadata == {"by": "alice", "reason": "fixed upstream"}

    # The investigation closed itself, credited to the operator.
    closed = client.get_dlq_entry(entry)
    assert (closed.status, closed.resolved_by, closed.is_open) == ("manually_resolved", "alice", False)
    assert closed.resolved_at is not None and closed.resolved_at >= entry.created_at
    assert any("fixed upstream" in n.text and n.by == "alice" for n in closed.notes), closed.notes


def test_resetting_a_fixed_step_runs_it_again(client, namespace, register, start_worker):
    register("recovery_chain")
    start_worker()
    task = failed_task(client, namespace, fail="retryable")

    # Every attempt's error, not only the last.
    b = client.get_step(task, "b")
    assert (b.state, b.attempts, b.max_attempts) == ("error", 2, 2)
    assert [e["message"] for e in b.errors] == ["b failed on attempt 1", "b failed on attempt 2"]
    assert all(e["error_type"] == "flaky" and e["retryable"] is True for e in b.errors)
    assert b.last_error == b.errors[-1]
    assert "RetryableError" in b.errors[0]["backtrace"]
    assert b.dependencies_satisfied and not b.retry_possible
    assert b.dependencies == ["a"]
    # Started and finished: the first attempt, the last one, and when it failed for good.
    assert b.first_attempted_at and b.last_attempted_at and b.completed_at
    assert b.first_attempted_at < b.last_attempted_at <= b.completed_at
    assert only_entry(client, task).reason == "max_retries_exceeded"

    fix(task.task_uuid)  # "deploy the fix"
    reset = client.reset_step(task, "b", by="bob", reason="deployed the fix")
    assert reset.state in ("enqueued", "in_progress", "complete"), reset.state
    assert reset.free_attempts == 2, "the attempts before the reset no longer count"
    assert any(t.event == "reset" and t.metadata["by"] == "bob" for t in reset.transitions)

    done = client.wait_for_task(task, timeout=30)
    assert done.state == "complete"
    b = done.step("b")
    assert b.attempts == 3, "attempt numbers keep growing across a reset"
    assert b.results == {"fixed": True, "attempt": 3}
    assert done.step("c").results == {"received": {"b": {"fixed": True, "attempt": 3}}}
    entry = only_entry(client, task)
    assert (entry.status, entry.resolved_by) == ("manually_resolved", "bob")


def test_resolving_a_step_by_hand_releases_its_dependents(client, namespace, register, start_worker):
    register("recovery_chain")
    start_worker()
    task = failed_task(client, namespace, fail="permanent")
    step = client.resolve_step_manually(task, "b", by="carol", reason="not needed this time")
    assert step.state == "resolved_manually"
    done = client.wait_for_task(task, timeout=30)
    assert done.state == "complete"
    assert [(s.name, s.state) for s in done.steps] == [("a", "complete"), ("b", "resolved_manually"), ("c", "complete")]
    # A step resolved by hand has no result to hand down.
    assert done.step("c").results == {"received": {"b": None}}
    assert only_entry(client, task).status == "manually_resolved"


def test_retry_task_resets_every_failed_step(client, namespace, register, start_worker):
    register("recovery_pair")
    start_worker()
    task = failed_task(client, namespace, "recovery_pair")
    steps = client.list_steps(task)
    assert [s.name for s in steps] == ["a", "b1", "b2", "d"]
    assert [s.name for s in steps if s.state == "error"] == ["b1", "b2"]
    d = steps[-1]
    assert d.state == "pending" and not d.dependencies_satisfied

    fix(task.task_uuid)
    summary = client.retry_task(task, by="dave", reason="both fixed")
    assert not summary.detailed and summary.task_uuid == task.task_uuid
    assert summary.state != "error"
    done = client.wait_for_task(task, timeout=30)
    assert done.state == "complete" and done.failed_steps == 0
    fixed = {"fixed": True, "attempt": 2}
    assert done.step("d").results == {"received": {"b1": fixed, "b2": fixed}}
    with pytest.raises(InvalidState) as e:
        client.retry_task(task, by="dave", reason="again")
    assert e.value.code == "invalid_state"
    assert str(e.value) == (
        f"task {task.task_uuid} is complete; only a task in error can be retried (reset its steps one by one instead)"
    )


def test_resolve_task_closes_it_by_hand(client, namespace, register, start_worker):
    register("recovery_chain")
    start_worker()
    task = failed_task(client, namespace, fail="permanent")
    summary = client.resolve_task(task, by="erin", reason="handled outside")
    assert summary.state == "resolved_manually" and summary.is_terminal
    done = client.get_task(task)
    assert done.step("c").state == "cancelled"
    resolved = next(t for t in done.transitions if t.event == "resolve_manually")
    assert (resolved.from_state, resolved.to_state) == ("error", "resolved_manually")
    assert resolved.metadata == {"by": "erin", "reason": "handled outside"}
    entry = only_entry(client, task)
    assert (entry.status, entry.resolved_by) == ("manually_resolved", "erin")
    with pytest.raises(InvalidState, match="only a failed or unfinished task can be resolved"):
        client.resolve_task(task, by="erin", reason="twice")


def test_cancelling_a_running_step_cancels_what_depends_on_it(client, namespace, register, start_worker):
    register("recovery_hold")
    start_worker()
    task = held_task(client, namespace)
    until(lambda: client.get_step(task, "s").state == "in_progress", "s to run")
    step = client.cancel_step(task, "s", by="frank", reason="no longer wanted")
    assert step.state == "cancelled"
    done = client.wait_for_task(task, timeout=30)
    assert done.state == "complete", "cancelled steps count as done"
    assert done.step("t").state == "cancelled"
    # The running attempt finishes after all; its result is refused.
    release(task)
    until(lambda: recorder.seen(task.task_uuid) == ["finished"], "the handler to return")
    time.sleep(0.3)
    s = client.get_step(task, "s")
    assert s.state == "cancelled" and s.results is None


def test_illegal_actions_raise_invalid_state_with_the_cores_message(client, namespace, register, start_worker):
    register("recovery_chain")
    start_worker()
    task = failed_task(client, namespace, fail="permanent")

    with pytest.raises(InvalidState) as e:
        client.reset_step(task, "a", by="x", reason="y")
    assert str(e.value) == "step 'a' is complete; only error, waiting_for_retry, enqueued steps can be reset"
    assert e.value.code == "invalid_state" and isinstance(e.value, tasker_core.TaskerError)
    with pytest.raises(InvalidState, match="^step 'b' is error; only .* steps can be cancelled$"):
        client.cancel_step(task, "b", by="x", reason="y")
    with pytest.raises(InvalidState, match="^step 'a' is complete; only .* steps can be completed manually$"):
        client.complete_step_manually(task, "a", {}, by="x", reason="y")

    with pytest.raises(StepNotFound) as e:
        client.resolve_step_manually(task, "nope", by="x", reason="y")
    assert isinstance(e.value, LookupError) and e.value.code == "step_not_found"
    assert (e.value.task_uuid, e.value.step) == (task.task_uuid, "nope")
    assert str(e.value) == f"task {task.task_uuid} has no step 'nope'"
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is StepNotFound and again.step == "nope"
    with pytest.raises(StepNotFound):
        client.get_step(task, "nope")
    missing = str(uuid.uuid4())
    with pytest.raises(TaskNotFound):
        client.reset_step(missing, "b", by="x", reason="y")
    with pytest.raises(TaskNotFound):
        client.list_steps(missing)
    with pytest.raises(DlqEntryNotFound) as e:
        client.get_dlq_entry(missing)
    assert e.value.entry_uuid == missing and e.value.code == "dlq_entry_not_found"
    with pytest.raises(DlqEntryNotFound):
        client.update_dlq_entry(missing, note="x", by="y")

    # Bad arguments stop at the client's edge.
    with pytest.raises(errors.InvalidArgument, match="result is not JSON-serialisable"):
        client.complete_step_manually(task, "b", {"ratio": math.nan}, by="x", reason="y")
    with pytest.raises(errors.InvalidArgument, match="the result"):
        client.complete_step_manually(task, "b", {"blob": "x" * (2 * 1024 * 1024)}, by="x", reason="y")
    with pytest.raises(TypeError, match="by must be a str"):
        client.reset_step(task, "b", by=None, reason="y")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="step must be"):
        client.reset_step(task, "", by="x", reason="y")
    with pytest.raises(errors.InvalidArgument, match="task_uuid 'not-a-uuid' is not a valid UUID"):
        client.get_step("not-a-uuid", "b")
    with pytest.raises(errors.InvalidArgument, match="status 'lost' is not a DLQ status"):
        client.list_dlq(status="lost")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument, match="reason 'bored' is not a DLQ reason"):
        client.list_dlq(reason="bored")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument, match="limit must be between 1"):
        client.list_dlq(limit=0)
    with pytest.raises(errors.InvalidArgument, match="min_ratio must be a finite"):
        client.staleness_report(min_ratio=math.nan)

    # A step is found by name, by uuid, or given as a Step.
    b = client.get_step(task, "b")
    assert client.get_step(task, b.step_uuid).name == "b"
    assert client.get_step(task.task_uuid, uuid.UUID(b.step_uuid)).name == "b"
    assert client.get_step(task, task.step("b")).name == "b"
    # Nothing changed.
    assert client.get_task(task).state == "error" and client.get_step(task, "b").state == "error"


def test_dlq_entries_are_investigated_counted_and_queued(client, namespace, register, start_worker):
    register("recovery_chain", "recovery_hold")
    start_worker()
    before = client.dlq_stats()
    permanent = failed_task(client, namespace, fail="permanent")
    exhausted = failed_task(client, namespace, fail="retryable")
    running = held_task(client, namespace)
    try:
        manual = client.add_to_dlq(running, by="hank", note="looks odd")
        assert (manual.reason, manual.status, manual.task_state) == ("manual", "pending", "steps_in_process")
        assert [(n.by, n.text) for n in manual.notes] == [("hank", "looks odd")]
        with pytest.raises(InvalidState, match="already has an open DLQ entry"):
            client.add_to_dlq(running, by="hank", note="twice")
        assert client.get_task(running).state == "steps_in_process", "the task itself is left alone"

        # Stats count every entry of the database: ours are among them, and they add up.
        stats = client.dlq_stats()
        assert stats.total >= before.total + 3 and stats.open >= 3
        for reason in ("permanent_failure", "max_retries_exceeded", "manual"):
            assert stats.by_reason[reason] >= before.by_reason.get(reason, 0) + 1
        assert sum(stats.by_reason.values()) == sum(stats.by_status.values()) == stats.total
        assert sum(c.count for c in stats.counts) == stats.total
        assert stats.open == sum(c.count for c in stats.counts if c.status in ("pending", "investigating"))

        # The investigation queue: most urgent first, by reason weight (+ age and priority).
        queue = client.dlq_queue(limit=10_000)
        assert all(isinstance(q, QueuedDlqEntry) and q.is_open for q in queue)
        assert [q.score for q in queue] == sorted((q.score for q in queue), reverse=True)
        ours = {permanent.task_uuid: "permanent", exhausted.task_uuid: "exhausted", running.task_uuid: "manual"}
        assert [ours[q.task_uuid] for q in queue if q.task_uuid in ours] == ["permanent", "exhausted", "manual"]
        scores = {ours[q.task_uuid]: q.score for q in queue if q.task_uuid in ours}
        assert 40 <= scores["permanent"] < 41 and 30 <= scores["exhausted"] < 31 and 10 <= scores["manual"] < 11
        assert len(client.dlq_queue(limit=1)) == 1

        # Investigating, then closing with a note.
        entry = only_entry(client, permanent)
        looking = client.update_dlq_entry(entry, "investigating", note="looking", by="ivy")
        assert (looking.status, looking.is_open, looking.resolved_by) == ("investigating", True, None)
        assert (looking.notes[-1].by, looking.notes[-1].text, looking.notes[-1].status) == (
            "ivy",
            "looking",
            "investigating",
        )
        noted = client.update_dlq_entry(entry.entry_uuid, note="still looking", by="ivy")
        assert noted.status == "investigating" and noted.notes[-1].status is None
        closed = client.update_dlq_entry(entry, "permanently_failed", note="bad input, won't fix", by="ivy")
        assert (closed.status, closed.resolved_by, closed.is_open) == ("permanently_failed", "ivy", False)
        assert closed.resolved_at is not None and len(closed.notes) == 3
        assert client.get_task(permanent).state == "error", "closing an entry leaves the task alone"

        # Filters and pages.
        assert client.list_dlq(task_uuid=permanent, open_only=True) == []
        assert [e.entry_uuid for e in client.list_dlq(status="permanently_failed", task_uuid=permanent)] == [
            entry.entry_uuid
        ]
        assert [e.reason for e in client.list_dlq(reason="manual", task_uuid=running)] == ["manual"]
        assert client.list_dlq(reason="manual", task_uuid=permanent) == []

        # A task has at most one open entry: a closed one cannot re-open beside a new one.
        second_look = client.add_to_dlq(permanent, by="jo", note="second look")
        with pytest.raises(InvalidState, match="already has an open DLQ entry"):
            client.update_dlq_entry(entry, "pending", note="re-open", by="jo")
        # Its history, newest first, a page at a time.
        pages = [client.list_dlq(task_uuid=permanent, limit=1, offset=i) for i in range(3)]
        assert [[e.entry_uuid for e in page] for page in pages] == [[second_look.entry_uuid], [entry.entry_uuid], []]
        assert asyncio.run(client.get_dlq_entry_async(entry)).status == "permanently_failed"
    finally:
        release(running)


def test_the_staleness_report_uses_the_templates_lifecycle(client, namespace, register, start_worker):
    register("recovery_hold")
    start_worker()
    task = held_task(client, namespace)
    try:
        report = client.staleness_report(0.0, limit=10_000)
        health = next(h for h in report if h.task_uuid == task.task_uuid)
        assert (health.state, health.health) == ("steps_in_process", "healthy")
        # The template's lifecycle block: one minute while its steps run; a day in all (default).
        assert health.threshold_ms == 60_000 and health.max_duration_ms == 24 * 3600 * 1000
        assert health.idle_ms < health.threshold_ms and health.age_ms < health.max_duration_ms
        # Only tasks at 90 % of their threshold or more: not this one.
        assert all(h.task_uuid != task.task_uuid for h in client.staleness_report(min_ratio=0.9, limit=10_000))
        assert all(h.health in ("warning", "stale") for h in client.staleness_report(min_ratio=0.8, limit=100))
    finally:
        release(task)
    assert client.wait_for_task(task, timeout=30).state == "complete"
    assert all(h.task_uuid != task.task_uuid for h in client.staleness_report(0.0, limit=10_000))


def test_list_workers_shows_this_python_worker_live(client, namespace, start_worker):
    worker_id = f"pytest-{namespace}"
    worker = start_worker(worker_id=worker_id, concurrency=3)
    workers = client.list_workers()
    me = next(w for w in workers if w.worker_id == worker_id)
    assert me.live and me.language == "python" and me.stopped_at is None
    assert (me.queues, me.concurrency, me.pid) == ([namespace], 3, os.getpid())
    assert me.host and me.in_flight >= 0 and me.last_heartbeat_at >= me.started_at
    live = [w.live for w in workers]
    assert live == sorted(live, reverse=True), "live workers first"

    worker.stop(10)
    me = next(w for w in asyncio.run(client.list_workers_async()) if w.worker_id == worker_id)
    assert not me.live and me.stopped_at is not None
