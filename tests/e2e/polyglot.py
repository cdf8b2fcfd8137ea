"""Shared machinery of the cross-language tests, the scale-out test, the polyglot benchmark and
the demo: scratch databases and worker processes in Python, Ruby and TypeScript."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parents[2]
# Where cargo put its builds: CARGO_TARGET_DIR when set (relative to the checkout, as the test
# scripts run cargo from there), else the checkout's target/.
TARGET_DIR = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")
# The debug `tasker` binary the test scripts build (`cargo build -p tasker-cli`).
TASKER_BIN = TARGET_DIR / "debug" / "tasker"
TEMPLATES = ROOT / "tests" / "fixtures" / "templates"
ORDER_QUEUES = {"python": "polyglot_python", "ruby": "polyglot_ruby", "typescript": "polyglot_node"}
MATH_QUEUES = {"python": "math_python", "ruby": "math_ruby", "typescript": "math_node"}


# The environment that puts an engine's messages on RabbitMQ (PostgreSQL still holds every
# state); the broker is RABBITMQ_URL, else the local default.
RABBITMQ_KEYS = ("TASKER_MESSAGING__BACKEND", "TASKER_MESSAGING__RABBITMQ_QUEUE_PREFIX")


def backends_under_test(with_rabbitmq: bool = False) -> List[str]:
    """SQLite and PostgreSQL; with `with_rabbitmq`, PostgreSQL + RabbitMQ too when RABBITMQ_URL
    is set (scripts/test-all.sh sets it, starting a server when none answers)."""
    names = ["sqlite", "postgres"]
    if with_rabbitmq and os.environ.get("RABBITMQ_URL"):
        names.append("postgres_rabbitmq")
    return names


@dataclass
class ScratchDb:
    """A fresh SQLite file or PostgreSQL database; `drop()` removes it.

    `postgres_rabbitmq` is a PostgreSQL database whose messages travel over RabbitMQ: while it
    exists, this process's environment selects `messaging.backend = "rabbitmq"` with queues of
    its own, so the test's clients and every process it starts (which inherit the environment)
    use the broker."""

    url: str
    backend: str
    _dir: Optional[str] = None
    _pg: Optional[tuple] = None
    _saved_env: Optional[Dict[str, Optional[str]]] = None

    @classmethod
    def create(cls, backend: str) -> ScratchDb:
        if backend == "sqlite":
            d = tempfile.mkdtemp(prefix="tasker-e2e-")
            return cls(url=f"sqlite://{d}/tasker.db", backend=backend, _dir=d)
        if backend not in ("postgres", "postgres_rabbitmq"):
            raise ValueError(f"unknown backend {backend!r}")
        server = os.environ.get("DATABASE_URL", "")
        if not server.startswith("postgres"):
            raise RuntimeError("PostgreSQL tests need DATABASE_URL=postgres://… (scripts/test-all.sh provides one)")
        name = f"tasker_e2e_{uuid.uuid4().hex[:16]}"
        subprocess.run(["psql", server, "-qc", f"CREATE DATABASE {name}"], check=True)
        base = server.rsplit("/", 1)[0]
        scratch = cls(url=f"{base}/{name}", backend=backend, _pg=(server, name))
        if backend == "postgres_rabbitmq":
            scratch._saved_env = {k: os.environ.get(k) for k in RABBITMQ_KEYS}
            os.environ["TASKER_MESSAGING__BACKEND"] = "rabbitmq"
            os.environ["TASKER_MESSAGING__RABBITMQ_QUEUE_PREFIX"] = f"e2e{uuid.uuid4().hex[:12]}."
        return scratch

    def drop(self) -> None:
        if self._saved_env is not None:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            self._saved_env = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._pg:
            server, name = self._pg
            subprocess.run(["psql", server, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)


def python_bin() -> str:
    venv = ROOT / "bindings-python" / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def worker_command(
    language: str, url: str, queues: List[str], concurrency: int, lease: float, handlers: str = "polyglot"
) -> List[str]:
    """`handlers` names the handler module: tests/handlers/<language>/<handlers>_handlers.*"""
    common = ["--database-url", url, "--concurrency", str(concurrency), "--lease-seconds", str(lease)]
    for q in queues:
        common += ["--queue", q]
    if handlers != "polyglot":
        common += ["--handlers", handlers]
    if language == "python":
        return [python_bin(), str(ROOT / "tests/workers/python_worker.py"), *common]
    if language == "ruby":
        return ["ruby", "-I", str(ROOT / "bindings-ruby/lib"), str(ROOT / "tests/workers/ruby_worker.rb"), *common]
    if language == "typescript":
        return ["node", "--import", "tsx", str(ROOT / "tests/workers/node_worker.ts"), *common]
    raise ValueError(language)


@dataclass
class WorkerProcess:
    language: str
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid

    def terminate(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def subscriber_command(
    language: str, url: str, group: str, patterns: List[str], out: Path, extra: Optional[List[str]] = None
) -> List[str]:
    """A subscriber process of tests/subscribers/ in `language`."""
    common = ["--database-url", url, "--group", group, "--out", str(out), *(extra or [])]
    for p in patterns:
        common += ["--pattern", p]
    if language == "python":
        return [python_bin(), str(ROOT / "tests/subscribers/python_subscriber.py"), *common]
    if language == "ruby":
        return [
            "ruby",
            "-I",
            str(ROOT / "bindings-ruby/lib"),
            str(ROOT / "tests/subscribers/ruby_subscriber.rb"),
            *common,
        ]
    if language == "typescript":
        return ["node", "--import", "tsx", str(ROOT / "tests/subscribers/node_subscriber.ts"), *common]
    raise ValueError(language)


@dataclass
class WorkerGroup:
    """Worker processes started together and stopped together."""

    workers: List[WorkerProcess] = field(default_factory=list)

    def start(
        self,
        language: str,
        url: str,
        queues: List[str],
        *,
        concurrency: int = 8,
        lease: float = 30.0,
        env: Optional[Dict[str, str]] = None,
        quiet: bool = True,
        handlers: str = "polyglot",
        log: Optional[Path] = None,
    ) -> WorkerProcess:
        """Starts a worker and waits until it is claiming. `log`: append its stderr to this file."""
        command = worker_command(language, url, queues, concurrency, lease, handlers)
        return self._spawn(language, command, env=env, quiet=quiet, log=log)

    def start_subscriber(
        self, language: str, url: str, group: str, patterns: List[str], out: Path, *, log: Optional[Path] = None
    ) -> WorkerProcess:
        """Starts a subscriber process (tests/subscribers/) and waits until it has joined `group`;
        it appends each event matching `patterns` to `out` as a JSON line."""
        command = subscriber_command(language, url, group, patterns, out)
        return self._spawn(f"{language} subscriber", command, env=None, quiet=True, log=log)

    def _spawn(
        self, label: str, command: List[str], *, env: Optional[Dict[str, str]], quiet: bool, log: Optional[Path]
    ) -> WorkerProcess:
        environment = dict(os.environ)
        environment.update(env or {})
        if quiet:
            environment["TASKER_QUIET"] = "1"
        stderr = open(log, "a") if log is not None else None
        try:
            process = subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        finally:
            if stderr is not None:
                stderr.close()
        # Each process prints one line once it is connected and working.
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"{label} exited before starting (status {process.wait()})")
        w = WorkerProcess(label, process)
        self.workers.append(w)
        return w

    def start_serve(self, url: str, log: Optional[Path] = None, env: Optional[Dict[str, str]] = None) -> WorkerProcess:
        """Starts `tasker serve`. `log`: append its stderr to this file (default: discarded)."""
        environment = dict(os.environ)
        environment.update(env or {})
        stderr = open(log, "a") if log is not None else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                [str(TASKER_BIN), "--database-url", url, "serve"], cwd=ROOT, stderr=stderr, env=environment
            )
        finally:
            if log is not None:
                stderr.close()
        w = WorkerProcess("orchestrator", process)
        self.workers.append(w)
        return w

    def stop(self) -> None:
        for w in self.workers:
            if w.process.poll() is None:
                w.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for w in self.workers:
            try:
                w.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
            if w.process.stdout:
                w.process.stdout.close()

    def stream(self) -> Iterator[str]:
        for w in self.workers:
            if w.process.stdout:
                yield from w.process.stdout
