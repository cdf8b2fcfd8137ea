/**
 * Batch processing end to end, with TypeScript handlers: a batchable step splits the items
 * into cursors, one worker instance per batch sums its range while checkpointing, and a
 * deferred convergence step sums the instances. No items gives one no-op instance. A worker
 * that checkpoints and then fails resumes on its retry from the checkpoint, processing no item
 * twice (a ledger in this process counts every item). A worker that is no batch_worker fails
 * the batchable step. A checkpoint from an attempt that lost its step is refused with `fenced`. On SQLite and (with DATABASE_URL) PostgreSQL.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  defineHandler,
  FencedError,
  RetryableError,
  type StepContext,
  StepResult,
  Worker,
} from '../ts/index.js';
import { backends, describeBackend, deferred, explain, type Harness, harness, sleep } from './helpers.js';

type Input = {
  total: number;
  batch_size: number;
  /** Attempt 1 of this instance fails right after checkpointing at `fail_at`. */
  fail?: { instance: string; at: number };
  /** Overrides the worker analyze names (to test a bad one). */
  worker?: string;
};
type BatchConfig = { checkpoint_interval: number };
type BatchPart = { count: number; sum: number; batch: string; noOp: boolean; resumedFrom: unknown; attempt: number };
type Accumulated = { sum: number };

/** Times each item was processed, by task. */
const ledger = new Map<string, Map<number, number>>();

function touch(task: string, item: number): void {
  let items = ledger.get(task);
  if (items === undefined) ledger.set(task, (items = new Map()));
  items.set(item, (items.get(item) ?? 0) + 1);
}

const analyze = defineHandler<Input>('NodeBatch.Analyze', (ctx) =>
  StepResult.batches(
    { worker: ctx.input.worker ?? (ctx.stepName === 'split' ? 'slow_batch' : 'process_batch'), total: ctx.input.total, batchSize: ctx.input.batch_size },
    { total: ctx.input.total },
  ),
);

const processBatch = defineHandler<Input, Record<string, unknown>, BatchConfig>(
  'NodeBatch.ProcessBatch',
  async (ctx: StepContext<Input, Record<string, unknown>, BatchConfig>): Promise<BatchPart> => {
    const batch = ctx.batch;
    if (batch === null) throw new Error(`${ctx.stepName} is not a batch worker instance`);
    const base = { batch: batch.batchId, noOp: batch.isNoOp, resumedFrom: ctx.checkpoint?.cursor ?? null, attempt: ctx.attempt };
    if (batch.isNoOp) return { count: 0, sum: 0, ...base };
    const end = batch.endCursor as number;
    const every = batch.config.checkpoint_interval;
    let item = batch.resumeCursor as number;
    let done = ctx.checkpoint?.itemsDone ?? 0;
    let sum = (ctx.checkpoint?.accumulated as Accumulated | null)?.sum ?? 0;
    const fail = ctx.input.fail;
    while (item < end) {
      touch(ctx.taskUuid, item);
      sum += item++;
      done++;
      if (done % every === 0 && item < end) {
        await batch.checkpoint(item, done, { sum } satisfies Accumulated);
        if (fail !== undefined && ctx.stepName === fail.instance && item === fail.at && ctx.attempt === 1) {
          throw new RetryableError(`simulated crash after checkpointing at ${item}`, { retryAfter: 0 });
        }
      }
    }
    return { count: done, sum, ...base };
  },
);

const aggregate = defineHandler('NodeBatch.Aggregate', (ctx) => {
  const parts = Object.entries(ctx.dependencyResults) as Array<[string, BatchPart]>;
  return {
    instances: parts.map(([name]) => name).sort(),
    count: parts.reduce((n, [, p]) => n + p.count, 0),
    sum: parts.reduce((n, [, p]) => n + p.sum, 0),
  };
});

/** What the slow worker saw when its timed-out attempt tried to checkpoint. */
let fencedSeen = deferred<unknown>();
/** The client of the running suite, for the slow worker to watch its own step. */
let watcher: Harness | undefined;

const slow = defineHandler('NodeBatch.Slow', async (ctx) => {
  const started = Date.now();
  while (!ctx.signal.aborted && Date.now() - started < 15_000) await sleep(20);
  // The signal may abort (from this process's own timer) a moment before the engine applies the
  // timeout; checkpoint once the step's timeout is recorded, so the attempt is surely fenced.
  while (Date.now() - started < 15_000) {
    const step = (await watcher?.client.getTask(ctx.taskUuid))?.step(ctx.stepName);
    if (step?.lastError?.errorType === 'timeout') break;
    await sleep(20);
  }
  try {
    await ctx.batch?.checkpoint(1, 1);
    fencedSeen.resolve('accepted');
  } catch (e) {
    fencedSeen.resolve(e);
  }
  return { count: 0, sum: 0 };
});

const sumBelow = (n: number): number => (n * (n - 1)) / 2;

for (const backend of backends()) {
  describeBackend(backend, `batch processing on ${backend.name}`, () => {
    let h: Harness;
    let worker: Worker;

    before(async () => {
      h = await harness(backend, ['batch.yaml']);
      watcher = h;
      worker = new Worker(h.client, { queues: [h.ns('nd_batch')], handlers: [analyze, processBatch, aggregate, slow], concurrency: 4 });
      await worker.start();
    });

    after(async () => {
      await worker?.stop({ timeout: 5 });
      await h?.close();
    });

    test('2,500 items in batches of 1,000: three workers, and the convergence sums them all', async () => {
      const task = await h.createTask('nd_batch', 'batch_sum', { total: 2500, batch_size: 1000 });
      const done = await task.wait({ timeout: 60 });
      assert.equal(done.state, 'complete', explain(done));
      const instances = ['process_batch_001', 'process_batch_002', 'process_batch_003'];
      assert.deepEqual(done.result('aggregate'), { instances, count: 2500, sum: sumBelow(2500) });
      assert.deepEqual(
        done.steps.map((s) => s.name).sort(),
        ['aggregate', 'analyze', ...instances].sort(),
        'the worker template itself is never created',
      );
      const cursors = instances.map((name) => done.step(name)?.batch);
      assert.deepEqual(cursors, [
        { batchId: '001', startCursor: 0, endCursor: 1000, batchSize: 1000, isNoOp: false },
        { batchId: '002', startCursor: 1000, endCursor: 2000, batchSize: 1000, isNoOp: false },
        { batchId: '003', startCursor: 2000, endCursor: 2500, batchSize: 500, isNoOp: false },
      ]);
      for (const name of instances) {
        const step = done.step(name);
        assert.equal(step?.createdBy, 'analyze', name);
        assert.equal(step?.state, 'complete', name);
        assert.equal(step?.attempts, 1, name);
      }
      assert.equal(done.step('aggregate')?.createdBy, 'analyze');
      assert.deepEqual(done.result('process_batch_003'), { count: 500, sum: sumBelow(2500) - sumBelow(2000), batch: '003', noOp: false, resumedFrom: null, attempt: 1 });
      assert.equal(done.totalSteps, 5);
      const items = ledger.get(task.uuid);
      assert.equal(items?.size, 2500);
      assert.ok([...(items?.values() ?? [])].every((n) => n === 1), 'every item processed once');
    });

    test('no items: no_batches gives one no-op worker, and the convergence still runs', async () => {
      const task = await h.createTask('nd_batch', 'batch_sum', { total: 0, batch_size: 1000 });
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.deepEqual(done.result('analyze'), { total: 0, batch_processing_outcome: { type: 'no_batches' } });
      const workers = done.steps.filter((s) => s.batch !== null);
      assert.equal(workers.length, 1, explain(done));
      const noOp = workers[0];
      assert.ok(noOp !== undefined);
      assert.deepEqual(noOp.batch, { batchId: '000', startCursor: 0, endCursor: 0, batchSize: 0, isNoOp: true });
      assert.equal(noOp.createdBy, 'analyze');
      assert.equal(noOp.state, 'complete');
      assert.deepEqual(done.result('aggregate'), { instances: [noOp.name], count: 0, sum: 0 });
      assert.equal(ledger.get(task.uuid), undefined, 'the no-op worker processed nothing');
    });

    test('a worker that checkpoints and then fails resumes from its checkpoint on the retry', async () => {
      const task = await h.createTask('nd_batch', 'batch_sum', {
        total: 2500,
        batch_size: 1000,
        fail: { instance: 'process_batch_002', at: 1500 },
      } satisfies Input);
      const done = await task.wait({ timeout: 60 });
      assert.equal(done.state, 'complete', explain(done));
      assert.deepEqual(done.result('aggregate'), {
        instances: ['process_batch_001', 'process_batch_002', 'process_batch_003'],
        count: 2500,
        sum: sumBelow(2500),
      });
      const retried = done.step('process_batch_002');
      assert.equal(retried?.attempts, 2, explain(done));
      const result = done.result<BatchPart>('process_batch_002');
      assert.equal(result?.attempt, 2);
      assert.equal(result?.resumedFrom, 1500, 'the second attempt received the checkpoint');
      assert.equal(result?.count, 1000);
      assert.equal(result?.sum, sumBelow(2000) - sumBelow(1000));
      // The last checkpoint is the retry's own (at 1900), recorded by attempt 2.
      assert.equal(retried?.checkpoint?.cursor, 1900);
      assert.equal(retried?.checkpoint?.itemsDone, 900);
      assert.deepEqual(retried?.checkpoint?.accumulated, { sum: sumBelow(1900) - sumBelow(1000) });
      assert.equal(retried?.checkpoint?.attempt, 2);
      assert.ok(retried?.checkpoint?.recordedAt instanceof Date);
      const items = ledger.get(task.uuid);
      assert.equal(items?.size, 2500, 'every item processed');
      const twice = [...(items ?? new Map<number, number>())].filter(([, n]) => n !== 1).map(([i]) => i);
      assert.deepEqual(twice, [], 'no item processed twice');
    });

    test('a worker that is no batch_worker of the template fails the batchable step, creating nothing', async () => {
      const task = await h.createTask('nd_batch', 'batch_sum', { total: 10, batch_size: 5, worker: 'aggregate' } satisfies Input);
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'error', explain(done));
      const analyzeStep = done.step('analyze');
      assert.equal(analyzeStep?.lastError?.errorType, 'invalid_batch_outcome');
      assert.equal(analyzeStep?.lastError?.retryable, false);
      assert.match(analyzeStep?.lastError?.message ?? '', /aggregate/);
      assert.deepEqual(
        done.steps.map((s) => s.name),
        ['analyze'],
        'nothing was created',
      );
    });

    test('a checkpoint from an attempt that timed out is refused as fenced', async () => {
      fencedSeen = deferred<unknown>();
      const task = await h.createTask('nd_batch', 'batch_fenced', { total: 10, batch_size: 10 });
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'error', explain(done));
      assert.equal(done.step('slow_batch_001')?.lastError?.errorType, 'timeout');
      const seen = await fencedSeen.promise;
      assert.ok(seen instanceof FencedError, `expected a FencedError, got ${String(seen)}`);
      assert.equal(seen.code, 'fenced', seen.message);
      assert.equal(done.step('slow_batch_001')?.checkpoint, null, 'the refused checkpoint was not stored');
    });
  });
}
