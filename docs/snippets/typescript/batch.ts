// A batchable step and the batch worker that checkpoints its progress (TypeScript).
//
//   - name: analyze
//     type: batchable
//     handler: {callable: ledger.Analyze}
//   - name: process_batch
//     type: batch_worker
//     handler: {callable: ledger.ProcessBatch}
//     dependencies: [analyze]
//     batch_config: {checkpoint_interval: 100}
//   - name: aggregate
//     type: deferred_convergence
//     handler: {callable: ledger.Aggregate}
//     dependencies: [process_batch]
import { defineHandler, PermanentError, StepResult } from 'tasker-core';

type Input = { total: number };
type BatchConfig = { checkpoint_interval: number };
type BatchSum = { count: number; sum: number };

/**
 * Workers process_batch_001, _002, …: cursors 0..1000, 1000..2000, … (end exclusive). No items
 * gives one no-op worker, so aggregate still runs.
 */
export const analyze = defineHandler<Input>('ledger.Analyze', (ctx) =>
  StepResult.batches({ worker: 'process_batch', total: ctx.input.total, batchSize: 1_000 }, { total: ctx.input.total }),
);

/** Sums its range, checkpointing every checkpoint_interval items. */
export const processBatch = defineHandler<Input, Record<string, unknown>, BatchConfig>('ledger.ProcessBatch', async (ctx): Promise<BatchSum> => {
  const batch = ctx.batch;
  if (batch === null) throw new PermanentError('ledger.ProcessBatch runs as a batch_worker instance only');
  if (batch.isNoOp) return { count: 0, sum: 0 };
  // A retry (after a failure, a timeout or a lost worker) starts where the last attempt's
  // checkpoint left off.
  const resumed = ctx.checkpoint;
  let item = batch.resumeCursor as number;
  let count = resumed?.itemsDone ?? 0;
  let sum = (resumed?.accumulated as { sum: number } | null)?.sum ?? 0;
  const end = batch.endCursor as number;
  while (item < end) {
    sum += item++; // the work: here, adding up the item numbers
    count++;
    if (count % batch.config.checkpoint_interval === 0 || item === end) {
      await batch.checkpoint(item, count, { sum }); // committed before it resolves
    }
  }
  return { count, sum };
});

/** Receives every worker instance's result, keyed by instance name. */
export const aggregate = defineHandler('ledger.Aggregate', (ctx) => {
  const parts = Object.values(ctx.dependencyResults) as BatchSum[];
  return { count: parts.reduce((n, p) => n + p.count, 0), sum: parts.reduce((n, p) => n + p.sum, 0) };
});

// Unit test, no database (tasker-core/testing):
//
//   const ctx = buildStepContext({ batch: { startCursor: 0, endCursor: 250, config: { checkpoint_interval: 100 } } });
//   assertSuccess(await runHandler(processBatch, ctx), { count: 250, sum: 31_125 });
//   assert.deepEqual(checkpointsOf(ctx).map((c) => c.cursor), [100, 200, 250]);
