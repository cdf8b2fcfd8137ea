/**
 * The worker's life: the event loop stays free while it waits, handlers run concurrently up to
 * `concurrency`, `stop()` drains running handlers within its timeout and gives the rest back.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, afterEach, before, test } from 'node:test';

import { type StepContext, TimeoutError, Worker } from '../ts/index.js';
import { backends, describeBackend, deferred, explain, type Harness, harness, sleep } from './helpers.js';

for (const backend of backends()) {
  describeBackend(backend, `worker lifecycle on ${backend.name}`, () => {
    let h: Harness;
    const workers: Worker[] = [];

    const newWorker = (handlers: Record<string, (ctx: StepContext) => unknown>, concurrency = 4, pollTimeoutMs?: number): Worker => {
      const w = new Worker(h.client, {
        queues: [h.ns('nd_life')],
        handlers,
        concurrency,
        pollTimeoutMs,
      });
      workers.push(w);
      return w;
    };

    before(async () => {
      h = await harness(backend, ['lifecycle.yaml']);
    });

    afterEach(async () => {
      await Promise.all(workers.splice(0).map((w) => w.stop({ timeout: 1 })));
    });

    after(async () => {
      await h?.close();
    });

    test('setInterval keeps firing while the worker waits for work', async () => {
      const worker = newWorker({ 'NodeLife.Gated': () => ({}) }, 4, 10_000);
      await worker.start();
      let ticks = 0;
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          ticks++;
          if (ticks === 20) {
            clearInterval(timer);
            resolve();
          }
        }, 5);
      });
      // A poll of up to 10 s is outstanding: had it blocked the event loop, no tick could have
      // run before it returned.
      assert.equal(worker.stats.polls, 0, 'the 10 s poll is still pending');
      assert.equal(ticks, 20);
    });

    test('handlers run concurrently, never more than `concurrency` at once', async () => {
      let running = 0;
      let peak = 0;
      const worker = newWorker(
        {
          'NodeLife.Slow': async () => {
            running++;
            peak = Math.max(peak, running);
            await sleep(300);
            running--;
            return { peak };
          },
        },
        2,
      );
      await worker.start();
      const done = await (await h.createTask('nd_life', 'fan', {})).wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.equal(peak, 2);
      assert.equal(worker.stats.started, 4);
      assert.equal(worker.stats.succeeded, 4);
    });

    test('stop() waits for running handlers to finish', async () => {
      const started = deferred();
      const gate = deferred();
      let released = false;
      const worker = newWorker({
        'NodeLife.Gated': async () => {
          started.resolve();
          await gate.promise;
          return { drained: true };
        },
      });
      await worker.start();
      const task = await h.createTask('nd_life', 'gated', {});
      await started.promise;
      assert.equal(worker.inFlight, 1);
      const stopping = worker.stop({ timeout: 10 });
      await sleep(100);
      released = true;
      gate.resolve();
      const report = await stopping;
      assert.ok(released, 'stop() resolved only after the handler finished');
      assert.deepEqual(report, { released: 0, abandoned: 0 });
      assert.equal(worker.isRunning, false);
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.deepEqual(done.result('gated_step'), { drained: true });
    });

    test('stop() gives up after its timeout; the step is retried elsewhere', async () => {
      const started = deferred();
      const gate = deferred();
      let aborted: unknown;
      const stuck = newWorker({
        'NodeLife.Gated': async (ctx) => {
          ctx.signal.addEventListener('abort', () => (aborted = ctx.signal.reason));
          started.resolve();
          await gate.promise;
          return { late: true };
        },
      });
      await stuck.start();
      const task = await h.createTask('nd_life', 'gated', {});
      await started.promise;
      const report = await stuck.stop({ timeout: 0.2 });
      assert.deepEqual(report, { released: 0, abandoned: 1 });
      assert.ok(aborted instanceof Error, 'ctx.signal aborted for the abandoned handler');
      gate.resolve(); // its late completion is ignored, not a crash
      await sleep(20);

      const rescuer = newWorker({ 'NodeLife.Gated': (ctx) => ({ rescuedOnAttempt: ctx.attempt }) });
      await rescuer.start();
      const done = await task.wait({ timeout: 60 });
      assert.equal(done.state, 'complete', explain(done));
      const step = done.step('gated_step');
      assert.ok((step?.attempts ?? 0) >= 2, 'the abandoned attempt counts');
      assert.deepEqual(step?.results, { rescuedOnAttempt: step?.attempts });
    });

    test('an attempt past timeout_seconds fails with `timeout` and aborts ctx.signal', async () => {
      const aborted = deferred<unknown>();
      const worker = newWorker({
        'NodeLife.Deadline': async (ctx) => {
          assert.ok(ctx.deadline instanceof Date);
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
          aborted.resolve(ctx.signal.reason);
          await sleep(300); // overran: by now the engine failed the attempt; this result is ignored
          return { tooLate: true };
        },
      });
      await worker.start();
      const done = await (await h.createTask('nd_life', 'deadline', {})).wait({ timeout: 30 });
      assert.equal(done.state, 'error', explain(done));
      const step = done.step('deadline_step');
      assert.equal(step?.lastError?.errorType, 'timeout');
      assert.ok((await aborted.promise) instanceof TimeoutError);
    });

    test('handleSignals: SIGTERM drains the running handler, then the process ends', async () => {
      const task = await h.createTask('nd_life', 'gated', {});
      const script = join(__dirname, 'fixtures', 'signal-worker.ts');
      const child = spawn(process.execPath, ['--import', 'tsx', script, h.url, h.ns('nd_life')]);
      let out = '';
      const started = new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          if (out.includes(`started ${task.uuid}`)) resolve();
        });
        child.stderr.on('data', (b: Buffer) => (out += b.toString()));
        child.on('exit', () => reject(new Error(`worker exited early:\n${out}`)));
      });
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        child.on('exit', (code, signal) => resolve([code, signal])),
      );
      try {
        await started;
        child.kill('SIGTERM');
        const [code, signal] = await exited;
        assert.deepEqual([code, signal], [null, 'SIGTERM'], `the signal is re-raised after the stop; output:\n${out}`);
        const done = await task.wait({ timeout: 30 });
        assert.equal(done.state, 'complete', explain(done));
        assert.deepEqual(done.result('gated_step'), { finishedAfterSigterm: true });
        assert.equal(done.step('gated_step')?.attempts, 1, 'drained, not abandoned and retried');
      } finally {
        child.kill('SIGKILL');
      }
    });

    test('stop() before start() and twice is harmless; a stopped worker cannot restart', async () => {
      const w = newWorker({ 'NodeLife.Gated': () => ({}) });
      assert.deepEqual(await w.stop(), { released: 0, abandoned: 0 });
      await assert.rejects(w.start(), /stopped/);
      const w2 = newWorker({ 'NodeLife.Gated': () => ({}) });
      await w2.start();
      const [a, b] = await Promise.all([w2.stop({ timeout: 0.1 }), w2.stop({ timeout: 0.1 })]);
      assert.deepEqual(a, b);
    });
  });
}
