/**
 * Test helpers: build a {@link StepContext} from plain data, run a handler exactly as a worker
 * would (same normalisation of returns and throws, same serialization check), and assert on
 * the result. No database needed.
 *
 * @example
 * import { buildStepContext, runHandler, assertSuccess } from 'tasker-core/testing';
 * const result = await runHandler(Double, buildStepContext({ input: { n: 2 } }));
 * assertSuccess(result, { value: 4 });
 *
 * Subscribers get their events from {@link buildEvent} and run with {@link runSubscriber}:
 *
 * @example
 * import { buildEvent, runSubscriber } from 'tasker-core/testing';
 * await runSubscriber(Audit, buildEvent('task.completed'));
 *
 * @module
 */

import { AssertionError, deepStrictEqual } from 'node:assert';
import { randomUUID } from 'node:crypto';

import { type BatchData, type HandlerSpec, StepContext } from './context.js';
import { InvalidArgumentError } from './errors.js';
import { type Event, type EventDelivery, eventInfo } from './events.js';
import {
  defineHandler,
  type HandlerFunction,
  HandlerRegistry,
  type HandlerSource,
  runAttempt,
  StepHandler,
} from './handler.js';
import { type BatchOutcome, type DecisionOutcome, parseBatches, parseDecision } from './outcomes.js';
import type { Checkpoint, JsonValue } from './records.js';
import type { StepFailure, StepResult } from './result.js';
import { type DeliveryInfo, resolveSubscriber, type SubscriberSource } from './subscriber.js';
import { describe } from './util.js';

/** The batch of a test context (see {@link BuildStepContextOptions.batch}). */
export interface TestBatch<B = Record<string, unknown>> {
  /** Default `"001"`. */
  batchId?: string;
  startCursor: JsonValue;
  endCursor: JsonValue;
  /** Default `endCursor - startCursor` when both are numbers (required otherwise). */
  batchSize?: number;
  /** Default `false`. */
  isNoOp?: boolean;
  /** The template step's `batch_config` (default `{}`). */
  config?: B;
}

/** The last checkpoint of a test context (see {@link BuildStepContextOptions.checkpoint}). */
export interface TestCheckpoint {
  cursor: JsonValue;
  /** Default 0. */
  itemsDone?: number;
  /** Default `null`. */
  accumulated?: JsonValue | null;
  /** The attempt that recorded it (default 1). */
  attempt?: number;
  /** Default: now. */
  recordedAt?: Date;
}

/** A checkpoint a handler recorded through `ctx.batch.checkpoint(…)` (see {@link checkpointsOf}). */
export interface RecordedCheckpoint {
  readonly cursor: JsonValue;
  readonly itemsDone: number;
  readonly accumulated: JsonValue | null;
}

/** Options of {@link buildStepContext}; everything is optional. */
export interface BuildStepContextOptions<I = Record<string, unknown>, C = Record<string, unknown>, B = Record<string, unknown>> {
  /** The task context (default `{}`). */
  input?: I;
  /** Results of the step's dependencies by step name (default `{}`). */
  dependencyResults?: Record<string, JsonValue>;
  /** The handler's `initialization` config (default `{}`). */
  config?: C;
  /** The attempt, from 1 (default 1; with a `checkpoint`, the attempt after the one that recorded it). */
  attempt?: number;
  /** Attempts allowed (default: 3, or `attempt` if larger). */
  maxAttempts?: number;
  stepName?: string;
  namespace?: string;
  taskName?: string;
  taskVersion?: string;
  taskUuid?: string;
  stepUuid?: string;
  correlationId?: string;
  /** The template's handler block (default callable `test.Handler`, method `call`). */
  handler?: Partial<HandlerSpec>;
  deadline?: Date | null;
  signal?: AbortSignal;
  /** Makes the context a batch worker instance's: `ctx.batch`. */
  batch?: TestBatch<B>;
  /** The last checkpoint of an earlier attempt: `ctx.checkpoint` (needs `batch`). */
  checkpoint?: TestCheckpoint;
  /**
   * Called with each checkpoint the handler records, before {@link checkpointsOf} lists it.
   * Throw (or reject) to make `ctx.batch.checkpoint(…)` fail, e.g. with
   * `new FencedError('…', 'fenced')` to test a handler whose attempt lost the step.
   */
  onCheckpoint?: (checkpoint: RecordedCheckpoint) => void | Promise<void>;
}

/** Checkpoints recorded by the contexts {@link buildStepContext} made, by context. */
const recorded = new WeakMap<StepContext<any, any, any>, RecordedCheckpoint[]>();

function testBatch<B>(b: TestBatch<B>): BatchData<B> {
  if (b === null || typeof b !== 'object') throw new InvalidArgumentError('batch', `expected an object, got ${describe(b)}`);
  if (b.startCursor === undefined) throw new InvalidArgumentError('batch.startCursor', 'is required (any JSON value)');
  if (b.endCursor === undefined) throw new InvalidArgumentError('batch.endCursor', 'is required (any JSON value)');
  let size = b.batchSize;
  if (size === undefined) {
    if (typeof b.startCursor !== 'number' || typeof b.endCursor !== 'number') {
      throw new InvalidArgumentError('batch.batchSize', 'is required when the cursors are not numbers');
    }
    size = b.endCursor - b.startCursor;
  }
  if (!Number.isSafeInteger(size) || size < 0) throw new InvalidArgumentError('batch.batchSize', `expected an integer >= 0, got ${describe(size)}`);
  return {
    batchId: b.batchId ?? '001',
    startCursor: b.startCursor,
    endCursor: b.endCursor,
    batchSize: size,
    isNoOp: b.isNoOp ?? false,
    config: b.config ?? ({} as B),
  };
}

function testCheckpoint(c: TestCheckpoint): Checkpoint {
  if (c === null || typeof c !== 'object') throw new InvalidArgumentError('checkpoint', `expected an object, got ${describe(c)}`);
  if (c.cursor === undefined) throw new InvalidArgumentError('checkpoint.cursor', 'is required (any JSON value)');
  const itemsDone = c.itemsDone ?? 0;
  if (!Number.isSafeInteger(itemsDone) || itemsDone < 0) {
    throw new InvalidArgumentError('checkpoint.itemsDone', `expected an integer >= 0, got ${describe(itemsDone)}`);
  }
  return {
    cursor: c.cursor,
    itemsDone,
    accumulated: c.accumulated ?? null,
    attempt: positiveInt('checkpoint.attempt', c.attempt ?? 1),
    recordedAt: c.recordedAt ?? new Date(),
  };
}

function positiveInt(path: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(path, `expected an integer >= 1, got ${describe(v)}`);
  return v;
}

/**
 * Builds a step context from plain data, as a worker would build it from a step event. With
 * `batch`, it is a batch worker instance's context whose checkpoints {@link checkpointsOf}
 * lists.
 *
 * @example
 * const ctx = buildStepContext({
 *   batch: { startCursor: 0, endCursor: 1000, config: { checkpoint_interval: 100 } },
 *   checkpoint: { cursor: 400, itemsDone: 400, accumulated: { sum: 79800 } },
 * });
 * assertSuccess(await runHandler(processBatch, ctx));
 * assert.deepEqual(checkpointsOf(ctx).map((c) => c.cursor), [500, 600, 700, 800, 900, 1000]);
 */
export function buildStepContext<I = Record<string, unknown>, C = Record<string, unknown>, B = Record<string, unknown>>(
  options: BuildStepContextOptions<I, C, B> = {},
): StepContext<I, C, B> {
  const batch = options.batch === undefined ? null : testBatch(options.batch);
  const checkpoint = options.checkpoint === undefined ? null : testCheckpoint(options.checkpoint);
  if (checkpoint !== null && batch === null) {
    throw new InvalidArgumentError('checkpoint', 'only a batch worker instance has checkpoints: give `batch` too');
  }
  const attempt = positiveInt('attempt', options.attempt ?? (checkpoint === null ? 1 : checkpoint.attempt + 1));
  const maxAttempts = positiveInt('maxAttempts', options.maxAttempts ?? Math.max(3, attempt));
  const checkpoints: RecordedCheckpoint[] = [];
  const onCheckpoint = options.onCheckpoint;
  const ctx = new StepContext<I, C, B>({
    taskUuid: options.taskUuid ?? randomUUID(),
    stepUuid: options.stepUuid ?? randomUUID(),
    stepName: options.stepName ?? 'test_step',
    namespace: options.namespace ?? 'test',
    taskName: options.taskName ?? 'test_task',
    taskVersion: options.taskVersion ?? '1.0.0',
    correlationId: options.correlationId ?? randomUUID(),
    handler: {
      callable: options.handler?.callable ?? 'test.Handler',
      method: options.handler?.method ?? 'call',
      resolver: options.handler?.resolver ?? null,
    },
    input: options.input ?? ({} as I),
    config: options.config ?? ({} as C),
    dependencyResults: options.dependencyResults ?? {},
    attempt,
    maxAttempts,
    deadline: options.deadline ?? null,
    signal: options.signal,
    batch,
    checkpoint,
    checkpointSink: async (json) => {
      // Parsed from the JSON a worker would send: a copy, so a handler mutating its
      // accumulator afterwards does not rewrite the history.
      const c = JSON.parse(json) as { cursor: JsonValue; items_done: number; accumulated?: JsonValue };
      const entry: RecordedCheckpoint = { cursor: c.cursor, itemsDone: c.items_done, accumulated: c.accumulated ?? null };
      if (onCheckpoint !== undefined) await onCheckpoint(entry);
      checkpoints.push(entry);
    },
  });
  recorded.set(ctx, checkpoints);
  return ctx;
}

/**
 * The checkpoints a handler recorded with `ctx.batch.checkpoint(…)` on a context made by
 * {@link buildStepContext}, oldest first (a failed `onCheckpoint` records nothing).
 *
 * @throws InvalidArgumentError for a context {@link buildStepContext} did not make
 */
export function checkpointsOf(ctx: StepContext<any, any, any>): readonly RecordedCheckpoint[] {
  const list = recorded.get(ctx);
  if (list === undefined) throw new InvalidArgumentError('ctx', 'expected a context made by buildStepContext');
  return [...list];
}

/**
 * Runs a handler once, exactly as a worker would: sync or async, returned values, `StepResult`s
 * and thrown values all become a {@link StepResult}; a result that cannot be serialized becomes
 * a `result_not_serializable` failure. Never throws for handler errors.
 *
 * @param handler a StepHandler class or instance, a `defineHandler` result, a plain function, or
 *   a module-path callable (`"./handlers/payments.js#ChargeHandler"`, relative to the current
 *   directory) resolved as a worker resolves it
 * @param ctx a context, or options for {@link buildStepContext}
 */
export async function runHandler(
  handler: HandlerSource | HandlerFunction<any, any, any> | string,
  ctx: StepContext<any, any, any> | BuildStepContextOptions<any, any, any> = {},
): Promise<StepResult> {
  const context = ctx instanceof StepContext ? ctx : buildStepContext(ctx);
  if (typeof handler === 'string') {
    const modules = new HandlerRegistry([]);
    return (await runAttempt(await modules.resolve(handler), handler, context, () => [])).result;
  }
  const source: HandlerSource =
    typeof handler === 'function' && !(handler.prototype instanceof StepHandler)
      ? defineHandler(context.handler.callable, handler as HandlerFunction<any, any, any>)
      : (handler as HandlerSource);
  const registry = new HandlerRegistry([source]);
  const callable = registry.callables[0] as string;
  const settled = await runAttempt(registry.get(callable), callable, context, () => registry.callables);
  return settled.result;
}

/**
 * Asserts that `result` is a success, and that its value deep-equals `expected` when given.
 *
 * @returns the result value
 * @throws AssertionError otherwise, with the failure's message and type
 */
export function assertSuccess<T = unknown>(result: StepResult, expected?: unknown): T {
  if (!result.isSuccess) {
    const e = result.error as StepFailure;
    throw new AssertionError({
      message: `expected a success, got a failure: [${e.errorType}] ${e.message}`,
      actual: e,
      expected: 'success',
      operator: 'assertSuccess',
    });
  }
  if (arguments.length > 1) deepStrictEqual(result.result, expected);
  return result.result as T;
}

/** What {@link assertFailure} checks; every field is optional. */
export interface ExpectedFailure {
  errorType?: string;
  retryable?: boolean;
  /** The exact message, or a pattern it must match. */
  message?: string | RegExp;
  /** Seconds. */
  retryAfter?: number;
}

/**
 * Asserts that `result` is a failure matching `expected`.
 *
 * @returns the failure
 * @throws AssertionError otherwise
 */
export function assertFailure(result: StepResult, expected: ExpectedFailure = {}): StepFailure {
  if (!result.isFailure) {
    throw new AssertionError({
      message: `expected a failure, got a success with ${JSON.stringify(result.result)}`,
      actual: result.result,
      expected: 'failure',
      operator: 'assertFailure',
    });
  }
  const e = result.error as StepFailure;
  const check = (field: string, ok: boolean, actual: unknown, want: unknown): void => {
    if (!ok) {
      throw new AssertionError({
        message: `failure ${field}: expected ${String(want)}, got ${String(actual)} (message: ${e.message})`,
        actual,
        expected: want,
        operator: 'assertFailure',
      });
    }
  };
  if (expected.errorType !== undefined) check('errorType', e.errorType === expected.errorType, e.errorType, expected.errorType);
  if (expected.retryable !== undefined) check('retryable', e.retryable === expected.retryable, e.retryable, expected.retryable);
  if (expected.retryAfter !== undefined) check('retryAfter', e.retryAfter === expected.retryAfter, e.retryAfter, expected.retryAfter);
  if (expected.message !== undefined) {
    const m = expected.message;
    check('message', typeof m === 'string' ? e.message === m : m.test(e.message), e.message, m);
  }
  return e;
}

function outcome<T>(result: StepResult, what: string, operator: string, parse: (v: unknown) => T | undefined): T {
  if (!result.isSuccess) {
    const e = result.error as StepFailure;
    throw new AssertionError({ message: `expected ${what}, got a failure: [${e.errorType}] ${e.message}`, actual: e, expected: what, operator });
  }
  let parsed: T | undefined;
  try {
    parsed = parse(result.result);
  } catch (e) {
    throw new AssertionError({ message: `malformed ${what}: ${(e as Error).message}`, actual: result.result, expected: what, operator });
  }
  if (parsed === undefined) {
    throw new AssertionError({
      message: `expected ${what}, got a success without one: ${JSON.stringify(result.result)}`,
      actual: result.result,
      expected: what,
      operator,
    });
  }
  return parsed;
}

/**
 * The decision a decision handler's result carries (`StepResult.decision` or plain JSON).
 *
 * @throws AssertionError when the result is a failure or carries no decision
 */
export function decisionOf(result: StepResult): DecisionOutcome {
  return outcome(result, 'a decision (decision_point_outcome)', 'decisionOf', parseDecision);
}

/**
 * The step names a decision handler chose: `[]` for `no_branches`.
 *
 * @throws AssertionError when the result is a failure or carries no decision
 */
export function chosenSteps(result: StepResult): string[] {
  const d = decisionOf(result);
  return d.type === 'create_steps' ? [...d.stepNames] : [];
}

/**
 * The batches a batchable handler's result asks for (`StepResult.batches` or plain JSON):
 * the worker, the cursors, or `no_batches`.
 *
 * @throws AssertionError when the result is a failure or carries no batch outcome
 */
export function batchesOf(result: StepResult): BatchOutcome {
  return outcome(result, 'a batch outcome (batch_processing_outcome)', 'batchesOf', parseBatches);
}

/** Options of {@link buildEvent}: envelope fields to set; the others get test values. */
export interface BuildEventOptions<P = Record<string, unknown>> {
  /** Default: the catalog's example for a system event, `{}` for a domain event. */
  payload?: P;
  /** Default `durable`. */
  delivery?: EventDelivery;
  eventId?: string;
  occurredAt?: Date;
  taskUuid?: string | null;
  stepUuid?: string | null;
  correlationId?: string | null;
  namespace?: string | null;
  taskName?: string | null;
  taskVersion?: string | null;
  position?: number | null;
}

/**
 * An event as a subscriber receives it, without a database: fresh ids, the template
 * `test/test_task@1.0.0`, and the payload through the JSON conversion a real one goes through.
 *
 * @example
 * const charged = buildEvent('payment.charged', { payload: { amount: 5 } });
 * @throws InvalidArgumentError for an empty name or a payload JSON cannot carry
 */
export function buildEvent<P = Record<string, unknown>>(name: string, options: BuildEventOptions<P> = {}): Event<P> {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidArgumentError('name', `expected an event name such as 'task.completed', got ${describe(name)}`);
  }
  const info = eventInfo(name);
  const delivery = options.delivery ?? 'durable';
  if (delivery !== 'durable' && delivery !== 'fast') {
    throw new InvalidArgumentError('delivery', `expected 'durable' or 'fast', got ${describe(delivery)}`);
  }
  const payload: unknown = options.payload ?? info?.example ?? {};
  let text: string | undefined;
  try {
    text = JSON.stringify(payload, (_key, v: unknown) => {
      // JSON.stringify would write NaN and Infinity as null: the engine refuses them instead.
      if (typeof v === 'number' && !Number.isFinite(v)) throw new Error(`${v} is not a JSON number`);
      return v;
    });
  } catch (e) {
    throw new InvalidArgumentError('payload', `the payload has no JSON form: ${String(e)}`);
  }
  if (text === undefined) throw new InvalidArgumentError('payload', `the payload has no JSON form: ${describe(payload)}`);
  // A step's system events and domain events (which steps publish) carry a step.
  const withStep = info === undefined || info.category === 'step';
  return {
    eventId: options.eventId ?? randomUUID(),
    name,
    category: info?.category ?? 'domain',
    occurredAt: options.occurredAt ?? new Date(),
    taskUuid: options.taskUuid === undefined ? randomUUID() : options.taskUuid,
    stepUuid: options.stepUuid === undefined ? (withStep ? randomUUID() : null) : options.stepUuid,
    correlationId: options.correlationId === undefined ? randomUUID() : options.correlationId,
    namespace: options.namespace === undefined ? 'test' : options.namespace,
    taskName: options.taskName === undefined ? 'test_task' : options.taskName,
    taskVersion: options.taskVersion === undefined ? '1.0.0' : options.taskVersion,
    payload: JSON.parse(text) as P,
    delivery,
    position: options.position === undefined ? (delivery === 'durable' ? 1 : null) : options.position,
  };
}

/**
 * Hands `event` to a subscriber (a {@link Subscriber} class, an instance, or a `subscriber(...)`
 * definition) as a {@link SubscriberRunner} would: to its routed method (`handleTaskCompleted`
 * for `task.completed`), else to `handle`. Resolves to what the handler returned; rejects with
 * what it threw (a runner would fail the delivery with it, and retry it).
 *
 * @param info the delivery (default: attempt 1 of group `test`, member `test-member`)
 */
export async function runSubscriber(
  source: SubscriberSource,
  event: Event<any>,
  info: Partial<DeliveryInfo> = {},
): Promise<unknown> {
  const resolved = resolveSubscriber(source);
  const delivery: DeliveryInfo = {
    attempt: info.attempt ?? 1,
    group: info.group ?? resolved.group ?? 'test',
    memberId: info.memberId ?? 'test-member',
  };
  return await resolved.handle(event, delivery);
}

export { StepContext } from './context.js';
export { StepResult } from './result.js';
