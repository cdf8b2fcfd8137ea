/**
 * Failure paths end to end: retries, permanent errors, exhaustion, retryAfter, thrown
 * non-Errors and rejected promises, missing handlers, unserializable results, schema-invalid
 * contexts, and a worker that keeps serving through all of it.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  defineHandler,
  PermanentError,
  RetryableError,
  type StepContext,
  StepHandler,
  ValidationError,
  Worker,
} from '../ts/index.js';
import { backends, describeBackend, explain, type Harness, harness } from './helpers.js';

/** Attempt start / failure times per task, for the retryAfter check. */
const retryAfterLog = new Map<string, { failedAt?: number; retriedAt?: number }>();

class Flaky extends StepHandler<Record<string, unknown>, { fail_times: number }> {
  static override handlerName = 'NodeFail.Flaky';
  async call(ctx: StepContext<Record<string, unknown>, { fail_times: number }>) {
    if (ctx.attempt <= ctx.config.fail_times) throw new Error(`flaky failure on attempt ${ctx.attempt}`);
    return { attempt: ctx.attempt, isRetry: ctx.isRetry, isLastRetry: ctx.isLastRetry, maxAttempts: ctx.maxAttempts };
  }
}

const handlers = [
  Flaky,
  defineHandler('NodeFail.Permanent', () => {
    throw new PermanentError('card declined', { errorType: 'CardDeclined', metadata: { code: 51 } });
  }),
  defineHandler('NodeFail.Always', async (ctx) => {
    throw new TypeError(`always broken (attempt ${ctx.attempt})`);
  }),
  defineHandler('NodeFail.RetryAfter', (ctx) => {
    const log = retryAfterLog.get(ctx.taskUuid) ?? {};
    retryAfterLog.set(ctx.taskUuid, log);
    if (ctx.attempt === 1) {
      log.failedAt = Date.now();
      throw new RetryableError('rate limited', { retryAfter: 1 });
    }
    log.retriedAt = Date.now();
    return { attempt: ctx.attempt };
  }),
  defineHandler<{ mode: string }>('NodeFail.Thrown', (ctx) => {
    switch (ctx.input.mode) {
      case 'reject':
        return Promise.reject(new RangeError('rejected asynchronously'));
      case 'string':
        throw 'a plain string';
      case 'object':
        throw { code: 42 };
      case 'null':
        throw null;
      case 'undefined':
        return Promise.reject(undefined);
      default:
        return { mode: ctx.input.mode };
    }
  }),
  defineHandler('NodeBad.BigIntResult', () => ({ amount: 10n })),
  defineHandler('NodeBad.CircularResult', async () => {
    const node: Record<string, unknown> = { name: 'loop' };
    node.self = { parent: node };
    return node;
  }),
  defineHandler('NodeBad.Good', (ctx) => ({ ok: true, step: ctx.stepName })),
];

for (const backend of backends()) {
  describeBackend(backend, `failures on ${backend.name}`, () => {
    let h: Harness;
    let worker: Worker;
    const workerErrors: unknown[] = [];

    before(async () => {
      h = await harness(backend, ['failures.yaml', 'bad_input.yaml']);
      worker = new Worker(h.client, {
        queues: [h.ns('nd_fail'), h.ns('nd_bad')],
        handlers,
        concurrency: 4,
        onError: (e) => workerErrors.push(e),
      });
      await worker.start();
    });

    after(async () => {
      await worker?.stop({ timeout: 5 });
      await h?.close();
    });

    test('a retryable failure is retried until it succeeds', async () => {
      const done = await (await h.createTask('nd_fail', 'flaky', {})).wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      const step = done.step('flaky_step');
      assert.equal(step?.attempts, 3);
      assert.deepEqual(step?.results, { attempt: 3, isRetry: true, isLastRetry: true, maxAttempts: 3 });
      assert.ok(done.stepTransitions.some((t) => t.toState === 'waiting_for_retry'), 'went through waiting_for_retry');
    });

    test('a PermanentError fails the step at once', async () => {
      const done = await (await h.createTask('nd_fail', 'permanent', {})).wait({ timeout: 30 });
      assert.equal(done.state, 'error');
      const step = done.step('permanent_step');
      assert.equal(step?.state, 'error');
      assert.equal(step?.attempts, 1, 'not retried although 5 attempts are allowed');
      assert.equal(step?.lastError?.errorType, 'CardDeclined');
      assert.equal(step?.lastError?.message, 'card declined');
      assert.equal(step?.lastError?.retryable, false);
      assert.match(step?.lastError?.backtrace ?? '', /PermanentError: card declined/);
    });

    test('retries run out: the step and the task end in error', async () => {
      const done = await (await h.createTask('nd_fail', 'exhaust', {})).wait({ timeout: 30 });
      assert.equal(done.state, 'error');
      const step = done.step('exhaust_step');
      assert.equal(step?.state, 'error');
      assert.equal(step?.attempts, 3);
      assert.equal(step?.lastError?.errorType, 'TypeError');
      assert.equal(step?.lastError?.message, 'always broken (attempt 3)');
      assert.equal(step?.lastError?.retryable, true);
    });

    test('retryAfter overrides the template backoff (60 s) and is honoured', async () => {
      const task = await h.createTask('nd_fail', 'retry_after', {});
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.equal(done.step('retry_after_step')?.attempts, 2);
      const log = retryAfterLog.get(task.uuid);
      assert.ok(log?.failedAt !== undefined && log.retriedAt !== undefined);
      // The engine may not run the retry before the requested second has passed.
      assert.ok(log.retriedAt - log.failedAt >= 950, `retried after ${log.retriedAt - log.failedAt} ms`);
    });

    test('a rejected promise and thrown non-Error values become failures, never a crash', async () => {
      const modes = ['reject', 'string', 'object', 'null', 'undefined'];
      const tasks = await Promise.all(modes.map((mode) => h.createTask('nd_fail', 'thrown', { mode })));
      const done = await Promise.all(tasks.map((t) => t.wait({ timeout: 30 })));
      const errors = done.map((d) => {
        assert.equal(d.state, 'error');
        return d.step('thrown_step')?.lastError;
      });
      assert.equal(errors[0]?.errorType, 'RangeError');
      assert.equal(errors[0]?.message, 'rejected asynchronously');
      assert.match(errors[0]?.backtrace ?? '', /RangeError: rejected asynchronously/);
      assert.equal(errors[1]?.errorType, 'NonErrorThrown');
      assert.equal(errors[1]?.message, 'handler threw a non-Error value: a plain string');
      assert.equal(errors[2]?.message, 'handler threw a non-Error value: {"code":42}');
      assert.deepEqual(errors[2]?.metadata, { thrownType: 'object' });
      assert.equal(errors[3]?.message, 'handler threw a non-Error value: null');
      assert.equal(errors[4]?.message, 'handler threw a non-Error value: undefined');
      for (const e of errors) assert.equal(e?.retryable, true);
      // The worker still serves.
      const ok = await (await h.createTask('nd_fail', 'thrown', { mode: 'fine' })).wait({ timeout: 30 });
      assert.equal(ok.state, 'complete');
      assert.deepEqual(ok.result('thrown_step'), { mode: 'fine' });
    });

    test('bad handlers fail their own steps clearly; the others complete', async () => {
      const done = await (await h.createTask('nd_bad', 'bad_input', {})).wait({ timeout: 30 });
      assert.equal(done.state, 'error');
      const missing = done.step('missing_handler');
      assert.equal(missing?.state, 'error');
      assert.equal(missing?.attempts, 1, 'handler_not_found is permanent');
      assert.equal(missing?.lastError?.errorType, 'handler_not_found');
      assert.match(missing?.lastError?.message ?? '', /no handler registered for callable 'NodeBad\.DoesNotExist'/);

      const bigint = done.step('bigint_result');
      assert.equal(bigint?.lastError?.errorType, 'result_not_serializable');
      assert.match(bigint?.lastError?.message ?? '', /result\.amount is a BigInt/);
      assert.equal(bigint?.attempts, 1);

      const circular = done.step('circular_result');
      assert.equal(circular?.lastError?.errorType, 'result_not_serializable');
      assert.match(circular?.lastError?.message ?? '', /result\.self\.parent is a circular reference/);

      assert.deepEqual(done.result('good_step'), { ok: true, step: 'good_step' });
      assert.deepEqual(done.result('after_good'), { ok: true, step: 'after_good' });
      assert.deepEqual(workerErrors, [], 'nothing escaped to onError');

      // And the worker keeps serving other tasks.
      const next = await (
        await h.createTask('nd_bad', 'process_order', { order_id: 7, customer: { email: 'a@b.c' } })
      ).wait({ timeout: 30 });
      assert.equal(next.state, 'complete');
    });

    test('a schema-invalid context is a ValidationError naming the property', async () => {
      await assert.rejects(
        h.createTask('nd_bad', 'process_order', { order_id: 'seven', customer: { email: 'a@b.c' } }),
        (e: unknown) => {
          assert.ok(e instanceof ValidationError, String(e));
          assert.equal(e.code, 'validation_failed');
          assert.equal(e.path, '/order_id');
          assert.match(e.message, /order_id/);
          return true;
        },
      );
      await assert.rejects(h.createTask('nd_bad', 'process_order', { order_id: 1 }), (e: unknown) => {
        assert.ok(e instanceof ValidationError);
        assert.match(e.message, /customer/);
        return true;
      });
      await assert.rejects(
        h.createTask('nd_bad', 'process_order', { order_id: 1, customer: { email: 5 } }),
        (e: unknown) => e instanceof ValidationError && e.path === '/customer/email',
      );
    });
  });
}
