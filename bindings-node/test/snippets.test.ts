/**
 * The TypeScript snippets of the docs (docs/snippets/typescript/) run as the docs say, without a
 * database; importing them here also puts them under `tsc --strict`. They import `tasker-core`
 * as a user would; tsconfig's `paths` (tsc and tsx alike) map it to this package's sources.
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { aggregate, analyze, processBatch } from '../../docs/snippets/typescript/batch.js';
import { finalizeApproval, routingDecision } from '../../docs/snippets/typescript/conditional.js';
import { chargeCard, Ledger } from '../../docs/snippets/typescript/events.js';
import { computeTotal, validateOrder } from '../../docs/snippets/typescript/getting_started.js';
import { connect, type Event, Worker } from '../ts/index.js';
import { routeMethod } from '../ts/subscriber.js';
import { assertFailure, assertSuccess, batchesOf, buildStepContext, checkpointsOf, chosenSteps, runHandler } from '../ts/testing.js';
import { sqliteUrl } from './helpers.js';

describe('docs snippets: conditional workflows', () => {
  test('routingDecision chooses by amount, or nothing', async () => {
    assert.deepEqual(chosenSteps(await runHandler(routingDecision, { input: { amount: 250 } })), ['auto_approve']);
    assert.deepEqual(chosenSteps(await runHandler(routingDecision, { input: { amount: 2_500 } })), ['manager_approval']);
    assert.deepEqual(chosenSteps(await runHandler(routingDecision, { input: { amount: 7_500 } })), ['manager_approval', 'finance_review']);
    assert.deepEqual(chosenSteps(await runHandler(routingDecision, { input: { amount: 0 } })), []);
  });

  test('finalizeApproval lists the branches it received', async () => {
    const ctx = { dependencyResults: { manager_approval: {}, finance_review: {} } };
    assertSuccess(await runHandler(finalizeApproval, ctx), { approvedBy: ['finance_review', 'manager_approval'] });
  });
});

describe('docs snippets: batches', () => {
  test('analyze splits into batches of 1,000, or none', async () => {
    const out = batchesOf(await runHandler(analyze, { input: { total: 2_500 } }));
    assert.equal(out.type, 'create_batches');
    assert.deepEqual(out.type === 'create_batches' && out.cursors.map((c) => c.batchId), ['001', '002', '003']);
    assert.deepEqual(batchesOf(await runHandler(analyze, { input: { total: 0 } })), { type: 'no_batches' });
  });

  test('processBatch sums its range and checkpoints as the comment says', async () => {
    const ctx = buildStepContext({ batch: { startCursor: 0, endCursor: 250, config: { checkpoint_interval: 100 } } });
    assertSuccess(await runHandler(processBatch, ctx), { count: 250, sum: 31_125 });
    assert.deepEqual(
      checkpointsOf(ctx).map((c) => c.cursor),
      [100, 200, 250],
    );
  });

  test('processBatch resumes from a checkpoint; the no-op instance does nothing', async () => {
    const resumed = buildStepContext({
      batch: { startCursor: 0, endCursor: 250, config: { checkpoint_interval: 100 } },
      checkpoint: { cursor: 200, itemsDone: 200, accumulated: { sum: 19_900 } },
    });
    assertSuccess(await runHandler(processBatch, resumed), { count: 250, sum: 31_125 });
    const noOp = buildStepContext({ batch: { batchId: '000', startCursor: 0, endCursor: 0, isNoOp: true, config: { checkpoint_interval: 100 } } });
    assertSuccess(await runHandler(processBatch, noOp), { count: 0, sum: 0 });
  });

  test('aggregate sums the instances', async () => {
    const ctx = { dependencyResults: { process_batch_001: { count: 2, sum: 1 }, process_batch_002: { count: 1, sum: 2 } } };
    assertSuccess(await runHandler(aggregate, ctx), { count: 3, sum: 3 });
  });
});

describe('docs snippets: events', () => {
  test('chargeCard publishes payment.charged with its result', async () => {
    const ctx = buildStepContext({ input: { amount: 12.5 } });
    const result = await runHandler(chargeCard, ctx);
    assert.deepEqual(result.metadata?.events, [{ name: 'payment.charged', payload: { amount: 12.5 } }]);
    assert.deepEqual(ctx.publishedEvents.map((e) => e.name), ['payment.charged']);
  });

  test('Ledger books a charge once and notes failed tasks', () => {
    const event = (name: string, eventId: string, payload: Record<string, unknown>): Event => ({
      eventId,
      name,
      category: name.startsWith('task.') ? 'task' : 'domain',
      occurredAt: new Date(),
      taskUuid: 't1',
      stepUuid: null,
      correlationId: null,
      namespace: 'payments',
      taskName: 'checkout',
      taskVersion: '1.0.0',
      payload,
      delivery: 'durable',
      position: 1,
    });
    const ledger = new Ledger();
    const charged = event('payment.charged', 'e1', { amount: 5 });
    ledger.handlePaymentCharged(charged);
    ledger.handlePaymentCharged(charged); // redelivered
    ledger.handleTaskFailed(event('task.failed', 'e2', {}));
    assert.deepEqual([...ledger.booked], [['e1', 5]]);
    assert.deepEqual([...ledger.failedTasks], ['t1']);
    assert.equal(routeMethod('payment.charged'), 'handlePaymentCharged');
    assert.equal(routeMethod('step.retry_scheduled'), 'handleStepRetryScheduled');
  });
});

describe('docs snippets: getting started', () => {
  test('getting_started.ts runs as docs/getting-started-typescript.md says', async () => {
    const client = connect({ databaseUrl: sqliteUrl() });
    await client.registerTemplates(join(__dirname, '..', '..', 'docs', 'snippets', 'getting_started.yaml'));
    const worker = new Worker(client, { queues: ['getting_started'], handlers: [validateOrder, computeTotal] });
    await worker.start();
    try {
      const task = await client.createTask({
        namespace: 'getting_started',
        name: 'order_total',
        context: { order_id: 7, items: [{ price: 10, quantity: 3 }] },
      });
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'complete');
      assert.deepEqual(done.result('compute_total'), { order_id: 7, total: 36 });
    } finally {
      await worker.stop({ timeout: 5 });
      await client.close();
    }
  });

  test('getting_started.ts handlers run without a database', async () => {
    assertFailure(await runHandler(validateOrder, { input: { order_id: 1, items: [{ price: 1, quantity: 101 }] } }), {
      errorType: 'quantity_too_large',
      retryable: false,
    });
    const ctx = {
      input: { order_id: 7, items: [{ price: 10, quantity: 3 }] },
      dependencyResults: { validate_order: { order_id: 7, lines: 1 } },
      config: { tax_rate: 0.2 },
    };
    assertSuccess(await runHandler(computeTotal, ctx), { order_id: 7, total: 36 });
  });
});
