/**
 * Decision and batch helpers without a database: the wire format of StepResult.decision /
 * noBranches / batches / noBatches, the cursor builder, ctx.batch and ctx.checkpoint, and the
 * testing helpers that record checkpoints and read outcomes back.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  batchCursors,
  type BatchCursor,
  defineHandler,
  FencedError,
  InvalidArgumentError,
  type JsonValue,
  StepContext,
  StepResult,
  TaskerError,
} from '../ts/index.js';
import { contextFromEvent, type RawStepEvent } from '../ts/context.js';
import { fromNative } from '../ts/errors.js';
import { toStep } from '../ts/records.js';
import {
  assertFailure,
  assertSuccess,
  batchesOf,
  buildStepContext,
  checkpointsOf,
  chosenSteps,
  decisionOf,
  runHandler,
} from '../ts/testing.js';

const invalid = (path: string, message?: RegExp) => (e: unknown) =>
  e instanceof InvalidArgumentError && e.path === path && (message === undefined || message.test(e.message));

describe('batchCursors', () => {
  test('2,500 items in batches of 1,000: three batches, the last one holds the rest', () => {
    assert.deepEqual(batchCursors(2500, 1000), [
      { batchId: '001', startCursor: 0, endCursor: 1000, batchSize: 1000 },
      { batchId: '002', startCursor: 1000, endCursor: 2000, batchSize: 1000 },
      { batchId: '003', startCursor: 2000, endCursor: 2500, batchSize: 500 },
    ]);
  });

  test('an exact multiple, a single small batch, no items', () => {
    assert.deepEqual(
      batchCursors(6, 3).map((c) => [c.startCursor, c.endCursor]),
      [
        [0, 3],
        [3, 6],
      ],
    );
    assert.deepEqual(batchCursors(7, 100), [{ batchId: '001', startCursor: 0, endCursor: 7, batchSize: 7 }]);
    assert.deepEqual(batchCursors(0, 10), []);
  });

  test('more than 999 batches: ids grow past three digits, as the engine names instances', () => {
    const cursors = batchCursors(1001, 1);
    assert.equal(cursors.length, 1001);
    assert.equal(cursors[0]?.batchId, '001');
    assert.equal(cursors[998]?.batchId, '999');
    assert.equal(cursors[999]?.batchId, '1000');
    assert.equal(cursors[1000]?.batchId, '1001');
    assert.equal(new Set(cursors.map((c) => c.batchId)).size, 1001);
  });

  test('the batches cover every item exactly once', () => {
    for (const [total, size] of [
      [1, 1],
      [999, 7],
      [10_000, 333],
    ] as const) {
      const cursors = batchCursors(total, size);
      let next = 0;
      for (const c of cursors) {
        assert.equal(c.startCursor, next);
        assert.equal(c.batchSize, (c.endCursor as number) - (c.startCursor as number));
        assert.ok(c.batchSize >= 1 && c.batchSize <= size);
        next = c.endCursor as number;
      }
      assert.equal(next, total);
    }
  });

  test('bad sizes and totals are rejected naming the argument', () => {
    assert.throws(() => batchCursors(10, 0), invalid('batchSize', /integer >= 1, got 0/));
    assert.throws(() => batchCursors(10, -5), invalid('batchSize'));
    assert.throws(() => batchCursors(10, 2.5), invalid('batchSize'));
    assert.throws(() => batchCursors(-1, 10), invalid('total', /integer >= 0, got -1/));
    assert.throws(() => batchCursors(Number.NaN, 10), invalid('total'));
    assert.throws(() => batchCursors(Infinity, 10), invalid('total'));
    assert.throws(() => batchCursors('10' as unknown as number, 10), invalid('total'));
  });
});

describe('StepResult.decision / noBranches', () => {
  test('decision carries the chosen steps and keeps the extra keys', () => {
    const r = StepResult.decision(['manager_approval', 'finance_review'], { amount: 7500, tier: 'large' });
    assert.equal(r.isSuccess, true);
    assert.deepEqual(r.result, {
      amount: 7500,
      tier: 'large',
      decision_point_outcome: { type: 'create_steps', step_names: ['manager_approval', 'finance_review'] },
    });
    assert.deepEqual(JSON.parse(r.toOutcomeJson()).result, r.result);
  });

  test('noBranches, and an empty choice, are the no_branches outcome', () => {
    assert.deepEqual(StepResult.noBranches().result, { decision_point_outcome: { type: 'no_branches' } });
    assert.deepEqual(StepResult.noBranches({ reason: 'nothing to do' }).result, {
      reason: 'nothing to do',
      decision_point_outcome: { type: 'no_branches' },
    });
    assert.deepEqual(StepResult.decision([]).result, { decision_point_outcome: { type: 'no_branches' } });
  });

  test('the step list is copied, not referenced', () => {
    const steps = ['a'];
    const r = StepResult.decision(steps);
    steps.push('b');
    assert.deepEqual(chosenSteps(r), ['a']);
  });

  test('bad names, duplicates and non-object results are rejected naming the argument', () => {
    assert.throws(() => StepResult.decision('a' as unknown as string[]), invalid('steps'));
    assert.throws(() => StepResult.decision(['a', '']), invalid('steps[1]'));
    assert.throws(() => StepResult.decision(['a', 3 as unknown as string]), invalid('steps[1]'));
    assert.throws(() => StepResult.decision(['a', 'b', 'a']), invalid('steps[2]', /'a' is named twice/));
    assert.throws(() => StepResult.decision(['a'], [1] as unknown as Record<string, unknown>), invalid('result'));
    assert.throws(() => StepResult.noBranches(5 as unknown as Record<string, unknown>), invalid('result'));
    assert.throws(
      () => StepResult.decision(['a'], { decision_point_outcome: 'mine' }),
      invalid('result.decision_point_outcome', /writes 'decision_point_outcome' itself/),
    );
  });
});

describe('StepResult.batches / noBatches', () => {
  test('total and batchSize: even cursors in the wire format', () => {
    const r = StepResult.batches({ worker: 'process_batch', total: 2500, batchSize: 1000 }, { source: 'orders' });
    assert.deepEqual(r.result, {
      source: 'orders',
      batch_processing_outcome: {
        type: 'create_batches',
        worker_template_name: 'process_batch',
        worker_count: 3,
        total_items: 2500,
        cursor_configs: [
          { batch_id: '001', start_cursor: 0, end_cursor: 1000, batch_size: 1000 },
          { batch_id: '002', start_cursor: 1000, end_cursor: 2000, batch_size: 1000 },
          { batch_id: '003', start_cursor: 2000, end_cursor: 2500, batch_size: 500 },
        ],
      },
    });
  });

  test('explicit cursors may be any JSON; total_items defaults to the sum of the sizes', () => {
    const cursors: BatchCursor[] = [
      { batchId: 'a-m', startCursor: 'a', endCursor: 'n', batchSize: 40 },
      { batchId: 'n-z', startCursor: 'n', endCursor: null, batchSize: 60 },
    ];
    const out = batchesOf(StepResult.batches({ worker: 'by_letter', cursors }));
    assert.deepEqual(out, { type: 'create_batches', worker: 'by_letter', workerCount: 2, totalItems: 100, cursors });
    const withTotal = batchesOf(StepResult.batches({ worker: 'by_letter', cursors, totalItems: 90 }));
    assert.equal(withTotal.type === 'create_batches' && withTotal.totalItems, 90);
  });

  test('no items and no cursors are the no_batches outcome', () => {
    assert.deepEqual(StepResult.noBatches().result, { batch_processing_outcome: { type: 'no_batches' } });
    assert.deepEqual(StepResult.batches({ worker: 'w', total: 0, batchSize: 10 }, { total: 0 }).result, {
      total: 0,
      batch_processing_outcome: { type: 'no_batches' },
    });
    assert.deepEqual(batchesOf(StepResult.batches({ worker: 'w', cursors: [] })), { type: 'no_batches' });
  });

  test('bad specs are rejected naming the field', () => {
    assert.throws(() => StepResult.batches(null as never), invalid('batches'));
    assert.throws(() => StepResult.batches({ worker: '', total: 1, batchSize: 1 }), invalid('worker'));
    assert.throws(() => StepResult.batches({ worker: 'w', total: 10, batchSize: 0 }), invalid('batchSize'));
    assert.throws(() => StepResult.batches({ worker: 'w', total: -1, batchSize: 10 }), invalid('total'));
    assert.throws(
      () => StepResult.batches({ worker: 'w', cursors: [], total: 1, batchSize: 1 } as never),
      invalid('batches', /not both/),
    );
    assert.throws(() => StepResult.batches({ worker: 'w', cursors: 'x' as never }), invalid('cursors'));
    const c = { batchId: '001', startCursor: 0, endCursor: 10, batchSize: 10 };
    assert.throws(() => StepResult.batches({ worker: 'w', cursors: [c, c] }), invalid('cursors[1].batchId', /'001' is used/));
    assert.throws(() => StepResult.batches({ worker: 'w', cursors: [{ ...c, batchId: '' }] }), invalid('cursors[0].batchId'));
    assert.throws(
      () => StepResult.batches({ worker: 'w', cursors: [{ ...c, startCursor: undefined as never }] }),
      invalid('cursors[0].startCursor'),
    );
    assert.throws(() => StepResult.batches({ worker: 'w', cursors: [{ ...c, batchSize: -1 }] }), invalid('cursors[0].batchSize'));
    assert.throws(() => StepResult.batches({ worker: 'w', cursors: [c], totalItems: 1.5 }), invalid('totalItems'));
    assert.throws(
      () => StepResult.noBatches({ batch_processing_outcome: {} }),
      invalid('result.batch_processing_outcome'),
    );
  });

  test('an unserializable cursor fails the step naming its path, as any result does', async () => {
    const r = await runHandler(() =>
      StepResult.batches({ worker: 'w', cursors: [{ batchId: '001', startCursor: 1n as never, endCursor: 2, batchSize: 1 }] }),
    );
    assertFailure(r, { errorType: 'result_not_serializable', message: /cursor_configs\[0\]\.start_cursor is a BigInt/ });
  });
});

describe('reading outcomes back (tasker-core/testing)', () => {
  const route = defineHandler<{ amount: number }>('test.Route', (ctx) => {
    const { amount } = ctx.input;
    if (amount < 0) return StepResult.noBranches({ amount });
    if (amount < 1000) return StepResult.decision(['auto_approve'], { amount });
    if (amount < 5000) return StepResult.decision(['manager_approval'], { amount });
    return StepResult.decision(['manager_approval', 'finance_review'], { amount });
  });

  test('decisionOf and chosenSteps name the chosen branches', async () => {
    assert.deepEqual(chosenSteps(await runHandler(route, { input: { amount: 10 } })), ['auto_approve']);
    assert.deepEqual(chosenSteps(await runHandler(route, { input: { amount: 3000 } })), ['manager_approval']);
    assert.deepEqual(decisionOf(await runHandler(route, { input: { amount: 9000 } })), {
      type: 'create_steps',
      stepNames: ['manager_approval', 'finance_review'],
    });
    const none = await runHandler(route, { input: { amount: -1 } });
    assert.deepEqual(decisionOf(none), { type: 'no_branches' });
    assert.deepEqual(chosenSteps(none), []);
  });

  test('a handler returning the wire format as plain JSON reads back the same', async () => {
    const raw = await runHandler(() => ({ decision_point_outcome: { type: 'create_steps', step_names: ['x'] } }));
    assert.deepEqual(chosenSteps(raw), ['x']);
    const batches = await runHandler(() => ({
      batch_processing_outcome: {
        type: 'create_batches',
        worker_template_name: 'w',
        worker_count: 1,
        total_items: 5,
        cursor_configs: [{ batch_id: '001', start_cursor: 0, end_cursor: 5, batch_size: 5 }],
      },
    }));
    assert.deepEqual(batchesOf(batches), {
      type: 'create_batches',
      worker: 'w',
      workerCount: 1,
      totalItems: 5,
      cursors: [{ batchId: '001', startCursor: 0, endCursor: 5, batchSize: 5 }],
    });
  });

  test('a failure, a result without an outcome and a malformed one are assertion errors', async () => {
    const failed = StepResult.failure({ message: 'boom', errorType: 'Boom' });
    assert.throws(() => decisionOf(failed), { name: 'AssertionError', message: /got a failure: \[Boom\] boom/ });
    assert.throws(() => batchesOf(StepResult.success({ rows: 1 })), { name: 'AssertionError', message: /without one: \{"rows":1\}/ });
    assert.throws(() => chosenSteps(StepResult.success(7)), { name: 'AssertionError' });
    assert.throws(() => decisionOf(StepResult.success({ decision_point_outcome: { type: 'maybe' } })), {
      name: 'AssertionError',
      message: /malformed .*type is "maybe"/,
    });
    assert.throws(() => batchesOf(StepResult.success({ batch_processing_outcome: null })), { name: 'AssertionError', message: /malformed/ });
  });
});

type SumConfig = { checkpoint_interval: number };
type SumState = { sum: number };

/** Sums the integers of its cursor range, checkpointing every `checkpoint_interval` items. */
const sumBatch = defineHandler<Record<string, unknown>, Record<string, unknown>, SumConfig>('test.SumBatch', async (ctx) => {
  const batch = ctx.batch;
  if (batch === null) throw new Error('not a batch worker');
  if (batch.isNoOp) return { count: 0, sum: 0 };
  const end = batch.endCursor as number;
  let i = batch.resumeCursor as number;
  let sum = (ctx.checkpoint?.accumulated as SumState | null)?.sum ?? 0;
  let done = ctx.checkpoint?.itemsDone ?? 0;
  const every = batch.config.checkpoint_interval;
  while (i < end) {
    sum += i++;
    done++;
    if (done % every === 0 && i < end) await batch.checkpoint(i, done, { sum });
  }
  return { count: done, sum };
});

describe('ctx.batch and ctx.checkpoint', () => {
  test('a plain step has neither', () => {
    const ctx = buildStepContext();
    assert.equal(ctx.batch, null);
    assert.equal(ctx.checkpoint, null);
  });

  test('a batch worker sees its cursor and config, and its checkpoints are recorded in order', async () => {
    const ctx = buildStepContext({ batch: { batchId: '002', startCursor: 1000, endCursor: 1350, config: { checkpoint_interval: 100 } } });
    assert.equal(ctx.batch?.batchId, '002');
    assert.equal(ctx.batch?.batchSize, 350);
    assert.equal(ctx.batch?.isNoOp, false);
    assert.equal(ctx.batch?.resumeCursor, 1000);
    const expected = Array.from({ length: 350 }, (_, k) => 1000 + k).reduce((a, b) => a + b, 0);
    assertSuccess(await runHandler(sumBatch, ctx), { count: 350, sum: expected });
    assert.deepEqual(
      checkpointsOf(ctx).map((c) => [c.cursor, c.itemsDone]),
      [
        [1100, 100],
        [1200, 200],
        [1300, 300],
      ],
    );
    assert.deepEqual(checkpointsOf(ctx)[0]?.accumulated, { sum: Array.from({ length: 100 }, (_, k) => 1000 + k).reduce((a, b) => a + b, 0) });
  });

  test('with a last checkpoint: the next attempt, resuming from its cursor', async () => {
    const ctx = buildStepContext({
      batch: { startCursor: 0, endCursor: 300, config: { checkpoint_interval: 100 } },
      checkpoint: { cursor: 200, itemsDone: 200, accumulated: { sum: 19900 } },
    });
    assert.equal(ctx.attempt, 2, 'the attempt after the one that recorded the checkpoint');
    assert.equal(ctx.isRetry, true);
    assert.equal(ctx.checkpoint?.cursor, 200);
    assert.equal(ctx.checkpoint?.attempt, 1);
    assert.ok(ctx.checkpoint?.recordedAt instanceof Date);
    assert.equal(ctx.batch?.resumeCursor, 200);
    assertSuccess(await runHandler(sumBatch, ctx), { count: 300, sum: (299 * 300) / 2 });
    assert.deepEqual(checkpointsOf(ctx), [], 'nothing left to checkpoint before the end');
  });

  test('the no-op instance of no_batches', async () => {
    const ctx = buildStepContext({ batch: { batchId: '000', startCursor: 0, endCursor: 0, isNoOp: true } });
    assert.equal(ctx.batch?.batchSize, 0);
    assertSuccess(await runHandler(sumBatch, ctx), { count: 0, sum: 0 });
  });

  test('recorded checkpoints are copies; cursors, items and accumulations are optional JSON', async () => {
    const ctx = buildStepContext({ batch: { startCursor: 'a', endCursor: 'z', batchSize: 26 } });
    const acc = { seen: ['a'] };
    await ctx.batch?.checkpoint('b', 1, acc);
    acc.seen.push('b');
    await ctx.batch?.checkpoint({ page: 'token-2' });
    assert.deepEqual(checkpointsOf(ctx), [
      { cursor: 'b', itemsDone: 1, accumulated: { seen: ['a'] } },
      { cursor: { page: 'token-2' }, itemsDone: 0, accumulated: null },
    ]);
  });

  test('bad checkpoint arguments reject naming the argument, and record nothing', async () => {
    const ctx = buildStepContext({ batch: { startCursor: 0, endCursor: 10 } });
    const batch = ctx.batch;
    assert.ok(batch);
    await assert.rejects(batch.checkpoint(undefined as unknown as JsonValue), invalid('cursor', /is required/));
    await assert.rejects(batch.checkpoint(1, -1), invalid('itemsDone'));
    await assert.rejects(batch.checkpoint(1, 1.5), invalid('itemsDone'));
    await assert.rejects(batch.checkpoint(1, 1, { total: 2n } as never), invalid('accumulated.total', /BigInt/));
    await assert.rejects(batch.checkpoint(Number.NaN), invalid('cursor'));
    await assert.rejects(batch.checkpoint((() => 1) as never), invalid('cursor', /JSON value/));
    assert.deepEqual(checkpointsOf(ctx), []);
  });

  test('onCheckpoint sees each checkpoint and can make it fail (a fenced attempt)', async () => {
    const seen: JsonValue[] = [];
    const ctx = buildStepContext({
      batch: { startCursor: 0, endCursor: 500, config: { checkpoint_interval: 100 } },
      onCheckpoint: (c) => {
        seen.push(c.cursor);
        if (c.cursor === 300) throw new FencedError('the attempt no longer holds the step');
      },
    });
    const r = await runHandler(sumBatch, ctx);
    assertFailure(r, { errorType: 'FencedError', message: /no longer holds/ });
    assert.deepEqual(seen, [100, 200, 300]);
    assert.deepEqual(
      checkpointsOf(ctx).map((c) => c.cursor),
      [100, 200],
    );
  });

  test('bad test batches and checkpoints are rejected naming the option', () => {
    assert.throws(() => buildStepContext({ batch: { startCursor: 0 } as never }), invalid('batch.endCursor'));
    assert.throws(() => buildStepContext({ batch: { startCursor: 'a', endCursor: 'b' } }), invalid('batch.batchSize', /not numbers/));
    assert.throws(() => buildStepContext({ batch: { startCursor: 5, endCursor: 1 } }), invalid('batch.batchSize'));
    assert.throws(() => buildStepContext({ checkpoint: { cursor: 1 } }), invalid('checkpoint', /give `batch` too/));
    assert.throws(
      () => buildStepContext({ batch: { startCursor: 0, endCursor: 1 }, checkpoint: { cursor: 1, itemsDone: -2 } }),
      invalid('checkpoint.itemsDone'),
    );
    assert.throws(() => checkpointsOf(new StepContext(eventContextData())), invalid('ctx'));
  });

  test('a context built directly, without a checkpoint sink, says how to get one', async () => {
    const ctx = new StepContext({ ...eventContextData(), batch: { batchId: '001', startCursor: 0, endCursor: 1, batchSize: 1, isNoOp: false, config: {} } });
    await assert.rejects(ctx.batch?.checkpoint(1) ?? Promise.resolve(), (e: unknown) => e instanceof TaskerError && /buildStepContext/.test(e.message));
  });
});

function eventContextData() {
  return {
    taskUuid: 't',
    stepUuid: 's',
    stepName: 'n',
    namespace: 'ns',
    taskName: 'task',
    taskVersion: '1.0.0',
    correlationId: 'c',
    handler: { callable: 'x', method: 'call', resolver: null },
    input: {},
    config: {},
    dependencyResults: {},
    attempt: 1,
    maxAttempts: 1,
    deadline: null,
  };
}

describe('native errors of checkpoints', () => {
  test('`fenced` becomes a FencedError; `unknown_event` stays a TaskerError with its code', () => {
    const payload = (code: string) => new Error(`__tasker_error__:${JSON.stringify({ code, message: `${code}: event 7` })}`);
    const fenced = fromNative(payload('fenced'));
    assert.ok(fenced instanceof FencedError);
    assert.ok(fenced instanceof TaskerError);
    assert.equal(fenced.code, 'fenced');
    assert.equal(fenced.name, 'FencedError');
    const unknown = fromNative(payload('unknown_event'));
    assert.ok(unknown instanceof TaskerError && !(unknown instanceof FencedError));
    assert.equal(unknown.code, 'unknown_event');
    assert.equal(new FencedError('x').code, 'fenced');
  });
});

describe('engine JSON to camelCase', () => {
  const event = (extra: Partial<RawStepEvent>): RawStepEvent => ({
    event_id: 7,
    task_uuid: 't',
    step_uuid: 's',
    step_name: 'process_batch_002',
    namespace: 'ns',
    task_name: 'task',
    task_version: '1.0.0',
    handler: { callable: 'x' },
    task_context: {},
    dependency_results: {},
    attempt: 2,
    max_attempts: 3,
    correlation_id: 'c',
    deadline: null,
    ...extra,
  });

  test('a step event with batch and checkpoint; its checkpoints go to the sink as the engine reads them', async () => {
    const sent: string[] = [];
    const ctx = contextFromEvent(
      event({
        batch: { batch_id: '002', start_cursor: 1000, end_cursor: 2000, batch_size: 1000, is_no_op: false, batch_config: { checkpoint_interval: 100 } },
        checkpoint: { cursor: 1500, items_done: 500, accumulated: { sum: 1 }, attempt: 1, recorded_at: '2026-01-02T03:04:05.678Z' },
      }),
      () => new AbortController().signal,
      async (json) => {
        sent.push(json);
      },
    );
    assert.deepEqual(
      { ...ctx.batch },
      { batchId: '002', startCursor: 1000, endCursor: 2000, batchSize: 1000, isNoOp: false, config: { checkpoint_interval: 100 } },
    );
    assert.deepEqual(ctx.checkpoint, {
      cursor: 1500,
      itemsDone: 500,
      accumulated: { sum: 1 },
      attempt: 1,
      recordedAt: new Date('2026-01-02T03:04:05.678Z'),
    });
    assert.equal(ctx.batch?.resumeCursor, 1500);
    await ctx.batch?.checkpoint(1600, 600, { sum: 2 });
    await ctx.batch?.checkpoint(1700);
    assert.deepEqual(sent, ['{"cursor":1600,"items_done":600,"accumulated":{"sum":2}}', '{"cursor":1700,"items_done":0}']);
  });

  test('a step event without them, or with a null batch_config', () => {
    assert.equal(contextFromEvent(event({}), () => new AbortController().signal).batch, null);
    const plain = contextFromEvent(event({ batch: null, checkpoint: null }), () => new AbortController().signal);
    assert.equal(plain.batch, null);
    assert.equal(plain.checkpoint, null);
    const noConfig = contextFromEvent(
      event({ batch: { batch_id: '000', start_cursor: 0, end_cursor: 0, batch_size: 0, is_no_op: true, batch_config: null } }),
      () => new AbortController().signal,
    );
    assert.deepEqual(noConfig.batch?.config, {});
    assert.equal(noConfig.batch?.isNoOp, true);
  });

  test('a task detail step row: created_by, batch, checkpoint', () => {
    const base = {
      step_uuid: 's',
      name: 'process_batch_001',
      queue: 'q',
      state: 'complete',
      attempts: 2,
      max_attempts: 3,
      retryable: true,
      created_at: '2026-01-02T03:04:05Z',
    };
    const s = toStep({
      ...base,
      created_by: 'analyze',
      batch: { batch_id: '001', start_cursor: 0, end_cursor: 1000, batch_size: 1000, is_no_op: false },
      checkpoint: { cursor: 900, items_done: 900, accumulated: null, attempt: 1, recorded_at: '2026-01-02T03:04:06Z' },
    });
    assert.equal(s.createdBy, 'analyze');
    assert.deepEqual(s.batch, { batchId: '001', startCursor: 0, endCursor: 1000, batchSize: 1000, isNoOp: false });
    assert.deepEqual(s.checkpoint, { cursor: 900, itemsDone: 900, accumulated: null, attempt: 1, recordedAt: new Date('2026-01-02T03:04:06Z') });
    const plain = toStep(base);
    assert.equal(plain.createdBy, null);
    assert.equal(plain.batch, null);
    assert.equal(plain.checkpoint, null);
  });
});
