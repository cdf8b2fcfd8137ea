"""Decision points, deferred convergence, batches and checkpoints through the engine, with
Python handlers, on every backend."""

from collections import Counter

import pytest

from sample_handlers import recorder

# Created with the task; the chosen branches and the convergence step below them are created
# when the decision completes.
STATIC_APPROVAL_STEPS = {"validate_request", "routing_decision"}


def assert_complete(task):
    assert task.state == "complete", [(s.name, s.state, s.last_error) for s in task.steps]
    assert all(s.state == "complete" for s in task.steps), [(s.name, s.state) for s in task.steps]
    assert task.completed_steps == task.total_steps == len(task.steps)


@pytest.mark.parametrize(
    ("amount", "chosen"),
    [
        (250, ["auto_approve"]),
        (2500, ["manager_approval"]),
        (7500, ["finance_review", "manager_approval"]),
    ],
    ids=["small", "medium", "large"],
)
def test_approval_routing_creates_only_the_chosen_branches(client, namespace, register, start_worker, amount, chosen):
    register("approval")
    start_worker()
    done = client.create_task(namespace, "approval_routing", context={"amount": amount}).wait(timeout=60)
    assert_complete(done)
    assert {s.name for s in done.steps} == STATIC_APPROVAL_STEPS | set(chosen) | {"finalize_approval"}
    decision = done.step("routing_decision").results
    assert sorted(decision["decision_point_outcome"]["step_names"]) == chosen
    for name in [*chosen, "finalize_approval"]:
        assert done.step(name).created_by == "routing_decision"
    for name in chosen:
        step = done.step(name)
        assert step.batch is None and step.checkpoint is None
        # A created step receives its parent decision's result, other keys included.
        assert step.results["route"] == decision["route"]
    for name in STATIC_APPROVAL_STEPS:
        assert done.step(name).created_by is None
    final = done.step("finalize_approval").results
    assert final["branches"] == chosen and final["approved"] is True
    # Each chosen branch ran once, and no other.
    assert sorted(recorder.seen(done.task_uuid)) == chosen
    # The convergence waited for every branch that was created.
    last_branch = max(done.step(n).completed_at for n in chosen)
    assert done.step("finalize_approval").first_attempted_at >= last_branch


def test_no_branches_still_runs_the_convergence(client, namespace, register, start_worker):
    register("approval")
    start_worker()
    done = client.create_task(namespace, "approval_routing", context={"amount": 0}).wait(timeout=60)
    assert_complete(done)
    assert {s.name for s in done.steps} == STATIC_APPROVAL_STEPS | {"finalize_approval"}
    assert done.step("finalize_approval").created_by == "routing_decision"
    assert done.step("routing_decision").results == {"route": "none", "decision_point_outcome": {"type": "no_branches"}}
    assert done.step("finalize_approval").results == {"branches": [], "approvers": [], "approved": True}
    assert recorder.seen(done.task_uuid) == []


def test_an_unknown_branch_fails_the_decision_permanently(client, namespace, register, start_worker):
    register("approval")
    start_worker()
    context = {"amount": 10, "force_steps": ["auto_approve", "ceo_signoff"]}
    done = client.create_task(namespace, "approval_routing", context=context).wait(timeout=60)
    assert done.state == "error"
    decision = done.step("routing_decision")
    assert decision.state == "error" and decision.attempts == 1
    assert decision.last_error is not None and decision.last_error["error_type"] == "invalid_decision"
    assert "ceo_signoff" in decision.last_error["message"]
    assert {s.name for s in done.steps} == STATIC_APPROVAL_STEPS, "nothing was created"


def test_batches_fan_out_to_workers_and_converge(client, namespace, register, start_worker):
    register("batch_sum")
    start_worker()
    done = client.create_task(namespace, "batch_sum", context={"total": 2500, "batch_size": 1000}).wait(timeout=60)
    assert_complete(done)
    workers = ["process_batch_001", "process_batch_002", "process_batch_003"]
    assert {s.name for s in done.steps} == {"analyze", "aggregate", *workers}
    cursors = {}
    for name in workers:
        step = done.step(name)
        assert step.created_by == "analyze" and step.batch is not None and not step.batch.is_no_op
        cursors[name] = (step.batch.batch_id, step.batch.start_cursor, step.batch.end_cursor, step.batch.batch_size)
        # Checkpointed every 100 items; the last one is kept with the step.
        assert step.checkpoint is not None and step.checkpoint.cursor == step.batch.end_cursor
        assert step.checkpoint.items_done == step.batch.batch_size and step.checkpoint.attempt == 1
    assert cursors == {
        "process_batch_001": ("001", 0, 1000, 1000),
        "process_batch_002": ("002", 1000, 2000, 1000),
        "process_batch_003": ("003", 2000, 2500, 500),
    }
    assert done.step("analyze").results["batch_processing_outcome"]["worker_count"] == 3
    assert done.step("aggregate").results == {"workers": workers, "count": 2500, "sum": sum(range(2500))}
    ledger = Counter(i for _, _, i in recorder.seen(done.task_uuid))
    assert sorted(ledger) == list(range(2500)) and set(ledger.values()) == {1}


def test_no_batches_runs_one_no_op_worker(client, namespace, register, start_worker):
    register("batch_sum")
    start_worker()
    done = client.create_task(namespace, "batch_sum", context={"total": 0, "batch_size": 1000}).wait(timeout=60)
    assert_complete(done)
    assert {s.name for s in done.steps} == {"analyze", "process_batch_000", "aggregate"}
    worker = done.step("process_batch_000")
    assert worker.created_by == "analyze" and worker.batch is not None and worker.batch.is_no_op
    assert (worker.batch.batch_id, worker.batch.start_cursor, worker.batch.end_cursor) == ("000", 0, 0)
    assert worker.results == {"count": 0, "sum": 0, "no_op": True} and worker.checkpoint is None
    assert done.step("aggregate").results == {"workers": [worker.name], "count": 0, "sum": 0}


def test_a_worker_that_is_not_a_batch_worker_fails_the_batchable_step(client, namespace, register, start_worker):
    register("batch_sum")
    start_worker()
    context = {"total": 10, "batch_size": 5, "worker": "aggregate"}
    done = client.create_task(namespace, "batch_sum", context=context).wait(timeout=60)
    assert done.state == "error"
    analyze = done.step("analyze")
    assert analyze.last_error is not None and analyze.last_error["error_type"] == "invalid_batch_outcome"
    assert "aggregate" in analyze.last_error["message"] and analyze.attempts == 1
    assert {s.name for s in done.steps} == {"analyze"}


def test_a_retried_worker_resumes_from_its_checkpoint(client, namespace, register, start_worker):
    register("batch_resume")
    start_worker()
    task = client.create_task(namespace, "batch_resume", context={"total": 1000, "batch_size": 1000, "fail_after": 600})
    done = task.wait(timeout=60)
    assert_complete(done)
    worker = done.step("process_batch_001")
    assert worker.attempts == 2
    assert worker.results == {"count": 1000, "sum": sum(range(1000)), "resumed_from": 600, "resumed_items": 600}
    assert worker.checkpoint is not None and worker.checkpoint.attempt == 2 and worker.checkpoint.cursor == 1000
    ledger = recorder.seen(done.task_uuid)
    by_attempt = Counter(attempt for _, attempt, _ in ledger)
    assert by_attempt == {1: 600, 2: 400}
    items = Counter(i for _, _, i in ledger)
    assert sorted(items) == list(range(1000)) and set(items.values()) == {1}, "an item was processed twice"
    assert done.step("aggregate").results["sum"] == sum(range(1000))


def test_a_timed_out_attempt_cannot_checkpoint(client, namespace, register, start_worker):
    register("batch_fenced")
    start_worker()
    done = client.create_task(namespace, "batch_fenced", context={"total": 10, "batch_size": 10}).wait(timeout=60)
    assert_complete(done)
    worker = done.step("process_batch_001")
    assert worker.attempts == 2 and worker.results == {"count": 0, "sum": 0}
    # The retry may finish the task before the overrunning attempt notices its cancellation.
    assert recorder.event(done.task_uuid + ":late").wait(15)
    seen = recorder.seen(done.task_uuid)
    # The late checkpoint raised Fenced and was not stored: the retry resumed from the first.
    assert ("refused", "Fenced", "fenced") in seen
    assert ("resumed", 1) in seen
    assert worker.checkpoint is not None and worker.checkpoint.cursor == 1 and worker.checkpoint.attempt == 1
