"""Telemetry from Python: a task created with a traceparent joins that trace, handlers get
their attempt's trace context when traces are exported, and the engine's metrics and health
are readable (docs/operations.md)."""

import uuid

import pytest

import tasker_core
from tasker_core.errors import InvalidArgument

from conftest import write_templates

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


def test_a_task_created_with_a_traceparent_joins_that_trace(client, namespace, register, start_worker):
    register("single")
    seen = []
    start_worker(handlers={"single.only": lambda ctx: seen.append(ctx.trace_context) or {}})
    task = client.create_task(namespace, "single", traceparent=CALLER)
    assert task.correlation_id == str(uuid.UUID(CALLER_TRACE))
    assert task.wait(timeout=30).state == "complete"
    # Traces are not exported in this process: handlers get no trace context.
    assert seen == [None]


def test_a_bad_traceparent_is_refused_naming_it(client, namespace, register):
    register("single")
    with pytest.raises(InvalidArgument, match="traceparent"):
        client.create_task(namespace, "single", traceparent="00-nope")
    with pytest.raises(TypeError, match="traceparent"):
        client.create_task(namespace, "single", traceparent=42)  # type: ignore[arg-type]


def test_handlers_get_their_attempts_trace_context_when_traces_are_exported(
    db_url, namespace, register, monkeypatch, tmp_path
):
    # Nothing listens on the endpoint: the export fails quietly, the handlers still get contexts.
    monkeypatch.setenv("TASKER_TELEMETRY__ENABLED", "true")
    monkeypatch.setenv("TASKER_TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:9")
    traced = tasker_core.connect(db_url)
    try:
        traced.register_templates(write_templates(tmp_path / "t", namespace, "single"))
        seen = []
        with tasker_core.Worker(traced, [namespace], {"single.only": lambda ctx: seen.append(ctx.trace_context) or {}}):
            task = traced.create_task(namespace, "single", traceparent=CALLER)
            assert task.wait(timeout=30).state == "complete"
        [context] = seen
        version, trace, span, flags = context.split("-")
        assert (version, trace, flags) == ("00", CALLER_TRACE, "01")
        assert len(span) == 16 and span != "00f067aa0ba902b7"
    finally:
        traced.close()


def test_metrics_and_health(client, namespace, register, start_worker):
    register("single")
    start_worker(handlers={"single.only": lambda ctx: {}})
    assert client.create_task(namespace, "single").wait(timeout=30).state == "complete"
    text = client.prometheus_metrics()
    assert "# TYPE tasker_steps_completed_total counter" in text
    assert f'tasker_steps_claimed_total{{queue="{namespace}"}} 1' in text
    snapshot = client.metrics()
    names = {s["name"] for s in snapshot["samples"]}
    assert {"tasker.tasks.created", "tasker.steps.completed", "db.client.connection.count"} <= names
    health = client.health()
    assert health["live"] and health["ready"]
    assert {c["name"] for c in health["checks"]} >= {"database", "migrations"}


def test_the_prometheus_text_parses_with_prometheus_client(client, namespace, register, start_worker):
    from prometheus_client.parser import text_string_to_metric_families

    register("single")
    start_worker(handlers={"single.only": lambda ctx: {}})
    for _ in range(3):
        assert client.create_task(namespace, "single").wait(timeout=30).state == "complete"
    families = {f.name: f for f in text_string_to_metric_families(client.prometheus_metrics())}
    claimed = [s for s in families["tasker_steps_claimed"].samples if s.labels.get("queue") == namespace]
    assert [s.value for s in claimed if s.name == "tasker_steps_claimed_total"] == [3.0]
    assert families["tasker_steps_claimed"].type == "counter"
    histograms = [f for f in families.values() if f.type == "histogram"]
    assert histograms, "step duration and claim latency are histograms"
    for family in histograms:
        buckets = [s for s in family.samples if s.name.endswith("_bucket")]
        assert buckets and all("le" in s.labels for s in buckets), family.name
