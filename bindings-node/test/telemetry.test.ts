/**
 * Telemetry from TypeScript: a task created with a traceparent joins that trace, handlers get
 * their attempt's trace context (`ctx.traceContext`) when traces are exported, and the engine's
 * metrics and health are readable (docs/operations.md).
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { connect, InvalidArgumentError, type StepContext, Worker } from '../ts/index.js';
import { backends, describeBackend, type Harness, harness } from './helpers.js';

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER = `00-${CALLER_TRACE}-00f067aa0ba902b7-01`;

/** Runs one `traced` task on `h`'s client (or `client`) and returns the trace contexts seen. */
async function runTraced(h: Harness, client = h.client): Promise<(string | null)[]> {
  const seen: (string | null)[] = [];
  const worker = new Worker(client, {
    queues: [h.ns('nd_tel')],
    handlers: {
      'NodeTelemetry.Record': (ctx: StepContext) => {
        seen.push(ctx.traceContext);
        return {};
      },
    },
  });
  await worker.start();
  try {
    const task = await client.createTask({ namespace: h.ns('nd_tel'), name: 'traced', context: {}, initiator: 't', sourceSystem: 't', reason: 't', traceparent: CALLER });
    assert.equal(task.correlationId.replaceAll('-', ''), CALLER_TRACE, 'the task joins the caller trace');
    assert.equal((await task.wait({ timeoutMs: 30_000 })).state, 'complete');
  } finally {
    await worker.stop({ timeoutMs: 5_000 });
  }
  return seen;
}

for (const backend of backends()) {
  describeBackend(backend, `telemetry on ${backend.name}`, () => {
    let h: Harness;

    before(async () => {
      h = await harness(backend, ['telemetry.yaml']);
    });

    after(async () => {
      await h?.close();
    });

    test('a traceparent joins its trace; no trace context while traces are not exported', async () => {
      assert.deepEqual(await runTraced(h), [null]);
    });

    test('a bad traceparent is refused, naming it', async () => {
      await assert.rejects(h.createTask('nd_tel', 'traced', {}, { traceparent: '00-nope' }), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.match(String(e), /traceparent/);
        return true;
      });
    });

    test("handlers get their attempt's trace context when traces are exported", async () => {
      // Nothing listens there: the export fails quietly; the handlers still get their contexts.
      process.env.TASKER_TELEMETRY__ENABLED = 'true';
      process.env.TASKER_TELEMETRY__OTLP_ENDPOINT = 'http://127.0.0.1:9';
      const traced = connect({ databaseUrl: h.url });
      try {
        await traced.ready();
      } finally {
        delete process.env.TASKER_TELEMETRY__ENABLED;
        delete process.env.TASKER_TELEMETRY__OTLP_ENDPOINT;
      }
      try {
        const [context] = await runTraced(h, traced);
        const [version, trace, span, flags] = (context ?? '').split('-');
        assert.deepEqual([version, trace, flags], ['00', CALLER_TRACE, '01']);
        assert.match(span ?? '', /^[0-9a-f]{16}$/);
        assert.notEqual(span, '00f067aa0ba902b7');
      } finally {
        await traced.close();
      }
    });

    test('metrics and health', async () => {
      await runTraced(h);
      const text = await h.client.prometheusMetrics();
      assert.match(text, /# TYPE tasker_steps_completed_total counter/);
      assert.ok(text.includes(`tasker_steps_claimed_total{queue="${h.ns('nd_tel')}"}`), text);
      const names = new Set((await h.client.metrics()).samples.map((s) => s.name));
      for (const n of ['tasker.tasks.created', 'tasker.steps.completed', 'db.client.connection.count']) assert.ok(names.has(n), n);
      const health = await h.client.health();
      assert.equal(health.live, true);
      assert.equal(health.ready, true);
      assert.ok(health.checks.some((c) => c.name === 'database' && c.ok));
    });
  });
}
