// TypeScript handlers of the cross-language fixtures (charge_payment, math).
// Behaviour switches come from the task context; see tests/handlers/python/polyglot_handlers.py.

import { appendFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { defineHandler, PermanentError, RetryableError, type StepContext } from 'tasker-core';

const LANGUAGE = 'typescript';

type Json = Record<string, unknown>;

function record(ctx: StepContext, started: number, outcome: string): void {
  const ms = performance.now() - started;
  const entry = {
    language: LANGUAGE,
    pid: process.pid,
    task_uuid: ctx.taskUuid,
    step_uuid: ctx.stepUuid,
    step: ctx.stepName,
    attempt: ctx.attempt,
    outcome,
    ms: Math.round(ms * 100) / 100,
  };
  const ledger = process.env.TASKER_LEDGER;
  if (ledger) appendFileSync(ledger, `${JSON.stringify(entry)}\n`);
  if (!process.env.TASKER_QUIET) {
    const input = ctx.input as Json;
    const order = String(input.order_id ?? '-');
    process.stdout.write(
      `  [${LANGUAGE.padEnd(10)} pid ${String(process.pid).padStart(6)}] ${ctx.stepName.padEnd(18)} order ${order}  ` +
        `attempt ${ctx.attempt}  ${ms.toFixed(2).padStart(6)} ms  ${outcome}\n`,
    );
  }
}

/** Applies the behaviour switches around a handler body and records the run. */
function traced(name: string, body: (ctx: StepContext) => Json) {
  return defineHandler(name, async (ctx: StepContext) => {
    const started = performance.now();
    const input = ctx.input as Json;
    try {
      const slow = input.slow_ms;
      if (typeof slow === 'number') await new Promise((r) => setTimeout(r, slow));
      if (input.fail_permanently_at === ctx.stepName) {
        throw new PermanentError(`${ctx.stepName} rejected the order`, { errorType: 'OrderRejected' });
      }
      const failOnce = Array.isArray(input.fail_once_at) ? input.fail_once_at : [];
      if (failOnce.includes(ctx.stepName) && ctx.attempt === 1) {
        throw new RetryableError(`${LANGUAGE} dependency unavailable`, { errorType: 'TemporaryOutage' });
      }
      const result = body(ctx);
      record(ctx, started, 'ok');
      return result;
    } catch (e) {
      record(ctx, started, `failed: ${e instanceof Error ? e.name : typeof e}`);
      throw e;
    }
  });
}

export const chargePayment = traced('polyglot.charge_payment', (ctx) => {
  const input = ctx.input as Json;
  const validated = ctx.getDependencyResult('validate_order') as Json;
  const config = ctx.config as Json;
  return {
    payment_id: `PAY-${String(input.order_id)}-${ctx.attempt}`,
    amount: validated.total,
    gateway: config.gateway,
    by: LANGUAGE,
  };
});

export const math = traced('polyglot.math', (ctx) => {
  const deps = Object.values(ctx.dependencyResults) as Json[];
  const input = ctx.input as Json;
  const base = deps.length > 0 ? deps.reduce((sum, r) => sum + Number(r.value), 0) : Number(input.value);
  const config = ctx.config as Json;
  return { value: base * Number(config.mul ?? 1) + Number(config.add ?? 0), by: LANGUAGE };
});

export const HANDLERS = [chargePayment, math];
