"""The FastAPI example app, through FastAPI's TestClient, against a real database."""

import logging
import sys
import time
import uuid

import pytest

pytest.importorskip("fastapi", reason="the test script installs fastapi; run it through scripts/test.sh")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import HERE  # noqa: E402

EXAMPLES = HERE.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

from fastapi_app.app import create_app  # noqa: E402

ORDER = {
    "order_id": 17,
    "items": [{"sku": "B-2", "quantity": 1, "unit_price": 5.0}, {"sku": "A-1", "quantity": 2, "unit_price": 9.5}],
}


@pytest.fixture
def app(db_url, namespace, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    text = (EXAMPLES / "fastapi_app" / "templates" / "process_order.yaml").read_text()
    (templates / "process_order.yaml").write_text(
        text.replace("namespace_name: fastapi_example", f"namespace_name: {namespace}")
    )
    return create_app(database_url=db_url, templates=str(templates), namespace=namespace)


def test_create_and_report_an_order(app, caplog):
    caplog.set_level(logging.INFO, logger="tasker.events")
    with TestClient(app) as http:
        worker = app.state.tasker_worker
        assert worker.running
        (bridge,) = app.state.tasker_subscribers
        assert bridge.running and bridge.delivery == "fast"
        created = http.post("/orders", json=ORDER)
        assert created.status_code == 202, created.text
        body = created.json()
        assert body["state"] == "steps_in_process" and body["created"] is True
        report = http.get(f"/orders/{body['task_uuid']}", params={"wait": 20}).json()
        assert report["state"] == "complete", report
        steps = report["steps"]
        assert steps["validate_order"]["result"] == {"total": 24.0, "item_count": 2}
        assert steps["reserve_inventory"]["result"] == {"reserved": ["A-1", "B-2"], "warehouse": "main"}
        assert steps["charge_payment"]["result"] == {"charged": 24.0, "payment_id": "pay_17"}
        assert steps["confirm_order"]["result"] == {
            "order_id": 17,
            "status": "confirmed",
            "payment_id": "pay_17",
            "items": ["A-1", "B-2"],
        }
        # Same order again: the idempotency key returns the first task.
        again = http.post("/orders", json=ORDER).json()
        assert again["task_uuid"] == body["task_uuid"] and again["created"] is False
        # The logging bridge put the order's task events in the app's logs.
        deadline = time.monotonic() + 10
        while not any(
            getattr(r, "tasker_event", {}).get("task_uuid") == body["task_uuid"]
            and r.tasker_event["name"] == "task.completed"
            for r in caplog.records
        ):
            assert time.monotonic() < deadline, "task.completed was not logged"
            time.sleep(0.02)
    # Leaving the TestClient ran the lifespan's shutdown: the worker stopped gracefully.
    assert not worker.running


def test_errors_map_to_http_statuses(app):
    with TestClient(app) as http:
        bad = http.post("/orders", json={"order_id": 0, "items": [{"sku": "x", "quantity": 1, "unit_price": 1}]})
        assert bad.status_code == 422 and bad.json()["detail"]["path"] == "/order_id"
        assert http.get(f"/orders/{uuid.uuid4()}").status_code == 404
        assert http.get("/orders/not-a-uuid").status_code == 400
        over = http.post(
            "/orders", json={"order_id": 5, "items": [{"sku": "gold", "quantity": 1, "unit_price": 20000}]}
        )
        report = http.get(f"/orders/{over.json()['task_uuid']}", params={"wait": 20}).json()
        assert report["state"] == "error"
        assert report["steps"]["validate_order"]["error"]["error_type"] == "over_limit"
        assert report["steps"]["confirm_order"]["state"] == "pending"
