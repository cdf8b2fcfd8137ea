"""Shared fixtures.

Every test module runs once per backend: SQLite (a fresh file per module) always,
PostgreSQL (``DATABASE_URL``) when it is set, and PostgreSQL with RabbitMQ carrying the
messages (``postgres_rabbitmq``: ``messaging.backend = "rabbitmq"`` through
``TASKER_MESSAGING__BACKEND``, on ``RABBITMQ_URL``) when that is set too; or as requested with
``TASKER_TEST_BACKENDS=sqlite,postgres,postgres_rabbitmq``. Each test gets its own template namespace (and so
its own queue), which isolates it from other tests and other suites sharing the database.
"""

import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest

HERE = Path(__file__).resolve().parent
# The sample handlers are imported by class path, as an application's would be.
sys.path.insert(0, str(HERE))

import tasker_core  # noqa: E402

TEMPLATES = HERE / "fixtures" / "templates"


def _backends() -> List[str]:
    requested = os.environ.get("TASKER_TEST_BACKENDS", "").strip()
    if requested:
        names = [b.strip() for b in requested.split(",") if b.strip()]
    else:
        names = ["sqlite"] + (["postgres"] if os.environ.get("DATABASE_URL") else [])
        if os.environ.get("DATABASE_URL") and os.environ.get("RABBITMQ_URL"):
            names.append("postgres_rabbitmq")
    unknown = set(names) - {"sqlite", "postgres", "postgres_rabbitmq"}
    if unknown:
        raise pytest.UsageError(f"TASKER_TEST_BACKENDS has unknown backends: {sorted(unknown)}")
    return names


BACKENDS = _backends()


def pytest_configure(config: pytest.Config) -> None:
    on_postgres = "postgres" in BACKENDS or "postgres_rabbitmq" in BACKENDS
    if on_postgres and not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise pytest.UsageError(
            "PostgreSQL tests were requested but DATABASE_URL is not a postgres:// URL "
            f"(DATABASE_URL={os.environ.get('DATABASE_URL')!r})"
        )


def pytest_report_header(config: pytest.Config) -> str:
    return f"tasker backends: {', '.join(BACKENDS)}"


# What `postgres_rabbitmq` sets in the environment for its module's tests.
RABBITMQ_KEYS = ("TASKER_MESSAGING__BACKEND", "TASKER_MESSAGING__RABBITMQ_QUEUE_PREFIX")


@pytest.fixture(autouse=True)
def _messaging_environment_of_this_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment `db_url` sets for `postgres_rabbitmq` lives as long as its module-scoped
    fixture, which pytest may keep while it runs the module's other tests (those of another
    backend, or on no backend at all, such as a SQLite file of their own): they must not see it."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("db_url") != "postgres_rabbitmq":
        for k in RABBITMQ_KEYS:
            monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite://" + str(tmp_path_factory.mktemp("sqlite") / "tasker.db")
        return
    if request.param == "postgres":
        yield os.environ["DATABASE_URL"]
        return
    # Every engine the module's tests connect (worker processes they start included) sends its
    # messages over RabbitMQ, on queues of the module's own.
    saved = {k: os.environ.get(k) for k in RABBITMQ_KEYS}
    os.environ["TASKER_MESSAGING__BACKEND"] = "rabbitmq"
    os.environ["TASKER_MESSAGING__RABBITMQ_QUEUE_PREFIX"] = f"py{uuid.uuid4().hex[:12]}."
    try:
        yield os.environ["DATABASE_URL"]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def client(db_url: str) -> Iterator[tasker_core.Client]:
    c = tasker_core.connect(db_url)
    yield c
    c.close()


@pytest.fixture
def namespace() -> str:
    return "py_" + uuid.uuid4().hex[:10]


def write_templates(dest: Path, namespace: str, *names: str) -> Path:
    """Copies fixture templates into `dest` with their namespace replaced."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        text = (TEMPLATES / f"{name}.yaml").read_text()
        assert "namespace_name: NAMESPACE" in text, name
        (dest / f"{name}.yaml").write_text(text.replace("namespace_name: NAMESPACE", f"namespace_name: {namespace}"))
    return dest


@pytest.fixture
def register(client: tasker_core.Client, namespace: str, tmp_path: Path):
    """register("linear", "diamond") registers fixture templates under this test's namespace."""

    def _register(*names: str):
        return client.register_templates(write_templates(tmp_path / "templates" / namespace, namespace, *names))

    return _register


@pytest.fixture
def start_worker(client: tasker_core.Client, namespace: str):
    """start_worker(handlers=..., concurrency=...) starts a worker on this test's queue and
    stops it after the test."""
    workers: List[tasker_core.Worker] = []

    def _start(handlers=None, concurrency: int = 4, queues=None, **options) -> tasker_core.Worker:
        w = tasker_core.Worker(client, queues or [namespace], handlers, concurrency, **options)
        workers.append(w.start())
        return w

    yield _start
    for w in workers:
        with contextlib.suppress(Exception):
            w.stop(10)
