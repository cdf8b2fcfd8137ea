/**
 * The `EventEmitter` bridge: Tasker events re-emitted as `tasker:<event name>`
 * (`tasker:task.completed`, `tasker:payment.charged`, …) and `tasker:event` for every one, so
 * the rest of a Node application (an Express app, a metrics module, a WebSocket hub) listens
 * with `bridge.on(...)` instead of running subscribers of its own.
 *
 * @module
 */

import { EventEmitter } from 'node:events';

import type { Client } from './client.js';
import { InvalidArgumentError } from './errors.js';
import { checkPatterns, type Event, type EventDelivery, FastSubscription } from './events.js';
import { type DeliveryInfo, type RunnerStopOptions, subscriber, SubscriberRunner, type SubscriberRunnerOptions } from './subscriber.js';
import { describe } from './util.js';

/** Options of {@link EventBridge}. */
export interface EventBridgeOptions extends Omit<SubscriberRunnerOptions, 'onError'> {
  /** Events to re-emit (default `['*']`). */
  patterns?: string[];
  /**
   * `durable` (default): a member of subscriber group `group` — at least once, in order per
   * task, every process of the group sharing the events; a listener that throws (or rejects)
   * fails the event, which is retried and, after `maxAttempts`, dead-lettered. `fast`: this
   * process's own broadcast — nothing stored or retried, every process sees only what it
   * committed itself.
   */
  delivery?: EventDelivery;
  /** The durable subscriber group (default `tasker-event-bridge`). */
  group?: string;
  /** Prefix of the emitted event names (default `tasker:`). */
  prefix?: string;
}

/** What {@link EventBridge} listeners receive. */
export type EventBridgeListener = (event: Event, info?: DeliveryInfo) => unknown;

const DEFAULT_GROUP = 'tasker-event-bridge';

/**
 * Re-emits Tasker events on an `EventEmitter`: `tasker:<event name>` with `(event, info)`,
 * then `tasker:event` for every event. Listeners may be async: a durable event is acknowledged
 * once every listener has returned (or resolved). Errors of the bridge itself (not of
 * listeners) are emitted as `error` when someone listens for it, else logged.
 *
 * @example
 * const bridge = new EventBridge(client, { patterns: ['task.*', 'payment.*'] });
 * bridge.on('tasker:task.completed', (event) => console.log('done', event.taskUuid));
 * bridge.on('tasker:payment.charged', async (event) => analytics.track(event.payload));
 * await bridge.start();
 * // …
 * await bridge.stop();
 */
export class EventBridge extends EventEmitter {
  readonly #client: Client;
  readonly #prefix: string;
  readonly #patterns: string[];
  readonly #delivery: EventDelivery;
  #runner: SubscriberRunner | undefined;
  #fast: FastSubscription | undefined;
  #fastLoop: Promise<void> | undefined;
  #started = false;

  /** @throws InvalidArgumentError naming the option at fault */
  constructor(client: Client, options: EventBridgeOptions = {}) {
    super();
    if (client === null || typeof client !== 'object' || typeof client.nativeClient !== 'function') {
      throw new InvalidArgumentError('client', `expected a Client from connect(), got ${describe(client)}`);
    }
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError('options', `expected an object, got ${describe(options)}`);
    }
    const delivery = options.delivery ?? 'durable';
    if (delivery !== 'durable' && delivery !== 'fast') {
      throw new InvalidArgumentError('delivery', `expected 'durable' or 'fast', got ${describe(delivery)}`);
    }
    const prefix = options.prefix ?? 'tasker:';
    if (typeof prefix !== 'string') throw new InvalidArgumentError('prefix', `expected a string, got ${describe(prefix)}`);
    this.#client = client;
    this.#prefix = prefix;
    this.#patterns = checkPatterns('patterns', options.patterns ?? ['*']);
    this.#delivery = delivery;
    if (delivery === 'durable') {
      const { patterns: _p, delivery: _d, prefix: _x, ...runnerOptions } = options;
      this.#runner = new SubscriberRunner(
        client,
        subscriber(this.#patterns, (event, info) => this.#dispatch(event, info)),
        { ...runnerOptions, group: options.group ?? DEFAULT_GROUP, onError: (e, _event, info) => this.#report(e, info) },
      );
    }
  }

  /** `durable` or `fast`. */
  get delivery(): EventDelivery {
    return this.#delivery;
  }

  /** The durable subscriber group (`undefined` for a fast bridge). */
  get group(): string | undefined {
    return this.#runner?.group;
  }

  /** The name emitted for `eventName`: `tasker:task.completed`… */
  eventName(eventName: string): string {
    return `${this.#prefix}${eventName}`;
  }

  /**
   * Starts receiving (durable: joins the group first — create the tasks whose events you want
   * after this resolves). Idempotent.
   */
  async start(): Promise<this> {
    if (this.#started) return this;
    this.#started = true;
    if (this.#runner !== undefined) {
      await this.#runner.start();
      return this;
    }
    const fast = await this.#client.subscribeFast(this.#patterns);
    this.#fast = fast;
    this.#fastLoop = (async () => {
      for await (const event of fast) {
        try {
          await this.#dispatch(event, undefined);
        } catch (e) {
          this.#report(e, undefined, event); // nothing to retry: fast events are not stored
        }
      }
    })();
    return this;
  }

  /** Stops receiving (durable: as {@link SubscriberRunner.stop}, recording positions). Idempotent. */
  async stop(options: RunnerStopOptions = {}): Promise<void> {
    if (this.#runner !== undefined) {
      await this.#runner.stop(options);
      return;
    }
    this.#fast?.close();
    await this.#fastLoop;
  }

  async #dispatch(event: Event, info: DeliveryInfo | undefined): Promise<void> {
    // rawListeners: `once` listeners are removed as they run, as `emit` does.
    const listeners = [...this.rawListeners(this.eventName(event.name)), ...this.rawListeners(this.eventName('event'))];
    const pending: unknown[] = [];
    for (const listener of listeners) pending.push((listener as EventBridgeListener).call(this, event, info));
    await Promise.all(pending);
  }

  #report(error: unknown, info: DeliveryInfo | undefined, event?: Event): void {
    if (info !== undefined) return; // a listener failed a durable event: the engine retries it
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else console.error(`[tasker] event bridge error${event ? ` (event ${event.name})` : ''}:`, error);
  }
}
