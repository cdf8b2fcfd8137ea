"""The engine's log records reach Python's logging (tasker_core/_logs.py), with the step's fields."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from typing import Iterator, List

import pytest


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def matching(self, message: str) -> List[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == message]


@pytest.fixture
def collect() -> Iterator[Collect]:
    handler = Collect()
    logger = logging.getLogger("tasker_core.engine")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def wait_for(handler: Collect, message: str, timeout: float = 10.0) -> List[logging.LogRecord]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = handler.matching(message)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {message!r} record; got {[r.getMessage() for r in handler.records]}")


def test_a_failed_attempt_is_logged_with_the_steps_fields(client, namespace, register, start_worker, collect):
    register("permanent")
    start_worker()
    task = client.create_task(namespace, "permanent_failure")
    assert task.wait(timeout=30).state == "error"
    [record] = [r for r in wait_for(collect, "step attempt failed permanently") if r.task_uuid == str(task.uuid)]
    assert record.levelno == logging.WARNING
    assert record.name == "tasker_core.engine.worker"
    assert record.step_name == "refuse"
    assert record.attempt == "1"
    assert record.step_uuid == str(task.refresh().step("refuse").step_uuid)
    assert record.correlation_id
    assert record.error_type == "card_declined"
    assert record.tasker["task_uuid"] == str(task.uuid), "every field is also in record.tasker"


def test_a_broken_handler_does_not_stop_the_forwarding(client, namespace, register, start_worker, collect):
    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("this handler is broken")

        def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
            raise RuntimeError("and so is its error handling")

    broken = Broken()
    logger = logging.getLogger("tasker_core.engine")
    logger.addHandler(broken)
    try:
        register("permanent")
        start_worker()
        first = client.create_task(namespace, "permanent_failure")
        assert first.wait(timeout=30).state == "error"
        second = client.create_task(namespace, "permanent_failure")
        assert second.wait(timeout=30).state == "error"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = {r.task_uuid for r in collect.matching("step attempt failed permanently")}
            if str(second.uuid) in seen:
                break
            time.sleep(0.05)
        assert str(second.uuid) in seen, "records keep coming after a handler raised"
    finally:
        logger.removeHandler(broken)


def test_a_process_that_only_connects_exits_and_logs_nothing_to_stderr(db_url, tmp_path):
    script = f"import tasker_core\nc = tasker_core.connect({db_url!r})\nc.close()\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "the engine writes nothing to stderr on its own"


def test_logging_level_filters_at_the_source(tmp_path):
    script = (
        "import logging, tasker_core\n"
        f"c = tasker_core.connect('sqlite://{tmp_path}/t.db')\n"
        "print(tasker_core._native.forward_logs())\n"
    )
    env = dict(os.environ, TASKER_LOGGING__LEVEL="error")
    env.pop("TASKER_LOG", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "error,sqlx=warn"


def test_a_bad_tasker_log_is_a_warning_and_the_client_still_connects(tmp_path):
    script = (
        "import logging, tasker_core\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        f"c = tasker_core.connect('sqlite://{tmp_path}/t.db')\n"
        f"tasker_core.connect('sqlite://{tmp_path}/t.db').close()\n"
        "print(c.backend)\n"
    )
    env = dict(os.environ, TASKER_LOG="tasker_core=[")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sqlite"
    assert "the engine's log records are not forwarded" in done.stderr
    assert done.stderr.count("not forwarded") == 1, "said once per process, not at every connect"
    assert "TASKER_LOG" in done.stderr
