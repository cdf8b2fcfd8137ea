/**
 * Events: the catalog of system events ({@link catalog}, {@link eventInfo}), the {@link Event}
 * envelope subscribers receive, the records of subscriber groups and their dead letters, and
 * the fast in-process subscription ({@link FastSubscription}).
 *
 * Durable subscribers (groups, at least once, in order per task) are in `subscriber.ts`
 * ({@link Subscriber}, {@link SubscriberRunner}); the `EventEmitter` bridge in `bridge.ts`.
 *
 * @module
 */

import {
  eventCatalog as nativeCatalog,
  eventEnvelopeSchema as nativeEnvelopeSchema,
  eventInfo as nativeEventInfo,
  eventPatternMatches as nativePatternMatches,
  type NativeFastSubscription,
  type NativeSubscription,
} from '../native/index.js';
import { InvalidArgumentError, native, nativeSync } from './errors.js';
import type { JsonObject } from './records.js';
import { describe } from './util.js';

/** What an event is about: the engine's lifecycle categories, or `domain` for template-declared events. */
export type EventCategory = 'task' | 'step' | 'operator' | 'dlq' | 'worker' | 'domain';

/** How an event travelled: `durable` (the event log, subscriber groups) or `fast` (this process's broadcast). */
export type EventDelivery = 'durable' | 'fast';

/**
 * An event as subscribers receive it: an envelope around the payload the catalog (or the
 * template, for a domain event) describes.
 *
 * @typeParam P the payload's shape (not checked here: the engine validated domain payloads
 *   against their declared schema, and lifecycle payloads follow the catalog's)
 */
export interface Event<P = Record<string, unknown>> {
  /** UUIDv7: unique, ordered by time — the key for idempotent consumers (delivery is at least once). */
  readonly eventId: string;
  /** `task.completed`, `step.failed`, `payment.charged`, … */
  readonly name: string;
  readonly category: EventCategory;
  readonly occurredAt: Date;
  readonly taskUuid: string | null;
  readonly stepUuid: string | null;
  readonly correlationId: string | null;
  /** The task's template: namespace, name and version. */
  readonly namespace: string | null;
  readonly taskName: string | null;
  readonly taskVersion: string | null;
  readonly payload: P;
  readonly delivery: EventDelivery;
  /** The event's place in the log (durable events only). */
  readonly position: number | null;
}

/** One entry of the {@link catalog}. */
export interface EventInfo {
  /** `task.completed`, … */
  readonly name: string;
  readonly category: EventCategory;
  readonly description: string;
  /** JSON Schema of the payload. */
  readonly payloadSchema: JsonObject;
  /** A payload satisfying the schema. */
  readonly example: JsonObject;
}

/** A subscriber group and how far behind it is ({@link Client.eventGroups}). */
export interface EventGroupStatus {
  readonly group: string;
  readonly patterns: readonly string[];
  /** Members that heartbeated recently. */
  readonly liveMembers: number;
  /** Partitions held by a live lease. */
  readonly leasedPartitions: number;
  /** Events in the log after the group's cursors (not yet acknowledged by it). */
  readonly lag: number;
  /** When the oldest of those was written. */
  readonly oldestPendingAt: Date | null;
  /** Events the group's subscribers gave up on. */
  readonly deadLetters: number;
  readonly createdAt: Date;
}

/** An event a group's subscriber failed on `attempts` times ({@link Client.eventDeadLetters}). */
export interface EventDeadLetter {
  readonly id: number;
  readonly group: string;
  readonly eventId: string;
  readonly name: string;
  readonly taskUuid: string | null;
  /** The whole event as it was delivered. */
  readonly event: Event;
  /** The last failure's message. */
  readonly error: string;
  readonly attempts: number;
  readonly deadAt: Date;
}

type Raw = Record<string, unknown>;

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const date = (v: unknown): Date | null => (typeof v === 'string' ? new Date(v) : null);

/** @internal The core's event JSON, in camelCase with `Date`s (the payload is never renamed). */
export function toEvent(r: Raw): Event {
  return {
    eventId: r.event_id as string,
    name: r.name as string,
    category: r.category as EventCategory,
    occurredAt: new Date(r.occurred_at as string),
    taskUuid: str(r.task_uuid),
    stepUuid: str(r.step_uuid),
    correlationId: str(r.correlation_id),
    namespace: str(r.namespace),
    taskName: str(r.task_name),
    taskVersion: str(r.task_version),
    // Always an object for lifecycle events and for payloads published from this package.
    payload: r.payload as Record<string, unknown>,
    delivery: r.delivery as EventDelivery,
    position: typeof r.position === 'number' ? r.position : null,
  };
}

function toEventInfo(r: Raw): EventInfo {
  return {
    name: r.name as string,
    category: r.category as EventCategory,
    description: r.description as string,
    payloadSchema: r.payload_schema as JsonObject,
    example: r.example as JsonObject,
  };
}

/** @internal */
export function toEventGroupStatus(r: Raw): EventGroupStatus {
  return {
    group: r.group as string,
    patterns: r.patterns as string[],
    liveMembers: r.live_members as number,
    leasedPartitions: r.leased_partitions as number,
    lag: r.lag as number,
    oldestPendingAt: date(r.oldest_pending_at),
    deadLetters: r.dead_letters as number,
    createdAt: new Date(r.created_at as string),
  };
}

/** @internal */
export function toEventDeadLetter(r: Raw): EventDeadLetter {
  return {
    id: r.id as number,
    group: r.group as string,
    eventId: r.event_id as string,
    name: r.name as string,
    taskUuid: str(r.task_uuid),
    event: toEvent(r.event as Raw),
    error: r.error as string,
    attempts: r.attempts as number,
    deadAt: new Date(r.dead_at as string),
  };
}

let cachedCatalog: readonly EventInfo[] | undefined;

/**
 * Every system event the engine publishes (task and step lifecycle, operator actions, the
 * dead-letter queue, workers), with its category, description, payload schema and an example
 * payload. Domain events are declared by templates (`domain_events:`), not listed here.
 *
 * @example
 * for (const e of catalog()) console.log(e.name, '-', e.description);
 */
export function catalog(): readonly EventInfo[] {
  cachedCatalog ??= Object.freeze((JSON.parse(nativeSync(() => nativeCatalog())) as Raw[]).map(toEventInfo));
  return cachedCatalog;
}

/** The catalog entry of `name` (`task.completed`…), or `undefined` for a name outside the catalog. */
export function eventInfo(name: string): EventInfo | undefined {
  if (typeof name !== 'string') throw new InvalidArgumentError('name', `expected a string, got ${describe(name)}`);
  const raw = nativeSync(() => nativeEventInfo(name));
  return raw === null ? undefined : toEventInfo(JSON.parse(raw) as Raw);
}

/** JSON Schema of the envelope every event travels in (the core's, with snake_case keys). */
export function envelopeSchema(): JsonObject {
  return JSON.parse(nativeSync(() => nativeEnvelopeSchema())) as JsonObject;
}

/**
 * Whether an event name matches a subscription pattern: exact, or with `*` standing for any run
 * of characters (`step.*`, `*.failed`, `*`) — the engine's own matching.
 */
export function patternMatches(pattern: string, name: string): boolean {
  return nativePatternMatches(pattern, name);
}

/** @internal Validates a list of event patterns. */
export function checkPatterns(path: string, patterns: unknown): string[] {
  if (!Array.isArray(patterns) || patterns.length === 0) {
    throw new InvalidArgumentError(path, `expected a non-empty array of event patterns (e.g. ["task.*"]), got ${describe(patterns)}`);
  }
  patterns.forEach((p, i) => {
    if (typeof p !== 'string' || p.length === 0) {
      throw new InvalidArgumentError(`${path}[${i}]`, `expected a non-empty event pattern, got ${describe(p)}`);
    }
  });
  return [...(patterns as string[])];
}

/** Options of {@link FastSubscription.next}. */
export interface NextOptions {
  /** Longest wait (default 500 ms). */
  timeoutMs?: number;
}

/**
 * A reader of this process's fast event broadcast: lifecycle events of the state changes this
 * process commits (its worker's steps, its client's calls) and the `delivery: fast` domain
 * events of its completions. Nothing is stored or retried, and a reader that falls far behind
 * skips ahead ({@link missed}): use it for metrics and logs, a {@link SubscriberRunner} for
 * anything that must not be lost.
 *
 * Waiting never blocks the event loop. Iterate with `for await`, or call {@link next}.
 *
 * @example
 * const fast = client.subscribeFast(['step.*']);
 * for await (const event of fast) metrics.increment(event.name);  // until fast.close()
 */
export class FastSubscription implements AsyncIterable<Event> {
  readonly #native: NativeFastSubscription;
  readonly patterns: readonly string[];
  #closed = false;

  /** @internal Use {@link Client.subscribeFast}. */
  constructor(nativeSubscription: NativeFastSubscription, patterns: readonly string[]) {
    this.#native = nativeSubscription;
    this.patterns = patterns;
  }

  /** The next matching event, or `null` when none came within `timeoutMs` (or the reader is closed). */
  async next(options: NextOptions = {}): Promise<Event | null> {
    const timeoutMs = options.timeoutMs ?? 500;
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new InvalidArgumentError('timeoutMs', `expected a non-negative number, got ${describe(timeoutMs)}`);
    }
    if (this.#closed) return null;
    const raw = await native(() => this.#native.next(timeoutMs));
    return raw === null ? null : toEvent(JSON.parse(raw) as Raw);
  }

  /** Events skipped because this reader fell behind the broadcast's buffer. */
  get missed(): number {
    return this.#native.missed;
  }

  /** Whether {@link close} was called. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** Stops receiving; a `for await` loop over this reader ends within its wait (500 ms). */
  close(): void {
    this.#closed = true;
    this.#native.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Event> {
    while (!this.#closed) {
      const event = await this.next();
      if (event !== null) yield event;
    }
  }
}

/** How a member joins its group ({@link Client.subscribe}; a {@link SubscriberRunner} takes the same). */
export interface SubscriptionOptions {
  /** This member's name in the group (default `<host>:<pid>:<n>`). */
  memberId?: string;
  /**
   * A group created by this join starts at the log's start instead of its end (only events
   * written from then on otherwise). An existing group resumes where it left off either way.
   */
  fromStart?: boolean;
  /** Attempts at one event before it goes to the group's dead letters (default 5). */
  maxAttempts?: number;
  /** Delay before the second attempt, doubling per attempt (default 200 ms). */
  backoffMs?: number;
  /** Longest delay between attempts (default 30 000 ms). */
  maxBackoffMs?: number;
  /** How long this member's hold on its partitions outlives its last renewal (default 15 000 ms, at least 300). */
  leaseMs?: number;
  /** How often an idle member looks for new events (default 50 ms). */
  pollIntervalMs?: number;
  /** Events read per partition at once (default 500). */
  batchSize?: number;
}

/** @internal Validates subscription options and builds the native call's JSON (only what was given). */
export function subscriptionJson(group: string, patterns: readonly string[], o: SubscriptionOptions): string {
  if (typeof group !== 'string' || group.trim().length === 0 || group.length > 200) {
    throw new InvalidArgumentError('group', `expected a group name of 1 to 200 characters, got ${describe(group)}`);
  }
  for (const key of ['backoffMs', 'maxBackoffMs', 'leaseMs', 'pollIntervalMs'] as const) {
    const v = o[key];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
      throw new InvalidArgumentError(key, `expected a non-negative number of milliseconds, got ${describe(v)}`);
    }
  }
  for (const key of ['maxAttempts', 'batchSize'] as const) {
    const v = o[key];
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) {
      throw new InvalidArgumentError(key, `expected an integer >= 1, got ${describe(v)}`);
    }
  }
  // JSON.stringify drops the undefined ones: the core's defaults for the rest.
  return JSON.stringify({
    group,
    patterns: checkPatterns('patterns', patterns),
    member_id: o.memberId,
    from_start: o.fromStart,
    max_attempts: o.maxAttempts,
    backoff_ms: o.backoffMs,
    max_backoff_ms: o.maxBackoffMs,
    lease_ms: o.leaseMs,
    poll_interval_ms: o.pollIntervalMs,
    batch_size: o.batchSize,
  });
}

/** An event handed to a group member by {@link EventSubscription.poll}. */
export interface Delivery {
  /** What {@link EventSubscription.ack} and {@link EventSubscription.fail} name. */
  readonly deliveryId: number;
  /** 1 on first delivery, then 2, 3 … after failures. */
  readonly attempt: number;
  readonly event: Event;
}

/** Options of {@link EventSubscription.poll}. */
export interface PollOptions {
  /** At most this many deliveries (default 1). */
  max?: number;
  /** Longest wait (default 500 ms). */
  timeoutMs?: number;
}

/**
 * A member of a durable subscriber group, polled by hand ({@link Client.subscribe}); a
 * {@link SubscriberRunner} does this for a {@link Subscriber}. Every delivery must be
 * acknowledged ({@link ack}) or failed ({@link fail}): the next event of its task waits for
 * that. {@link close} records the positions and leaves the group.
 */
export class EventSubscription {
  readonly #native: NativeSubscription;

  /** @internal Use {@link Client.subscribe}. */
  constructor(nativeSubscription: NativeSubscription) {
    this.#native = nativeSubscription;
  }

  /** The group's name. */
  get group(): string {
    return this.#native.group;
  }

  /** This member's name in the group. */
  get memberId(): string {
    return this.#native.memberId;
  }

  /**
   * Waits up to `timeoutMs` for deliveries (`[]` when none came), without blocking the event loop.
   *
   * @throws InvalidStateError once the subscription is closed or stopped
   */
  async poll(options: PollOptions = {}): Promise<Delivery[]> {
    const max = options.max ?? 1;
    const timeoutMs = options.timeoutMs ?? 500;
    if (!Number.isInteger(max) || max < 1 || max > 2 ** 32 - 1) throw new InvalidArgumentError('max', `expected an integer >= 1, got ${describe(max)}`);
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new InvalidArgumentError('timeoutMs', `expected a non-negative number, got ${describe(timeoutMs)}`);
    }
    const raw = await native(() => this.#native.poll(max, timeoutMs));
    return (JSON.parse(raw) as Array<{ delivery_id: number; attempt: number; event: Raw }>).map((d) => ({
      deliveryId: d.delivery_id,
      attempt: d.attempt,
      event: toEvent(d.event),
    }));
  }

  /** The delivery was handled: the group will not get it again. Never waits for the database. */
  ack(delivery: Delivery | number): void {
    const id = typeof delivery === 'number' ? delivery : delivery.deliveryId;
    nativeSync(() => this.#native.ack(id));
  }

  /**
   * Handling failed with `error`: the event is delivered again after a backoff, or moved to the
   * group's dead letters after `maxAttempts`. Never waits for the database.
   */
  fail(delivery: Delivery | number, error: string): void {
    const id = typeof delivery === 'number' ? delivery : delivery.deliveryId;
    nativeSync(() => this.#native.fail(id, String(error)));
  }

  /** Records what was acknowledged, gives the partitions back and leaves the group. */
  close(): Promise<void> {
    return native(() => this.#native.close());
  }
}
