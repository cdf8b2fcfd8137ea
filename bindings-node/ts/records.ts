/**
 * Plain records the engine returns (tasks, steps, transitions, dead-letter queue entries,
 * workers), converted from the core's JSON at the edge: camelCase keys and `Date`s. User data
 * (contexts, results, metadata) is never renamed.
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
  /** Attempt numbers used so far (they keep growing across an operator's reset). */
  readonly attempts: number;
  readonly maxAttempts: number;
  /**
   * Attempts that do not count against `maxAttempts`: released claims, lost leases, and every
   * attempt before an operator's reset.
   */
  readonly freeAttempts: number;
  readonly retryable: boolean;
  /** The handler's result once complete (or the operator's, for a step completed by hand). */
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

/** A registered template version ({@link Client.listTemplates}, {@link Client.getTemplate}). */
export interface TemplateInfo {
  readonly namespace: string;
  readonly name: string;
  readonly version: string;
  readonly description: string | null;
  /** Step names, in template order. */
  readonly steps: readonly string[];
  /** The queues its steps are dispatched to. */
  readonly queues: readonly string[];
  /** The file it was registered from, when it came from one. */
  readonly sourcePath: string | null;
  readonly registeredAt: Date;
  /** The whole template (after the environment merge), as stored; its keys are not renamed. */
  readonly definition: JsonValue;
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
    freeAttempts: Number(r.free_attempts ?? 0),
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

// --- recovering failed work ---------------------------------------------------------------------

/**
 * A step as an operator sees it ({@link Client.getStep}, {@link Client.listSteps}, and every
 * operator action): the step row, every failed attempt's error, and what it waits for.
 */
export interface StepDetail extends Step {
  /** The error of every failed attempt, oldest first (`lastError` is the newest). */
  readonly errors: readonly StepError[];
  /** Whether every dependency is `complete` or `resolved_manually`. */
  readonly dependenciesSatisfied: boolean;
  /**
   * Whether the engine will run it again by itself: it waits for a retry, or it is still open
   * with attempts left.
   */
  readonly retryPossible: boolean;
  /** The step's state transitions (audit rows, with `by` and `reason` for operator actions), oldest first. */
  readonly transitions: readonly Transition[];
}

/** Why a task is in the dead-letter queue. */
export type DlqReason = 'max_retries_exceeded' | 'permanent_failure' | 'staleness_timeout' | 'worker_unavailable' | 'manual';

/** The five DLQ reasons. */
export const DLQ_REASONS: readonly DlqReason[] = [
  'max_retries_exceeded',
  'permanent_failure',
  'staleness_timeout',
  'worker_unavailable',
  'manual',
];

/** Where the investigation of a DLQ entry stands; `pending` and `investigating` are open. */
export type DlqStatus = 'pending' | 'investigating' | 'manually_resolved' | 'permanently_failed' | 'cancelled';

/** The five DLQ statuses. */
export const DLQ_STATUSES: readonly DlqStatus[] = ['pending', 'investigating', 'manually_resolved', 'permanently_failed', 'cancelled'];

/** One note of an investigation. */
export interface DlqNote {
  /** Who wrote it (`tasker` for the engine's own notes). */
  readonly by: string;
  readonly text: string;
  readonly at: Date;
  /** The status the entry moved to with this note, or `null` if it did not move. */
  readonly status: DlqStatus | null;
}

/** A step as it was when its task entered the DLQ. */
export interface DlqSnapshotStep {
  readonly name: string;
  readonly state: StepState;
  readonly attempts: number;
  readonly maxAttempts: number;
  readonly lastError: StepError | null;
  /** The decision or batchable step that created it, or `null`. */
  readonly createdBy: string | null;
}

/** What a task looked like when it entered the DLQ. */
export interface DlqSnapshot {
  readonly task: {
    readonly uuid: string;
    readonly state: TaskState;
    /** The task's input. */
    readonly context: JsonValue;
    readonly priority: number;
    readonly correlationId: string;
    readonly initiator: string | null;
    readonly totalSteps: number;
    readonly completedSteps: number;
    readonly failedSteps: number;
    readonly createdAt: Date | null;
    readonly updatedAt: Date | null;
  };
  /** The template's identity. */
  readonly template: { readonly namespace: string; readonly name: string; readonly version: string };
  /** Every step, in template order. */
  readonly steps: readonly DlqSnapshotStep[];
}

/** A dead-letter queue entry: a task that needs a human. */
export interface DlqEntry {
  readonly entryUuid: string;
  readonly taskUuid: string;
  readonly reason: DlqReason;
  /** The task's state when it entered. */
  readonly taskState: TaskState;
  /** The task, its steps and its template when it entered. */
  readonly snapshot: DlqSnapshot;
  readonly status: DlqStatus;
  /** The investigation's notes, oldest first. */
  readonly notes: readonly DlqNote[];
  /** Who closed it, once closed. */
  readonly resolvedBy: string | null;
  readonly resolvedAt: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** The task's priority now (part of the investigation queue's score). */
  readonly taskPriority: number;
}

/** An open DLQ entry in the investigation queue ({@link Client.dlqQueue}). */
export interface QueuedDlqEntry extends DlqEntry {
  /**
   * Highest first: the reason's weight (permanent_failure 40, max_retries_exceeded 30,
   * worker_unavailable 25, staleness_timeout 20, manual 10), plus a point per hour waited, plus
   * the task's priority.
   */
  readonly score: number;
}

/** How many DLQ entries have one reason and one status. */
export interface DlqCount {
  readonly reason: DlqReason;
  readonly status: DlqStatus;
  readonly count: number;
}

/** DLQ entries counted ({@link Client.dlqStats}). */
export interface DlqStats {
  readonly total: number;
  /** Entries `pending` or `investigating`. */
  readonly open: number;
  readonly byReason: Readonly<Partial<Record<DlqReason, number>>>;
  readonly byStatus: Readonly<Partial<Record<DlqStatus, number>>>;
  /** Every (reason, status) pair that has entries. */
  readonly counts: readonly DlqCount[];
}

/** How close an unfinished task is to its staleness threshold. */
export type Health = 'healthy' | 'warning' | 'stale';

/** One unfinished task of the staleness report ({@link Client.stalenessReport}). */
export interface TaskHealth {
  readonly taskUuid: string;
  readonly state: TaskState;
  /** `healthy` under 80 % of its threshold, `warning` from 80 %, `stale` past it. */
  readonly health: Health;
  /** Time since its last progress. */
  readonly idleMs: number;
  /** The threshold for its state (the template's `lifecycle:` block, else the default). */
  readonly thresholdMs: number;
  /** Time since creation. */
  readonly ageMs: number;
  /** The task's total duration limit. */
  readonly maxDurationMs: number;
}

/** A worker process in the registry ({@link Client.listWorkers}). */
export interface WorkerInfo {
  /** This run of the worker (a new one each start). */
  readonly registrationUuid: string;
  /** The worker's id (`host:pid` unless set), as recorded in audit rows. */
  readonly workerId: string;
  readonly host: string;
  readonly pid: number;
  /** `typescript` for this package's workers; `python`, `ruby`, `rust` for the others. */
  readonly language: string;
  readonly queues: readonly string[];
  readonly concurrency: number;
  /** Steps it held at its last heartbeat. */
  readonly inFlight: number;
  readonly startedAt: Date;
  readonly lastHeartbeatAt: Date;
  /** When it stopped gracefully, or `null`. */
  readonly stoppedAt: Date | null;
  /** Heartbeating and not stopped. */
  readonly live: boolean;
}

function obj(v: unknown): Raw {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Raw) : {};
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** @internal */
export function toStepDetail(r: Raw): StepDetail {
  return {
    ...toStep(r),
    errors: list(r.errors)
      .map(toStepError)
      .filter((e): e is StepError => e !== null),
    dependenciesSatisfied: Boolean(r.dependencies_satisfied),
    retryPossible: Boolean(r.retry_possible),
    transitions: list(r.transitions).map((t) => toTransition(obj(t))),
  };
}

function toDlqSnapshot(v: unknown): DlqSnapshot {
  const s = obj(v);
  const task = obj(s.task);
  const template = obj(s.template);
  return {
    task: {
      uuid: String(task.task_uuid ?? ''),
      state: task.state as TaskState,
      context: (task.context ?? null) as JsonValue,
      priority: Number(task.priority ?? 0),
      correlationId: String(task.correlation_id ?? ''),
      initiator: optStr(task.initiator),
      totalSteps: Number(task.total_steps ?? 0),
      completedSteps: Number(task.completed_steps ?? 0),
      failedSteps: Number(task.failed_steps ?? 0),
      createdAt: optDate(task.created_at),
      updatedAt: optDate(task.updated_at),
    },
    template: { namespace: String(template.namespace ?? ''), name: String(template.name ?? ''), version: String(template.version ?? '') },
    steps: list(s.steps).map((x) => {
      const step = obj(x);
      return {
        name: String(step.name),
        state: step.state as StepState,
        attempts: Number(step.attempts ?? 0),
        maxAttempts: Number(step.max_attempts ?? 0),
        lastError: toStepError(step.last_error),
        createdBy: optStr(step.created_by),
      };
    }),
  };
}

/** @internal */
export function toDlqEntry(r: Raw): DlqEntry {
  return {
    entryUuid: String(r.entry_uuid),
    taskUuid: String(r.task_uuid),
    reason: r.reason as DlqReason,
    taskState: r.task_state as TaskState,
    snapshot: toDlqSnapshot(r.snapshot),
    status: r.status as DlqStatus,
    notes: list(r.notes).map((n) => {
      const note = obj(n);
      return { by: String(note.by), text: String(note.text), at: date(note.at), status: optStr(note.status) as DlqStatus | null };
    }),
    resolvedBy: optStr(r.resolved_by),
    resolvedAt: optDate(r.resolved_at),
    createdAt: date(r.created_at),
    updatedAt: date(r.updated_at),
    taskPriority: Number(r.task_priority ?? 0),
  };
}

/** @internal */
export function toQueuedDlqEntry(r: Raw): QueuedDlqEntry {
  return { ...toDlqEntry(r), score: Number(r.score) };
}

/** @internal */
export function toDlqStats(r: Raw): DlqStats {
  return {
    total: Number(r.total),
    open: Number(r.open),
    byReason: { ...obj(r.by_reason) } as Partial<Record<DlqReason, number>>,
    byStatus: { ...obj(r.by_status) } as Partial<Record<DlqStatus, number>>,
    counts: list(r.counts).map((c) => {
      const count = obj(c);
      return { reason: count.reason as DlqReason, status: count.status as DlqStatus, count: Number(count.count) };
    }),
  };
}

/** @internal */
export function toTaskHealth(r: Raw): TaskHealth {
  return {
    taskUuid: String(r.task_uuid),
    state: r.state as TaskState,
    health: r.health as Health,
    idleMs: Number(r.idle_ms),
    thresholdMs: Number(r.threshold_ms),
    ageMs: Number(r.age_ms),
    maxDurationMs: Number(r.max_duration_ms),
  };
}

/** @internal */
export function toWorkerInfo(r: Raw): WorkerInfo {
  return {
    registrationUuid: String(r.registration_uuid),
    workerId: String(r.worker_id),
    host: String(r.host),
    pid: Number(r.pid),
    language: String(r.language),
    queues: list(r.queues).map(String),
    concurrency: Number(r.concurrency),
    inFlight: Number(r.in_flight),
    startedAt: date(r.started_at),
    lastHeartbeatAt: date(r.last_heartbeat_at),
    stoppedAt: optDate(r.stopped_at),
    live: Boolean(r.live),
  };
}

/** @internal */
export function toTemplateInfo(r: Raw): TemplateInfo {
  return {
    namespace: String(r.namespace),
    name: String(r.name),
    version: String(r.version),
    description: r.description == null ? null : String(r.description),
    steps: list(r.steps).map(String),
    queues: list(r.queues).map(String),
    sourcePath: r.source_path == null ? null : String(r.source_path),
    registeredAt: date(r.registered_at),
    definition: (r.definition ?? null) as JsonValue,
  };
}
