// The `{{step_name}}` decision step: chooses which of the steps depending on it are created.
//
// In the template, this step has `type: decision` and each branch is a step with
// `dependencies: [{{step_name}}]`; only the branches named in the decision exist in the task. A
// `deferred_convergence` step after the branches receives the results of those created.

import { defineHandler, StepResult } from 'tasker-core';

type Input = { amount?: number };

export const {{function_name}} = defineHandler<Input>('{{callable}}', (ctx) => {
  const amount = ctx.input.amount ?? 0;
  const branch = amount >= 1_000 ? 'manual_review' : 'auto_approve';
  return StepResult.decision([branch], { amount });
});
