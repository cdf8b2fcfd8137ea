"""One scenario's processes (worker processes in each language and `tasker serve`
orchestrators, each logging to its own file), its client, and the checks it ends with."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

import ledger
from faultlib import (
    FAULT_TEMPLATES,
    QUEUES,
    TERMINAL_TASK_STATES,
    Db,
    Figures,
    Verdict,
    audit_problems,
    check_ledger,
    idle_cpu,
    open_steps_under_terminal_tasks,
    scan_logs,
    stuck_summary,
)
from polyglot import WorkerGroup, WorkerProcess

import tasker_core

IDLE_CPU_LIMIT = 5.0  # percent of one core


class Harness:
    def __init__(
        self,
        scenario: str,
        backend: str,
        url: str,
        tmp: Path,
        ledger_url: Optional[str] = None,
        pg_log: Optional[Path] = None,
    ) -> None:
        self.url = url
        self.tmp = tmp
        self.ledger_url = ledger_url or (url if backend == "postgres" else f"sqlite://{tmp}/ledger.db")
        ledger.create(self.ledger_url)
        self.db = Db(url)
        self.client = tasker_core.connect(url)
        self.client.register_templates(str(FAULT_TEMPLATES))
        self.group = WorkerGroup()
        self.logs: List[Path] = []
        self.pg_log = pg_log
        self.killed: Dict[int, float] = {}
        self.names: Dict[int, str] = {}
        self.figures = Figures(scenario=scenario, backend=backend)
        self.verdict = Verdict(self.figures)
        self.started = time.monotonic()

    # processes ----------------------------------------------------------------------------

    def worker(
        self,
        language: str,
        *,
        concurrency: int = 8,
        lease: float = 5.0,
        queues: Optional[List[str]] = None,
        handlers: str = "faults",
    ) -> WorkerProcess:
        """A worker process serving `handlers` (tests/handlers/<language>/<handlers>_handlers.*)."""
        n = sum(1 for name in self.names.values() if name.startswith(language)) + 1
        log = self.tmp / f"{language}-{n}.log"
        self.logs.append(log)
        w = self.group.start(
            language,
            self.url,
            queues or [QUEUES[language]],
            concurrency=concurrency,
            lease=lease,
            env={"TASKER_FAULT_LEDGER": self.ledger_url},
            handlers=handlers,
            log=log,
        )
        self.names[w.pid] = f"{language}-{n}"
        return w

    def serve(self) -> WorkerProcess:
        n = sum(1 for name in self.names.values() if name.startswith("serve")) + 1
        log = self.tmp / f"serve-{n}.log"
        self.logs.append(log)
        w = self.group.start_serve(self.url, log=log)
        self.names[w.pid] = f"serve-{n}"
        return w

    def kill(self, w: WorkerProcess) -> None:
        """SIGKILL, recording when (a killed run ends then)."""
        w.kill()
        self.killed[w.pid] = time.time()
        self.figures.kills += 1

    def live(self) -> Dict[str, int]:
        return {
            self.names[w.pid]: w.pid
            for w in self.group.workers
            if w.pid not in self.killed and w.process.poll() is None
        }

    def stop(self) -> None:
        self.group.stop()

    # tasks ------------------------------------------------------------------------------

    def create(self, name: str, context: dict) -> str:
        return self.client.create_task("faults", name, context=context).uuid

    # the checks every scenario ends with ------------------------------------------------

    def finish(
        self, expected: Dict[str, Set[str]], *, open_under: Iterable[str] = ("cancelled", "complete")
    ) -> Verdict:
        """Checks, in order: task states, get_task, the ledger, the audit trail, open steps under
        terminal tasks (of the states `open_under`: an `error` task leaves the steps below its
        failed step `pending` by design), processes alive and idle, logs. Fills in the figures."""
        v, f = self.verdict, self.figures
        f.seconds = round(time.monotonic() - self.started, 1)
        states = self.db.task_states()
        f.tasks = len(expected)
        wrong = [
            f"task {u} is {states.get(u)}, expected {' or '.join(sorted(ok))}"
            for u, ok in expected.items()
            if states.get(u) not in ok
        ]
        # Lost: a task that should have completed and did not.
        f.lost += sum(1 for u, ok in expected.items() if ok == {"complete"} and states.get(u) != "complete")
        v.add("tasks in the wrong state", wrong)
        if any(states.get(u) not in TERMINAL_TASK_STATES for u in expected):
            v.add("unfinished tasks' steps", stuck_summary(self.db), limit=20)
            v.problems.append("process logs (tail):\n" + self.log_excerpt())
        unreadable = []
        for u in expected:
            try:
                self.client.get_task(u)
            except Exception as e:  # noqa: BLE001 - any failure to read a task is the finding
                unreadable.append(f"get_task({u}) raised {type(e).__name__}: {e}")
        v.add("tasks get_task cannot read", unreadable)

        steps = [s for s in self.db.steps() if s.task_uuid in expected]
        f.steps = len(steps)
        check_ledger(
            ledger.read(self.ledger_url), steps, self.db.step_transitions(), self.killed, v, task_filter=set(expected)
        )
        v.add("audit trail problems", audit_problems(self.db))
        v.add("open steps under terminal tasks", open_steps_under_terminal_tasks(self.db, set(open_under)))

        dead = [
            f"{self.names[w.pid]} (pid {w.pid}) exited with {w.process.returncode}"
            for w in self.group.workers
            if w.pid not in self.killed and w.process.poll() is not None
        ]
        v.add("processes that died", dead)
        cpu = idle_cpu(self.live())
        f.extra["max_idle_cpu_pct"] = max(cpu.values(), default=0.0)
        v.add(
            f"processes busy while idle (> {IDLE_CPU_LIMIT} % CPU over 3 s)",
            [f"{name}: {pct} %" for name, pct in cpu.items() if pct > IDLE_CPU_LIMIT],
        )
        logs: Iterable[Path] = list(self.logs) + ([self.pg_log] if self.pg_log else [])
        v.add("alarming log lines", scan_logs(logs))
        deadlocks = self.db.deadlocks()
        if deadlocks is not None:
            f.extra["pg_deadlocks"] = deadlocks
            if deadlocks:
                v.problems.append(f"pg_stat_database counts {deadlocks} deadlocks in the test database")
        return v

    def log_excerpt(self, lines: int = 20) -> str:
        """The last lines of every process log, for a failure message."""
        out = []
        for p in self.logs:
            try:
                tail = p.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if tail:
                out.append(f"--- {p.name}\n" + "\n".join(tail))
        return "\n".join(out)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")
