"""Scale-out on PostgreSQL (with the database's queue, and with RabbitMQ carrying the messages
when RABBITMQ_URL is set): two orchestrators (`tasker serve`) and five worker processes (two
Python, two Ruby, one TypeScript) share one database. 500 mixed-language tasks all complete;
the handlers' ledger shows no step ran twice while nothing failed; a worker killed with SIGKILL
mid-run loses nothing: its in-flight steps run again after their lease."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

import tasker_core
from conftest import order_context, read_ledger
from polyglot import ORDER_QUEUES, TEMPLATES, ScratchDb, WorkerGroup, backends_under_test

TASKS = 500


@pytest.fixture(params=[b for b in backends_under_test(with_rabbitmq=True) if b != "sqlite"])
def pg(request: pytest.FixtureRequest) -> ScratchDb:
    scratch = ScratchDb.create(request.param)
    yield scratch
    scratch.drop()


def test_500_tasks_across_seven_processes_with_a_worker_killed(pg: ScratchDb, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    ledger.touch()
    client = tasker_core.connect(pg.url)
    client.register_templates(str(TEMPLATES))
    group = WorkerGroup()
    env = {"TASKER_LEDGER": str(ledger)}
    try:
        group.start_serve(pg.url)
        group.start_serve(pg.url)
        # Short leases so the killed worker's steps come back quickly.
        victim = group.start("python", pg.url, [ORDER_QUEUES["python"]], concurrency=8, lease=2, env=env)
        group.start("python", pg.url, [ORDER_QUEUES["python"]], concurrency=8, lease=2, env=env)
        group.start("ruby", pg.url, [ORDER_QUEUES["ruby"]], concurrency=8, lease=2, env=env)
        group.start("ruby", pg.url, [ORDER_QUEUES["ruby"]], concurrency=8, lease=2, env=env)
        group.start("typescript", pg.url, [ORDER_QUEUES["typescript"]], concurrency=16, lease=2, env=env)

        # A little work in each handler so that steps are in flight when the worker dies.
        tasks = [
            client.create_task("polyglot", "order_fulfillment", context=order_context(10_000 + i, slow_ms=20))
            for i in range(TASKS)
        ]
        # Kill one Python worker once it has done some of the work.
        deadline = time.monotonic() + 60
        while sum(1 for e in read_ledger(ledger) if e["pid"] == victim.pid) < 50:
            assert time.monotonic() < deadline, "the victim never got work"
            time.sleep(0.05)
        victim.kill()

        finished = [t.wait(timeout=300) for t in tasks]
    finally:
        group.stop()

    states = collections.Counter(t.state for t in finished)
    assert states == {"complete": TASKS}, states
    runs = read_ledger(ledger)
    assert all(e["outcome"] == "ok" for e in runs), [e for e in runs if e["outcome"] != "ok"][:5]
    per_step = collections.Counter(e["step_uuid"] for e in runs)
    steps = {s.step_uuid: s for t in finished for s in t.steps}
    assert len(steps) == TASKS * 5
    assert set(per_step) == set(steps), "every step ran, and only steps of these tasks"
    rerun = {uuid for uuid, n in per_step.items() if n > 1}
    for uuid in rerun:
        # Only a step whose attempt was lost with the killed worker may have run twice.
        step = steps[uuid]
        assert step.attempts >= 2 and step.last_error is not None and step.last_error["error_type"] == "worker_lost", step
        assert any(e["pid"] == victim.pid for e in runs if e["step_uuid"] == uuid)
    for uuid, step in steps.items():
        if uuid not in rerun:
            assert per_step[uuid] == 1
    lost = [s for s in steps.values() if s.last_error is not None]
    assert all(s.last_error["error_type"] == "worker_lost" for s in lost)
    # Every language and all five worker processes did work.
    assert {e["language"] for e in runs} == {"python", "ruby", "typescript"}
    assert len({e["pid"] for e in runs}) == 5
