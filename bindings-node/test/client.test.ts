/**
 * The client API and its errors: connect defaults, templates, create/get/list/cancel/wait,
 * idempotency, and the mapping of engine errors to TaskerError subclasses.
 */

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  connect,
  DatabaseError,
  IllegalTransitionError,
  InvalidArgumentError,
  TaskerError,
  TaskNotFoundError,
  TemplateError,
  TemplateNotFoundError,
  TimeoutError,
} from '../ts/index.js';
import { fromNative } from '../ts/errors.js';
import { backends, describeBackend, type Harness, harness, sqliteUrl, tempDir } from './helpers.js';

describe('connect', () => {
  test('defaults like the CLI: TASKER_DATABASE_URL, then DATABASE_URL', async () => {
    const saved = { t: process.env.TASKER_DATABASE_URL, d: process.env.DATABASE_URL };
    const url = sqliteUrl();
    try {
      process.env.TASKER_DATABASE_URL = url;
      process.env.DATABASE_URL = 'postgres://nobody@127.0.0.1:1/never';
      const client = connect();
      assert.equal(await client.database(), url.slice('sqlite://'.length));
      await client.close();
    } finally {
      if (saved.t === undefined) delete process.env.TASKER_DATABASE_URL;
      else process.env.TASKER_DATABASE_URL = saved.t;
      if (saved.d === undefined) delete process.env.DATABASE_URL;
      else process.env.DATABASE_URL = saved.d;
    }
  });

  test('an unreachable or malformed database is a DatabaseError from ready()', async () => {
    const bad = connect({ databaseUrl: 'postgres://nobody@127.0.0.1:1/never' });
    await assert.rejects(bad.ready(), (e: unknown) => e instanceof DatabaseError && e.code === 'database_unreachable');
    await assert.rejects(
      connect({ databaseUrl: 'mysql://x/y' }).ready(),
      (e: unknown) => e instanceof DatabaseError && e.code === 'database_url_invalid' && /unsupported scheme/.test(e.message),
    );
    await bad.close(); // closing a client that never connected is fine
  });

  test('an unreachable message broker (RabbitMQ) is a DatabaseError like an unreachable database', () => {
    // The core reports it from the relay and the worker's claims, not from a call one can make
    // fail on purpose here: the mapping is checked on the native layer's payload.
    const payload = { code: 'broker_unreachable', message: 'message broker unreachable: not connected to amqp://127.0.0.1:1/%2f' };
    const e = fromNative(new Error(`__tasker_error__:${JSON.stringify(payload)}`));
    assert.ok(e instanceof DatabaseError, String(e));
    assert.equal(e.code, 'broker_unreachable');
    assert.equal(e.message, payload.message);
  });

  test('a failed connection nobody awaits is not an unhandled rejection', async () => {
    connect({ databaseUrl: 'mysql://x/y' });
    await new Promise((r) => setTimeout(r, 50)); // node --test fails the file on unhandled rejections
  });

  test('bad options name the field', () => {
    assert.throws(() => connect({ databaseUrl: 5 as never }), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'databaseUrl');
  });
});

describe('templates', () => {
  test('an invalid template is a TemplateError listing each problem with its file and step', async () => {
    const dir = tempDir();
    const file = join(dir, 'cycle.yaml');
    writeFileSync(
      file,
      [
        'name: cyclic',
        'namespace_name: nd_invalid',
        'version: 1.0.0',
        'steps:',
        '  - {name: a, handler: {callable: x}, dependencies: [c]}',
        '  - {name: b, handler: {callable: x}, dependencies: [a]}',
        '  - {name: c, handler: {callable: x}, dependencies: [b]}',
        '',
      ].join('\n'),
    );
    const client = connect({ databaseUrl: sqliteUrl() });
    await assert.rejects(client.registerTemplates(file), (e: unknown) => {
      assert.ok(e instanceof TemplateError, String(e));
      assert.equal(e.code, 'template_invalid');
      assert.ok(e.problems.length >= 1);
      assert.equal(e.problems[0]?.file, file);
      assert.match(e.message, /cycle/);
      return true;
    });
    await assert.rejects(client.registerTemplates(join(dir, 'missing.yaml')), TaskerError);
    await client.close();
  });
});

for (const backend of backends()) {
  describeBackend(backend, `client on ${backend.name}`, () => {
    let h: Harness;

    before(async () => {
      h = await harness(backend, ['diamond.yaml', 'lifecycle.yaml']);
    });

    after(async () => {
      await h?.close();
    });

    test('createTask returns the task with its request fields', async () => {
      const task = await h.createTask('nd_diamond', 'diamond_math', { n: 1 }, { tags: ['a', 'b'], priority: 5 });
      assert.equal(task.namespace, h.ns('nd_diamond'));
      assert.equal(task.name, 'diamond_math');
      assert.equal(task.version, '1.0.0');
      assert.deepEqual(task.context, { n: 1 });
      assert.deepEqual(task.tags, ['a', 'b']);
      assert.equal(task.priority, 5);
      assert.equal(task.initiator, 'tasker-node tests');
      assert.equal(task.sourceSystem, 'node --test');
      assert.equal(task.reason, 'test');
      assert.equal(task.totalSteps, 4);
      assert.equal(task.isTerminal, false);
      assert.ok(task.createdAt instanceof Date);
      const detail = await h.client.getTask(task.uuid);
      assert.deepEqual(
        detail.steps.map((s) => [s.name, s.state]),
        [
          ['diamond_start', 'enqueued'],
          ['diamond_branch_b', 'pending'],
          ['diamond_branch_c', 'pending'],
          ['diamond_end', 'pending'],
        ],
      );
      assert.deepEqual(detail.step('diamond_end')?.dependencies.slice().sort(), ['diamond_branch_b', 'diamond_branch_c']);
      assert.ok(detail.taskTransitions.length >= 1);
    });

    test('an idempotency key returns the first task', async () => {
      const key = `order-${Math.random()}`;
      const first = await h.createTask('nd_diamond', 'diamond_math', { n: 2 }, { idempotencyKey: key });
      const second = await h.createTask('nd_diamond', 'diamond_math', { n: 3 }, { idempotencyKey: key });
      assert.equal(first.created, true);
      assert.equal(second.created, false);
      assert.equal(second.uuid, first.uuid);
      assert.equal(second.idempotencyKey, key);
    });

    test('listTasks filters by namespace, name and state', async () => {
      const t = await h.createTask('nd_life', 'fan', {});
      const byNs = await h.client.listTasks({ namespace: h.ns('nd_life') });
      assert.ok(byNs.some((x) => x.uuid === t.uuid));
      assert.ok(byNs.every((x) => x.namespace === h.ns('nd_life')));
      const limited = await h.client.listTasks({ namespace: h.ns('nd_diamond'), limit: 1 });
      assert.equal(limited.length, 1);
      const complete = await h.client.listTasks({ namespace: h.ns('nd_life'), state: 'complete' });
      assert.ok(!complete.some((x) => x.uuid === t.uuid));
      await assert.rejects(h.client.listTasks({ state: 'finished' as never }), /'finished' is not one of/);
    });

    test('cancelTask cancels open steps; cancelling again is an IllegalTransitionError', async () => {
      const task = await h.createTask('nd_life', 'fan', {});
      const cancelled = await task.cancel();
      assert.equal(cancelled.state, 'cancelled');
      assert.equal(cancelled.isTerminal, true);
      const detail = await task.wait({ timeout: 5 });
      assert.ok(detail.steps.every((s) => s.state === 'cancelled'));
      await assert.rejects(h.client.cancelTask(task.uuid), IllegalTransitionError);
    });

    test('waiting without a worker times out with a TimeoutError', async () => {
      const task = await h.createTask('nd_life', 'gated', {});
      await assert.rejects(task.wait({ timeout: 0.1 }), (e: unknown) => e instanceof TimeoutError && e.code === 'timeout');
      await task.cancel();
    });

    test('unknown tasks and templates', async () => {
      await assert.rejects(
        h.client.getTask('01234567-89ab-7def-8123-456789abcdef'),
        (e: unknown) => e instanceof TaskNotFoundError && e.code === 'task_not_found',
      );
      await assert.rejects(h.client.getTask('not-a-uuid'), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'taskUuid');
      await assert.rejects(
        h.createTask('nd_diamond', 'no_such_template', {}),
        (e: unknown) => e instanceof TemplateNotFoundError && /no_such_template/.test(e.message),
      );
      await assert.rejects(h.createTask('nd_diamond', 'diamond_math', {}, { version: '9.9.9' }), TemplateNotFoundError);
    });

    test('malformed createTask requests name the field at fault', async () => {
      const base = { namespace: h.ns('nd_diamond'), name: 'diamond_math', context: {}, initiator: 'i', sourceSystem: 's', reason: 'r' };
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ namespace: '' }, 'namespace'],
        [{ initiator: 7 }, 'initiator'],
        [{ sourceSystem: 42 }, 'sourceSystem'],
        [{ priority: 1.5 }, 'priority'],
        [{ tags: ['ok', 3] }, 'tags[1]'],
        [{ context: undefined }, 'context'],
        [{ context: { deep: { value: 1n } } }, 'context.deep.value'],
      ];
      for (const [patch, path] of cases) {
        await assert.rejects(
          h.client.createTask({ ...base, ...patch } as never),
          (e: unknown) => e instanceof InvalidArgumentError && e.path === path,
          `expected an InvalidArgumentError at ${path}`,
        );
      }
    });
  });
}
