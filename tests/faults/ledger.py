"""The handlers' ledger: one row per handler run, written by the handler itself, in a table of
the database under test (PostgreSQL) or in a separate SQLite file.

    fault_ledger(token, step_uuid, task_uuid, step_name, attempt, language, pid, outcome,
                 started_at, finished_at)

A handler inserts its row when it starts and sets `finished_at` and `outcome` just before it
returns or raises, so the table is the step's side effect: the fault tests check that the
attempt the engine recorded as successful has exactly one finished row, and that no two runs
of one step overlap in time. Both writes are idempotent (keyed by a token the handler draws),
and they are retried across connection losses, so a PostgreSQL restart delays a handler
instead of failing it.

Python handlers import this module. Ruby and TypeScript handlers talk to a helper process,
`python ledger.py serve LEDGER_URL`, which reads one JSON request a line on stdin, applies it
and answers `ok` (or `err <message>`) on stdout once it is committed.

Timestamps are the handler's wall clock (seconds since the epoch, float): every process runs
on this machine, and the database's clock would be wrong for a write delayed by a restart.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

# How long a ledger write keeps trying while the database is unreachable.
RETRY_FOR_SECONDS = 120.0

PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS fault_ledger (
    token       UUID PRIMARY KEY,
    step_uuid   UUID NOT NULL,
    task_uuid   UUID NOT NULL,
    step_name   TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    language    TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    outcome     TEXT,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS fault_ledger_step ON fault_ledger (step_uuid, attempt);
"""

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS fault_ledger (
    token       TEXT PRIMARY KEY,
    step_uuid   TEXT NOT NULL,
    task_uuid   TEXT NOT NULL,
    step_name   TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    language    TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    outcome     TEXT,
    started_at  REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS fault_ledger_step ON fault_ledger (step_uuid, attempt);
"""


def is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def sqlite_path(url: str) -> str:
    for prefix in ("sqlite://", "sqlite:"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    return url


@dataclass
class Run:
    """One handler run, as the ledger recorded it."""

    token: str
    step_uuid: str
    task_uuid: str
    step_name: str
    attempt: int
    language: str
    pid: int
    outcome: Optional[str]
    started_at: float
    finished_at: Optional[float]


class Ledger:
    """Writes ledger rows; safe to share between threads (one connection per thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    # connections ------------------------------------------------------------------------

    def _connect(self) -> Any:
        if is_postgres(self.url):
            import psycopg

            return psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        conn = sqlite3.connect(sqlite_path(self.url), timeout=60, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def _execute(self, sql: str, params: tuple) -> None:
        deadline = time.monotonic() + RETRY_FOR_SECONDS
        delay = 0.05
        while True:
            conn = getattr(self._local, "conn", None)
            try:
                if conn is None:
                    conn = self._connect()
                    self._local.conn = conn
                conn.execute(sql, params)
                return
            except Exception as e:  # connection lost, server restarting, database locked
                if not _transient(e) or time.monotonic() > deadline:
                    raise
                try:
                    if conn is not None:
                        conn.close()
                except Exception:
                    pass
                self._local.conn = None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    # writes -----------------------------------------------------------------------------

    def start(
        self,
        token: str,
        step_uuid: str,
        task_uuid: str,
        step_name: str,
        attempt: int,
        language: str,
        pid: int,
        t: float,
    ) -> None:
        if is_postgres(self.url):
            sql = (
                "INSERT INTO fault_ledger (token, step_uuid, task_uuid, step_name, attempt, language, pid, started_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, to_timestamp(%s)) ON CONFLICT (token) DO NOTHING"
            )
        else:
            sql = (
                "INSERT INTO fault_ledger (token, step_uuid, task_uuid, step_name, attempt, language, pid, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (token) DO NOTHING"
            )
        self._execute(sql, (token, step_uuid, task_uuid, step_name, attempt, language, pid, t))

    def finish(self, token: str, outcome: str, t: float) -> None:
        if is_postgres(self.url):
            sql = "UPDATE fault_ledger SET finished_at = to_timestamp(%s), outcome = %s WHERE token = %s"
        else:
            sql = "UPDATE fault_ledger SET finished_at = ?, outcome = ? WHERE token = ?"
        self._execute(sql, (t, outcome, token))

    def apply(self, doc: Dict[str, Any]) -> None:
        """A request of the helper protocol (see the module docstring)."""
        if doc["op"] == "start":
            self.start(
                doc["token"],
                doc["step_uuid"],
                doc["task_uuid"],
                doc["step_name"],
                int(doc["attempt"]),
                doc["language"],
                int(doc["pid"]),
                float(doc["t"]),
            )
        elif doc["op"] == "finish":
            self.finish(doc["token"], doc["outcome"], float(doc["t"]))
        else:
            raise ValueError(f"unknown ledger op {doc['op']!r}")


def _transient(e: Exception) -> bool:
    if isinstance(e, sqlite3.OperationalError):
        return "locked" in str(e) or "busy" in str(e)
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError))


# schema and reading (used by the tests) --------------------------------------------------


def create(url: str) -> None:
    """Creates the ledger table (idempotent)."""
    if is_postgres(url):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PG_SCHEMA)
    else:
        with sqlite3.connect(sqlite_path(url)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SQLITE_SCHEMA)


def read(url: str) -> List[Run]:
    """Every run, in start order."""
    if is_postgres(url):
        import psycopg

        sql = (
            "SELECT token::text, step_uuid::text, task_uuid::text, step_name, attempt, language, pid, outcome, "
            "extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8 "
            "FROM fault_ledger ORDER BY started_at, token"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(sql).fetchall()
    else:
        sql = (
            "SELECT token, step_uuid, task_uuid, step_name, attempt, language, pid, outcome, started_at, finished_at "
            "FROM fault_ledger ORDER BY started_at, token"
        )
        with sqlite3.connect(sqlite_path(url)) as conn:
            rows = conn.execute(sql).fetchall()
    return [Run(*r) for r in rows]


def count(url: str, pid: Optional[int] = None, unfinished: bool = False) -> int:
    """How many runs (of `pid`; still running only), on one short connection; raises if the
    database is unreachable."""
    ph = "%s" if is_postgres(url) else "?"
    where, params = ["TRUE"], []
    if pid is not None:
        where.append(f"pid = {ph}")
        params.append(pid)
    if unfinished:
        where.append("finished_at IS NULL")
    sql = f"SELECT count(*) FROM fault_ledger WHERE {' AND '.join(where)}"
    if is_postgres(url):
        import psycopg

        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            return int(conn.execute(sql, params).fetchone()[0])
    with sqlite3.connect(sqlite_path(url), timeout=30) as conn:
        return int(conn.execute(sql, params).fetchone()[0])


# the helper process for Ruby and TypeScript handlers --------------------------------------


def serve(url: str) -> None:
    ledger = Ledger(url)
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            ledger.apply(json.loads(line))
            out.write("ok\n")
        except Exception as e:  # reported to the handler, which fails its step loudly
            out.write("err " + f"{type(e).__name__}: {e}".replace("\n", " ") + "\n")
        out.flush()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        # The helper must not outlive its worker: it ends at EOF on stdin (the worker died).
        serve(sys.argv[2])
    else:
        print(f"usage: {os.path.basename(sys.argv[0])} serve LEDGER_URL", file=sys.stderr)
        sys.exit(2)
