"""The rows of docs/parity.md that the Python package proves (each language has the same tests)."""

import math
import warnings
from pathlib import Path

import pytest

from tasker_core import RetryableError, StepResult
from tasker_core.errors import InvalidArgument, TemplateConflict, TemplateNotFound
from tasker_core.testing import build_step_context, run_handler


def one_step_template(namespace: str, name: str = "one_try", mul: int = 1) -> str:
    return (
        f"name: {name}\nnamespace_name: {namespace}\nversion: 1.0.0\n"
        "steps:\n  - name: only\n    handler: {callable: parity.only, initialization: {mul: %d}}\n"
        "    retry: {max_attempts: 1}\n" % mul
    )


# -- templates: list and look up ------------------------------------------------------------------


def test_list_templates_and_get_template(client, namespace, register):
    assert client.backend in ("sqlite", "postgres") and client.database
    register("linear", "diamond")
    mine = [t for t in client.list_templates() if t.namespace == namespace]
    assert sorted(t.name for t in mine) == ["diamond_pattern", "linear_math"]
    linear = client.get_template(namespace, "linear_math")
    assert (linear.version, linear.steps) == ("1.0.0", ["step_a", "step_b", "step_c", "step_d"])
    assert linear.queues == [namespace] and linear.definition["name"] == "linear_math"
    assert linear.source_path is not None and linear.source_path.endswith("linear.yaml")
    assert client.get_template(namespace, "linear_math", "1.0.0") == linear
    with pytest.raises(TemplateNotFound):
        client.get_template(namespace, "linear_math", "9.9.9")


# -- registration is all-or-nothing ---------------------------------------------------------------


def test_registering_a_directory_with_one_clash_stores_nothing(client, namespace, tmp_path: Path):
    client.register_templates(_write(tmp_path / "first", "b.yaml", one_step_template(namespace)))

    # Only this namespace's templates: other suites may share the database.
    def mine():
        return sorted(t.name for t in client.list_templates() if t.namespace == namespace)

    before = mine()
    clash = tmp_path / "clash"
    _write(clash, "a_new.yaml", one_step_template(namespace, name="first_new"))
    _write(clash, "b_clash.yaml", one_step_template(namespace, mul=2))
    _write(clash, "c_new.yaml", one_step_template(namespace, name="last_new"))
    with pytest.raises(TemplateConflict):
        client.register_templates(clash)
    assert mine() == before
    with pytest.raises(TemplateNotFound):
        client.get_template(namespace, "first_new")


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    return directory


# -- strict identity -----------------------------------------------------------------------------


def test_strict_identity_returns_the_first_task_for_the_same_request(client, namespace, register):
    register("single")
    first = client.create_task(namespace, "single", context={"a": 1, "b": 2}, strict_identity=True)
    same = client.create_task(namespace, "single", context={"b": 2, "a": 1}, strict_identity=True)
    other = client.create_task(namespace, "single", context={"a": 2}, strict_identity=True)
    plain = client.create_task(namespace, "single", context={"a": 1, "b": 2})
    assert first.created and not same.created and same.task_uuid == first.task_uuid
    assert other.created and other.task_uuid != first.task_uuid
    assert plain.created and plain.task_uuid != first.task_uuid
    with pytest.raises(InvalidArgument, match="cannot be combined"):
        client.create_task(namespace, "single", idempotency_key="k", strict_identity=True)


# -- the same failure handling everywhere --------------------------------------------------------


def failing_with_nan_metadata(context):
    raise RetryableError("gateway down", error_type="GatewayDown", metadata={"latency": {"p99": math.nan}})


def test_a_failure_with_unserialisable_metadata_keeps_its_error_without_a_database():
    result = run_handler(failing_with_nan_metadata, build_step_context(step_name="only"))
    assert (result.error_type, result.error_message, result.retryable) == ("GatewayDown", "gateway down", True)
    assert result.metadata == {
        "metadata_dropped": {
            "code": "metadata_not_serializable",
            "path": "metadata.latency.p99",
            "reason": "float nan, which JSON cannot represent",
        }
    }


def test_a_failure_with_unserialisable_metadata_keeps_its_error_in_a_worker(
    client, namespace, tmp_path: Path, start_worker
):
    client.register_templates(_write(tmp_path, "one.yaml", one_step_template(namespace)))
    start_worker(handlers={"parity.only": failing_with_nan_metadata})
    done = client.create_task(namespace, "one_try").wait(timeout=30)
    error = done.step("only").last_error
    assert error is not None
    assert (error["error_type"], error["message"], error["retryable"]) == ("GatewayDown", "gateway down", True)
    assert error["metadata"]["metadata_dropped"]["code"] == "metadata_not_serializable"
    assert error["metadata"]["metadata_dropped"]["path"] == "metadata.latency.p99"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_number_in_a_result_is_refused_naming_its_path(value):
    result = run_handler(lambda context: StepResult.success({"ratio": [1.0, value]}), build_step_context())
    assert (result.error_type, result.retryable) == ("result_not_serializable", False)
    assert "result.ratio[1] is float" in (result.error_message or "")


# -- one name per concept -------------------------------------------------------------------------


def test_step_results_and_last_error_with_deprecated_aliases(client, namespace, register, start_worker):
    register("single")
    start_worker(handlers={"single.only": lambda context: {"ok": True}})
    step = client.create_task(namespace, "single").wait(timeout=30).step("only")
    assert step.results == {"ok": True} and step.last_error is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert step.result == {"ok": True} and step.error is None
    assert [type(w.message) for w in caught] == [DeprecationWarning, DeprecationWarning]
    assert "Step.results" in str(caught[0].message)


# -- the handler context: the same concepts in every language ------------------------------------


def test_the_handler_context_exposes_every_concept():
    ctx = build_step_context(
        input={"order": 7},
        dependency_results={"validate": {"ok": True}},
        config={"mul": 2},
        attempt=2,
        max_attempts=3,
        step_name="charge",
        namespace="shop",
        task_name="checkout",
        task_version="1.2.0",
        handler_callable="shop.Charge",
        handler_method="refund",
        cancelled=True,
    )
    assert (ctx.input, ctx.get_input("order"), ctx.config) == ({"order": 7}, 7, {"mul": 2})
    assert ctx.dependency_results == {"validate": {"ok": True}}
    assert ctx.get_dependency_result("validate") == {"ok": True}
    assert (ctx.attempt, ctx.max_attempts, ctx.is_retry, ctx.is_last_retry) == (2, 3, True, False)
    assert (ctx.step_name, ctx.namespace, ctx.task_name, ctx.task_version) == ("charge", "shop", "checkout", "1.2.0")
    assert (ctx.handler_callable, ctx.handler_method) == ("shop.Charge", "refund")
    assert ctx.task_uuid and ctx.step_uuid and ctx.correlation_id and ctx.event_id == 0
    assert ctx.deadline is None and ctx.batch is None and ctx.checkpoint is None
    assert ctx.cancelled is True
    with pytest.raises(Exception, match="cancelled"):
        ctx.raise_if_cancelled()
    ctx.publish("order.charged", {"amount": 7})
    assert ctx.published_events == [{"name": "order.charged", "payload": {"amount": 7}}]
