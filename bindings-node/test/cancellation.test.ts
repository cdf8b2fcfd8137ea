/**
 * Cancellation: `ctx.signal` aborts once the engine gives up on an attempt (timeout, given up,
 * shutdown deadline), and the native cancel signal it is built on. A fatal worker error
 * (`WorkerFailedError` from poll) ends the poll loop instead of retrying it.
 */

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, mock, test } from 'node:test';

import { NativeWorker } from '../native/index.js';
import { ShutDownError, type StepContext, TimeoutError, Worker, WorkerFailedError } from '../ts/index.js';
import { buildStepContext } from '../ts/testing.js';
import { nativeWorkers } from '../ts/worker.js';
import { backends, describeBackend, deferred, explain, type Harness, harness, sleep } from './helpers.js';

/** Upper bound for a handler's wait; the engine cancels after about 1 s (timeout_seconds: 1). */
const GIVE_UP_AFTER_MS = 15_000;

/** Loops until `ctx.signal` says aborted (or gives up); resolves `seen` with what it saw. */
function looper(seen: { before?: boolean; reason?: unknown; became?: () => void }) {
  return async (ctx: StepContext): Promise<unknown> => {
    seen.before = ctx.signal.aborted;
    const started = Date.now();
    while (!ctx.signal.aborted) {
      if (Date.now() - started > GIVE_UP_AFTER_MS) return { cancelled: false };
      await sleep(20);
    }
    seen.reason = ctx.signal.reason;
    seen.became?.();
    throw new Error('cancelled');
  };
}

for (const backend of backends()) {
  describeBackend(backend, `cancellation on ${backend.name}`, () => {
    let h: Harness;
    const workers: Worker[] = [];

    before(async () => {
      h = await harness(backend, ['hardening.yaml']);
    });

    afterEach(async () => {
      await Promise.all(workers.splice(0).map((w) => w.stop({ timeout: 1 })));
    });

    after(async () => {
      await h?.close();
    });

    test('ctx.signal aborts when the attempt times out, and the attempt fails with `timeout`', async () => {
      const became = deferred();
      const seen: { before?: boolean; reason?: unknown; became?: () => void } = { became: became.resolve };
      const worker = new Worker(h.client, { queues: [h.ns('nd_hard')], handlers: { 'NodeHard.Loops': looper(seen) } });
      workers.push(worker);
      await worker.start();
      const done = await (await h.createTask('nd_hard', 'cancel_on_timeout', {})).wait({ timeout: 30 });
      assert.equal(done.state, 'error', explain(done));
      const step = done.step('loops');
      assert.equal(step?.attempts, 1);
      assert.equal(step?.lastError?.errorType, 'timeout');
      assert.equal(step?.lastError?.retryable, true);
      await Promise.race([became.promise, sleep(GIVE_UP_AFTER_MS).then(() => assert.fail('ctx.signal never aborted'))]);
      assert.equal(seen.before, false);
      assert.ok(seen.reason instanceof TimeoutError);
      await sleep(200); // the handler's late failure is ignored
      const again = await h.client.getTask(done.uuid);
      assert.equal(again.step('loops')?.lastError?.errorType, 'timeout');
      assert.ok(worker.isRunning);
    });

    test('ctx.signal aborts for a handler still running at the shutdown deadline', async () => {
      const became = deferred();
      const seen: { before?: boolean; reason?: unknown; became?: () => void } = { became: became.resolve };
      const worker = new Worker(h.client, { queues: [h.ns('nd_hard')], handlers: { 'NodeHard.Only': looper(seen) } });
      await worker.start();
      await h.createTask('nd_hard', 'single', {});
      const started = Date.now();
      while (seen.before === undefined && Date.now() - started < 30_000) await sleep(10);
      assert.equal(seen.before, false);
      const report = await worker.stop({ timeout: 0.3 });
      assert.deepEqual(report, { released: 0, abandoned: 1 });
      await Promise.race([became.promise, sleep(GIVE_UP_AFTER_MS).then(() => assert.fail('ctx.signal never aborted'))]);
      assert.ok(seen.reason instanceof ShutDownError);
    });

    test('the native cancel signal: raised at the deadline, null once the event is finished', async () => {
      // A namespace of its own: the step abandoned by the test above is back in the first one's queue.
      const own = await harness(backend, ['hardening.yaml']);
      const client = await own.client.nativeClient();
      const nw = await NativeWorker.start(client, JSON.stringify({ queues: [own.ns('nd_hard')], concurrency: 1 }));
      try {
        await own.createTask('nd_hard', 'cancel_on_timeout', {});
        let raw: string | null = '[]';
        for (let i = 0; i < 60 && raw === '[]'; i++) raw = await nw.poll(1, 500);
        const [event] = JSON.parse(raw ?? '[]') as Array<{ event_id: number }>;
        assert.ok(event !== undefined, 'an event arrived');
        const signal = nw.cancelSignal(event.event_id);
        assert.ok(signal !== null);
        assert.equal(signal.isCancelled, false);
        assert.equal(nw.isCancelled(event.event_id), false);
        const started = Date.now();
        while (!signal.isCancelled && Date.now() - started < GIVE_UP_AFTER_MS) await sleep(20);
        assert.equal(signal.isCancelled, true, 'raised after timeout_seconds');
        assert.equal(nw.isCancelled(event.event_id), true);
        nw.complete(event.event_id, JSON.stringify({ status: 'success', result: { late: true } }));
        assert.equal(nw.cancelSignal(event.event_id), null);
        assert.equal(nw.isCancelled(event.event_id), true, 'an event no longer in flight counts as cancelled');
        assert.equal(nw.isCancelled(-1), true);
      } finally {
        await nw.shutdown(1_000);
        await own.close();
      }
    });
  });
}

describe('a fatal worker error', () => {
  /** Stands in for a native worker after one of its background tasks died. */
  class FailedNative {
    polls = 0;
    shutDown = false;
    readonly concurrency = 8;
    async poll(): Promise<string | null> {
      this.polls++;
      const details = { code: 'worker_failed', message: "the worker's applier stopped: panicked: boom" };
      throw new Error(`__tasker_error__:${JSON.stringify(details)}`);
    }
    get shuttingDown(): boolean {
      return this.shutDown;
    }
    async shutdown(): Promise<string> {
      this.shutDown = true;
      return '{"released":0,"abandoned":0}';
    }
  }

  test('ends the poll loop, is reported once, stops the worker, and stopped() rejects with it', async () => {
    const fake = new FailedNative();
    const start = mock.method(nativeWorkers, 'start', async () => fake as unknown as NativeWorker);
    try {
      const errors: unknown[] = [];
      const client = { nativeClient: async () => ({}) } as unknown as ConstructorParameters<typeof Worker>[0];
      const worker = new Worker(client, { queues: ['anything'], handlers: {}, onError: (e) => errors.push(e) });
      await worker.start();
      await assert.rejects(worker.stopped(), (e: unknown) => e instanceof WorkerFailedError && e.code === 'worker_failed');
      assert.ok(worker.failure instanceof WorkerFailedError);
      assert.match(worker.failure.message, /applier stopped/);
      assert.equal(worker.isRunning, false);
      assert.equal(fake.polls, 1, 'no retry loop');
      assert.equal(fake.shutDown, true, 'the worker stopped itself');
      assert.deepEqual(errors, [worker.failure]);
      assert.deepEqual(await worker.stop(), { released: 0, abandoned: 0 });
    } finally {
      start.mock.restore();
    }
  });
});

describe('testing helpers', () => {
  test('a context can carry an aborted signal', () => {
    const controller = new AbortController();
    const ctx = buildStepContext({ signal: controller.signal });
    assert.equal(ctx.signal.aborted, false);
    controller.abort(new TimeoutError('late', 'timeout'));
    assert.equal(ctx.signal.aborted, true);
    assert.equal(buildStepContext().signal.aborted, false);
  });
});
