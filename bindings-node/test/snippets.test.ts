/**
 * The TypeScript snippets of the docs (docs/snippets/typescript/) run as the docs say, without a
 * database; importing them here also puts them under `tsc --strict`. They import `tasker-core`
 * as a user would; tsconfig's `paths` (tsc and tsx alike) map it to this package's sources.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { aggregate, analyze, processBatch } from '../../docs/snippets/typescript/batch.js';
import { finalizeApproval, routingDecision } from '../../docs/snippets/typescript/conditional.js';
import { assertSuccess, batchesOf, buildStepContext, checkpointsOf, chosenSteps, runHandler } from '../ts/testing.js';

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
