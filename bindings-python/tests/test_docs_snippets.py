"""The Python snippets of the docs (docs/snippets/python/) do what their comments say."""

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tasker_core.testing import (
    assert_success,
    build_batch_worker_context,
    build_step_context,
    read_batches,
    read_decision,
    recorded_checkpoints,
    run_handler,
)

SNIPPETS = Path(__file__).resolve().parents[2] / "docs" / "snippets" / "python"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_snippet_{name}", SNIPPETS / f"{name}.py")
    assert spec is not None and spec.loader is not None, f"no snippet {name}.py in {SNIPPETS}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("amount", "steps"),
    [(999, ["auto_approve"]), (1_000, ["manager_approval"]), (7_500, ["manager_approval", "finance_review"])],
)
def test_conditional_snippet_routes_by_amount(amount, steps):
    snippet = load("conditional")
    context = build_step_context(dependency_results={"validate_request": {"amount": amount}})
    result = run_handler(snippet.RoutingDecision, context)
    assert read_decision(result) == steps
    assert_success(result, amount=amount)


def test_conditional_snippet_withdrawn_and_finalize():
    snippet = load("conditional")
    withdrawn = build_step_context(input={"withdrawn": True}, dependency_results={"validate_request": {"amount": 5}})
    assert read_decision(run_handler(snippet.RoutingDecision, withdrawn)) == []
    both = {"manager_approval": {"approved": True}, "finance_review": {"approved": True}}
    final = run_handler(snippet.Finalize, build_step_context(dependency_results=both))
    assert_success(final, {"approved": True, "by": ["finance_review", "manager_approval"]})


def test_batch_snippet_splits_checkpoints_and_aggregates():
    snippet = load("batch")
    plan = read_batches(run_handler(snippet.Analyze, build_step_context(input={"total": 2_500})))
    assert plan.worker == "process_batch" and [c.batch_size for c in plan.cursors] == [1_000, 1_000, 500]
    assert read_batches(run_handler(snippet.Analyze, build_step_context(input={"total": 0}))).no_batches

    context = build_batch_worker_context(0, 250, batch_config={"checkpoint_interval": 100})
    assert_success(run_handler(snippet.ProcessBatch, context), {"sum": sum(range(250))})
    assert [c.cursor for c in recorded_checkpoints(context)] == [100, 200, 250]
    # A retry from the checkpoint at 200 does only the rest, and still sums everything.
    retry = build_batch_worker_context(
        0, 250, batch_config={"checkpoint_interval": 100}, attempt=2, checkpoint=recorded_checkpoints(context)[1]
    )
    assert_success(run_handler(snippet.ProcessBatch, retry), {"sum": sum(range(250))})
    assert [c.cursor for c in recorded_checkpoints(retry)] == [250]
    no_op = build_batch_worker_context(0, 0, batch_id="000", is_no_op=True)
    assert_success(run_handler(snippet.ProcessBatch, no_op), {"sum": 0})

    workers = {f"process_batch_00{i}": {"sum": i} for i in (1, 2, 3)}
    assert_success(run_handler(snippet.Aggregate, build_step_context(dependency_results=workers)), {"sum": 6})


def test_events_snippet_publishes_and_books_once():
    import uuid
    from datetime import datetime, timezone

    from tasker_core.events import Event
    from tasker_core.testing import read_events

    snippet = load("events")
    result = run_handler(snippet.ChargeCard, build_step_context(input={"amount": 12.5}))
    assert_success(result)
    assert read_events(result) == [("payment.charged", {"amount": 12.5})]

    ledger = snippet.Ledger()
    assert ledger.group_name() == "ledger"
    charged = Event(uuid.uuid4(), "payment.charged", "domain", datetime.now(timezone.utc), {"amount": 12.5})
    ledger.handle(charged)
    ledger.handle(charged)  # delivered again: booked once
    assert ledger.booked == {charged.event_id: 12.5}
    task = uuid.uuid4()
    ledger.handle(Event(uuid.uuid4(), "task.failed", "task", datetime.now(timezone.utc), {}, task_uuid=task))
    assert ledger.failed_tasks == {task}


def test_getting_started_runs_as_the_guide_says(tmp_path: Path):
    # docs/getting-started-python.md, end to end: the shared template, these handlers, a worker.
    import tasker_core

    load("getting_started")  # registers the two handlers (@step_handler)
    client = tasker_core.connect("sqlite://" + str(tmp_path / "tasker.db"))
    client.register_templates(SNIPPETS.parent / "getting_started.yaml")
    with tasker_core.Worker(client, ["getting_started"]):
        task = client.create_task(
            "getting_started", "order_total", context={"order_id": 7, "items": [{"price": 10.0, "quantity": 3}]}
        )
        done = task.wait(timeout=30)
    assert done.state == "complete", [(s.name, s.last_error) for s in done.steps]
    assert done.step("compute_total").results == {"order_id": 7, "total": 36.0}
    client.close()


def test_getting_started_handlers_without_a_database():
    snippet = load("getting_started")
    too_many = build_step_context(input={"order_id": 1, "items": [{"price": 1, "quantity": 101}]})
    refused = run_handler(snippet.validate_order, too_many)
    assert (refused.error_type, refused.retryable) == ("quantity_too_large", False)
    context = build_step_context(
        input={"order_id": 7, "items": [{"price": 10.0, "quantity": 3}]},
        dependency_results={"validate_order": {"order_id": 7, "lines": 1}},
        config={"tax_rate": 0.2},
    )
    assert_success(run_handler(snippet.compute_total, context), {"order_id": 7, "total": 36.0})
