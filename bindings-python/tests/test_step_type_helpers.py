"""Decision and batch helpers, the cursor builder, batch contexts and checkpoints, and their
test helpers: all on plain data, without a database."""

import asyncio
from datetime import datetime

import pytest

import tasker_core
from tasker_core import BatchContext, BatchCursor, Checkpoint, StepContext, StepResult, batch_cursors
from tasker_core.client import Step
from tasker_core.errors import Fenced, InvalidArgument
from tasker_core.testing import (
    assert_failure,
    assert_success,
    build_batch_worker_context,
    build_step_context,
    read_batches,
    read_decision,
    recorded_checkpoints,
    run_handler,
)

from sample_handlers.approval import FinalizeApproval, RoutingDecision
from sample_handlers.batches import Aggregate, Analyze, FlakyProcessBatch, ProcessBatch

# cursor builder ----------------------------------------------------------------------------


def test_batch_cursors_split_evenly_with_a_smaller_last_batch():
    assert batch_cursors(2500, 1000) == [
        BatchCursor("001", 0, 1000, 1000),
        BatchCursor("002", 1000, 2000, 1000),
        BatchCursor("003", 2000, 2500, 500),
    ]
    assert [c.to_json() for c in batch_cursors(4, 2)] == [
        {"batch_id": "001", "start_cursor": 0, "end_cursor": 2, "batch_size": 2},
        {"batch_id": "002", "start_cursor": 2, "end_cursor": 4, "batch_size": 2},
    ]
    assert batch_cursors(1, 1000) == [BatchCursor("001", 0, 1, 1)]
    assert batch_cursors(0, 10) == []


def test_batch_ids_widen_past_999_batches():
    ids = [c.batch_id for c in batch_cursors(999, 1)]
    assert ids[0] == "001" and ids[-1] == "999"
    wide = batch_cursors(1001, 1)
    assert wide[0].batch_id == "0001" and wide[-1].batch_id == "1001"
    assert sum(c.batch_size for c in wide) == 1001 and wide[-1].end_cursor == 1001


@pytest.mark.parametrize(
    ("total", "batch_size", "error", "match"),
    [
        (-1, 10, ValueError, "total must be a non-negative"),
        (10, 0, ValueError, "batch_size must be a positive"),
        (10, -5, ValueError, "batch_size must be a positive"),
        (10.0, 5, TypeError, "total must be an int, got float"),
        (10, True, TypeError, "batch_size must be an int, got bool"),
        ("10", 5, TypeError, "total must be an int"),
    ],
)
def test_batch_cursors_refuse_bad_input(total, batch_size, error, match):
    with pytest.raises(error, match=match):
        batch_cursors(total, batch_size)


# decision results ----------------------------------------------------------------------------


def test_decision_result_carries_the_wire_format_next_to_other_keys():
    r = StepResult.decision(steps=["manager_approval", "finance_review"], result={"amount": 7500})
    assert r.is_success
    assert r.result == {
        "amount": 7500,
        "decision_point_outcome": {"type": "create_steps", "step_names": ["manager_approval", "finance_review"]},
    }
    assert StepResult.decision(["a", "b", "a"]).result["decision_point_outcome"]["step_names"] == ["a", "b"]
    assert StepResult.decision(steps=("a",), metadata={"m": 1}).metadata == {"m": 1}


def test_no_branches_and_an_empty_decision_are_the_same():
    expected = {"decision_point_outcome": {"type": "no_branches"}}
    assert StepResult.no_branches().result == expected
    assert StepResult.decision(steps=[]) == StepResult.no_branches()
    assert StepResult.no_branches(result={"why": "nothing"}).result == {"why": "nothing", **expected}


def test_decision_refuses_mistakes_clearly():
    with pytest.raises(TypeError, match="list of step names"):
        StepResult.decision(steps="auto_approve")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty str"):
        StepResult.decision(steps=["ok", ""])
    with pytest.raises(TypeError, match="result must be a mapping"):
        StepResult.decision(steps=["a"], result=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already has a 'decision_point_outcome'"):
        StepResult.decision(steps=["a"], result={"decision_point_outcome": {}})


# batch results -------------------------------------------------------------------------------


def test_batches_from_total_and_batch_size():
    r = StepResult.batches(worker="process_batch", total=2500, batch_size=1000, result={"source": "s3"})
    outcome = r.result["batch_processing_outcome"]
    assert r.result["source"] == "s3"
    assert outcome == {
        "type": "create_batches",
        "worker_template_name": "process_batch",
        "worker_count": 3,
        "total_items": 2500,
        "cursor_configs": [c.to_json() for c in batch_cursors(2500, 1000)],
    }


def test_batches_from_explicit_cursors():
    cursors = [
        BatchCursor("a", "2024-01", "2024-02", 31),
        {"batch_id": "b", "start_cursor": "2024-02", "end_cursor": "2024-03", "batch_size": 29},
    ]
    outcome = StepResult.batches("monthly", cursors).result["batch_processing_outcome"]
    assert outcome["worker_count"] == 2 and outcome["total_items"] == 60
    assert outcome["cursor_configs"][1] == {
        "batch_id": "b",
        "start_cursor": "2024-02",
        "end_cursor": "2024-03",
        "batch_size": 29,
    }
    stated = StepResult.batches("monthly", cursors, total=100).result["batch_processing_outcome"]
    assert stated["total_items"] == 100


def test_no_batches_and_batches_of_nothing_are_the_same():
    expected = {"batch_processing_outcome": {"type": "no_batches"}}
    assert StepResult.no_batches().result == expected
    assert StepResult.batches(worker="w", total=0, batch_size=10) == StepResult.no_batches()
    assert StepResult.batches("w", []) == StepResult.no_batches()
    assert StepResult.no_batches(result={"rows": 0}).result == {"rows": 0, **expected}


def test_batches_refuse_mistakes_clearly():
    with pytest.raises(TypeError, match="worker must be the name"):
        StepResult.batches(worker="", total=1, batch_size=1)
    with pytest.raises(TypeError, match="needs cursors, or total and batch_size"):
        StepResult.batches(worker="w", total=10)
    with pytest.raises(TypeError, match="not both"):
        StepResult.batches("w", batch_cursors(10, 5), batch_size=5)
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        StepResult.batches("w", total=10, batch_size=0)
    with pytest.raises(ValueError, match=r"cursors\[0\] lacks end_cursor, batch_size"):
        StepResult.batches("w", [{"batch_id": "1", "start_cursor": 0}])
    with pytest.raises(TypeError, match=r"cursors\[1\] must be a BatchCursor"):
        StepResult.batches("w", [BatchCursor("1", 0, 1, 1), 7])
    with pytest.raises(ValueError, match="batch ids must be unique"):
        StepResult.batches("w", [BatchCursor("1", 0, 1, 1), BatchCursor("1", 1, 2, 1)])
    with pytest.raises(ValueError, match="already has a 'batch_processing_outcome'"):
        StepResult.no_batches(result={"batch_processing_outcome": None})


# reading outcomes back -------------------------------------------------------------------------


def test_read_decision_and_read_batches():
    assert read_decision(run_handler(RoutingDecision, _routing(50))) == ["auto_approve"]
    assert read_decision(run_handler(RoutingDecision, _routing(1500))) == ["manager_approval"]
    large = run_handler(RoutingDecision, _routing(5000))
    assert read_decision(large) == ["manager_approval", "finance_review"]
    assert_success(large, route="manager_approval+finance_review")
    assert read_decision(run_handler(RoutingDecision, _routing(0))) == []

    plan = read_batches(run_handler(Analyze, build_step_context(input={"total": 2500, "batch_size": 1000})))
    assert plan.worker == "process_batch" and plan.worker_count == 3 and plan.total_items == 2500
    assert [(c.start_cursor, c.end_cursor) for c in plan.cursors] == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert not plan.no_batches
    empty = read_batches(run_handler(Analyze, build_step_context(input={"total": 0, "batch_size": 1000})))
    assert empty.no_batches and empty.cursors == [] and empty.worker is None


def test_readers_fail_on_the_wrong_kind_of_result():
    with pytest.raises(AssertionError, match="no decision_point_outcome"):
        read_decision(StepResult.success({"x": 1}))
    with pytest.raises(AssertionError, match="no batch_processing_outcome"):
        read_batches(StepResult.decision(["a"]))
    with pytest.raises(AssertionError, match="expected success"):
        read_batches(StepResult.failure("boom"))
    bad = StepResult.success(
        {
            "batch_processing_outcome": {
                "type": "create_batches",
                "worker_template_name": "w",
                "worker_count": 2,
                "total_items": 1,
                "cursor_configs": [BatchCursor("1", 0, 1, 1).to_json()],
            }
        }
    )
    with pytest.raises(AssertionError, match="worker_count 2 != 1"):
        read_batches(bad)


def _routing(amount):
    return build_step_context(dependency_results={"validate_request": {"amount": amount}})


def test_convergence_handlers_see_only_what_ran():
    finalize = run_handler(
        FinalizeApproval,
        build_step_context(dependency_results={"manager_approval": {"approved": True, "by": "manager"}}),
    )
    assert_success(finalize, {"branches": ["manager_approval"], "approvers": ["manager"], "approved": True})
    assert_success(run_handler(FinalizeApproval), branches=[], approved=True)
    workers = {"process_batch_001": {"count": 2, "sum": 1}, "process_batch_002": {"count": 1, "sum": 2}}
    assert_success(run_handler(Aggregate, build_step_context(dependency_results=workers)), count=3, sum=3)


# batch worker contexts and checkpoints ---------------------------------------------------------


def test_build_batch_worker_context():
    ctx = build_batch_worker_context(
        1000, 2000, batch_id="002", batch_config={"checkpoint_interval": 10}, input={"total": 2500}
    )
    assert isinstance(ctx, StepContext) and isinstance(ctx.batch, BatchContext)
    batch = ctx.batch
    assert (batch.batch_id, batch.start_cursor, batch.end_cursor, batch.batch_size) == ("002", 1000, 2000, 1000)
    assert batch.config == {"checkpoint_interval": 10} and not batch.is_no_op
    assert batch.resume_cursor == 1000 and ctx.checkpoint is None
    assert ctx.step_name == "process_batch_002" and ctx.input == {"total": 2500}
    assert build_batch_worker_context(**batch_cursors(2500, 1000)[2].to_json()).batch == BatchContext(
        "003", 2000, 2500, 500
    )
    strings = build_batch_worker_context("a", "m", step_name="by_letter")
    assert strings.batch is not None and strings.batch.batch_size == 0 and strings.step_name == "by_letter"
    assert build_step_context().batch is None and build_step_context().checkpoint is None


def test_a_last_checkpoint_sets_where_to_resume():
    ctx = build_batch_worker_context(
        0, 1000, attempt=2, checkpoint={"cursor": 400, "items_done": 400, "accumulated": {"sum": 79800}}
    )
    last = ctx.checkpoint
    assert isinstance(last, Checkpoint)
    assert (last.cursor, last.items_done, last.accumulated, last.attempt) == (400, 400, {"sum": 79800}, 1)
    assert isinstance(last.recorded_at, datetime)
    assert ctx.batch is not None and ctx.batch.resume_cursor == 400
    with pytest.raises(TypeError, match="unknown keys"):
        build_batch_worker_context(0, 1, checkpoint={"cursor": 1, "done": 1})
    with pytest.raises(TypeError, match="with a 'cursor'"):
        build_batch_worker_context(0, 1, checkpoint={"items_done": 1})


def test_process_batch_checkpoints_every_interval():
    ctx = build_batch_worker_context(0, 1000, batch_config={"checkpoint_interval": 100})
    assert_success(run_handler(ProcessBatch, ctx), count=1000, sum=sum(range(1000)), resumed_from=None)
    recorded = recorded_checkpoints(ctx)
    assert [c.cursor for c in recorded] == list(range(100, 1001, 100))
    assert [c.items_done for c in recorded] == list(range(100, 1001, 100))
    assert recorded[0].accumulated == {"sum": sum(range(100))} and recorded[0].attempt == 1


def test_a_retry_resumes_from_the_checkpoint_of_the_failed_attempt():
    first = build_batch_worker_context(0, 1000, batch_config={"checkpoint_interval": 100}, input={"fail_after": 300})
    assert_failure(
        run_handler(FlakyProcessBatch, first), "RetryableError", retryable=True, message_contains="after 300 items"
    )
    last = recorded_checkpoints(first)[-1]
    assert (last.cursor, last.items_done) == (300, 300)
    second = build_batch_worker_context(
        0, 1000, batch_config={"checkpoint_interval": 100}, input={"fail_after": 300}, attempt=2, checkpoint=last
    )
    result = run_handler(FlakyProcessBatch, second)
    assert_success(result, count=1000, sum=sum(range(1000)), resumed_from=300, resumed_items=300)
    assert [c.cursor for c in recorded_checkpoints(second)] == list(range(400, 1001, 100))


def test_no_op_batch_returns_at_once():
    ctx = build_batch_worker_context(0, 0, batch_id="000", is_no_op=True)
    assert ctx.batch is not None and ctx.batch.is_no_op
    assert_success(run_handler(ProcessBatch, ctx), {"count": 0, "sum": 0, "no_op": True})
    assert recorded_checkpoints(ctx) == []


def test_checkpoint_arguments_are_checked_where_the_handler_calls():
    ctx = build_batch_worker_context(0, 10)
    batch = ctx.batch
    assert batch is not None
    with pytest.raises(InvalidArgument, match="needs a cursor"):
        batch.checkpoint(None)
    with pytest.raises(InvalidArgument, match="items_done must be a non-negative int, got -1"):
        batch.checkpoint(1, items_done=-1)
    with pytest.raises(InvalidArgument, match="items_done must be a non-negative int, got True"):
        batch.checkpoint(1, items_done=True)
    with pytest.raises(InvalidArgument, match="not JSON-serialisable"):
        batch.checkpoint(1, accumulated={"seen": {1, 2}})
    with pytest.raises(InvalidArgument, match="not JSON-serialisable"):
        batch.checkpoint(float("nan"))
    batch.checkpoint({"page": "tok_2"}, accumulated=[1, 2])
    (only,) = recorded_checkpoints(ctx)
    assert (only.cursor, only.items_done, only.accumulated) == ({"page": "tok_2"}, 0, [1, 2])
    detached = BatchContext("001", 0, 1, 1)
    with pytest.raises(RuntimeError, match="not attached to a worker"):
        detached.checkpoint(1)
    with pytest.raises(TypeError, match="build_batch_worker_context"):
        recorded_checkpoints(build_step_context())


def test_a_fenced_checkpoint_raises_in_the_handler():
    def refuse_after_two(checkpoint: Checkpoint) -> None:
        if checkpoint.items_done > 200:
            raise Fenced("event 7 is no longer running", code="fenced")

    ctx = build_batch_worker_context(0, 1000, batch_config={"checkpoint_interval": 100}, on_checkpoint=refuse_after_two)
    assert_failure(run_handler(ProcessBatch, ctx), "Fenced", retryable=True, message_contains="no longer running")
    assert [c.cursor for c in recorded_checkpoints(ctx)] == [100, 200]
    assert isinstance(Fenced("x"), tasker_core.TaskerError) and Fenced("x").code == "fenced"


def test_async_handlers_checkpoint_with_checkpoint_async():
    ctx = build_batch_worker_context(0, 250, batch_config={"checkpoint_interval": 100}, input={"fail_after": 0})
    assert_success(run_handler(FlakyProcessBatch, ctx), count=250)
    assert [c.cursor for c in recorded_checkpoints(ctx)] == [100, 200]
    again = build_batch_worker_context(0, 10)
    assert again.batch is not None
    asyncio.run(again.batch.checkpoint_async(5, items_done=5))
    assert recorded_checkpoints(again)[0].cursor == 5


# the engine's JSON ----------------------------------------------------------------------------


def test_a_step_event_with_batch_and_checkpoint_becomes_a_typed_context():
    event = {
        "event_id": 9,
        "task_uuid": "t",
        "step_uuid": "s",
        "step_name": "process_batch_002",
        "namespace": "n",
        "task_name": "batch_sum",
        "task_version": "1.0.0",
        "handler": {"callable": "x.Y", "method": "call", "initialization": {}},
        "task_context": {},
        "dependency_results": {"analyze": {"total": 2500}},
        "attempt": 2,
        "max_attempts": 3,
        "correlation_id": "c",
        "deadline": None,
        "batch": {
            "batch_id": "002",
            "start_cursor": 1000,
            "end_cursor": 2000,
            "batch_size": 1000,
            "is_no_op": False,
            "batch_config": {"checkpoint_interval": 100},
        },
        "checkpoint": {
            "cursor": 1300,
            "items_done": 300,
            "accumulated": None,
            "attempt": 1,
            "recorded_at": "2025-01-02T03:04:05.123456789Z",
        },
    }
    sent = []
    ctx = StepContext._from_event(event, None, sent.append)
    assert ctx.batch == BatchContext("002", 1000, 2000, 1000, False, {"checkpoint_interval": 100})
    assert ctx.checkpoint is not None and ctx.checkpoint.items_done == 300
    assert ctx.checkpoint.recorded_at is not None and ctx.checkpoint.recorded_at.year == 2025
    assert ctx.batch.resume_cursor == 1300
    ctx.batch.checkpoint(1400, items_done=400)
    assert sent == ['{"cursor":1400,"items_done":400}']
    plain = StepContext._from_event({**event, "batch": None, "checkpoint": None, "step_name": "analyze"})
    assert plain.batch is None and plain.checkpoint is None
    no_config = StepContext._from_event({**event, "batch": {**event["batch"], "batch_config": None}})
    assert no_config.batch is not None and no_config.batch.config == {}


def test_a_task_step_says_what_created_it():
    row = {
        "step_uuid": "s",
        "name": "process_batch_001",
        "state": "complete",
        "attempts": 2,
        "max_attempts": 3,
        "retryable": True,
        "results": {"count": 1},
        "last_error": None,
        "queue": "q",
        "dependencies": ["analyze"],
        "created_at": "2025-01-02T03:04:05Z",
        "created_by": "analyze",
        "batch": {"batch_id": "001", "start_cursor": 0, "end_cursor": 1000, "batch_size": 1000, "is_no_op": False},
        "checkpoint": {
            "cursor": 500,
            "items_done": 500,
            "accumulated": {"sum": 1},
            "attempt": 1,
            "recorded_at": "2025-01-02T03:04:05Z",
        },
    }
    step = Step._from_json(row)
    assert step.created_by == "analyze"
    assert step.batch == tasker_core.StepBatch("001", 0, 1000, 1000, False)
    assert step.checkpoint is not None and step.checkpoint.cursor == 500 and step.checkpoint.attempt == 1
    static = Step._from_json({**row, "created_by": None, "batch": None, "checkpoint": None})
    assert static.created_by is None and static.batch is None and static.checkpoint is None
