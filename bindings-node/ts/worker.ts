/**
 * The worker: pulls step events from the engine and runs their handlers, up to `concurrency`
 * at once, without ever blocking the event loop.
 *
 * How: the native `poll` waits on the core's runtime and settles a promise, so while the worker
 * waits for work the event loop is free. One poll is outstanding at a time, asking for as many
 * events as there are free slots; each event runs its handler as an independent promise whose
 * outcome goes back through the native `complete`, which never waits for the database.
 *
 * Cancellation: `ctx.signal` aborts when the attempt's deadline passes and whenever the engine
 * cancels the attempt (it timed out, the worker gave it up, or the shutdown deadline passed). A
 * handler that reads `ctx.signal` has its attempt's native cancel signal checked every 50 ms
 * while it runs; handlers that never read it cost nothing.
 *
 * Checkpoints: a batch worker instance's `ctx.batch.checkpoint(…)` goes to the native
 * `checkpoint`, which commits on the core's runtime and settles a promise, as `poll` does.
 *
 * Fatal errors: if a background task of the engine's worker dies, the native poll rejects with
 * a {@link WorkerFailedError}. The poll loop then ends (no retry loop: a failed worker claims
 * nothing more), `onError` receives the error once, the worker stops itself (running handlers
 * get `shutdownTimeoutMs`), {@link Worker.failure} holds the error and {@link Worker.stopped}
 * rejects with it.
 *
 * @module
 */

import { type NativeCancelSignal, type NativeClient, NativeWorker } from '../native/index.js';
import type { Client } from './client.js';
import { describe } from './util.js';
import { contextFromEvent, type RawStepEvent } from './context.js';
import {
  InvalidArgumentError,
  ShutDownError,
  TaskerError,
  TimeoutError,
  WorkerFailedError,
  fromNative,
  native,
  nativeSync,
} from './errors.js';
import { HandlerRegistry, type Handlers, runAttempt, type Settled } from './handler.js';
import type { ShutdownReport } from './records.js';

/** The step an error happened in, given to {@link WorkerOptions.onError}. */
export interface ErrorStep {
  readonly eventId: number;
  readonly stepName: string;
  readonly taskUuid: string;
}

/** Options of {@link Worker}. */
export interface WorkerOptions {
  /** Queues to claim steps from: template namespaces (or per-step queue overrides). */
  queues: string[];
  /**
   * The handlers, by callable (see {@link Handlers}). A step whose callable is not registered but
   * reads `"<module>#<export>"` (e.g. `"./handlers/payments.js#ChargeHandler"`) runs that module's
   * export, imported once (see {@link parseModulePath}); so `handlers` may be `[]`.
   */
  handlers: Handlers;
  /** Where relative module-path callables resolve from (default `process.cwd()`). */
  handlerRoot?: string;
  /**
   * Handlers running at once, at most (default `worker.concurrency` of the configuration, 8).
   * The engine claims no more steps than this.
   */
  concurrency?: number;
  /** Longest wait of one native poll (default 500 ms). Shutdown interrupts it at once. */
  pollTimeoutMs?: number;
  /**
   * Stop gracefully on these signals (`true`: SIGTERM and SIGINT), then re-raise the signal if
   * nothing else listens for it, so the process ends as it would have. Default `false`.
   */
  handleSignals?: boolean | NodeJS.Signals[];
  /** How long a signal-triggered stop (or the stop after a fatal error) waits for running handlers (default 30 000 ms). */
  shutdownTimeoutMs?: number;
  /**
   * How long a claimed step stays hidden from other workers; renewed while it runs (default
   * `worker.lease_ms`, 30 s).
   */
  leaseSeconds?: number;
  /** How the engine learns of new work (default `worker.dispatch_mode`, `hybrid`). */
  dispatchMode?: 'polling' | 'event_driven' | 'hybrid';
  /**
   * Fallback polling interval of the engine (default `worker.poll_interval_ms`, else 3 ms on
   * SQLite, 1 s on PostgreSQL).
   */
  pollIntervalMs?: number;
  /**
   * Also run the retry/timeout orchestrator in this process (default
   * `worker.embedded_orchestration`, `true`).
   */
  embeddedOrchestration?: boolean;
  /** Recorded in audit rows (default `hostname:pid`). */
  workerId?: string;
  /**
   * Called with errors that belong to no caller: a rejected completion, a failed poll. Handler
   * errors are not reported here: they become step failures. Default: `console.error`.
   */
  onError?: (error: unknown, step?: ErrorStep) => void;
}

/** Options of {@link Worker.stop}. */
export interface StopOptions {
  /** How many seconds to wait for running handlers before giving their steps back (default 30); seconds, as in every language. */
  timeout?: number;
  /**
   * The same in milliseconds.
   *
   * @deprecated Use `timeout` (seconds, the unit every language uses); removed in the next release.
   */
  timeoutMs?: number;
}

/** Counters of a worker. */
export interface WorkerStats {
  /** Native polls that returned (with or without events). */
  polls: number;
  /** Steps handed to handlers. */
  started: number;
  /** Attempts reported as success. */
  succeeded: number;
  /** Attempts reported as failure. */
  failed: number;
}

interface Inflight {
  controller: AbortController | undefined;
  timer: NodeJS.Timeout | undefined;
  /** Checks the attempt's native cancel signal while the handler runs (once `ctx.signal` is read). */
  poller: NodeJS.Timeout | undefined;
}

/** How often a running handler's cancel signal is checked, once it has read `ctx.signal`. */
const CANCEL_CHECK_MS = 50;

/**
 * How workers start their native half. A seam for tests (a native worker whose background task
 * died cannot be produced on demand).
 *
 * @internal
 */
export const nativeWorkers = {
  start: (client: NativeClient, configJson: string): Promise<NativeWorker> => NativeWorker.start(client, configJson),
};

const DEFAULT_POLL_TIMEOUT_MS = 500;
const DEFAULT_SHUTDOWN_MS = 30_000;

function defaultOnError(error: unknown, step?: ErrorStep): void {
  const where = step ? ` (step ${step.stepName} of task ${step.taskUuid})` : '';
  console.error(`[tasker] worker error${where}:`, error);
}

/**
 * Runs step handlers for the steps of the given queues.
 *
 * @example
 * const worker = new Worker(client, { queues: ['orders'], handlers: [ValidateOrder, charge], concurrency: 16 });
 * await worker.start();
 * // …
 * await worker.stop({ timeout: 10 });
 */
export class Worker {
  readonly #client: Client;
  readonly #registry: HandlerRegistry;
  readonly #options: WorkerOptions;
  /** The explicit `concurrency` until started, then the engine's (explicit or configured). */
  #concurrency: number | undefined;
  readonly #pollTimeoutMs: number;
  readonly #onError: (error: unknown, step?: ErrorStep) => void;
  readonly #inflight = new Map<number, Inflight>();
  readonly #stats: WorkerStats = { polls: 0, started: 0, succeeded: 0, failed: 0 };
  #native: NativeWorker | undefined;
  #starting: Promise<this> | undefined;
  #stopping: Promise<ShutdownReport> | undefined;
  #loopDone: Promise<void> = Promise.resolve();
  #slotFreed: (() => void) | undefined;
  #signalHandlers: Array<[NodeJS.Signals, () => void]> = [];
  #failure: WorkerFailedError | undefined;

  /**
   * @throws InvalidArgumentError naming the option at fault
   */
  constructor(client: Client, options: WorkerOptions) {
    if (client === null || typeof client !== 'object' || typeof client.nativeClient !== 'function') {
      throw new InvalidArgumentError('client', `expected a Client from connect(), got ${describe(client)}`);
    }
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError('options', `expected an object, got ${describe(options)}`);
    }
    if (!Array.isArray(options.queues) || options.queues.length === 0) {
      throw new InvalidArgumentError('queues', `expected a non-empty array of queue names, got ${describe(options.queues)}`);
    }
    options.queues.forEach((q, i) => {
      if (typeof q !== 'string') throw new InvalidArgumentError(`queues[${i}]`, `expected a string, got ${describe(q)}`);
    });
    const concurrency = options.concurrency;
    if (concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 10_000)) {
      throw new InvalidArgumentError('concurrency', `expected an integer from 1 to 10000, got ${describe(concurrency)}`);
    }
    const pollTimeoutMs = options.pollTimeoutMs ?? DEFAULT_POLL_TIMEOUT_MS;
    if (typeof pollTimeoutMs !== 'number' || !(pollTimeoutMs >= 1) || !Number.isFinite(pollTimeoutMs)) {
      throw new InvalidArgumentError('pollTimeoutMs', `expected a number of milliseconds >= 1, got ${describe(pollTimeoutMs)}`);
    }
    if (options.onError !== undefined && typeof options.onError !== 'function') {
      throw new InvalidArgumentError('onError', `expected a function, got ${describe(options.onError)}`);
    }
    this.#client = client;
    if (options.handlerRoot !== undefined && (typeof options.handlerRoot !== 'string' || options.handlerRoot.length === 0)) {
      throw new InvalidArgumentError('handlerRoot', `expected a directory path, got ${describe(options.handlerRoot)}`);
    }
    this.#registry = new HandlerRegistry(options.handlers, options.handlerRoot);
    this.#options = options;
    this.#concurrency = concurrency;
    this.#pollTimeoutMs = pollTimeoutMs;
    this.#onError = options.onError ?? defaultOnError;
  }

  /**
   * Handlers running at once, at most: the `concurrency` option, else (once started) the
   * configured `worker.concurrency`; `undefined` before start when not given.
   */
  get concurrency(): number | undefined {
    return this.#concurrency;
  }

  /** The callables this worker serves. */
  get callables(): string[] {
    return this.#registry.callables;
  }

  /** Whether the worker has started and not begun stopping (nor failed). */
  get isRunning(): boolean {
    return this.#native !== undefined && this.#stopping === undefined && this.#failure === undefined;
  }

  /**
   * The {@link WorkerFailedError} that stopped this worker, if a background task of the
   * engine's worker died. The worker then claims nothing more; start a new one.
   */
  get failure(): WorkerFailedError | undefined {
    return this.#failure;
  }

  /** Handlers running now. */
  get inFlight(): number {
    return this.#inflight.size;
  }

  /** Counters since start. */
  get stats(): Readonly<WorkerStats> {
    return { ...this.#stats };
  }

  /**
   * Starts claiming steps and running handlers. Resolves once the worker listens.
   *
   * @throws InvalidArgumentError for a bad queue name or option
   * @throws DatabaseError when the client cannot connect
   */
  start(): Promise<this> {
    if (this.#stopping !== undefined) return Promise.reject(new ShutDownError('this worker was stopped; create a new one', 'shut_down'));
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<this> {
    const client = await this.#client.nativeClient();
    const o = this.#options;
    // Only what the caller passed (JSON.stringify drops the undefined ones): the engine takes
    // the rest from the configuration, as the CLI's worker does.
    const config = JSON.stringify({
      queues: o.queues,
      concurrency: o.concurrency,
      lease_seconds: o.leaseSeconds,
      dispatch_mode: o.dispatchMode,
      poll_interval_ms: o.pollIntervalMs,
      embedded_orchestration: o.embeddedOrchestration,
      worker_id: o.workerId,
    });
    const nw = await native(() => nativeWorkers.start(client, config));
    const slots = nw.concurrency;
    this.#concurrency = slots;
    this.#native = nw;
    this.#loopDone = this.#loop(nw, slots).catch((e: unknown) => this.#onError(e));
    this.#installSignalHandlers();
    return this;
  }

  /**
   * Stops gracefully: no new steps are claimed, steps claimed but not started go back to their
   * queue, and running handlers get up to `timeout` seconds to finish. Steps still running then are
   * given back to other workers (their late results are ignored) and their `ctx.signal` aborts.
   * Idempotent.
   */
  stop(options: StopOptions = {}): Promise<ShutdownReport> {
    const field = options.timeout !== undefined ? 'timeout' : 'timeoutMs';
    if (options.timeout !== undefined && options.timeoutMs !== undefined) {
      return Promise.reject(new InvalidArgumentError('timeout', 'give either timeout (seconds) or the deprecated timeoutMs, not both'));
    }
    const given = options.timeout ?? options.timeoutMs;
    if (given !== undefined && (typeof given !== 'number' || !Number.isFinite(given) || given < 0)) {
      return Promise.reject(new InvalidArgumentError(field, `expected a non-negative number, got ${describe(given)}`));
    }
    const timeoutMs = options.timeout !== undefined ? options.timeout * 1000 : (options.timeoutMs ?? DEFAULT_SHUTDOWN_MS);
    this.#stopping ??= this.#stop(timeoutMs);
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<ShutdownReport> {
    this.#removeSignalHandlers();
    if (this.#starting !== undefined) {
      try {
        await this.#starting;
      } catch {
        // a worker that never started has nothing to stop
      }
    }
    const nw = this.#native;
    if (nw === undefined) return { released: 0, abandoned: 0 };
    const report = JSON.parse(await native(() => nw.shutdown(timeoutMs))) as ShutdownReport;
    await this.#loopDone;
    for (const entry of this.#inflight.values()) {
      this.#abort(entry, new ShutDownError('the worker stopped before this attempt finished', 'shut_down'));
    }
    return report;
  }

  /**
   * Resolves when the poll loop has ended (after {@link stop}).
   *
   * @throws WorkerFailedError when the loop ended because a background task of the engine's
   *   worker died (after the worker stopped itself)
   */
  async stopped(): Promise<void> {
    await this.#loopDone;
    if (this.#failure !== undefined) {
      await this.#stopping?.catch(() => undefined);
      throw this.#failure;
    }
  }

  async #loop(nw: NativeWorker, slots: number): Promise<void> {
    for (;;) {
      const free = slots - this.#inflight.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.#slotFreed = resolve));
        continue;
      }
      let raw: string | null;
      try {
        raw = await nw.poll(free, this.#pollTimeoutMs);
      } catch (e) {
        const error = fromNative(e);
        if (error instanceof WorkerFailedError) {
          this.#fail(error);
          return; // fatal: the engine's worker claims nothing more
        }
        this.#onError(error);
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      this.#stats.polls++;
      if (raw === null) return; // shutting down
      if (raw === '[]') continue;
      for (const event of JSON.parse(raw) as RawStepEvent[]) this.#run(nw, event);
    }
  }

  #run(nw: NativeWorker, event: RawStepEvent): void {
    const entry: Inflight = { controller: undefined, timer: undefined, poller: undefined };
    this.#inflight.set(event.event_id, entry);
    this.#stats.started++;
    const callable = event.handler.callable;
    // Used only by a batch worker instance's `ctx.batch.checkpoint(…)`.
    const sink = (json: string): Promise<void> => native(() => nw.checkpoint(event.event_id, json));
    const ctx = contextFromEvent(event, () => this.#signalFor(nw, entry, event), sink);
    this.#registry
      .resolve(callable)
      .then((handler) => runAttempt(handler, callable, ctx, () => this.#registry.callables))
      .then((settled) => {
        // Returned: nothing to cancel any more (and a finished event counts as cancelled).
        stopTimers(entry);
        this.#complete(nw, event, settled);
      })
      .catch((e: unknown) => {
        this.#onError(e, errorStep(event));
        // A failure in this layer (not the handler's) must still complete the event, or the
        // step would sit in progress, its lease renewed, until a timeout (or for ever).
        const message = e instanceof Error ? e.message : String(e);
        const failure = JSON.stringify({
          status: 'failure',
          message: `the TypeScript worker layer failed while running the step: ${message}`,
          error_type: 'worker_error',
          retryable: true,
        });
        try {
          nativeSync(() => nw.complete(event.event_id, failure));
        } catch {
          // Already completed (the failure came after `complete`), or the worker is gone.
        }
      })
      .finally(() => {
        stopTimers(entry);
        this.#inflight.delete(event.event_id);
        const wake = this.#slotFreed;
        this.#slotFreed = undefined;
        wake?.();
      });
  }

  #complete(nw: NativeWorker, event: RawStepEvent, settled: Settled): void {
    if (settled.result.isSuccess) this.#stats.succeeded++;
    else this.#stats.failed++;
    try {
      nativeSync(() => nw.complete(event.event_id, settled.json));
    } catch (e) {
      if (e instanceof ShutDownError || (e instanceof TaskerError && e.code === 'unknown_event' && this.#stopping !== undefined)) {
        return; // finished after the stop deadline: the step was given back already
      }
      if (e instanceof WorkerFailedError) {
        this.#fail(e); // the result is lost with the worker; the step comes back through its lease
        return;
      }
      if (e instanceof InvalidArgumentError) {
        // The engine rejected the outcome itself; report that as the step's failure so the slot
        // is freed and the step does not hang until its lease expires.
        const fallback = JSON.stringify({
          status: 'failure',
          message: `the handler's outcome was rejected by the engine: ${e.message}`,
          error_type: 'invalid_outcome',
          retryable: false,
        });
        try {
          nativeSync(() => nw.complete(event.event_id, fallback));
        } catch (again) {
          this.#onError(again, errorStep(event));
        }
        return;
      }
      this.#onError(e, errorStep(event));
    }
  }

  /** A fatal error: remembered, reported once, and the worker stops itself. */
  #fail(error: WorkerFailedError): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    this.#onError(error);
    const timeoutMs = this.#options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_MS;
    this.stop({ timeout: timeoutMs / 1000 }).catch((e: unknown) => this.#onError(e));
  }

  #signalFor(nw: NativeWorker, entry: Inflight, event: RawStepEvent): AbortSignal {
    if (entry.controller !== undefined) return entry.controller.signal;
    entry.controller = new AbortController();
    const timedOut = (): Error => new TimeoutError(`step ${event.step_name} overran its timeout_seconds`, 'timeout');
    if (event.deadline !== null) {
      const ms = Math.max(0, new Date(event.deadline).getTime() - Date.now());
      entry.timer = setTimeout(() => {
        this.#abort(entry, timedOut());
        stopTimers(entry);
      }, ms);
      entry.timer.unref();
    }
    // The engine's own cancellation (timeout, given up, shutdown deadline).
    let cancel: NativeCancelSignal | null;
    try {
      cancel = nw.cancelSignal(event.event_id);
    } catch {
      cancel = null;
    }
    const check = (): void => {
      if (cancel !== null && !cancel.isCancelled) return;
      const past = event.deadline !== null && Date.now() >= new Date(event.deadline).getTime();
      this.#abort(entry, past ? timedOut() : new ShutDownError(`the worker gave up on step ${event.step_name} at its shutdown deadline`, 'shut_down'));
      stopTimers(entry);
    };
    check();
    if (!entry.controller.signal.aborted) {
      entry.poller = setInterval(check, CANCEL_CHECK_MS);
      entry.poller.unref();
    }
    return entry.controller.signal;
  }

  #abort(entry: Inflight, reason: Error): void {
    if (entry.controller !== undefined && !entry.controller.signal.aborted) entry.controller.abort(reason);
  }

  #installSignalHandlers(): void {
    const opt = this.#options.handleSignals;
    if (opt === undefined || opt === false) return;
    const signals: NodeJS.Signals[] = opt === true ? ['SIGTERM', 'SIGINT'] : opt;
    const timeoutMs = this.#options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_MS;
    for (const signal of signals) {
      const handler = (): void => {
        this.stop({ timeout: timeoutMs / 1000 })
          .catch((e: unknown) => this.#onError(e))
          .finally(() => {
            if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
          });
      };
      process.once(signal, handler);
      this.#signalHandlers.push([signal, handler]);
    }
  }

  #removeSignalHandlers(): void {
    for (const [signal, handler] of this.#signalHandlers) process.removeListener(signal, handler);
    this.#signalHandlers = [];
  }
}

function stopTimers(entry: Inflight): void {
  if (entry.timer !== undefined) clearTimeout(entry.timer);
  if (entry.poller !== undefined) clearInterval(entry.poller);
  entry.timer = undefined;
  entry.poller = undefined;
}

function errorStep(event: RawStepEvent): ErrorStep {
  return { eventId: event.event_id, stepName: event.step_name, taskUuid: event.task_uuid };
}
