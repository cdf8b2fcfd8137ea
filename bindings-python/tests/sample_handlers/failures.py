"""Handlers that fail in the ways the tests exercise."""

import time

from tasker_core import PermanentError, RetryableError, StepContext, StepHandler

from . import recorder


class Flaky(StepHandler):
    """Fails with an ordinary exception until attempt `config.succeed_on`."""

    def call(self, context: StepContext):
        recorder.record(context.step_uuid, (context.attempt, context.is_retry, context.is_last_retry))
        if context.attempt < context.config["succeed_on"]:
            raise ConnectionResetError(f"flaky network on attempt {context.attempt}")
        return {"attempt": context.attempt, "max_attempts": context.max_attempts}


class Refuse(StepHandler):
    def call(self, context: StepContext):
        recorder.record(context.step_uuid, context.attempt)
        raise PermanentError("card declined", error_type="card_declined", metadata={"decline_code": 51})


class AlwaysBroken(StepHandler):
    def call(self, context: StepContext):
        recorder.record(context.step_uuid, context.attempt)
        raise ValueError(f"broken on attempt {context.attempt}")


class RateLimited(StepHandler):
    def call(self, context: StepContext):
        recorder.record(context.step_uuid, (context.attempt, time.time()))
        if context.attempt == 1:
            raise RetryableError("rate limited", retry_after=context.config["retry_after"])
        return {"attempt": context.attempt}


class Echo(StepHandler):
    def call(self, context: StepContext):
        return {"input": context.input}


class ReturnsSet(StepHandler):
    def call(self, context: StepContext):
        recorder.record(context.step_uuid, context.attempt)
        return {"ids": {1, 2, 3}}


class ReturnsNan(StepHandler):
    def call(self, context: StepContext):
        recorder.record(context.step_uuid, context.attempt)
        return {"ratio": float("nan")}


class Sleepy(StepHandler):
    """Signals that it started, sleeps `input.sleep` seconds, records that it finished."""

    def call(self, context: StepContext):
        recorder.event(context.task_uuid + ":started").set()
        time.sleep(context.input["sleep"])
        recorder.record(context.task_uuid, "finished")
        return {"slept": context.input["sleep"]}


class SlowFirstAttempt(StepHandler):
    """Overruns the step's timeout on attempt 1; returns at once on later attempts."""

    def call(self, context: StepContext):
        recorder.record(context.step_uuid, context.attempt)
        if context.attempt == 1:
            time.sleep(context.config["sleep"])
            recorder.event(context.step_uuid + ":late").set()
            return {"late": True}
        return {"attempt": context.attempt, "had_deadline": context.deadline is not None}
