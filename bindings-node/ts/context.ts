/**
 * What a step handler receives.
 *
 * @module
 */

import { InvalidArgumentError, TaskerError } from './errors.js';
import { type Checkpoint, type JsonValue, type StepBatch, toCheckpoint, toStepBatch } from './records.js';
import { describe, findUnserializable, stringifyStrict } from './util.js';

/** The step's `handler` block from the template. */
export interface HandlerSpec {
  /** The handler identifier the worker resolves (a registered name). */
  readonly callable: string;
  /** The method to call on a class handler (default `call`). */
  readonly method: string;
  readonly resolver: string | null;
}

/**
 * Records a checkpoint: receives its JSON (`{"cursor", "items_done", "accumulated"}`) and
 * resolves once it is stored. Workers persist it through the engine; test contexts record it.
 */
export type CheckpointSink = (checkpointJson: string) => Promise<void>;

/** The batch part of {@link StepContextData}: the instance's cursor and the template's `batch_config`. */
export interface BatchData<B = Record<string, unknown>> extends StepBatch {
  /** The worker template step's `batch_config` (`{}` when it has none). */
  config: B;
}

/**
 * The batch a batch worker instance processes (`ctx.batch`), and the way to record progress.
 *
 * @typeParam B the shape of the template step's `batch_config`
 */
export class BatchContext<B = Record<string, unknown>> implements StepBatch {
  /** `"001"`, `"002"`, …: the suffix of this instance's name (`"000"` for the no-op instance). */
  readonly batchId: string;
  /** Where the batch starts (inclusive, by convention). */
  readonly startCursor: JsonValue;
  /** Where the batch ends (exclusive, by convention). */
  readonly endCursor: JsonValue;
  /** Items in the batch. */
  readonly batchSize: number;
  /**
   * `true` for the placeholder instance of a `no_batches` outcome (cursor 0..0): there is
   * nothing to process, so return at once.
   */
  readonly isNoOp: boolean;
  /** The worker template step's `batch_config`, e.g. `{ checkpoint_interval: 100 }`. */
  readonly config: B;
  readonly #last: Checkpoint | null;
  readonly #sink: CheckpointSink | undefined;

  /** @internal Built with the step context. */
  constructor(data: BatchData<B>, last: Checkpoint | null, sink: CheckpointSink | undefined) {
    this.batchId = data.batchId;
    this.startCursor = data.startCursor;
    this.endCursor = data.endCursor;
    this.batchSize = data.batchSize;
    this.isNoOp = data.isNoOp;
    this.config = data.config;
    this.#last = last;
    this.#sink = sink;
  }

  /**
   * Where this attempt should start: the cursor of the last checkpoint an earlier attempt
   * recorded (`ctx.checkpoint`), else {@link startCursor}.
   */
  get resumeCursor(): JsonValue {
    return this.#last === null ? this.startCursor : this.#last.cursor;
  }

  /**
   * Records progress now (stored before the promise resolves, not only at completion): when
   * this step is retried — after a failure, a timeout or a lost worker — the next attempt
   * receives it as `ctx.checkpoint` and can resume from `cursor`. A later checkpoint replaces
   * an earlier one.
   *
   * @param cursor where to resume: the first item not yet done (any JSON value)
   * @param itemsDone items of this batch done so far (default 0)
   * @param accumulated what the next attempt needs to carry on (a running total…), any JSON
   * @throws InvalidArgumentError (rejects) when `cursor` is missing, `itemsDone` is not an
   *   integer >= 0, or a value cannot become JSON
   * @throws FencedError (rejects, `code` `fenced`) when this attempt no longer holds the step
   *   (it timed out, was re-claimed or cancelled): stop, nobody will use its result
   */
  async checkpoint(cursor: JsonValue, itemsDone = 0, accumulated?: JsonValue): Promise<void> {
    const json = checkpointJson(cursor, itemsDone, accumulated);
    if (this.#sink === undefined) {
      throw new TaskerError('this context cannot record checkpoints: build it with buildStepContext from tasker-core/testing', 'no_checkpoint_sink');
    }
    await this.#sink(json);
  }
}

/** @internal Validates and serializes the arguments of {@link BatchContext.checkpoint}. */
export function checkpointJson(cursor: unknown, itemsDone: unknown, accumulated: unknown): string {
  if (cursor === undefined) throw new InvalidArgumentError('cursor', 'is required: where to resume (any JSON value)');
  if (typeof itemsDone !== 'number' || !Number.isSafeInteger(itemsDone) || itemsDone < 0) {
    throw new InvalidArgumentError('itemsDone', `expected an integer >= 0, got ${describe(itemsDone)}`);
  }
  const payload = accumulated === undefined ? { cursor, items_done: itemsDone } : { cursor, items_done: itemsDone, accumulated };
  let json: string | undefined;
  try {
    json = stringifyStrict(payload);
  } catch (e) {
    const bad = findUnserializable(cursor, 'cursor') ?? findUnserializable(accumulated, 'accumulated');
    throw new InvalidArgumentError(bad?.path ?? 'checkpoint', `cannot be serialized to JSON: ${bad?.reason ?? String(e)}`);
  }
  // A function or symbol cursor serializes to nothing at all.
  if (json === undefined || !json.startsWith('{"cursor":')) {
    throw new InvalidArgumentError('cursor', `expected a JSON value, got ${describe(cursor)}`);
  }
  return json;
}

/** A domain event a handler published with {@link StepContext.publish}. */
export interface PublishedEvent {
  readonly name: string;
  readonly payload: Record<string, JsonValue>;
}

/** The data a {@link StepContext} is built from (a step event of the engine, in camelCase). */
export interface StepContextData<I = Record<string, unknown>, C = Record<string, unknown>, B = Record<string, unknown>> {
  taskUuid: string;
  stepUuid: string;
  stepName: string;
  namespace: string;
  taskName: string;
  taskVersion: string;
  correlationId: string;
  handler: HandlerSpec;
  input: I;
  config: C;
  dependencyResults: Record<string, JsonValue>;
  attempt: number;
  maxAttempts: number;
  deadline: Date | null;
  /** An abort signal, or a function creating one on first use. */
  signal?: AbortSignal | (() => AbortSignal);
  /** The batch of a batch worker instance (`null`/absent for other steps). */
  batch?: BatchData<B> | null;
  /** The last checkpoint an earlier attempt recorded. */
  checkpoint?: Checkpoint | null;
  /** Where `ctx.batch.checkpoint(…)` records checkpoints. */
  checkpointSink?: CheckpointSink;
  /** The attempt's W3C `traceparent` (see {@link StepContext.traceContext}). */
  traceContext?: string | null;
}

/**
 * One attempt of one step: the task's input, the handler's config, the results of the step's
 * dependencies and the attempt counters.
 *
 * @typeParam I the shape of the task context (`input`)
 * @typeParam C the shape of the handler's `initialization` config
 * @typeParam B the shape of the template step's `batch_config` (batch workers)
 */
export class StepContext<I = Record<string, unknown>, C = Record<string, unknown>, B = Record<string, unknown>> {
  /** The task's uuid. */
  readonly taskUuid: string;
  /** This step's uuid. */
  readonly stepUuid: string;
  /** This step's name in the template. */
  readonly stepName: string;
  /** The template's namespace. */
  readonly namespace: string;
  /** The template's name. */
  readonly taskName: string;
  /** The template's version. */
  readonly taskVersion: string;
  /** The task's correlation id (for logs and traces). */
  readonly correlationId: string;
  /** The step's `handler` block (callable, method, resolver). */
  readonly handler: HandlerSpec;
  /** The task context (the task's input). */
  readonly input: I;
  /** The handler's `initialization` config from the template. */
  readonly config: C;
  /** Results of the step's direct dependencies, by step name. */
  readonly dependencyResults: Readonly<Record<string, JsonValue>>;
  /** This attempt, starting at 1. */
  readonly attempt: number;
  /** Attempts allowed, the first included. */
  readonly maxAttempts: number;
  /** When the engine fails this attempt with a `timeout` error (`null`: no deadline). */
  readonly deadline: Date | null;
  /**
   * The batch this instance of a `batch_worker` step processes (cursors, `batch_config`), with
   * `checkpoint(…)` to record progress; `null` for every other step.
   */
  readonly batch: BatchContext<B> | null;
  /**
   * The last checkpoint an earlier attempt of this step recorded, or `null` (first attempt, or
   * none recorded). `ctx.batch.resumeCursor` is its cursor, else the batch's start.
   */
  readonly checkpoint: Checkpoint | null;
  /**
   * The attempt's W3C `traceparent` when traces are exported (`telemetry.enabled`): extract it
   * with your OpenTelemetry SDK's W3C propagator and the spans you start nest under the
   * attempt's span. `null` otherwise.
   */
  readonly traceContext: string | null;
  #signal: AbortSignal | (() => AbortSignal) | undefined;
  readonly #published: PublishedEvent[] = [];

  /** Builds a context. Workers do this; tests use `buildStepContext` from `tasker-core/testing`. */
  constructor(data: StepContextData<I, C, B>) {
    this.taskUuid = data.taskUuid;
    this.stepUuid = data.stepUuid;
    this.stepName = data.stepName;
    this.namespace = data.namespace;
    this.taskName = data.taskName;
    this.taskVersion = data.taskVersion;
    this.correlationId = data.correlationId;
    this.traceContext = data.traceContext ?? null;
    this.handler = data.handler;
    this.input = data.input;
    this.config = data.config;
    this.dependencyResults = data.dependencyResults;
    this.attempt = data.attempt;
    this.maxAttempts = data.maxAttempts;
    this.deadline = data.deadline;
    this.checkpoint = data.checkpoint ?? null;
    this.batch = (data.batch ?? null) === null ? null : new BatchContext(data.batch as BatchData<B>, this.checkpoint, data.checkpointSink);
    this.#signal = data.signal;
  }

  /**
   * Aborted when the engine cancels this attempt: its deadline (`timeout_seconds`) passed, the
   * worker gave it up, or the worker's shutdown deadline passed. The attempt's result is ignored
   * from then on: pass the signal to `fetch` and friends, or check `signal.aborted` between units
   * of work, to stop work nobody will use. The reason is a `TimeoutError` (deadline) or a
   * `ShutDownError` (shutdown).
   */
  get signal(): AbortSignal {
    if (typeof this.#signal === 'function') this.#signal = this.#signal();
    return this.#signal ?? NEVER_ABORTED;
  }

  /** Whether an earlier attempt failed. */
  get isRetry(): boolean {
    return this.attempt > 1;
  }

  /** Whether a failure of this attempt will not be retried. */
  get isLastRetry(): boolean {
    return this.attempt >= this.maxAttempts;
  }

  /**
   * Publishes a domain event with this attempt's outcome. The template must declare it
   * (`domain_events:`) and this step must list it (`publishes_events:`, with a `condition` —
   * `success` by default, `failure` or `always` — and a `delivery`, `durable` or `fast`). The
   * engine validates the payload against the declared schema when the attempt completes and
   * publishes the event in the same transaction as the step's new state, if the condition
   * holds for the outcome (a thrown error counts as a failure). An undeclared event fails the
   * step permanently (`event_not_declared`), and so does a payload breaking its schema
   * (`event_payload_invalid`).
   *
   * The event goes into the outcome's `metadata.events` list, beside any other metadata the
   * handler returns.
   *
   * @example
   * ctx.publish('payment.charged', { orderId: ctx.input.orderId, amount: 42.5 });
   *
   * @param name a dotted lowercase name, like `payment.charged`
   * @param payload a JSON object (copied now: later changes to it are not published)
   * @throws InvalidArgumentError when `name` is not a non-empty string or `payload` not a JSON object
   */
  publish<P extends Record<string, unknown> = Record<string, unknown>>(name: string, payload: P = {} as P): void {
    if (typeof name !== 'string' || name.length === 0) {
      throw new InvalidArgumentError('name', `expected an event name like 'payment.charged', got ${describe(name)}`);
    }
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      throw new InvalidArgumentError('payload', `expected a JSON object, got ${describe(payload)}`);
    }
    let json: string | undefined;
    try {
      json = stringifyStrict(payload);
    } catch (e) {
      const bad = findUnserializable(payload, 'payload');
      throw new InvalidArgumentError(bad?.path ?? 'payload', `cannot be serialized to JSON: ${bad?.reason ?? String(e)}`);
    }
    if (json === undefined) throw new InvalidArgumentError('payload', `expected a JSON object, got ${describe(payload)}`);
    this.#published.push({ name, payload: JSON.parse(json) as Record<string, JsonValue> });
  }

  /** The events {@link publish} recorded in this attempt, in order. */
  get publishedEvents(): readonly PublishedEvent[] {
    return this.#published;
  }

  /**
   * The result of the dependency called `name`, or `undefined` when this step has no such
   * dependency.
   *
   * @typeParam T the expected shape of the result (not checked)
   */
  getDependencyResult<T = JsonValue>(name: string): T | undefined {
    return Object.prototype.hasOwnProperty.call(this.dependencyResults, name)
      ? (this.dependencyResults[name] as T)
      : undefined;
  }
}

const NEVER_ABORTED: AbortSignal = new AbortController().signal;

/** @internal The engine's step event, as JSON. */
export interface RawStepEvent {
  event_id: number;
  task_uuid: string;
  step_uuid: string;
  step_name: string;
  namespace: string;
  task_name: string;
  task_version: string;
  handler: { callable: string; method?: string; resolver?: string | null; initialization?: unknown };
  task_context: unknown;
  dependency_results: Record<string, JsonValue>;
  attempt: number;
  max_attempts: number;
  correlation_id: string;
  deadline: string | null;
  /** `{ batch_id, start_cursor, end_cursor, batch_size, is_no_op, batch_config }` of a batch worker instance. */
  batch?: (Record<string, unknown> & { batch_config?: unknown }) | null;
  /** `{ cursor, items_done, accumulated, attempt, recorded_at }` of an earlier attempt. */
  checkpoint?: Record<string, unknown> | null;
  trace_context?: string | null;
}

/** @internal Builds the context of a step event. */
export function contextFromEvent(e: RawStepEvent, signal: () => AbortSignal, checkpointSink?: CheckpointSink): StepContext {
  const init = e.handler.initialization;
  const batch = toStepBatch(e.batch);
  const batchConfig = e.batch?.batch_config;
  return new StepContext({
    taskUuid: e.task_uuid,
    stepUuid: e.step_uuid,
    stepName: e.step_name,
    namespace: e.namespace,
    taskName: e.task_name,
    taskVersion: e.task_version,
    correlationId: e.correlation_id,
    handler: { callable: e.handler.callable, method: e.handler.method ?? 'call', resolver: e.handler.resolver ?? null },
    input: (e.task_context ?? {}) as Record<string, unknown>,
    config: (init !== null && typeof init === 'object' ? init : {}) as Record<string, unknown>,
    dependencyResults: e.dependency_results,
    attempt: e.attempt,
    maxAttempts: e.max_attempts,
    deadline: e.deadline === null ? null : new Date(e.deadline),
    signal,
    batch:
      batch === null
        ? null
        : { ...batch, config: (batchConfig !== null && typeof batchConfig === 'object' ? batchConfig : {}) as Record<string, unknown> },
    checkpoint: toCheckpoint(e.checkpoint),
    checkpointSink,
    traceContext: e.trace_context ?? null,
  });
}
