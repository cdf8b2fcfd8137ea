"""Handlers of the recovery tests: a step that stays broken until the test "deploys a fix",
one that runs until the test releases it, and one that hands back what it received."""

import threading
from typing import Set

from tasker_core import PermanentError, RetryableError, StepContext, StepHandler

from . import recorder

_lock = threading.Lock()
_fixed: Set[str] = set()


def fix(task_uuid: str) -> None:
    """From now on, the Broken steps of this task succeed."""
    with _lock:
        _fixed.add(task_uuid)


def _is_fixed(task_uuid: str) -> bool:
    with _lock:
        return task_uuid in _fixed


class Work(StepHandler):
    def call(self, context: StepContext):
        return {"value": context.step_name}


class Broken(StepHandler):
    """Fails as `input.fail` says (`retryable`, else permanently) until the task is fixed."""

    def call(self, context: StepContext):
        if _is_fixed(context.task_uuid):
            return {"fixed": True, "attempt": context.attempt}
        if context.input.get("fail") == "retryable":
            raise RetryableError(f"{context.step_name} failed on attempt {context.attempt}", error_type="flaky")
        raise PermanentError(f"{context.step_name} is broken", error_type="broken")


class Received(StepHandler):
    def call(self, context: StepContext):
        return {"received": context.dependency_results}


class Hold(StepHandler):
    """Signals `<task>:started`, then runs until `<task>:release` is set (at most `input.hold`
    seconds) and records that it finished."""

    def call(self, context: StepContext):
        recorder.event(context.task_uuid + ":started").set()
        released = recorder.event(context.task_uuid + ":release").wait(context.input.get("hold", 10))
        recorder.record(context.task_uuid, "finished")
        return {"released": released}
