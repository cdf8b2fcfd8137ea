from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tasker_core  # noqa: E402
from polyglot import MATH_QUEUES, ORDER_QUEUES, TEMPLATES, ScratchDb, WorkerGroup, backends_under_test  # noqa: E402


@pytest.fixture(params=backends_under_test())
def db(request: pytest.FixtureRequest) -> Iterator[ScratchDb]:
    """SQLite and PostgreSQL; a module that also runs on RabbitMQ overrides this fixture with
    `backends_under_test(with_rabbitmq=True)`."""
    scratch = ScratchDb.create(request.param)
    yield scratch
    scratch.drop()


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.jsonl"
    path.touch()
    return path


def read_ledger(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def client(db: ScratchDb) -> Iterator[tasker_core.Client]:
    c = tasker_core.connect(db.url)
    c.register_templates(str(TEMPLATES))
    yield c


@pytest.fixture
def workers(db: ScratchDb, client: tasker_core.Client, ledger: Path) -> Iterator[WorkerGroup]:
    """One worker process per language, on the order queues and the math queues."""
    group = WorkerGroup()
    env = {"TASKER_LEDGER": str(ledger), "TASKER_ENV": "test"}
    try:
        for language in ("python", "ruby", "typescript"):
            group.start(language, db.url, [ORDER_QUEUES[language], MATH_QUEUES[language]], lease=5, env=env)
        yield group
    finally:
        group.stop()


def order_context(order_id: int, **switches: object) -> dict:
    context = {
        "order_id": order_id,
        "customer_email": f"customer{order_id}@example.com",
        "items": [{"sku": "WIDGET", "quantity": 2, "price": 9.5}, {"sku": "GADGET", "quantity": 1, "price": 20.25}],
    }
    context.update(switches)
    return context


os.environ.setdefault("TASKER_ENV", "test")
