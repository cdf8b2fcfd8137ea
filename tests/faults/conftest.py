from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Tuple

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))

try:
    import psycopg  # noqa: F401
except ImportError as e:  # pragma: no cover - run.sh installs it
    raise RuntimeError("the fault tests need psycopg: pip install -r tests/faults/requirements.txt") from e

from faultlib import FULL, REPORTED, PgCluster, create_pg_database, drop_pg_database  # noqa: E402
from harness import Harness  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server: DATABASE_URL when it names one, else a throwaway cluster."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        yield url
        return
    cluster = PgCluster().start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def pg_db(pg_server: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards."""
    url, name = create_pg_database(pg_server)
    yield url
    drop_pg_database(pg_server, name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def workdir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The test's directory: SQLite files, templates, one log per process. Not pytest's
    tmp_path, which another pytest session on this machine may rotate away mid-run. Kept (and
    named) when the test fails, removed when it passes."""
    path = Path(tempfile.mkdtemp(prefix=f"tasker-faults-{request.node.name[:40]}-".replace("/", "_")))
    yield path
    report = getattr(request.node, "report_call", None)
    if report is not None and report.passed:
        shutil.rmtree(path, ignore_errors=True)
    else:
        print(f"\nlogs and files of {request.node.name} kept in {path}")


@pytest.fixture(params=["sqlite", "postgres"])
def backend_db(request: pytest.FixtureRequest, workdir: Path) -> Iterator[Tuple[str, str]]:
    """(backend, url): a fresh SQLite file or PostgreSQL database."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite://{workdir}/tasker.db"
        return
    server = request.getfixturevalue("pg_server")
    url, name = create_pg_database(server)
    yield "postgres", url
    drop_pg_database(server, name)


@pytest.fixture
def harness_factory(workdir: Path) -> Iterator[Callable[..., Harness]]:
    """Makes Harnesses and stops their processes at the end of the test."""
    made = []

    def make(*args, **kwargs) -> Harness:
        h = Harness(*args, tmp=workdir, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.stop()


def pytest_report_header(config: pytest.Config) -> str:
    return f"tasker faults: {'FULL' if FULL else 'reduced'} size (TASKER_FAULTS_FULL=1 for the full size)"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if REPORTED:
        terminalreporter.section("fault-injection figures")
        for f in REPORTED:
            terminalreporter.write_line(f.line())
