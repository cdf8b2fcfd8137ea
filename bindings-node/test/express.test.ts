/**
 * The Express integration and the example shop, imported as an application would (`tasker-core`,
 * `tasker-core/express`; tsconfig paths map them to the sources): real HTTP requests against a real
 * database, in process and as a separate server process stopped by SIGTERM.
 */

import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { type Client, connect, Worker } from 'tasker-core';
import { type RunningServer, serveWithWorker, taskerMiddleware } from 'tasker-core/express';

import { createApp } from '../examples/express-app/app.js';
import { shopHandlers } from '../examples/express-app/handlers.js';
import { type Backend, backends, describeBackend, tempDir } from './helpers.js';

const EXAMPLE = join(__dirname, '..', 'examples', 'express-app');

/** The example's template under a namespace unique to this run. */
function shopTemplates(): { dir: string; namespace: string } {
  const namespace = `node_shop_${Math.random().toString(16).slice(2, 10)}`;
  const dir = join(tempDir(), 'templates');
  mkdirSync(dir);
  const text = readFileSync(join(EXAMPLE, 'templates', 'place_order.yaml'), 'utf8').replace(
    /^namespace_name: .*$/m,
    `namespace_name: ${namespace}`,
  );
  writeFileSync(join(dir, 'place_order.yaml'), text);
  return { dir, namespace };
}

const order = (orderId: number, items = [{ sku: 'BOOK', quantity: 2, unitPrice: 12.5 }]) => ({
  orderId,
  email: 'ada@example.com',
  items,
});

async function post(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function get(url: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

test('taskerMiddleware puts the client on req.tasker', async () => {
  const client = {} as Client;
  assert.throws(() => taskerMiddleware(client), /Client from connect/);
  const real = connect({ databaseUrl: `sqlite://${join(tempDir(), 't.db')}` });
  const req = {} as { tasker?: Client };
  let nextCalled = false;
  taskerMiddleware(real)(req as never, {} as never, () => (nextCalled = true));
  assert.equal(req.tasker, real);
  assert.ok(nextCalled);
  await real.close();
});

for (const backend of backends()) {
  describeBackend(backend, `example shop on ${backend.name}`, () => {
    let client: Client;
    let running: RunningServer;
    let namespace: string;

    before(async () => {
      const t = shopTemplates();
      namespace = t.namespace;
      client = connect({ databaseUrl: backend.url() });
      await client.registerTemplates(t.dir);
      const worker = new Worker(client, { queues: [namespace], handlers: shopHandlers });
      running = await serveWithWorker(createApp(client, namespace), { worker, client, port: 0, host: '127.0.0.1', signals: false });
    });

    after(async () => {
      await running?.shutdown();
    });

    test('POST /orders creates a task that the worker completes', async () => {
      const created = await post(`${running.url}/orders`, order(1001));
      assert.equal(created.status, 202, JSON.stringify(created.json));
      const uuid = created.json.taskUuid as string;
      const done = await get(`${running.url}/orders/${uuid}/wait?timeoutMs=30000`);
      assert.equal(done.status, 200);
      assert.equal(done.json.state, 'complete', JSON.stringify(done.json));
      assert.equal(done.json.total, 30);
      assert.deepEqual(done.json.confirmation, { sentTo: 'ada@example.com', total: 30 });
      assert.deepEqual(done.json.steps, {
        validate_order: 'complete',
        price_order: 'complete',
        reserve_stock: 'complete',
        send_confirmation: 'complete',
      });
      const again = await post(`${running.url}/orders`, order(1001));
      assert.equal(again.status, 200, 'same order id: the idempotency key returns the first task');
      assert.equal(again.json.taskUuid, uuid);
    });

    test('an invalid order is a 422 naming the property', async () => {
      const bad = await post(`${running.url}/orders`, { ...order(1002), email: 'not-an-email' });
      assert.equal(bad.status, 422);
      assert.equal(bad.json.code, 'validation_failed');
      assert.equal(bad.json.path, '/email');
      const noItems = await post(`${running.url}/orders`, { ...order(1003), items: [] });
      assert.equal(noItems.status, 422);
      assert.equal(noItems.json.path, '/items');
    });

    test('a permanently failing order reports its error', async () => {
      const created = await post(`${running.url}/orders`, order(1004, [{ sku: 'DISCONTINUED', quantity: 1, unitPrice: 1 }]));
      const done = await get(`${running.url}/orders/${created.json.taskUuid as string}/wait`);
      assert.equal(done.json.state, 'error');
      const errors = done.json.errors as Array<Record<string, unknown>>;
      assert.equal(errors[0]?.step, 'validate_order');
      assert.equal(errors[0]?.errorType, 'DiscontinuedItem');
    });

    test('unknown and malformed task ids are 404 and 400', async () => {
      assert.equal((await get(`${running.url}/orders/01234567-89ab-7def-8123-456789abcdef`)).status, 404);
      const bad = await get(`${running.url}/orders/nope`);
      assert.equal(bad.status, 400);
      assert.equal(bad.json.path, 'taskUuid');
    });
  });

  describeBackend(backend, `example shop server process on ${backend.name}`, () => {
    test('serves HTTP, runs the worker, and stops gracefully on SIGTERM', async () => {
      const { dir, namespace } = shopTemplates();
      const child = startServer(backend, dir, namespace);
      try {
        const url = await child.url;
        const created = await post(`${url}/orders`, order(2001));
        assert.equal(created.status, 202);
        const done = await get(`${url}/orders/${created.json.taskUuid as string}/wait?timeoutMs=30000`);
        assert.equal(done.json.state, 'complete', JSON.stringify(done.json));
        child.process.kill('SIGTERM');
        const code = await child.exit;
        assert.equal(code, 0, child.output());
        assert.match(child.output(), /stopped \(released 0, abandoned 0\)/);
      } finally {
        child.process.kill('SIGKILL');
      }
    });
  });
}

interface ServerProcess {
  process: ChildProcessWithoutNullStreams;
  url: Promise<string>;
  exit: Promise<number | null>;
  output(): string;
}

function startServer(backend: Backend, templates: string, namespace: string): ServerProcess {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    SHOP_NAMESPACE: namespace,
    SHOP_TEMPLATES: templates,
    TASKER_DATABASE_URL: backend.url(),
  };
  const child = spawn(process.execPath, ['--import', 'tsx', join(EXAMPLE, 'server.ts')], { env });
  let out = '';
  const url = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m?.[1]) resolve(m[1]);
    });
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${out}`)));
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { process: child, url, exit, output: () => out };
}
