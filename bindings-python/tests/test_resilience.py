"""Backpressure on task creation, from Python (docs/operations.md, "Backpressure"). The circuit
breaker's `Unavailable` is proved with PostgreSQL stopped in tests/faults/test_pg_stopped.py."""

import pickle
import time

import pytest

import tasker_core
from tasker_core.errors import Backpressure, TaskerError, Unavailable


def test_creation_beyond_the_queue_limit_raises_backpressure(db_url, namespace, register, monkeypatch):
    monkeypatch.setenv("TASKER_BACKPRESSURE__MAX_QUEUE_DEPTH", "2")
    monkeypatch.setenv("TASKER_BACKPRESSURE__REFRESH_MS", "10")
    client = tasker_core.connect(db_url)
    try:
        register("single")
        for _ in range(2):
            client.create_task(namespace, "single")
        time.sleep(0.02)  # past the refresh: the depths are read again
        with pytest.raises(Backpressure) as refused:
            client.create_task(namespace, "single")
        e = refused.value
        assert e.code == "backpressure"
        assert (e.queue, e.depth, e.limit) == (namespace, 2, 2)
        assert 0 < e.retry_after <= 1
        assert f"queue '{namespace}' has 2 steps waiting, the limit is 2" in str(e)
        assert len(client.list_tasks(namespace=namespace)) == 2, "nothing was written"
        again = pickle.loads(pickle.dumps(e))
        assert isinstance(again, Backpressure) and again.queue == namespace
    finally:
        client.close()


def test_the_breaker_error_is_a_tasker_error_with_its_retry_hint():
    e = Unavailable("database unavailable: …", code="unavailable", resource="database", retry_after=1.5)
    assert isinstance(e, TaskerError)
    assert (e.code, e.resource, e.retry_after) == ("unavailable", "database", 1.5)


def test_health_reports_the_workers_of_this_process(client, namespace, start_worker):
    worker = start_worker()
    checks = {c["name"]: c for c in client.health()["checks"]}
    check = checks.get(f"worker {worker.worker_id}")
    assert check is not None, checks
    assert check["ok"] and check["detail"] == "ok"
    worker.stop(10)
    names = [c["name"] for c in client.health()["checks"]]
    assert f"worker {worker.worker_id}" not in names, "a worker stopped on purpose is not a failed one"
