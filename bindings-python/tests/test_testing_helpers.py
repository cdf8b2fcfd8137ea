"""tasker_core.testing: handlers tested on plain data, without a database."""

import pytest

from tasker_core import StepContext, StepResult
from tasker_core.events import Subscriber, event_info
from tasker_core.testing import (
    assert_failure,
    assert_success,
    build_event,
    build_step_context,
    run_handler,
    run_handler_async,
    run_subscriber,
)

from sample_handlers.dag import Arith, AsyncAnalyze, DagTransform, dag_triple_async
from sample_handlers.failures import AlwaysBroken, Flaky, RateLimited, Refuse, ReturnsNan, ReturnsSet


def test_build_step_context():
    ctx = build_step_context(
        input={"order_id": 7},
        dependency_results={"validate": {"ok": True}},
        config={"op": "add"},
        attempt=2,
        max_attempts=2,
    )
    assert isinstance(ctx, StepContext)
    assert ctx.input == {"order_id": 7} and ctx.get_input("order_id") == 7
    assert ctx.get_dependency_result("validate") == {"ok": True}
    assert ctx.get_dependency_result("missing") is None
    assert ctx.get_dependency_result("missing", {}) == {}
    assert ctx.config == {"op": "add"}
    assert ctx.is_retry and ctx.is_last_retry
    first = build_step_context()
    assert not first.is_retry and not first.is_last_retry and first.attempt == 1
    with pytest.raises(ValueError, match="attempt"):
        build_step_context(attempt=0)
    with pytest.raises(ValueError, match="input is not JSON-serialisable"):
        build_step_context(input={"s": {1}})


def test_run_class_function_method_and_async_handlers():
    ctx = build_step_context(input={"value": 4}, config={"op": "mul", "operand": 5})
    assert_success(run_handler(Arith, ctx), {"value": 20, "op": "mul", "parents": []})
    assert_success(run_handler(Arith(), ctx), value=20, op="mul")
    assert_success(run_handler("sample_handlers.dag.Arith", ctx), value=20)
    left = build_step_context(dependency_results={"dag_process_left": {"value": 1}})
    assert_success(run_handler(DagTransform, left, method="transform"), {"value": 101})
    init = build_step_context(dependency_results={"dag_init": {"value": 2}})
    assert_success(run_handler(dag_triple_async, init), {"value": 6})
    right = build_step_context(dependency_results={"dag_process_right": {"value": 3}})
    assert_success(run_handler(AsyncAnalyze, right), {"value": 9})


def test_failures_match_what_a_worker_records():
    ctx = build_step_context(config={"succeed_on": 2})
    assert_failure(run_handler(Flaky, ctx), "ConnectionResetError", retryable=True, message_contains="attempt 1")
    assert_success(run_handler(Flaky, build_step_context(config={"succeed_on": 2}, attempt=2)), attempt=2)
    refused = run_handler(Refuse)
    assert_failure(refused, "card_declined", retryable=False)
    assert refused.metadata == {"decline_code": 51}
    broken = run_handler(AlwaysBroken)
    assert_failure(broken, "ValueError", retryable=True)
    assert "Traceback" in broken.backtrace
    assert_failure(run_handler(RateLimited, build_step_context(config={"retry_after": 2})), retry_after=2.0)
    assert_failure(run_handler(ReturnsSet), "result_not_serializable", retryable=False, message_contains="set")
    assert_failure(run_handler(ReturnsNan), "result_not_serializable")
    assert_failure(run_handler("nowhere_at_all.Handler"), "handler_not_found", retryable=False)


def test_assertions_fail_when_they_should():
    with pytest.raises(AssertionError, match="expected success"):
        assert_success(StepResult.failure("boom"))
    with pytest.raises(AssertionError, match="expected failure"):
        assert_failure(StepResult.success({}))
    with pytest.raises(AssertionError, match=r"result\['a'\] == 1, expected 2"):
        assert_success(StepResult.success({"a": 1}), a=2)
    with pytest.raises(AssertionError, match="error_type"):
        assert_failure(StepResult.failure("x", error_type="a"), "b")


def test_step_result_api():
    ok = StepResult.success({"x": 1}, metadata={"m": True})
    assert ok.is_success and not ok.is_failure and ok.result == {"x": 1} and ok.metadata == {"m": True}
    bad = StepResult.failure("nope", error_type="card_declined", retryable=False)
    assert bad.is_failure and bad.error_message == "nope" and bad.retryable is False
    with pytest.raises(ValueError, match="retry_after"):
        StepResult.failure("x", retry_after=float("nan"))
    with pytest.raises(TypeError, match="message"):
        StepResult.failure(42)


def test_run_handler_async_inside_a_loop():
    import asyncio

    ctx = build_step_context(dependency_results={"dag_process_right": {"value": 5}})
    result = asyncio.run(run_handler_async(AsyncAnalyze, ctx))
    assert_success(result, {"value": 25})


def test_build_event_and_run_subscriber_need_no_database():
    seen = []

    class Audit(Subscriber):
        subscribe_to = ["task.completed", "payment.*"]

        def handle_task_completed(self, event):
            seen.append(("completed", event.name, event.category, event.step_uuid))

    class AsyncAudit(Subscriber):
        subscribe_to = ["payment.*"]

        async def handle(self, event):
            seen.append(("async", event.name, event.payload))

    completed = build_event("task.completed")
    assert completed.payload == event_info("task.completed").example
    assert (completed.delivery, completed.attempt, completed.position) == ("durable", 1, 1)
    run_subscriber(Audit, completed)
    run_subscriber(AsyncAudit(), build_event("payment.charged", {"amount": 5}, attempt=2))
    assert seen == [("completed", "task.completed", "task", None), ("async", "payment.charged", {"amount": 5})]

    step = build_event("step.failed", namespace="billing", delivery="fast")
    assert (step.category, step.namespace, step.is_durable, step.position) == ("step", "billing", False, None)
    assert step.step_uuid is not None
    # What the handler raises reaches the test, as a runner would fail the delivery with it.
    with pytest.raises(NotImplementedError, match="payment.refunded"):
        run_subscriber(Audit, build_event("payment.refunded"))
    with pytest.raises(ValueError, match="payload"):
        build_event("payment.charged", {"amount": float("nan")})
    with pytest.raises(TypeError, match="colour"):
        build_event("task.completed", colour="red")
    with pytest.raises(TypeError, match="Subscriber"):
        run_subscriber(object(), completed)
