/**
 * The rows of docs/parity.md that the TypeScript package proves (each language has the same
 * tests): template lookup, module-path handlers, backend(), optional request fields, strict
 * identity, all-or-nothing registration, failure handling for unserialisable metadata and
 * non-finite numbers, and the one name per concept (`timeout` in seconds).
 */

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { InvalidArgumentError, parseModulePath, RetryableError, TemplateConflictError, TemplateNotFoundError, Worker } from '../ts/index.js';
import { buildStepContext, runHandler } from '../ts/testing.js';
import { backends, describeBackend, FIXTURES, type Harness, harness, tempDir } from './helpers.js';

function oneStep(namespace: string, name: string, callable: string, mul = 1): string {
  return [
    `name: ${name}`,
    `namespace_name: ${namespace}`,
    'version: 1.0.0',
    'steps:',
    `  - {name: only, handler: {callable: "${callable}", initialization: {mul: ${mul}}}, retry: {max_attempts: 1}}`,
    '',
  ].join('\n');
}

function write(dir: string, files: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const failingWithNanMetadata = (): never => {
  throw new RetryableError('gateway down', { errorType: 'GatewayDown', metadata: { latency: { p99: Number.NaN } } });
};

describe('parity without a database', () => {
  test("the README states package.json's engines range", () => {
    const root = join(__dirname, '..', '..');
    const engines = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    assert.ok(readFileSync(join(root, 'bindings-node', 'README.md'), 'utf8').includes(engines), engines);
  });

  test('module-path callables: "<module>#<export>"', async () => {
    assert.deepEqual(parseModulePath('./handlers/payments.ts#ChargeHandler'), { module: './handlers/payments.ts', exportName: 'ChargeHandler' });
    assert.equal(parseModulePath('payments.Charge'), undefined);
    const path = `${join(FIXTURES, 'handlers', 'payments.ts')}#ChargeHandler`;
    const ok = await runHandler(path, { input: { amount: 5 } });
    assert.deepEqual(ok.result, { charged: 5, by: 'module path' });
    const missing = await runHandler(`${join(FIXTURES, 'handlers', 'payments.ts')}#Nope`);
    assert.equal(missing.error?.errorType, 'handler_not_found');
    assert.match(missing.error?.message ?? '', /has no export 'Nope' \(its exports: .*ChargeHandler/);
    const wrong = await runHandler(`${join(FIXTURES, 'handlers', 'payments.ts')}#notAHandler`);
    assert.match(wrong.error?.message ?? '', /is 42 \(number\), not a StepHandler class/);
    const absent = await runHandler('./no/such/module.js#X');
    assert.match(absent.error?.message ?? '', /cannot be imported/);
  });

  test('a failure with unserialisable metadata keeps its error; the metadata becomes a note', async () => {
    const result = await runHandler(failingWithNanMetadata, buildStepContext({ stepName: 'only' }));
    assert.deepEqual(
      [result.error?.errorType, result.error?.message, result.error?.retryable],
      ['GatewayDown', 'gateway down', true],
    );
    assert.deepEqual(result.error?.metadata, {
      metadata_dropped: { code: 'metadata_not_serializable', path: 'metadata.latency.p99', reason: 'NaN, which JSON cannot represent' },
    });
  });

  test('the handler context exposes every concept', () => {
    const controller = new AbortController();
    controller.abort();
    const ctx = buildStepContext({
      input: { order: 7 },
      dependencyResults: { validate: { ok: true } },
      config: { mul: 2 },
      attempt: 2,
      maxAttempts: 3,
      stepName: 'charge',
      namespace: 'shop',
      taskName: 'checkout',
      taskVersion: '1.2.0',
      handler: { callable: 'shop.Charge', method: 'refund' },
      signal: controller.signal,
    });
    assert.deepEqual([ctx.input, ctx.config, ctx.dependencyResults], [{ order: 7 }, { mul: 2 }, { validate: { ok: true } }]);
    assert.deepEqual(ctx.getDependencyResult('validate'), { ok: true });
    assert.deepEqual([ctx.attempt, ctx.maxAttempts, ctx.isRetry, ctx.isLastRetry], [2, 3, true, false]);
    assert.deepEqual([ctx.stepName, ctx.namespace, ctx.taskName, ctx.taskVersion], ['charge', 'shop', 'checkout', '1.2.0']);
    assert.deepEqual([ctx.handler.callable, ctx.handler.method], ['shop.Charge', 'refund']);
    assert.ok(ctx.taskUuid && ctx.stepUuid && ctx.correlationId);
    assert.deepEqual([ctx.deadline, ctx.batch, ctx.checkpoint], [null, null, null]);
    assert.equal(ctx.signal.aborted, true);
    ctx.publish('order.charged', { amount: 7 });
    assert.deepEqual(ctx.publishedEvents, [{ name: 'order.charged', payload: { amount: 7 } }]);
  });

  test('a non-finite number in a result is refused, naming its path', async () => {
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const result = await runHandler(() => ({ ratio: [1, value] }));
      assert.equal(result.error?.errorType, 'result_not_serializable');
      assert.equal(result.error?.retryable, false);
      assert.match(result.error?.message ?? '', /result\.ratio\[1\]/);
    }
  });
});

for (const backend of backends()) {
  describeBackend(backend, `parity on ${backend.name}`, () => {
    let h: Harness;
    const workers: Worker[] = [];

    before(async () => {
      h = await harness(backend, ['diamond.yaml', 'linear.yaml']);
    });

    after(async () => {
      await Promise.all(workers.map((w) => w.stop({ timeout: 5 })));
      await h?.close();
    });

    test('backend(), listTemplates() and getTemplate()', async () => {
      assert.equal(await h.client.backend(), backend.database);
      // RabbitMQ carries the messages exactly when the backend says so: its connection is a check.
      const broker = (await h.client.health()).checks.some((c) => c.name === 'broker');
      assert.equal(broker, backend.name === 'postgres_rabbitmq');
      assert.equal(typeof (await h.client.sequenceEvents()), 'number');
      const ns = h.ns('nd_diamond');
      const mine = (await h.client.listTemplates()).filter((t) => t.namespace === ns);
      assert.deepEqual(mine.map((t) => t.name), ['diamond_math']);
      const diamond = await h.client.getTemplate(ns, 'diamond_math');
      assert.deepEqual(diamond.steps, ['diamond_start', 'diamond_branch_b', 'diamond_branch_c', 'diamond_end']);
      assert.deepEqual(diamond.queues, [ns]);
      assert.ok(diamond.sourcePath?.endsWith('diamond.yaml'));
      assert.ok(diamond.registeredAt instanceof Date);
      assert.deepEqual(await h.client.getTemplate(ns, 'diamond_math', '1.0.0'), diamond);
      await assert.rejects(h.client.getTemplate(ns, 'diamond_math', '9.9.9'), TemplateNotFoundError);
    });

    test('initiator, sourceSystem and reason are optional; strictIdentity returns the first task', async () => {
      const ns = h.ns('nd_diamond');
      const bare = await h.client.createTask({ namespace: ns, name: 'diamond_math', context: { n: 1 } });
      assert.equal(bare.initiator, null);
      const first = await h.client.createTask({ namespace: ns, name: 'diamond_math', context: { a: 1, b: 2 }, strictIdentity: true });
      const same = await h.client.createTask({ namespace: ns, name: 'diamond_math', context: { b: 2, a: 1 }, strictIdentity: true });
      const other = await h.client.createTask({ namespace: ns, name: 'diamond_math', context: { a: 2 }, strictIdentity: true });
      assert.equal(first.created, true);
      assert.equal(same.created, false);
      assert.equal(same.uuid, first.uuid);
      assert.notEqual(other.uuid, first.uuid);
      await assert.rejects(
        h.client.createTask({ namespace: ns, name: 'diamond_math', context: {}, strictIdentity: true, idempotencyKey: 'k' }),
        (e: unknown) => e instanceof InvalidArgumentError && /cannot be combined/.test(e.message),
      );
    });

    test('registering a directory with one clash stores nothing', async () => {
      const ns = h.ns('nd_parity');
      await h.client.registerTemplates(write(join(tempDir(), 'first'), { 'b.yaml': oneStep(ns, 'one_try', 'parity.only') }));
      // Only this namespace's templates: other suites may share the database.
      const mine = async (): Promise<string[]> => (await h.client.listTemplates()).filter((t) => t.namespace === ns).map((t) => t.name);
      const before = await mine();
      const clash = write(join(tempDir(), 'clash'), {
        'a_new.yaml': oneStep(ns, 'first_new', 'parity.only'),
        'b_clash.yaml': oneStep(ns, 'one_try', 'parity.only', 2),
        'c_new.yaml': oneStep(ns, 'last_new', 'parity.only'),
      });
      await assert.rejects(h.client.registerTemplates(clash), TemplateConflictError);
      assert.deepEqual(await mine(), before);
      await assert.rejects(h.client.getTemplate(ns, 'first_new'), TemplateNotFoundError);
    });

    test('a worker resolves module-path callables and keeps a failure whose metadata cannot be serialised', async () => {
      const ns = h.ns('nd_parity_worker');
      await h.client.registerTemplates(
        write(join(tempDir(), 'worker'), {
          'charge.yaml': oneStep(ns, 'charge', './handlers/payments.ts#ChargeHandler'),
          'flaky.yaml': oneStep(ns, 'flaky', 'parity.flaky'),
        }),
      );
      const worker = new Worker(h.client, {
        queues: [ns],
        handlers: { 'parity.flaky': failingWithNanMetadata },
        handlerRoot: FIXTURES,
      });
      workers.push(worker);
      await worker.start();
      const charged = await (await h.client.createTask({ namespace: ns, name: 'charge', context: { amount: 7 } })).wait({ timeout: 30 });
      assert.deepEqual(charged.result('only'), { charged: 7, by: 'module path' });
      assert.deepEqual(charged.step('only')?.results, { charged: 7, by: 'module path' });
      assert.equal(charged.step('only')?.lastError, null);
      const flaky = await (await h.client.createTask({ namespace: ns, name: 'flaky', context: {} })).wait({ timeout: 30 });
      const error = flaky.step('only')?.lastError;
      assert.deepEqual([error?.errorType, error?.message, error?.retryable], ['GatewayDown', 'gateway down', true]);
      assert.deepEqual(error?.metadata, {
        metadata_dropped: { code: 'metadata_not_serializable', path: 'metadata.latency.p99', reason: 'NaN, which JSON cannot represent' },
      });
    });

    test('wait timeouts are seconds (timeoutMs is a deprecated alias)', async () => {
      const task = await h.createTask('nd_diamond', 'diamond_math', { n: 1 });
      await assert.rejects(task.wait({ timeout: 0.05 }), /did not finish|timed out|timeout/i);
      await assert.rejects(task.wait({ timeoutMs: 50 }), /did not finish|timed out|timeout/i);
      await assert.rejects(task.wait({ timeout: 1, timeoutMs: 1 }), InvalidArgumentError);
    });
  });
}
