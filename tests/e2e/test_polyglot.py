"""One workflow, three languages: steps handled by Python, Ruby and TypeScript worker processes,
coordinated through the database. Every test runs on SQLite, on PostgreSQL, and on PostgreSQL
with RabbitMQ carrying the messages (when RABBITMQ_URL is set)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

import tasker_core
from conftest import order_context, read_ledger
from polyglot import ScratchDb, WorkerGroup, backends_under_test


@pytest.fixture(params=backends_under_test(with_rabbitmq=True))
def db(request: pytest.FixtureRequest) -> Iterator[ScratchDb]:
    scratch = ScratchDb.create(request.param)
    yield scratch
    scratch.drop()

EXPECTED_TOTAL = 39.25  # 2 x 9.50 + 1 x 20.25


def test_mixed_template_completes_with_the_right_values(
    client: tasker_core.Client, workers: WorkerGroup, ledger: Path
) -> None:
    tasks = [client.create_task("polyglot", "order_fulfillment", context=order_context(100 + i)) for i in range(3)]
    for i, task in enumerate(tasks):
        done = task.wait(timeout=60)
        order = 100 + i
        assert done.state == "complete", done
        r = done.results
        assert r["validate_order"] == {"order_id": order, "total": EXPECTED_TOTAL, "item_count": 2, "by": "python"}
        assert r["reserve_inventory"] == {
            "reservation_id": f"RES-{order}",
            "skus": ["GADGET", "WIDGET"],
            "warehouse": "east-1",
            "by": "ruby",
        }
        assert r["charge_payment"] == {
            "payment_id": f"PAY-{order}-1",
            "amount": EXPECTED_TOTAL,
            "gateway": "demo-pay",
            "by": "typescript",
        }
        assert r["ship_order"]["tracking_number"] == f"TRK-{order}"
        assert r["ship_order"]["reservation_id"] == f"RES-{order}"
        assert r["ship_order"]["payment_id"] == f"PAY-{order}-1"
        assert r["notify_customer"]["message"] == f"Order {order} shipped: TRK-{order} (payment PAY-{order}-1)"
        assert r["notify_customer"]["by"] == "ruby"
    runs = read_ledger(ledger)
    assert {(e["step"], e["language"]) for e in runs} == {
        ("validate_order", "python"),
        ("reserve_inventory", "ruby"),
        ("charge_payment", "typescript"),
        ("ship_order", "python"),
        ("notify_customer", "ruby"),
    }
    assert len(runs) == 15
    assert len({e["pid"] for e in runs}) == 3


def test_every_language_computes_the_same_values(client: tasker_core.Client, workers: WorkerGroup) -> None:
    # a = 6, b = 12, c = 14, d = 260, e = 267 from value 5
    expected = {"a": 6, "b": 12, "c": 14, "d": 260, "e": 267}
    for namespace, language in (("math_python", "python"), ("math_ruby", "ruby"), ("math_node", "typescript")):
        done = client.create_task(namespace, "math", context={"value": 5}).wait(timeout=60)
        assert done.state == "complete"
        assert {name: r["value"] for name, r in done.results.items()} == expected, language
        assert {r["by"] for r in done.results.values()} == {language}


def test_retryable_failure_in_each_language_then_success(
    client: tasker_core.Client, workers: WorkerGroup, ledger: Path
) -> None:
    context = order_context(200, fail_once_at=["validate_order", "reserve_inventory", "charge_payment"])
    done = client.create_task("polyglot", "order_fulfillment", context=context).wait(timeout=60)
    assert done.state == "complete"
    for name in ("validate_order", "reserve_inventory", "charge_payment"):
        step = done.step(name)
        assert step.attempts == 2, step
        assert step.last_error is not None and step.last_error["error_type"] == "TemporaryOutage"
    assert done.step("ship_order").attempts == 1
    # The payment id carries the attempt that succeeded.
    assert done.results["charge_payment"]["payment_id"] == "PAY-200-2"
    failed = sorted(e["language"] for e in read_ledger(ledger) if e["outcome"].startswith("failed"))
    assert failed == ["python", "ruby", "typescript"]


def test_permanent_failure_blocks_only_downstream_steps(client: tasker_core.Client, workers: WorkerGroup) -> None:
    context = order_context(300, fail_permanently_at="charge_payment")
    done = client.create_task("polyglot", "order_fulfillment", context=context).wait(timeout=60)
    assert done.state == "error"
    charge = done.step("charge_payment")
    assert (charge.state, charge.attempts) == ("error", 1)
    assert charge.last_error is not None and charge.last_error["error_type"] == "OrderRejected"
    assert done.step("reserve_inventory").state == "complete"
    assert done.step("validate_order").state == "complete"
    assert done.step("ship_order").state == "pending"
    assert done.step("notify_customer").state == "pending"


def test_cancelling_mid_flight_stops_the_task_in_every_language(
    client: tasker_core.Client, workers: WorkerGroup, ledger: Path
) -> None:
    task = client.create_task("polyglot", "order_fulfillment", context=order_context(400, slow_ms=1500))
    deadline = time.monotonic() + 30
    while task.refresh().step("validate_order").state != "in_progress":
        assert time.monotonic() < deadline, "validate_order never started"
        time.sleep(0.02)
    cancelled = client.cancel_task(task.uuid)
    assert cancelled.state == "cancelled"
    # The running Python step finishes; its result is discarded and nothing downstream runs.
    deadline = time.monotonic() + 30
    while task.refresh().step("validate_order").state == "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    final = task.refresh()
    assert final.state == "cancelled"
    assert {s.name: s.state for s in final.steps} == {
        "validate_order": "cancelled",
        "reserve_inventory": "cancelled",
        "charge_payment": "cancelled",
        "ship_order": "cancelled",
        "notify_customer": "cancelled",
    }
    assert final.step("validate_order").results is None
    time.sleep(0.5)
    ran = {e["step"] for e in read_ledger(ledger) if e["task_uuid"] == task.uuid}
    assert ran == {"validate_order"}


def test_worker_processes_stop_cleanly(db: ScratchDb) -> None:
    group = WorkerGroup()
    started = [group.start(lang, db.url, ["polyglot_idle"]) for lang in ("python", "ruby", "typescript")]
    group.stop()
    assert all(w.process.returncode in (0, -15, 143) for w in started), [w.process.returncode for w in started]
