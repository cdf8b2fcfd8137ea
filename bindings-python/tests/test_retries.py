"""Failures raised by Python handlers: retries with the attempt numbers the handler saw,
permanent errors, exhaustion, and retry_after."""

from sample_handlers import recorder


def test_retryable_failure_then_success(client, namespace, register, start_worker):
    register("retries")
    start_worker()
    done = client.create_task(namespace, "retry_scenarios").wait(timeout=30)
    assert done.state == "complete"
    step = done.step("flaky")
    assert step.state == "complete" and step.attempts == 3
    assert step.results == {"attempt": 3, "max_attempts": 3}
    # (attempt, is_retry, is_last_retry) as the handler saw them.
    assert recorder.seen(step.step_uuid) == [(1, False, False), (2, True, False), (3, True, True)]
    retries = [t for t in done.step_transitions if t.step_name == "flaky" and t.to_state == "waiting_for_retry"]
    assert len(retries) == 2


def test_permanent_error_is_not_retried(client, namespace, register, start_worker):
    register("permanent")
    start_worker()
    done = client.create_task(namespace, "permanent_failure").wait(timeout=30)
    assert done.state == "error"
    step = done.step("refuse")
    assert step.state == "error" and step.attempts == 1 and step.max_attempts == 5
    assert recorder.seen(step.step_uuid) == [1]
    assert step.last_error["error_type"] == "card_declined"
    assert step.last_error["message"] == "card declined"
    assert step.last_error["retryable"] is False
    assert step.last_error["metadata"] == {"decline_code": 51}
    assert "PermanentError" in step.last_error["backtrace"]
    assert done.step("never_runs").state == "pending"


def test_retry_exhaustion(client, namespace, register, start_worker):
    register("exhaustion")
    start_worker()
    done = client.create_task(namespace, "retry_exhaustion").wait(timeout=30)
    assert done.state == "error"
    step = done.step("always_broken")
    assert step.state == "error" and step.attempts == 3
    assert recorder.seen(step.step_uuid) == [1, 2, 3]
    assert step.last_error["error_type"] == "ValueError"
    assert step.last_error["message"] == "broken on attempt 3"
    assert step.last_error["retryable"] is True
    assert 'raise ValueError(f"broken on attempt {context.attempt}")' in step.last_error["backtrace"]


def test_retry_after_is_honoured(client, namespace, register, start_worker):
    register("retry_after")
    start_worker()
    done = client.create_task(namespace, "retry_after").wait(timeout=30)
    assert done.state == "complete"
    step = done.step("rate_limited")
    assert step.attempts == 2 and step.results == {"attempt": 2}
    (first, t1), (second, t2) = recorder.seen(step.step_uuid)
    assert (first, second) == (1, 2)
    # The template's backoff is 10 ms; the handler asked for 1.5 s. The gap is a lower bound
    # the engine must respect (never shorter), so this cannot flake on a slow machine.
    assert t2 - t1 >= 1.4
    retry = [t for t in done.step_transitions if t.step_name == "rate_limited" and t.to_state == "waiting_for_retry"]
    assert len(retry) == 1
    assert (step.last_attempted_at - step.first_attempted_at).total_seconds() >= 1.4
