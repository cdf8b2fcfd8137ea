/**
 * Plain records the engine returns (tasks, steps, transitions), converted from the core's JSON
 * at the edge: camelCase keys and `Date`s. User data (contexts, results) is never renamed.
 *
 * @module
 */

/** A JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** The 12 task states; the last four are terminal. */
export type TaskState =
  | 'pending'
  | 'initializing'
  | 'enqueuing_steps'
  | 'steps_in_process'
  | 'evaluating_results'
  | 'waiting_for_dependencies'
  | 'waiting_for_retry'
  | 'blocked_by_failures'
  | 'complete'
  | 'error'
  | 'cancelled'
  | 'resolved_manually';

/** Task states after which nothing changes. */
export const TERMINAL_TASK_STATES: readonly TaskState[] = ['complete', 'error', 'cancelled', 'resolved_manually'];

/** Step states. Only `complete` and `resolved_manually` satisfy a dependency. */
export type StepState =
  | 'pending'
  | 'enqueued'
  | 'in_progress'
  | 'enqueued_for_orchestration'
  | 'waiting_for_retry'
  | 'complete'
  | 'error'
  | 'cancelled'
  | 'resolved_manually';

/** A task row. */
export interface TaskSummary {
  readonly uuid: string;
  readonly namespace: string;
  readonly name: string;
  readonly version: string;
  readonly state: TaskState;
  /** The task's input. */
  readonly context: JsonValue;
  readonly initiator: string | null;
  readonly sourceSystem: string | null;
  readonly reason: string | null;
  readonly tags: readonly string[];
  readonly priority: number;
  readonly correlationId: string;
  readonly idempotencyKey: string | null;
  readonly totalSteps: number;
  readonly completedSteps: number;
  /** Steps enqueued, in progress or waiting for a retry. */
  readonly activeSteps: number;
  readonly failedSteps: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly completedAt: Date | null;
}

/** The last failure of a step, as stored. */
export interface StepError {
  readonly message: string;
  readonly errorType: string;
  readonly retryable: boolean;
  /** The attempt that failed (1-based). */
  readonly attempt: number | null;
  /** The delay the handler asked for, in seconds. */
  readonly retryAfterSeconds: number | null;
  readonly backtrace: string | null;
  readonly metadata: JsonValue | null;
}

/** A step of a task. */
export interface Step {
  readonly uuid: string;
  readonly name: string;
  readonly queue: string;
  readonly state: StepState;
  readonly attempts: number;
  readonly maxAttempts: number;
  readonly retryable: boolean;
  /** The handler's result once complete. */
  readonly results: JsonValue | null;
  readonly lastError: StepError | null;
  readonly nextRetryAt: Date | null;
  readonly createdAt: Date;
  readonly firstAttemptedAt: Date | null;
  readonly lastAttemptedAt: Date | null;
  readonly completedAt: Date | null;
  /** Names of the steps this one depends on. */
  readonly dependencies: readonly string[];
  /**
   * The decision or batchable step that created this step at run time, or `null` for a step
   * created with the task.
   */
  readonly createdBy: string | null;
  /** The cursor of a batch worker instance (`process_batch_001`…), or `null`. */
  readonly batch: StepBatch | null;
  /** The last checkpoint a batch worker recorded, or `null`. */
  readonly checkpoint: Checkpoint | null;
}

/**
 * One batch of a batchable step's `create_batches` outcome: which items a worker instance
 * processes. Cursors are any JSON value (usually integer offsets, sometimes keys or tokens).
 */
export interface BatchCursor {
  /** `"001"`, `"002"`, …: the suffix of the worker instance's name. */
  readonly batchId: string;
  /** Where the batch starts (inclusive, by convention). */
  readonly startCursor: JsonValue;
  /** Where the batch ends (exclusive, by convention). */
  readonly endCursor: JsonValue;
  /** How many items the batch holds. */
  readonly batchSize: number;
}

/** The cursor of a batch worker instance, as stored with the step. */
export interface StepBatch extends BatchCursor {
  /**
   * `true` for the single placeholder instance a `no_batches` outcome creates (cursor 0..0,
   * batch id `"000"`): its handler should return at once.
   */
  readonly isNoOp: boolean;
}

/** Progress a batch worker recorded with `ctx.batch.checkpoint(…)`. */
export interface Checkpoint {
  /** Where to resume: the first item not yet done. */
  readonly cursor: JsonValue;
  /** Items done so far in this batch. */
  readonly itemsDone: number;
  /** Whatever the worker carries between checkpoints (a running total…), or `null`. */
  readonly accumulated: JsonValue | null;
  /** The attempt that recorded it (1-based). */
  readonly attempt: number;
  readonly recordedAt: Date;
}

/** A recorded state transition (audit row). */
export interface Transition {
  /** The step's name, or `null` for a task transition. */
  readonly stepName: string | null;
  readonly fromState: string | null;
  readonly toState: string;
  readonly event: string;
  readonly metadata: JsonValue;
  readonly mostRecent: boolean;
  readonly createdAt: Date;
}

/** A template that was registered. */
export interface RegisteredTemplate {
  readonly namespace: string;
  readonly name: string;
  readonly version: string;
  /** The stored template version's id. */
  readonly id: number;
  /** The queues its steps are dispatched to (a worker listens on these). */
  readonly queues: readonly string[];
  /** Non-fatal findings such as a misspelled field. */
  readonly warnings: readonly string[];
}

/** What {@link Worker.stop} reports. */
export interface ShutdownReport {
  /** Claimed but never started: given back to their queue. */
  readonly released: number;
  /** Still running at the deadline: made visible to other workers. */
  readonly abandoned: number;
}

type Raw = Record<string, unknown>;

function date(v: unknown): Date {
  return new Date(String(v));
}

function optDate(v: unknown): Date | null {
  return v === null || v === undefined ? null : new Date(String(v));
}

function optStr(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function optNum(v: unknown): number | null {
  return typeof v === 'number' ? v : null;
}

/** @internal */
export function toTaskSummary(r: Raw): TaskSummary {
  return {
    uuid: String(r.task_uuid),
    namespace: String(r.namespace),
    name: String(r.name),
    version: String(r.version),
    state: r.state as TaskState,
    context: (r.context ?? null) as JsonValue,
    initiator: optStr(r.initiator),
    sourceSystem: optStr(r.source_system),
    reason: optStr(r.reason),
    tags: (r.tags as string[] | undefined) ?? [],
    priority: Number(r.priority),
    correlationId: String(r.correlation_id),
    idempotencyKey: optStr(r.idempotency_key),
    totalSteps: Number(r.total_steps),
    completedSteps: Number(r.completed_steps),
    activeSteps: Number(r.active_steps),
    failedSteps: Number(r.failed_steps),
    createdAt: date(r.created_at),
    updatedAt: date(r.updated_at),
    completedAt: optDate(r.completed_at),
  };
}

/** @internal */
export function toStepError(v: unknown): StepError | null {
  if (v === null || typeof v !== 'object') return null;
  const r = v as Raw;
  return {
    message: String(r.message ?? ''),
    errorType: String(r.error_type ?? ''),
    retryable: Boolean(r.retryable),
    attempt: optNum(r.attempt),
    retryAfterSeconds: optNum(r.retry_after_seconds),
    backtrace: optStr(r.backtrace),
    metadata: (r.metadata ?? null) as JsonValue | null,
  };
}

/** @internal The engine's `batch` JSON of a step or step event, in camelCase. */
export function toStepBatch(v: unknown): StepBatch | null {
  if (v === null || typeof v !== 'object') return null;
  const r = v as Raw;
  return {
    batchId: String(r.batch_id),
    startCursor: (r.start_cursor ?? null) as JsonValue,
    endCursor: (r.end_cursor ?? null) as JsonValue,
    batchSize: Number(r.batch_size ?? 0),
    isNoOp: r.is_no_op === true,
  };
}

/** @internal The engine's `checkpoint` JSON of a step or step event, in camelCase. */
export function toCheckpoint(v: unknown): Checkpoint | null {
  if (v === null || typeof v !== 'object') return null;
  const r = v as Raw;
  return {
    cursor: (r.cursor ?? null) as JsonValue,
    itemsDone: Number(r.items_done ?? 0),
    accumulated: (r.accumulated ?? null) as JsonValue | null,
    attempt: Number(r.attempt),
    recordedAt: date(r.recorded_at),
  };
}

/** @internal */
export function toStep(r: Raw): Step {
  return {
    uuid: String(r.step_uuid),
    name: String(r.name),
    queue: String(r.queue),
    state: r.state as StepState,
    attempts: Number(r.attempts),
    maxAttempts: Number(r.max_attempts),
    retryable: Boolean(r.retryable),
    results: (r.results ?? null) as JsonValue | null,
    lastError: toStepError(r.last_error),
    nextRetryAt: optDate(r.next_retry_at),
    createdAt: date(r.created_at),
    firstAttemptedAt: optDate(r.first_attempted_at),
    lastAttemptedAt: optDate(r.last_attempted_at),
    completedAt: optDate(r.completed_at),
    dependencies: (r.dependencies as string[] | undefined) ?? [],
    createdBy: optStr(r.created_by),
    batch: toStepBatch(r.batch),
    checkpoint: toCheckpoint(r.checkpoint),
  };
}

/** @internal */
export function toTransition(r: Raw): Transition {
  return {
    stepName: optStr(r.step_name),
    fromState: optStr(r.from_state),
    toState: String(r.to_state),
    event: String(r.event),
    metadata: (r.metadata ?? null) as JsonValue,
    mostRecent: Boolean(r.most_recent),
    createdAt: date(r.created_at),
  };
}
