"""Machinery of the fault-injection tests: a PostgreSQL cluster the test owns (so it can restart
it), direct reads of the engine's tables, the checks every scenario ends with (ledger, audit
trail, idle CPU, logs) and the figures each scenario reports."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import ledger as ledger_mod

ROOT = Path(__file__).resolve().parents[2]
FAULT_TEMPLATES = Path(__file__).resolve().parent / "templates"
QUEUES = {"python": "faults_python", "ruby": "faults_ruby", "typescript": "faults_node"}
TERMINAL_TASK_STATES = {"complete", "error", "cancelled", "resolved_manually"}
OPEN_STEP_STATES = {"pending", "enqueued", "in_progress", "waiting_for_retry"}
# Error types of failures the engine records on its own behalf: the handler's run (whatever it
# returned) was superseded, not recorded.
ENGINE_FAILURES = {"worker_lost", "timeout", "too_many_lost_leases"}
FULL = os.environ.get("TASKER_FAULTS_FULL", "") not in ("", "0", "false", "no")
# Every figure a scenario reported, for the session summary (conftest.py).
REPORTED: List[Figures] = []


def size(reduced: int, full: int) -> int:
    """The reduced size by default, the full one with TASKER_FAULTS_FULL=1."""
    return full if FULL else reduced


# PostgreSQL ---------------------------------------------------------------------------------


def _pg_bin() -> Path:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return Path(d)
    raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl, as the `postgres` user when running as
    root, like scripts/lib/postgres.sh) that the test can restart."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="tasker-faults-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        self.restarts = 0
        self._as_postgres: List[str] = []
        if os.geteuid() == 0:
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self._as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> PgCluster:
        subprocess.run(
            [
                *self._as_postgres,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self._pg_ctl("-l", str(self.log), "-w", "-o", self._options(), "start")
        return self

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300 "
            "-c fsync=off -c log_line_prefix='%m [%p] %d '"
        )

    def pause(self) -> None:
        """`pg_ctl stop -m fast`, keeping the data: the server is gone until :meth:`resume`."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Starts the server stopped by :meth:`pause` again, on the same port."""
        self._pg_ctl("-l", str(self.log), "-w", "-o", self._options(), "start")

    def restart(self) -> float:
        """`pg_ctl restart -m fast`: every connection is terminated. Returns the seconds it took."""
        started = time.monotonic()
        self._pg_ctl("-l", str(self.log), "-w", "-m", "fast", "restart")
        self.restarts += 1
        return time.monotonic() - started

    def stop(self) -> None:
        try:
            self._pg_ctl("-m", "fast", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def create_pg_database(server_url: str) -> Tuple[str, str]:
    """A fresh database on `server_url`'s server: (url, name)."""
    import psycopg

    name = f"tasker_faults_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name, name


def drop_pg_database(server_url: str, name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except Exception:
        pass


# reading the engine's tables -----------------------------------------------------------------


@dataclass
class StepRow:
    step_uuid: str
    task_uuid: str
    name: str
    state: str
    attempts: int
    last_error: Optional[dict]


@dataclass
class TransitionRow:
    id: int
    entity: str  # step uuid (step transitions) or task uuid
    task_uuid: str
    from_state: Optional[str]
    to_state: str
    event: str
    metadata: Any
    most_recent: bool


def _u(v: Any) -> str:
    return str(uuid.UUID(bytes=v)) if isinstance(v, (bytes, memoryview)) else str(v)


def _j(v: Any) -> Any:
    if v is None or isinstance(v, (dict, list)):
        return v
    return json.loads(v)


class Db:
    """Direct, read-only access to the engine's tables, retrying while the server restarts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = ledger_mod.is_postgres(url)

    def rows(self, sql: str, params: Sequence[Any] = (), retry_for: float = 60.0) -> List[tuple]:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                if self.pg:
                    import psycopg

                    with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                        return conn.execute(sql, params).fetchall()
                with sqlite3.connect(ledger_mod.sqlite_path(self.url), timeout=30) as conn:
                    return conn.execute(sql.replace("%s", "?"), params).fetchall()
            except Exception as e:
                if not ledger_mod._transient(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _uuid_col(self, col: str) -> str:
        return f"{col}::text" if self.pg else col

    def task_states(self) -> Dict[str, str]:
        return {_u(u): s for u, s in self.rows(f"SELECT {self._uuid_col('task_uuid')}, state FROM tasker_tasks")}

    def steps(self) -> List[StepRow]:
        rows = self.rows(
            f"SELECT {self._uuid_col('step_uuid')}, {self._uuid_col('task_uuid')}, name, state, attempts, "
            "last_error FROM tasker_steps"
        )
        return [StepRow(_u(a), _u(b), c, d, int(e), _j(f)) for a, b, c, d, e, f in rows]

    def step_results(self, step_uuid: str) -> Any:
        if self.pg:
            rows = self.rows("SELECT results FROM tasker_steps WHERE step_uuid = %s", (step_uuid,))
        else:
            rows = self.rows("SELECT results FROM tasker_steps WHERE step_uuid = %s", (uuid.UUID(step_uuid).bytes,))
        return _j(rows[0][0]) if rows else None

    def _transitions(self, table: str, entity: str) -> List[TransitionRow]:
        rows = self.rows(
            f"SELECT id, {self._uuid_col(entity)}, {self._uuid_col('task_uuid')}, from_state, to_state, event, "
            f"metadata, most_recent FROM {table} ORDER BY id"
        )
        return [TransitionRow(int(i), _u(e), _u(t), f, to, ev, _j(m), bool(mr)) for i, e, t, f, to, ev, m, mr in rows]

    def step_transitions(self) -> List[TransitionRow]:
        return self._transitions("tasker_step_transitions", "step_uuid")

    def task_transitions(self) -> List[TransitionRow]:
        return self._transitions("tasker_task_transitions", "task_uuid")

    def deadlocks(self) -> Optional[int]:
        """PostgreSQL's count of deadlocks detected in this database (None on SQLite)."""
        if not self.pg:
            return None
        # The statistics are flushed by backends within about a second.
        time.sleep(1.2)
        rows = self.rows("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(rows[0][0]) if rows else None


STALL_SECONDS = 60.0


def wait_terminal(db: Db, task_uuids: Iterable[str], timeout: float, stall: float = STALL_SECONDS) -> Dict[str, str]:
    """Waits until every task is terminal; returns their states. Gives up after `timeout`, or
    once nothing has changed for `stall` seconds (no audit row written): a stalled run, which
    the checks then report, rather than a wait until a step's timeout recovers it."""
    wanted = set(task_uuids)
    deadline = time.monotonic() + timeout
    last, changed = None, time.monotonic()
    while True:
        states = {u: s for u, s in db.task_states().items() if u in wanted}
        if all(s in TERMINAL_TASK_STATES for s in states.values()) and len(states) == len(wanted):
            return states
        now = time.monotonic()
        progress = db.rows("SELECT count(*) FROM tasker_step_transitions")[0][0]
        if progress != last:
            last, changed = progress, now
        if now > deadline or now - changed > stall:
            return states
        time.sleep(0.5)


def stuck_summary(db: Db) -> List[str]:
    """What unfinished tasks' steps are doing: counts by (task state, step state, queue, attempts)."""
    tasks = db.task_states()
    counts = Counter(
        (tasks.get(s.task_uuid), s.state, s.name, s.attempts, (s.last_error or {}).get("error_type"))
        for s in db.steps()
        if tasks.get(s.task_uuid) not in TERMINAL_TASK_STATES
    )
    return [
        f"{n} x step {name} {state} (attempts {attempts}, last error {err}) under a {ts} task"
        for (ts, state, name, attempts, err), n in counts.most_common(20)
    ]


# the state tables, read from the engine's source ---------------------------------------------


def _rust_names(src: str, enum: str) -> Dict[str, str]:
    """`Enum::Variant => "name"` arms: Variant -> name."""
    return dict(re.findall(rf'{enum}::(\w+)\s*=>\s*"(\w+)"', src))


def transition_table(path: Path, state_enum: str, trigger_enum: str) -> Set[Tuple[str, str, str]]:
    """The legal (from, event, to) triples of `fn next` in core/src/state/{step,task}.rs.

    Read from the source, so the audit check follows the engine's own table."""
    src = path.read_text()
    states = _rust_names(src, state_enum)
    triggers = _rust_names(src, trigger_enum)
    body = src[src.index("pub fn next(self") :]
    body = body[: body.index("_ => None")]
    body = re.sub(r"//[^\n]*", "", body)
    body = re.sub(r"\s+", "", body)
    table: Set[Tuple[str, str, str]] = set()
    for lhs, trigger, target in re.findall(r"\(([^()]*?),T::(\w+),?\)=>\{?Some\(S::(\w+)\)", body):
        sources = states.values() if lhs == "_" else [states[s.removeprefix("S::")] for s in lhs.split("|")]
        for s in sources:
            table.add((s, triggers[trigger], states[target]))
    if len(table) < 10:
        raise RuntimeError(f"could not read the transition table of {path} (found {sorted(table)})")
    return table


STEP_TABLE = transition_table(ROOT / "core/src/state/step.rs", "StepState", "StepTrigger")
TASK_TABLE = transition_table(ROOT / "core/src/state/task.rs", "TaskState", "TaskTrigger")


def audit_problems(db: Db) -> List[str]:
    """Every step's and task's audit rows, in id order, form a legal path of the state table
    (see `trail_problems`); a step that left `pending` has audit rows."""
    steps = {s.step_uuid: s for s in db.steps()}
    names = {u: s.name for u, s in steps.items()}
    problems = trail_problems("step", db.step_transitions(), STEP_TABLE, {u: s.state for u, s in steps.items()}, names)
    problems += trail_problems("task", db.task_transitions(), TASK_TABLE, db.task_states(), {})
    audited = {r.entity for r in db.step_transitions()}
    problems += [
        f"step {u} ({s.name}) is {s.state} without any audit row"
        for u, s in steps.items()
        if s.state != "pending" and u not in audited
    ]
    return problems


def trail_problems(
    kind: str,
    rows: List[TransitionRow],
    table: Set[Tuple[str, str, str]],
    current: Dict[str, str],
    names: Dict[str, str],
) -> List[str]:
    """The audit rows of each entity, in id order: the first starts from `pending` or nothing (a
    task's first row is its `create`), each starts where the previous one ended, each
    (from, event, to) is in the state table, `most_recent` is set on the last row only, and the
    last row ends in the entity's current state."""
    problems: List[str] = []
    first_from = {None, "pending"} if kind == "step" else {None}
    by_entity: Dict[str, List[TransitionRow]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r.id):
        by_entity[r.entity].append(r)
    for entity, trail in by_entity.items():
        where = f"{kind} {entity}" + (f" ({names[entity]})" if entity in names else "")
        path = " -> ".join(f"{r.from_state}-[{r.event}]->{r.to_state}" for r in trail)
        if trail[0].from_state not in first_from:
            problems.append(f"{where}: first audit row starts from {trail[0].from_state!r}: {path}")
        for prev, row in zip(trail, trail[1:]):
            if row.from_state != prev.to_state:
                problems.append(
                    f"{where}: row {row.id} starts from {row.from_state!r} but row {prev.id} "
                    f"ended in {prev.to_state!r}: {path}"
                )
        for i, row in enumerate(trail):
            legal = (row.from_state, row.event, row.to_state) in table
            creation = kind == "task" and i == 0 and row.from_state is None and row.event == "create"
            if not legal and not creation:
                problems.append(
                    f"{where}: row {row.id} {row.from_state}-[{row.event}]->{row.to_state} is not in the state table"
                )
        flags = [r.id for r in trail if r.most_recent]
        if flags != [trail[-1].id]:
            problems.append(f"{where}: most_recent is set on rows {flags}, expected only on the last ({trail[-1].id})")
        if entity in current and current[entity] != trail[-1].to_state:
            problems.append(f"{where}: is {current[entity]} but its last audit row ends in {trail[-1].to_state}")
    return problems


def attempt_closings(transitions: List[TransitionRow]) -> Dict[Tuple[str, int], Tuple[str, Optional[str]]]:
    """For each (step, attempt): how the engine ended that attempt — the event of the transition
    that left `in_progress` after the attempt's claim, and the error type it recorded."""
    current: Dict[str, int] = {}
    closings: Dict[Tuple[str, int], Tuple[str, Optional[str]]] = {}
    for r in transitions:
        meta = r.metadata if isinstance(r.metadata, dict) else {}
        if r.event == "claim":
            current[r.entity] = int(meta.get("attempt", current.get(r.entity, 0) + 1))
        elif r.from_state == "in_progress" and r.entity in current:
            closings[(r.entity, current[r.entity])] = (r.event, meta.get("error_type"))
    return closings


# processes ---------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> Optional[int]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def _descendants(pid: int) -> List[int]:
    children: Dict[int, List[int]] = defaultdict(list)
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children[ppid].append(int(stat.split("/")[2]))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def idle_cpu(pids: Dict[str, int], seconds: float = 3.0) -> Dict[str, float]:
    """CPU use (percent of one core) of each process and its descendants over `seconds`."""
    trees = {name: [pid, *_descendants(pid)] for name, pid in pids.items()}
    before = {name: sum(_cpu_ticks(p) or 0 for p in tree) for name, tree in trees.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    after = {name: sum(_cpu_ticks(p) or 0 for p in tree) for name, tree in trees.items()}
    return {name: round(100.0 * (after[name] - before[name]) / CLK_TCK / elapsed, 2) for name in pids}


LOG_ALARMS = ("deadlock detected", "panicked", "SIGSEGV", "stack overflow")


def scan_logs(paths: Iterable[Path], alarms: Sequence[str] = LOG_ALARMS) -> List[str]:
    hits = []
    for p in paths:
        try:
            text = Path(p).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if any(a in line for a in alarms):
                hits.append(f"{Path(p).name}: {line[:300]}")
    return hits


# figures and the checks every scenario ends with ----------------------------------------------


@dataclass
class Figures:
    scenario: str
    backend: str
    tasks: int = 0
    steps: int = 0
    runs: int = 0  # handler runs in the ledger
    kills: int = 0
    restarts: int = 0
    cancels: int = 0
    lost: int = 0
    doubled: int = 0
    reruns: int = 0  # successful runs superseded by the engine (worker lost, timeout): the step ran again
    discarded: int = 0  # successful runs whose result was discarded because the task was cancelled
    dropped: int = 0  # of which by a live worker: a result the engine failed to record
    seconds: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        parts = [f"{k}={v}" for k, v in d.items()]
        parts += [f"{k}={v}" for k, v in extra.items()]
        return "FAULTS " + " ".join(parts)

    def report(self) -> None:
        REPORTED.append(self)
        print("\n" + self.line(), flush=True)
        out = os.environ.get("TASKER_FAULTS_REPORT")
        if out:
            with open(out, "a") as f:
                f.write(json.dumps(dataclasses.asdict(self)) + "\n")


@dataclass
class Verdict:
    figures: Figures
    problems: List[str] = field(default_factory=list)
    dropped_detail: List[str] = field(default_factory=list)

    def add(self, what: str, items: Sequence[str], limit: int = 12) -> None:
        if items:
            shown = list(items)[:limit]
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            self.problems.append(f"{what}: {len(items)}{more}\n    " + "\n    ".join(shown))

    def assert_ok(self) -> None:
        self.figures.report()
        assert not self.problems, "\n".join(self.problems)


def check_ledger(
    runs: List[ledger_mod.Run],
    steps: List[StepRow],
    transitions: List[TransitionRow],
    killed: Dict[int, float],
    verdict: Verdict,
    task_filter: Optional[Set[str]] = None,
) -> None:
    """The handlers' ledger against the engine's record.

    * exactly-once: a complete step has exactly one finished run of the attempt the engine
      recorded as successful;
    * no attempt ran twice, and no two runs of a step overlap in time (a killed worker's run
      ends when it was killed);
    * every run that returned normally was recorded as the step's success, unless the engine
      superseded that attempt: worker lost or timed out (a rerun), or task cancelled (a
      discarded result). A rerun of a worker that was alive is a dropped result.
    """
    f = verdict.figures
    if task_filter is not None:
        runs = [r for r in runs if r.task_uuid in task_filter]
        steps = [s for s in steps if s.task_uuid in task_filter]
    f.runs = len(runs)
    closings = attempt_closings(transitions)
    by_step: Dict[str, List[ledger_mod.Run]] = defaultdict(list)
    for r in runs:
        by_step[r.step_uuid].append(r)
    known = {s.step_uuid for s in steps}
    strays = [f"{r.step_name} {r.step_uuid} attempt {r.attempt}" for r in runs if r.step_uuid not in known]
    verdict.add("ledger runs of unknown steps", strays)

    doubled, lost, unfinished, misrecorded, reruns, discarded, dropped = [], [], [], [], [], [], []
    for s in steps:
        mine = sorted(by_step.get(s.step_uuid, []), key=lambda r: r.started_at)
        per_attempt = Counter(r.attempt for r in mine)
        for attempt, n in per_attempt.items():
            if n > 1:
                doubled.append(
                    f"{s.name} {s.step_uuid}: attempt {attempt} ran {n} times "
                    f"(pids {[r.pid for r in mine if r.attempt == attempt]})"
                )
        ends: List[Tuple[ledger_mod.Run, Optional[float]]] = []
        for r in mine:
            end = r.finished_at
            if end is None and r.pid in killed:
                end = killed[r.pid]
            if end is None:
                unfinished.append(
                    f"{s.name} {s.step_uuid} attempt {r.attempt} (pid {r.pid}, {r.language}) never finished"
                )
            ends.append((r, end))
        for (a, a_end), (b, _) in zip(ends, ends[1:]):
            if a_end is None or b.started_at < a_end:
                doubled.append(
                    f"{s.name} {s.step_uuid}: attempt {b.attempt} (pid {b.pid}) started "
                    f"{'while' if a_end is None else f'{a_end - b.started_at:.3f}s before'} attempt {a.attempt} "
                    f"(pid {a.pid}) {'was still running' if a_end is None else 'ended'}"
                )
        if s.state == "complete":
            winners = [r for r in mine if r.attempt == s.attempts and r.finished_at is not None]
            if not winners:
                lost.append(
                    f"{s.name} {s.step_uuid}: complete at attempt {s.attempts} but the ledger has no finished "
                    f"run of that attempt (runs: {[(r.attempt, r.outcome) for r in mine]})"
                )
            elif len(winners) > 1:
                doubled.append(f"{s.name} {s.step_uuid}: {len(winners)} finished runs of its successful attempt")
        for r in mine:
            if r.finished_at is None or r.outcome != "ok":
                continue
            if s.state == "complete" and r.attempt == s.attempts:
                continue
            event, error_type = closings.get((s.step_uuid, r.attempt), (None, None))
            if event == "cancel":
                discarded.append(r)
            elif error_type in ENGINE_FAILURES:
                reruns.append(r)
                if r.pid not in killed:
                    dropped.append(
                        f"{s.name} {s.step_uuid} attempt {r.attempt}: pid {r.pid} ({r.language}) was alive "
                        f"and returned a result, but the engine recorded {event} {error_type}"
                    )
            else:
                misrecorded.append(
                    f"{s.name} {s.step_uuid} attempt {r.attempt}: the handler returned normally (pid "
                    f"{r.pid}) but the engine ended the attempt with {event} {error_type} "
                    f"(step {s.state} at attempt {s.attempts}; last error: {json.dumps(s.last_error)[:400]})"
                )
    f.doubled = len(doubled)
    f.lost += len(lost)
    f.reruns = len(reruns)
    f.discarded = len(discarded)
    f.dropped = len(dropped)
    verdict.add("doubled runs (an attempt ran twice, or two runs of a step overlapped)", doubled)
    verdict.add("lost effects (complete without a ledger run)", lost)
    verdict.add("runs that never finished", unfinished)
    verdict.add("successful runs recorded as something else", misrecorded)
    verdict.figures.extra["unfinished"] = len(unfinished)
    # Reruns are allowed (the engine superseded the attempt), but a live worker's result must
    # not be dropped: that is a lost completion.
    verdict.dropped_detail = dropped
    verdict.add(
        "results of live workers dropped (attempt failed as worker_lost/timeout although its handler returned)", dropped
    )


def open_steps_under_terminal_tasks(db: Db, task_states: Set[str]) -> List[str]:
    """Steps `pending`, `enqueued`, `in_progress` or `waiting_for_retry` under a task in one of
    `task_states`."""
    tasks = db.task_states()
    return [
        f"step {s.name} {s.step_uuid} is {s.state} under a {tasks.get(s.task_uuid)} task {s.task_uuid}"
        for s in db.steps()
        if s.state in OPEN_STEP_STATES and tasks.get(s.task_uuid) in task_states
    ]
