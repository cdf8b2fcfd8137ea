"""The `{{step_name}}` step."""

from tasker_core import StepContext, StepHandler


class {{class_name}}(StepHandler):
    """Greets the `name` given in the task's context.

    context.input                         the task's context (a dict)
    context.get_dependency_result(step)   the result of a step this one depends on
    context.config                        the step's handler.initialization in the template

    Return a dict (any JSON value) to succeed. Raise tasker_core.PermanentError to fail at once,
    or tasker_core.RetryableError(msg, retry_after=seconds) to retry later; any other exception
    is retried as the template's retry policy says.
    """

    def call(self, context: StepContext) -> dict:
        name = context.get_input("name", "world")
        return {"greeting": f"Hello, {name}!"}
