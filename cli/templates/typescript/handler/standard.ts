// The `{{step_name}}` step: greets the `name` given in the task's context.
//
// ctx.input               the task's context
// ctx.dependencyResults   the results of the steps this one depends on, by step name
// ctx.config              the step's handler.initialization in the template
//
// Return any JSON value to succeed. Throw PermanentError to fail at once, or
// RetryableError(msg, { retryAfterSeconds }) to retry later; any other error is retried as the
// template's retry policy says.

import { defineHandler } from 'tasker-core';

type Input = { name?: string };

export const {{function_name}} = defineHandler<Input>('{{callable}}', (ctx) => ({
  greeting: `Hello, ${ctx.input.name ?? 'world'}!`,
}));
