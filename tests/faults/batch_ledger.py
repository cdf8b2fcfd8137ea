"""The batch workers' item ledger (test_batch_kill.py): which items of a batch each attempt
processed, recorded with the checkpoint that covers them, and where each attempt resumed.

    fault_batch_items(step_uuid, task_uuid, step_name, attempt, pid, item, value, upto, final)
    fault_batch_resumes(step_uuid, task_uuid, step_name, attempt, pid, resume_cursor,
                        checkpoint_attempt, checkpoint_items_done, checkpoint_sum, at)

A batch worker processes its items one by one and, every `checkpoint_interval` items, writes
the rows of the items since its last checkpoint (one INSERT, all with `upto` = the cursor it is
about to checkpoint) *before* it records that checkpoint with the engine; the items after its
last checkpoint are written the same way (`final`) just before it returns. So every item a
persisted checkpoint or a recorded result covers has its row; a row whose checkpoint never
persisted (the worker died between the two writes) is told apart by the next attempt's resume
row: that attempt received the last persisted checkpoint (`context.checkpoint`) and starts
from its cursor. Work after a killed attempt's last checkpoint is redone by design and has no
row at all.

The tables live next to `fault_ledger` (tests/faults/ledger.py): in the database under test on
PostgreSQL, in the ledger's SQLite file otherwise. Writes go through `ledger.Ledger`'s retrying
connection.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import ledger as ledger_mod

PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS fault_batch_items (
    step_uuid  UUID NOT NULL,
    task_uuid  UUID NOT NULL,
    step_name  TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    pid        INTEGER NOT NULL,
    item       BIGINT NOT NULL,
    value      BIGINT NOT NULL,
    upto       BIGINT NOT NULL,
    final      BOOLEAN NOT NULL
);
CREATE INDEX IF NOT EXISTS fault_batch_items_step ON fault_batch_items (step_uuid, attempt, item);
CREATE TABLE IF NOT EXISTS fault_batch_resumes (
    step_uuid             UUID NOT NULL,
    task_uuid             UUID NOT NULL,
    step_name             TEXT NOT NULL,
    attempt               INTEGER NOT NULL,
    pid                   INTEGER NOT NULL,
    resume_cursor         BIGINT NOT NULL,
    checkpoint_attempt    INTEGER,
    checkpoint_items_done BIGINT,
    checkpoint_sum        BIGINT,
    at                    DOUBLE PRECISION NOT NULL
);
"""

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS fault_batch_items (
    step_uuid  TEXT NOT NULL,
    task_uuid  TEXT NOT NULL,
    step_name  TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    pid        INTEGER NOT NULL,
    item       INTEGER NOT NULL,
    value      INTEGER NOT NULL,
    upto       INTEGER NOT NULL,
    final      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fault_batch_items_step ON fault_batch_items (step_uuid, attempt, item);
CREATE TABLE IF NOT EXISTS fault_batch_resumes (
    step_uuid             TEXT NOT NULL,
    task_uuid             TEXT NOT NULL,
    step_name             TEXT NOT NULL,
    attempt               INTEGER NOT NULL,
    pid                   INTEGER NOT NULL,
    resume_cursor         INTEGER NOT NULL,
    checkpoint_attempt    INTEGER,
    checkpoint_items_done INTEGER,
    checkpoint_sum        INTEGER,
    at                    REAL NOT NULL
);
"""


@dataclass
class ItemRow:
    step_uuid: str
    task_uuid: str
    step_name: str
    attempt: int
    pid: int
    item: int
    value: int
    upto: int
    final: bool


@dataclass
class ResumeRow:
    """Where an attempt started: the cursor it resumed from and the checkpoint it received."""

    step_uuid: str
    task_uuid: str
    step_name: str
    attempt: int
    pid: int
    resume_cursor: int
    checkpoint_attempt: Optional[int]
    checkpoint_items_done: Optional[int]
    checkpoint_sum: Optional[int]
    at: float


class BatchLedger(ledger_mod.Ledger):
    """Writes item and resume rows (one connection per thread, retried like the run ledger)."""

    def _ph(self) -> str:
        return "%s" if ledger_mod.is_postgres(self.url) else "?"

    def resumed(
        self,
        step_uuid: str,
        task_uuid: str,
        step_name: str,
        attempt: int,
        pid: int,
        resume_cursor: int,
        checkpoint: Optional[Tuple[int, int, int]],
        at: float,
    ) -> None:
        """`checkpoint`: (attempt, items_done, accumulated sum) of the checkpoint received."""
        p = self._ph()
        cp_attempt, cp_done, cp_sum = checkpoint if checkpoint is not None else (None, None, None)
        sql = (
            "INSERT INTO fault_batch_resumes (step_uuid, task_uuid, step_name, attempt, pid, resume_cursor, "
            f"checkpoint_attempt, checkpoint_items_done, checkpoint_sum, at) VALUES ({', '.join([p] * 10)})"
        )
        self._execute(
            sql, (step_uuid, task_uuid, step_name, attempt, pid, resume_cursor, cp_attempt, cp_done, cp_sum, at)
        )

    def items(
        self,
        step_uuid: str,
        task_uuid: str,
        step_name: str,
        attempt: int,
        pid: int,
        values: Sequence[Tuple[int, int]],
        upto: int,
        final: bool,
    ) -> None:
        """The rows of `values` ((item, value), …), all covered by cursor `upto`, in one
        statement (so a kill leaves all of them or none)."""
        if not values:
            return
        p = self._ph()
        row = f"({', '.join([p] * 9)})"
        sql = (
            "INSERT INTO fault_batch_items (step_uuid, task_uuid, step_name, attempt, pid, item, value, upto, final) "
            f"VALUES {', '.join([row] * len(values))}"
        )
        params: List[object] = []
        flag: object = final if ledger_mod.is_postgres(self.url) else int(final)
        for item, value in values:
            params += [step_uuid, task_uuid, step_name, attempt, pid, item, value, upto, flag]
        self._execute(sql, tuple(params))


def create(url: str) -> None:
    """Creates the tables (idempotent)."""
    if ledger_mod.is_postgres(url):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PG_SCHEMA)
    else:
        with sqlite3.connect(ledger_mod.sqlite_path(url)) as conn:
            conn.executescript(SQLITE_SCHEMA)


def _rows(url: str, sql: str) -> List[tuple]:
    if ledger_mod.is_postgres(url):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(sql).fetchall()
    with sqlite3.connect(ledger_mod.sqlite_path(url), timeout=30) as conn:
        return conn.execute(sql).fetchall()


def read_items(url: str) -> List[ItemRow]:
    cast = "::text" if ledger_mod.is_postgres(url) else ""
    rows = _rows(
        url,
        f"SELECT step_uuid{cast}, task_uuid{cast}, step_name, attempt, pid, item, value, upto, final "
        "FROM fault_batch_items ORDER BY step_uuid, attempt, item",
    )
    return [ItemRow(a, b, c, int(d), int(e), int(f), int(g), int(h), bool(i)) for a, b, c, d, e, f, g, h, i in rows]


def read_resumes(url: str) -> List[ResumeRow]:
    cast = "::text" if ledger_mod.is_postgres(url) else ""
    rows = _rows(
        url,
        f"SELECT step_uuid{cast}, task_uuid{cast}, step_name, attempt, pid, resume_cursor, checkpoint_attempt, "
        "checkpoint_items_done, checkpoint_sum, at FROM fault_batch_resumes ORDER BY step_uuid, attempt",
    )
    return [
        ResumeRow(
            a,
            b,
            c,
            int(d),
            int(e),
            int(f),
            None if g is None else int(g),
            None if h is None else int(h),
            None if i is None else int(i),
            float(j),
        )
        for a, b, c, d, e, f, g, h, i, j in rows
    ]
