// TypeScript handler of the cross-language recovery workflow
// (tests/fixtures/templates/manual_recovery_polyglot.yaml, tests/e2e/test_recovery.py):
//
//   recovery.ship  returns exactly what it received from `charge` (the operator's result, since
//                  the Ruby charge fails for good and is completed by hand), with the names of
//                  its dependency results and the attempt it ran as.

import { defineHandler, type StepContext } from 'tasker-core';

const LANGUAGE = 'typescript';

export const ship = defineHandler('recovery.ship', async (ctx: StepContext) => {
  const input = ctx.input as Record<string, unknown>;
  return {
    received: ctx.dependencyResults.charge ?? null,
    dependencies: Object.keys(ctx.dependencyResults).sort(),
    tracking: `TRK-${String(input.order_id)}`,
    attempt: ctx.attempt,
    by: LANGUAGE,
    pid: process.pid,
  };
});

export const HANDLERS = [ship];
