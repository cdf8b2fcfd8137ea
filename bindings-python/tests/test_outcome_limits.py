"""The outcome boundary: what the engine does with results it cannot store as they are.

The core normalises every outcome the same way for every language: ``\\u0000`` becomes U+FFFD,
a result over 1 MiB or nested deeper than 64 levels fails the step permanently
(``result_too_large`` / ``result_too_deep``). What Python's own serialiser cannot write (NaN,
values too deep for its recursion limit) fails the step clearly too; the worker keeps serving.
"""

import pytest

from tasker_core import StepResult, _native
from tasker_core.errors import PermanentError, ValidationError

LIMIT_BYTES = _native.MAX_JSON_BYTES
LIMIT_DEPTH = _native.MAX_JSON_DEPTH


def run_linear(client, namespace, value=2):
    done = client.create_task(namespace, "linear_math", context={"value": value}).wait(timeout=30)
    assert done.state == "complete", [(s.name, s.last_error) for s in done.steps]
    return done.step("step_d").results["value"]


def nested(depth: int):
    """A list nested `depth` levels deep, built without recursion."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def run_single(client, namespace, register, start_worker, handler):
    register("single", "linear")
    worker = start_worker(handlers={"single.only": handler})
    done = client.create_task(namespace, "single").wait(timeout=30)
    return worker, done.step("only")


def assert_failed_permanently(step, error_type):
    assert step.state == "error" and step.attempts == 1, step.last_error
    assert step.last_error["error_type"] == error_type, step.last_error
    assert step.last_error["retryable"] is False


def test_limits_are_the_cores():
    assert LIMIT_BYTES == 1024 * 1024 and LIMIT_DEPTH == 64


def test_nul_in_a_result_becomes_the_replacement_character(client, namespace, register, start_worker):
    def handler(context):
        return StepResult.success({"a\x00b": "x\x00y", "list": ["\x00", {"k\x00": 1}]}, metadata={"m": "\x00"})

    worker, step = run_single(client, namespace, register, start_worker, handler)
    assert step.state == "complete", step.last_error
    assert step.results == {"a\ufffdb": "x\ufffdy", "list": ["\ufffd", {"k\ufffd": 1}]}
    assert run_linear(client, namespace) == 25 and worker.running


def test_nul_in_an_error_message_becomes_the_replacement_character(client, namespace, register, start_worker):
    def handler(context):
        raise PermanentError("bad\x00input", error_type="bad\x00kind")

    _, step = run_single(client, namespace, register, start_worker, handler)
    assert step.state == "error"
    assert step.last_error["message"] == "bad\ufffdinput" and step.last_error["error_type"] == "bad\ufffdkind"


def test_an_oversize_result_fails_with_result_too_large(client, namespace, register, start_worker):
    def handler(context):
        return {"blob": "x" * (LIMIT_BYTES + 1)}

    worker, step = run_single(client, namespace, register, start_worker, handler)
    assert_failed_permanently(step, "result_too_large")
    assert str(LIMIT_BYTES) in step.last_error["message"]
    assert step.results is None
    assert run_linear(client, namespace) == 25 and worker.running


def test_a_huge_error_message_is_cut_to_64_kib(client, namespace, register, start_worker):
    def handler(context):
        raise PermanentError("e" * 200_000)

    _, step = run_single(client, namespace, register, start_worker, handler)
    message = step.last_error["message"]
    assert step.state == "error" and message.startswith("eeee") and "[cut: 200000 bytes" in message
    assert len(message.encode()) < 64 * 1024 + 100


@pytest.mark.parametrize("depth", [LIMIT_DEPTH + 1, 100])
def test_a_result_deeper_than_the_limit_fails_with_result_too_deep(client, namespace, register, start_worker, depth):
    worker, step = run_single(client, namespace, register, start_worker, lambda context: nested(depth))
    assert_failed_permanently(step, "result_too_deep")
    assert str(LIMIT_DEPTH) in step.last_error["message"]
    assert run_linear(client, namespace) == 25 and worker.running


def test_a_result_at_the_depth_limit_is_stored(client, namespace, register, start_worker):
    _, step = run_single(client, namespace, register, start_worker, lambda context: nested(LIMIT_DEPTH))
    assert step.state == "complete", step.last_error
    assert step.results == nested(LIMIT_DEPTH)


def test_a_200_level_result_fails_the_step_clearly(client, namespace, register, start_worker):
    worker, step = run_single(client, namespace, register, start_worker, lambda context: nested(200))
    # `result_too_deep` is the aim; today the core's StepOutcome::from_json refuses outcome
    # documents nested beyond serde_json's recursion limit (128) as an invalid argument before
    # its limits apply, and the worker then reports `invalid_outcome` naming the reason.
    assert step.state == "error" and step.attempts == 1 and step.last_error["retryable"] is False, step.last_error
    assert step.last_error["error_type"] in ("result_too_deep", "invalid_outcome"), step.last_error
    assert "recursion limit" in step.last_error["message"] or str(LIMIT_DEPTH) in step.last_error["message"]
    assert run_linear(client, namespace) == 25 and worker.running


def test_a_result_too_deep_for_pythons_serialiser_fails_with_result_too_deep(client, namespace, register, start_worker):
    # json.dumps raises RecursionError here; the worker thread must survive it.
    worker, step = run_single(client, namespace, register, start_worker, lambda context: nested(100_000))
    assert_failed_permanently(step, "result_too_deep")
    assert "nested too deeply" in step.last_error["message"]
    assert run_linear(client, namespace) == 25 and worker.running


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_floats_fail_with_result_not_serializable(client, namespace, register, start_worker, value):
    worker, step = run_single(client, namespace, register, start_worker, lambda context: {"ratio": value})
    assert_failed_permanently(step, "result_not_serializable")
    assert "float" in step.last_error["message"]
    assert run_linear(client, namespace) == 25 and worker.running


def test_a_task_context_with_nul_is_refused_at_create_task(client, namespace, register):
    register("single")
    with pytest.raises(ValidationError) as refused:
        client.create_task(namespace, "single", context={"name": "a\x00b"})
    assert refused.value.code == "validation_failed"
    assert client.list_tasks(namespace=namespace, name="single") == []
