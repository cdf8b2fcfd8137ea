/**
 * Backpressure on task creation and the circuit breaker around PostgreSQL, from TypeScript
 * (docs/operations.md). The breaker test puts a TCP proxy between the client and the server and
 * cuts it, as when the server goes away.
 */

import assert from 'node:assert/strict';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { after, before, test } from 'node:test';

import { BackpressureError, connect, UnavailableError, Worker } from '../ts/index.js';
import { backends, describeBackend, type Harness, harness } from './helpers.js';

/** Runs `body` with these configuration variables set, for clients connected inside it. */
async function withEnv<T>(vars: Record<string, string>, body: () => Promise<T>): Promise<T> {
  for (const [k, v] of Object.entries(vars)) process.env[k] = v;
  try {
    return await body();
  } finally {
    for (const k of Object.keys(vars)) delete process.env[k];
  }
}

/** A TCP proxy to `host:port` that can be cut (its connections closed, new ones dropped). */
class Proxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #up = true;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(host: string, port: number): Promise<Proxy> {
    let proxy: Proxy | undefined;
    const server = createServer((client) => {
      const self = proxy;
      if (self === undefined || !self.#up) {
        client.destroy();
        return;
      }
      const upstream = tcpConnect(port, host);
      for (const s of [client, upstream]) {
        self.#sockets.add(s);
        s.on('close', () => self.#sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
    });
    proxy = new Proxy(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    const address = this.#server.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  cut(): void {
    this.#up = false;
    for (const s of this.#sockets) s.destroy();
  }

  restore(): void {
    this.#up = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

for (const backend of backends()) {
  describeBackend(backend, `resilience on ${backend.name}`, () => {
    let h: Harness;

    before(async () => {
      h = await harness(backend, ['telemetry.yaml']);
    });

    after(async () => {
      await h?.close();
    });

    test('health reports the workers of this process', async () => {
      const workerId = `nd-health-${h.ns('w')}`;
      const worker = new Worker(h.client, { queues: [h.ns('nd_tel')], handlers: {}, workerId });
      await worker.start();
      try {
        const check = (await h.client.health()).checks.find((c) => c.name === `worker ${workerId}`);
        assert.ok(check, 'a check for the worker');
        assert.equal(check.ok, true);
        assert.equal(check.detail, 'ok');
      } finally {
        await worker.stop({ timeout: 10 });
      }
      const names = (await h.client.health()).checks.map((c) => c.name);
      assert.ok(!names.includes(`worker ${workerId}`), 'a worker stopped on purpose is not a failed one');
    });

    test('creation beyond the queue limit is refused with BackpressureError', async () => {
      const limited = await withEnv({ TASKER_BACKPRESSURE__MAX_QUEUE_DEPTH: '2', TASKER_BACKPRESSURE__REFRESH_MS: '10' }, async () => {
        const c = connect({ databaseUrl: h.url });
        await c.ready();
        return c;
      });
      try {
        const namespace = h.ns('nd_tel');
        for (let i = 0; i < 2; i++) await limited.createTask({ namespace, name: 'traced', context: {} });
        await new Promise((r) => setTimeout(r, 20));
        await assert.rejects(limited.createTask({ namespace, name: 'traced', context: {} }), (e: unknown) => {
          assert.ok(e instanceof BackpressureError, String(e));
          assert.equal(e.code, 'backpressure');
          assert.deepEqual([e.queue, e.depth, e.limit], [namespace, 2, 2]);
          assert.ok(e.retryAfter > 0 && e.retryAfter <= 1, String(e.retryAfter));
          return true;
        });
        assert.equal((await limited.listTasks({ namespace })).length, 2, 'nothing was written');
      } finally {
        await limited.close();
      }
    });

    test('while PostgreSQL is away calls fail fast with UnavailableError, and recover', { skip: backend.database !== 'postgres' && 'SQLite has no breaker' }, async () => {
      const server = new URL(h.url);
      const proxy = await Proxy.start(server.hostname, Number(server.port || 5432));
      const via = new URL(h.url);
      via.hostname = '127.0.0.1';
      via.port = String(proxy.port);
      const client = await withEnv(
        {
          TASKER_DATABASE__LISTEN: 'false',
          TASKER_DATABASE__ACQUIRE_TIMEOUT_MS: '500',
          TASKER_CIRCUIT_BREAKER__FAILURE_THRESHOLD: '2',
          TASKER_CIRCUIT_BREAKER__COOL_DOWN_MS: '300',
        },
        async () => {
          const c = connect({ databaseUrl: via.toString() });
          await c.ready();
          return c;
        },
      );
      try {
        const task = await client.createTask({ namespace: h.ns('nd_tel'), name: 'traced', context: {} });
        proxy.cut();
        const started = Date.now();
        let refused: UnavailableError | undefined;
        while (refused === undefined) {
          assert.ok(Date.now() - started < 20_000, 'the breaker never opened');
          try {
            await client.getTask(task.uuid);
          } catch (e) {
            if (e instanceof UnavailableError) refused = e;
          }
        }
        assert.equal(refused.code, 'unavailable');
        assert.equal(refused.resource, 'database');
        assert.ok(refused.retryAfter <= 0.3, String(refused.retryAfter));
        const health = await client.health();
        assert.equal(health.ready, false);
        assert.ok(health.checks.some((c) => c.name === 'circuit_breaker' && !c.ok), JSON.stringify(health));

        proxy.restore();
        const back = Date.now();
        for (;;) {
          assert.ok(Date.now() - back < 20_000, 'the breaker never closed');
          try {
            await client.getTask(task.uuid);
            break;
          } catch {
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        assert.equal((await client.health()).ready, true);
      } finally {
        await client.close();
        await proxy.close();
      }
    });
  });
}
