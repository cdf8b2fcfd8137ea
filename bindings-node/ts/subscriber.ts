/**
 * Durable event subscribers: a {@link Subscriber} class (or a {@link subscriber} function) says
 * which events it handles, and a {@link SubscriberRunner} makes it a member of a subscriber
 * group and feeds it the group's events.
 *
 * Delivery is at least once, in order per task: the engine hands a group member one event of a
 * task at a time, the next only after the runner acknowledged the previous one (the handler
 * returned) or failed it (the handler threw; the engine retries it with backoff, and after
 * `maxAttempts` moves it to the group's dead letters and carries on). Every group gets every
 * event; the members of one group share its events. Dedupe by `event.eventId` where a repeat
 * matters.
 *
 * How the runner waits: the native poll waits on the engine's runtime and settles a promise, as
 * the worker's does, so the event loop is free while nothing happens. One poll is outstanding at
 * a time, asking for as many deliveries as there are free slots (`concurrency`, default 1:
 * strictly one event after another).
 *
 * @module
 */

import type { NativeSubscription } from '../native/index.js';
import type { Client } from './client.js';
import { InvalidArgumentError, ShutDownError, TaskerError, fromNative, native, nativeSync } from './errors.js';
import { checkPatterns, type Event, patternMatches, subscriptionJson, type SubscriptionOptions, toEvent } from './events.js';
import { describe } from './util.js';

/** About one delivery of an event to a handler (its second argument). */
export interface DeliveryInfo {
  /** 1 on first delivery, then 2, 3 … after failures. */
  readonly attempt: number;
  /** The group the event was delivered to. */
  readonly group: string;
  /** This member's name in the group. */
  readonly memberId: string;
}

/**
 * Handles one event. Returning (or resolving) acknowledges it; throwing (or rejecting) fails
 * it: it is delivered again after a backoff, and after `maxAttempts` it goes to the group's
 * dead letters.
 */
export type EventHandler<P = Record<string, unknown>> = (event: Event<P>, info: DeliveryInfo) => unknown;

/**
 * Base class of class-form subscribers.
 *
 * @example
 * class Audit extends Subscriber {
 *   static subscribeTo = ['payment.*', 'task.completed'];
 *   async handleTaskCompleted(event: Event) {           // routed: task.completed
 *     await auditLog.closeCase(event.taskUuid);
 *   }
 *   async handle(event: Event) {                        // everything else
 *     await auditLog.write(event.eventId, event.name, event.payload);
 *   }
 * }
 * const runner = await new SubscriberRunner(client, Audit).start();   // group "audit"
 */
export abstract class Subscriber<P = Record<string, unknown>> {
  /** Event names to handle: exact, or with `*` wildcards (`payment.*`, `*.failed`, `*`). */
  static subscribeTo: readonly string[];
  /**
   * The subscriber group (default: the class name in snake_case, `PaymentAudit` →
   * `payment_audit`, as in the Python and Ruby packages). A runner's `group` option wins.
   */
  static group?: string;

  /**
   * Handles one event (see {@link EventHandler}): every event for which the class has no
   * routed method (`handlePaymentCharged` for `payment.charged`, see {@link routeMethod}).
   */
  abstract handle(event: Event<P>, info: DeliveryInfo): unknown;
}

/** A class extending {@link Subscriber} with a no-argument constructor. */
export type SubscriberClass = (abstract new () => Subscriber<any>) & { subscribeTo: readonly string[]; group?: string };

const DEFINITION: unique symbol = Symbol('tasker.subscriberDefinition');

/** Options of {@link subscriber}. */
export interface SubscriberDefinitionOptions {
  /** The subscriber group (default: the function's name in snake_case). A runner's `group` option wins. */
  group?: string;
}

/** A subscriber function with its patterns, made by {@link subscriber}. */
export interface SubscriberDefinition<P = Record<string, unknown>> {
  readonly subscribeTo: readonly string[];
  /** The group, when given or when the function has a name. */
  readonly group: string | undefined;
  readonly handle: EventHandler<P>;
  /** @internal */
  readonly [DEFINITION]: true;
}

/**
 * A subscriber from a function: `patterns` it handles (`*` wildcards) and the handler.
 *
 * @example
 * const notify = subscriber(['task.completed', 'task.failed'], async (event) => {
 *   await slack.post(`${event.taskName} ${event.name}`);
 * }, { group: 'slack' });
 *
 * @throws InvalidArgumentError for empty patterns or a handler that is not a function
 */
export function subscriber<P = Record<string, unknown>>(
  patterns: readonly string[],
  handle: EventHandler<P>,
  options: SubscriberDefinitionOptions = {},
): SubscriberDefinition<P> {
  const subscribeTo = checkPatterns('patterns', patterns);
  if (typeof handle !== 'function') throw new InvalidArgumentError('handle', `expected a function, got ${describe(handle)}`);
  if (options.group !== undefined) checkGroup('group', options.group);
  const group = options.group ?? (handle.name.length > 0 ? snakeCase(handle.name) : undefined);
  return Object.freeze({ subscribeTo: Object.freeze(subscribeTo), group, handle, [DEFINITION]: true as const });
}

/** Anything a {@link SubscriberRunner} runs. */
export type SubscriberSource = SubscriberClass | Subscriber<any> | SubscriberDefinition<any>;

/** @internal */
export interface Resolved {
  readonly patterns: string[];
  readonly group: string | undefined;
  handle(event: Event, info: DeliveryInfo): unknown;
}

function isDefinition(v: unknown): v is SubscriberDefinition<any> {
  return v !== null && typeof v === 'object' && (v as { [DEFINITION]?: unknown })[DEFINITION] === true;
}

/** `PaymentAudit` → `payment_audit`, `HTTPAudit` → `http_audit` (the other packages' rule). */
export function snakeCase(name: string): string {
  return name
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/([a-z\d])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

function classGroup(cls: { group?: unknown; name: string }): string | undefined {
  // `group` is inherited (a base class may name the group of its subclasses), as in Ruby.
  if (cls.group !== undefined) {
    checkGroup(`${cls.name || 'subscriber'}.group`, cls.group);
    return cls.group as string;
  }
  return cls.name.length > 0 ? snakeCase(cls.name) : undefined;
}

/**
 * A subscriber source made callable: its patterns, its group and its routing (`runSubscriber`
 * in `tasker-core/testing` calls it as a runner does).
 *
 * @internal
 */
export function resolveSubscriber(source: unknown): Resolved {
  if (isDefinition(source)) {
    return { patterns: [...source.subscribeTo], group: source.group, handle: (e, i) => source.handle(e, i) };
  }
  let instance: Subscriber<any>;
  if (typeof source === 'function' && source.prototype instanceof Subscriber) {
    try {
      instance = new (source as unknown as new () => Subscriber<any>)();
    } catch (e) {
      throw new InvalidArgumentError('subscriber', `constructing ${source.name || 'the subscriber class'} failed: ${String(e)}`);
    }
  } else if (source instanceof Subscriber) {
    instance = source;
  } else {
    throw new InvalidArgumentError(
      'subscriber',
      `expected a Subscriber class or instance or a subscriber(...) result, got ${describe(source)}`,
    );
  }
  const cls = instance.constructor as SubscriberClass;
  const patterns = checkPatterns(`${cls.name || 'subscriber'}.subscribeTo`, cls.subscribeTo);
  const methods = instance as unknown as Record<string, unknown>;
  return {
    patterns,
    group: classGroup(cls),
    handle: (e, i) => {
      const routed = methods[routeMethod(e.name)];
      return typeof routed === 'function' ? (routed as EventHandler).call(instance, e, i) : instance.handle(e, i);
    },
  };
}

/**
 * The method a class subscriber may define for one event: `payment.charged` →
 * `handlePaymentCharged`, `step.retry_scheduled` → `handleStepRetryScheduled` (Ruby and Python
 * route to `handle_payment_charged`).
 */
export function routeMethod(eventName: string): string {
  return `handle${eventName
    .split(/[._]/)
    .filter((w) => w.length > 0)
    .map((w) => w[0]?.toUpperCase() + w.slice(1))
    .join('')}`;
}

function checkGroup(path: string, group: unknown): void {
  if (typeof group !== 'string' || group.trim().length === 0 || group.length > 200) {
    throw new InvalidArgumentError(path, `expected a group name of 1 to 200 characters, got ${describe(group)}`);
  }
}

/** Options of {@link SubscriberRunner}: how it joins ({@link SubscriptionOptions}) and how it runs. */
export interface SubscriberRunnerOptions extends SubscriptionOptions {
  /** The subscriber group to join (default: the subscriber's `group`, else its class or function name in snake_case). */
  group?: string;
  /** Handlers running at once, at most (default 1: one event after another). */
  concurrency?: number;
  /** Longest wait of one native poll (default 500 ms). */
  pollTimeoutMs?: number;
  /** Stop gracefully on these signals (`true`: SIGTERM and SIGINT). Default `false`. */
  handleSignals?: boolean | NodeJS.Signals[];
  /** How long a signal-triggered stop waits for running handlers (default 30 000 ms). */
  shutdownTimeoutMs?: number;
  /**
   * Called with errors that belong to no caller: a handler's failure (the event is retried;
   * `info` says which), a rejected ack, a subscription that stopped. Default: `console.error`
   * for everything but handler failures.
   */
  onError?: (error: unknown, event?: Event, info?: DeliveryInfo) => void;
}

/** Counters of a {@link SubscriberRunner}. */
export interface SubscriberRunnerStats {
  /** Deliveries handed to the handler. */
  received: number;
  /** Deliveries acknowledged (the handler returned). */
  acked: number;
  /** Deliveries failed (the handler threw). */
  failed: number;
}

/** Options of {@link SubscriberRunner.stop}. */
export interface RunnerStopOptions {
  /** How many seconds running handlers get to finish (default 30); their events go back to the group otherwise. */
  timeout?: number;
  /**
   * The same in milliseconds.
   *
   * @deprecated Use `timeout` (seconds, the unit every language uses); removed in the next release.
   */
  timeoutMs?: number;
}

interface RawDelivery {
  delivery_id: number;
  attempt: number;
  event: Record<string, unknown>;
}

/**
 * How runners join their group. A seam for tests.
 *
 * @internal
 */
export const nativeSubscriptions = {
  join: async (client: Client, optionsJson: string): Promise<NativeSubscription> => {
    const c = await client.nativeClient();
    return c.subscribe(optionsJson);
  },
};

const DEFAULT_POLL_TIMEOUT_MS = 500;
const DEFAULT_SHUTDOWN_MS = 30_000;

function defaultOnError(error: unknown, event?: Event, info?: DeliveryInfo): void {
  if (info !== undefined) return; // a handler failure: the engine retries it and keeps count
  const where = event ? ` (event ${event.name} ${event.eventId})` : '';
  console.error(`[tasker] subscriber error${where}:`, error);
}

function messageOf(e: unknown): string {
  if (e instanceof Error) return typeof e.message === 'string' && e.message.length > 0 ? e.message : e.name;
  try {
    return typeof e === 'string' ? e : `a non-Error value was thrown: ${JSON.stringify(e) ?? String(e)}`;
  } catch {
    return 'a non-Error value was thrown';
  }
}

/**
 * Runs a subscriber as a member of a durable subscriber group: polls the group's events without
 * blocking the event loop, routes the ones matching the subscriber's patterns to it,
 * acknowledges each when the handler returns and fails it with the error's message when it
 * throws. Runs beside a {@link Worker} in the same process (share the client), or alone.
 *
 * @example
 * const runner = new SubscriberRunner(client, Audit, { concurrency: 4 });
 * await runner.start();
 * // …
 * await runner.stop();      // waits for running handlers, records positions, leaves the group
 */
export class SubscriberRunner {
  readonly #client: Client;
  readonly #subscriber: Resolved;
  readonly #options: SubscriberRunnerOptions;
  readonly #group: string;
  readonly #joinJson: string;
  readonly #concurrency: number;
  readonly #pollTimeoutMs: number;
  readonly #onError: (error: unknown, event?: Event, info?: DeliveryInfo) => void;
  readonly #inflight = new Set<Promise<void>>();
  readonly #stats: SubscriberRunnerStats = { received: 0, acked: 0, failed: 0 };
  #native: NativeSubscription | undefined;
  #starting: Promise<this> | undefined;
  #stopping: Promise<void> | undefined;
  #stopRequested = false;
  #loopDone: Promise<void> = Promise.resolve();
  #slotFreed: (() => void) | undefined;
  #failure: TaskerError | undefined;
  #signalHandlers: Array<[NodeJS.Signals, () => void]> = [];

  /**
   * @param client a client from `connect()`
   * @param source a {@link Subscriber} class or instance, or a {@link subscriber} definition
   * @throws InvalidArgumentError naming the option at fault
   */
  constructor(client: Client, source: SubscriberSource, options: SubscriberRunnerOptions = {}) {
    if (client === null || typeof client !== 'object' || typeof client.nativeClient !== 'function') {
      throw new InvalidArgumentError('client', `expected a Client from connect(), got ${describe(client)}`);
    }
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError('options', `expected an object, got ${describe(options)}`);
    }
    this.#subscriber = resolveSubscriber(source);
    const group = options.group ?? this.#subscriber.group;
    if (group === undefined) {
      throw new InvalidArgumentError('group', 'this subscriber has no name: pass { group } (to the runner or to subscriber(...))');
    }
    checkGroup('group', group);
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 10_000) {
      throw new InvalidArgumentError('concurrency', `expected an integer from 1 to 10000, got ${describe(concurrency)}`);
    }
    const pollTimeoutMs = options.pollTimeoutMs ?? DEFAULT_POLL_TIMEOUT_MS;
    if (typeof pollTimeoutMs !== 'number' || !Number.isFinite(pollTimeoutMs) || !(pollTimeoutMs >= 1)) {
      throw new InvalidArgumentError('pollTimeoutMs', `expected a number of milliseconds >= 1, got ${describe(pollTimeoutMs)}`);
    }
    this.#joinJson = subscriptionJson(group, this.#subscriber.patterns, options);
    if (options.onError !== undefined && typeof options.onError !== 'function') {
      throw new InvalidArgumentError('onError', `expected a function, got ${describe(options.onError)}`);
    }
    this.#client = client;
    this.#options = options;
    this.#group = group;
    this.#concurrency = concurrency;
    this.#pollTimeoutMs = pollTimeoutMs;
    this.#onError = options.onError ?? defaultOnError;
  }

  /** The subscriber group this runner joins. */
  get group(): string {
    return this.#group;
  }

  /** This member's name in the group, once started. */
  get memberId(): string | undefined {
    return this.#native?.memberId;
  }

  /** The patterns routed to the subscriber. */
  get patterns(): readonly string[] {
    return this.#subscriber.patterns;
  }

  /** Handlers running at once, at most. */
  get concurrency(): number {
    return this.#concurrency;
  }

  /** Whether the runner has started and not begun stopping (nor failed). */
  get isRunning(): boolean {
    return this.#native !== undefined && !this.#stopRequested && this.#failure === undefined;
  }

  /** Handlers running now. */
  get inFlight(): number {
    return this.#inflight.size;
  }

  /** Counters since start. */
  get stats(): Readonly<SubscriberRunnerStats> {
    return { ...this.#stats };
  }

  /** The error that stopped this runner (its subscription failed), if any. */
  get failure(): TaskerError | undefined {
    return this.#failure;
  }

  /**
   * Joins the group (creating it if needed) and starts handing events to the subscriber.
   * Resolves once joined: from then on this process writes lifecycle events to the log (with
   * `events.lifecycle = when_subscribed`), so join before creating the tasks you want to hear of.
   *
   * @throws InvalidArgumentError for bad options (group name, patterns, lease…)
   */
  start(): Promise<this> {
    if (this.#stopRequested) return Promise.reject(new ShutDownError('this runner was stopped; create a new one', 'shut_down'));
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<this> {
    const json = this.#joinJson;
    const sub = await native(() => nativeSubscriptions.join(this.#client, json));
    this.#native = sub;
    this.#loopDone = this.#loop(sub).catch((e: unknown) => this.#onError(e));
    this.#installSignalHandlers();
    return this;
  }

  /**
   * Stops gracefully: no new events are taken, running handlers get up to `timeoutMs` to finish
   * (and are acknowledged or failed as usual), then the positions are recorded and the member
   * leaves the group. Events delivered but not finished go to another member (or the next one
   * to join). Idempotent.
   */
  stop(options: RunnerStopOptions = {}): Promise<void> {
    const field = options.timeout !== undefined ? 'timeout' : 'timeoutMs';
    const given = options.timeout ?? options.timeoutMs;
    if (given !== undefined && (typeof given !== 'number' || !Number.isFinite(given) || given < 0)) {
      return Promise.reject(new InvalidArgumentError(field, `expected a non-negative number, got ${describe(given)}`));
    }
    const timeoutMs = options.timeout !== undefined ? options.timeout * 1000 : (options.timeoutMs ?? DEFAULT_SHUTDOWN_MS);
    this.#stopRequested = true;
    this.#stopping ??= this.#stop(timeoutMs);
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<void> {
    this.#removeSignalHandlers();
    const wake = this.#slotFreed;
    this.#slotFreed = undefined;
    wake?.();
    if (this.#starting !== undefined) {
      try {
        await this.#starting;
      } catch {
        // a runner that never joined has nothing to leave
      }
    }
    const sub = this.#native;
    if (sub === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)));
    await Promise.race([Promise.allSettled([...this.#inflight]), deadline]);
    clearTimeout(timer);
    try {
      await native(() => sub.close());
    } catch (e) {
      this.#onError(e);
    }
    await this.#loopDone;
  }

  /**
   * Resolves when the runner has stopped (after {@link stop}).
   *
   * @throws TaskerError when it stopped because its subscription failed
   */
  async stopped(): Promise<void> {
    await this.#loopDone;
    await this.#stopping;
    if (this.#failure !== undefined) throw this.#failure;
  }

  async #loop(sub: NativeSubscription): Promise<void> {
    while (!this.#stopRequested) {
      const free = this.#concurrency - this.#inflight.size;
      if (free <= 0) {
        await new Promise<void>((r) => (this.#slotFreed = r));
        continue;
      }
      let raw: string;
      try {
        raw = await sub.poll(free, this.#pollTimeoutMs);
      } catch (e) {
        if (this.#stopRequested) return; // closed under the poll
        const error = fromNative(e);
        this.#failure = error instanceof TaskerError ? error : new TaskerError(String(error), 'subscription_failed');
        this.#onError(this.#failure);
        this.stop({ timeout: (this.#options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_MS) / 1000 }).catch((x: unknown) => this.#onError(x));
        return;
      }
      // Deliveries that arrive once stopping are left alone: closing hands them back.
      if (raw === '[]' || this.#stopRequested) continue;
      for (const d of JSON.parse(raw) as RawDelivery[]) this.#run(sub, d);
    }
  }

  #run(sub: NativeSubscription, d: RawDelivery): void {
    const event = toEvent(d.event);
    const info: DeliveryInfo = { attempt: d.attempt, group: this.#group, memberId: sub.memberId };
    this.#stats.received++;
    const running = (async () => {
      // The group's patterns filter already; a subscriber sharing its group with other
      // patterns (an older member) still only sees its own.
      if (!this.#subscriber.patterns.some((p) => patternMatches(p, event.name))) {
        this.#settle(sub, d, event, info, undefined);
        return;
      }
      try {
        await this.#subscriber.handle(event, info);
      } catch (e) {
        this.#settle(sub, d, event, info, e);
        return;
      }
      this.#settle(sub, d, event, info, undefined);
    })().finally(() => {
      this.#inflight.delete(running);
      const wake = this.#slotFreed;
      this.#slotFreed = undefined;
      wake?.();
    });
    this.#inflight.add(running);
  }

  /** Acks (no error) or fails the delivery: every delivery taken must be one or the other. */
  #settle(sub: NativeSubscription, d: RawDelivery, event: Event, info: DeliveryInfo, error: unknown): void {
    const failed = error !== undefined;
    try {
      if (failed) nativeSync(() => sub.fail(d.delivery_id, messageOf(error)));
      else nativeSync(() => sub.ack(d.delivery_id));
    } catch (e) {
      // Closed after the stop deadline: the event goes to another member, as documented.
      if (!this.#stopRequested) this.#onError(e, event);
      return;
    }
    if (failed) {
      this.#stats.failed++;
      this.#onError(error, event, info);
    } else {
      this.#stats.acked++;
    }
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
