/**
 * Express integration: {@link taskerMiddleware} puts the client on `req.tasker` (and an
 * {@link EventBridge} on `req.taskerEvents`), and {@link serveWithWorker} runs an app's HTTP
 * server, a worker and event subscribers together, stopping them gracefully on SIGTERM/SIGINT.
 *
 * Express is a peer dependency: only its types are used here, so this module works with any
 * Express 4 or 5 app (or any `(req, res) => void` request listener).
 *
 * @example
 * const app = express();
 * app.use(taskerMiddleware(client));
 * app.post('/orders', async (req, res) => {
 *   const task = await req.tasker.createTask({ ... });
 *   res.status(202).json({ taskUuid: task.uuid });
 * });
 * await serveWithWorker(app, { worker, client, port: 3000 });
 *
 * @example
 * // Events: `tasker:<event name>` on an EventEmitter, here streamed to a browser.
 * const events = new EventBridge(client, { patterns: ['task.*'], delivery: 'fast' });
 * app.use(taskerMiddleware(client, { events }));
 * app.get('/tasks/:uuid/events', (req, res) => {
 *   res.writeHead(200, { 'content-type': 'text/event-stream' });
 *   const send = (e: Event) => { if (e.taskUuid === req.params.uuid) res.write(`data: ${JSON.stringify(e)}\n\n`); };
 *   req.taskerEvents.on('tasker:event', send);
 *   req.on('close', () => req.taskerEvents.off('tasker:event', send));
 * });
 * await serveWithWorker(app, { worker, client, subscribers: [events] });
 *
 * @module
 */

import { createServer, type RequestListener, Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { NextFunction, Request, RequestHandler, Response } from 'express';

import type { EventBridge } from './bridge.js';
import type { Client } from './client.js';
import { InvalidArgumentError } from './errors.js';
import type { ShutdownReport } from './records.js';
import { describe } from './util.js';
import { Worker } from './worker.js';

declare global {
  namespace Express {
    interface Request {
      /** The Tasker client, put here by `taskerMiddleware(client)`. */
      tasker: Client;
      /** The event bridge, put here by `taskerMiddleware(client, { events })`. */
      taskerEvents: EventBridge;
    }
  }
}

/** Options of {@link taskerMiddleware}. */
export interface TaskerMiddlewareOptions {
  /** Put on `req.taskerEvents` (start it, or pass it to {@link serveWithWorker}'s `subscribers`). */
  events?: EventBridge;
}

/**
 * A middleware that makes `client` available as `req.tasker` in every later handler (and
 * `options.events` as `req.taskerEvents`).
 */
export function taskerMiddleware(client: Client, options: TaskerMiddlewareOptions = {}): RequestHandler {
  if (client === null || typeof client !== 'object' || typeof client.createTask !== 'function') {
    throw new InvalidArgumentError('client', `expected a Client from connect(), got ${describe(client)}`);
  }
  const events = options.events;
  if (events !== undefined && (events === null || typeof events !== 'object' || typeof events.eventName !== 'function')) {
    throw new InvalidArgumentError('events', `expected an EventBridge, got ${describe(events)}`);
  }
  return (req: Request, _res: Response, next: NextFunction): void => {
    req.tasker = client;
    if (events !== undefined) req.taskerEvents = events;
    next();
  };
}

/** Something {@link serveWithWorker} starts and stops with the server: a `SubscriberRunner` or an `EventBridge`. */
export interface Subscribing {
  start(): Promise<unknown>;
  stop(options?: { timeout?: number }): Promise<unknown>;
}

/** Options of {@link serveWithWorker}. */
export interface ServeOptions {
  /** The worker to run alongside the server (not started yet, or already started). */
  worker: Worker;
  /** Closed after the worker (and the subscribers) stopped, when given. */
  client?: Client;
  /**
   * Event subscribers to run with the server (`SubscriberRunner`s, `EventBridge`s): started
   * before the worker, so they hear of the tasks its first requests create; stopped after it.
   */
  subscribers?: Subscribing[];
  /** Port to listen on (default `PORT` from the environment, else 3000; `0` picks a free one). */
  port?: number;
  /** Interface to listen on (default: all). */
  host?: string;
  /** Signals that trigger a graceful shutdown (default SIGTERM and SIGINT; `false`: none). */
  signals?: NodeJS.Signals[] | false;
  /** How long running handlers get to finish at shutdown (default 30 000 ms). */
  shutdownTimeoutMs?: number;
  /** Called once shutdown completed (server closed, worker stopped, client closed). */
  onShutdown?: (report: ShutdownReport) => void;
}

/** A server and worker running together. */
export interface RunningServer {
  readonly server: Server;
  readonly worker: Worker;
  /** The port actually bound. */
  readonly port: number;
  /** `http://host:port`. */
  readonly url: string;
  /**
   * Stops accepting requests, stops the worker (letting running handlers finish), closes the
   * client. Idempotent; signals call it too.
   */
  shutdown(): Promise<ShutdownReport>;
}

/**
 * Starts the subscribers, the worker, then the HTTP server; on SIGTERM/SIGINT (or
 * `shutdown()`) closes the server, stops the worker and then the subscribers gracefully and
 * closes the client, after which the process can exit.
 *
 * @param app an Express app (or any request listener), or an `http.Server` not yet listening
 */
export async function serveWithWorker(app: RequestListener | Server, options: ServeOptions): Promise<RunningServer> {
  if (options === null || typeof options !== 'object' || !(options.worker instanceof Worker)) {
    throw new InvalidArgumentError('worker', 'serveWithWorker needs { worker: Worker }');
  }
  const envPort = process.env.PORT !== undefined && process.env.PORT !== '' ? Number(process.env.PORT) : undefined;
  const port = options.port ?? envPort ?? 3000;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError('port', `expected an integer from 0 to 65535, got ${describe(port)}`);
  }
  const server = app instanceof Server ? app : createServer(app);
  const { worker, client } = options;
  const timeoutMs = options.shutdownTimeoutMs ?? 30_000;

  const subscribers = options.subscribers ?? [];
  subscribers.forEach((sub, i) => {
    if (sub === null || typeof sub !== 'object' || typeof sub.start !== 'function' || typeof sub.stop !== 'function') {
      throw new InvalidArgumentError(`subscribers[${i}]`, `expected a SubscriberRunner or an EventBridge, got ${describe(sub)}`);
    }
  });
  const stopSubscribers = async (ms: number): Promise<void> => {
    await Promise.all(subscribers.map((sub) => sub.stop({ timeout: ms / 1000 })));
  };
  try {
    for (const sub of subscribers) await sub.start();
  } catch (e) {
    await stopSubscribers(0);
    throw e;
  }
  try {
    await worker.start();
  } catch (e) {
    await stopSubscribers(0);
    throw e;
  }
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await worker.stop({ timeout: 0 });
    await stopSubscribers(0);
    throw e;
  }

  const signals = options.signals === false ? [] : (options.signals ?? ['SIGTERM', 'SIGINT']);
  const listeners: Array<[NodeJS.Signals, () => void]> = [];
  let shuttingDown: Promise<ShutdownReport> | undefined;
  const shutdown = (): Promise<ShutdownReport> => {
    shuttingDown ??= (async () => {
      for (const [signal, listener] of listeners) process.removeListener(signal, listener);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const started = Date.now();
      const report = await worker.stop({ timeout: timeoutMs / 1000 });
      // Requests still running get what is left of the shutdown timeout, then are cut.
      let timer: NodeJS.Timeout | undefined;
      const left = Math.max(0, timeoutMs - (Date.now() - started));
      await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
      server.closeAllConnections();
      await closed;
      await stopSubscribers(Math.max(0, timeoutMs - (Date.now() - started)));
      await client?.close();
      options.onShutdown?.(report);
      return report;
    })();
    return shuttingDown;
  };
  for (const signal of signals) {
    const listener = (): void => {
      shutdown().catch((e: unknown) => console.error('[tasker] shutdown failed:', e));
    };
    process.once(signal, listener);
    listeners.push([signal, listener]);
  }

  const address = server.address() as AddressInfo;
  const host = options.host ?? 'localhost';
  return {
    server,
    worker,
    port: address.port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`,
    shutdown,
  };
}
