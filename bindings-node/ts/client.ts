/**
 * The client API: connect, register templates, create / get / list / cancel / wait for tasks,
 * and recover failed work (operator actions on steps and tasks, the dead-letter queue, the
 * staleness report, the registry of workers).
 *
 * @module
 */

import { NativeClient } from '../native/index.js';
import { InvalidArgumentError, native, nativeSync } from './errors.js';
import { describe, findUnserializable, stringifyStrict } from './util.js';
import { flushLogs, startLogForwarding } from './logging.js';
import {
  checkPatterns,
  type EventDeadLetter,
  type EventGroupStatus,
  EventSubscription,
  FastSubscription,
  subscriptionJson,
  type SubscriptionOptions,
  toEventDeadLetter,
  toEventGroupStatus,
} from './events.js';
import {
  DLQ_REASONS,
  DLQ_STATUSES,
  type DlqEntry,
  type DlqReason,
  type DlqStats,
  type DlqStatus,
  type JsonValue,
  type QueuedDlqEntry,
  type RegisteredTemplate,
  type Step,
  type StepDetail,
  type TaskHealth,
  type TaskState,
  type TaskSummary,
  type TemplateInfo,
  type Transition,
  TERMINAL_TASK_STATES,
  toDlqEntry,
  toDlqStats,
  toQueuedDlqEntry,
  toStep,
  toStepDetail,
  toTaskHealth,
  toTaskSummary,
  toTemplateInfo,
  toTransition,
  toWorkerInfo,
  type WorkerInfo,
} from './records.js';

/**
 * Options of {@link connect}. Each one given here wins over the configuration (files and
 * `TASKER_<SECTION>__<KEY>` variables, see docs/configuration.md); each one absent comes from it.
 */
export interface ConnectOptions {
  /**
   * `sqlite://PATH`, a plain file path, or `postgres://…`. When absent, the same default as the
   * CLI: `TASKER_DATABASE_URL`, else `DATABASE_URL`, else `database.url`, else
   * `sqlite://./tasker.db`.
   */
  databaseUrl?: string;
  /** PostgreSQL pool size, 2 to 1000 (default `database.max_connections`, 10). */
  maxConnections?: number;
}

/** What {@link Client.createTask} needs. */
export interface CreateTaskRequest {
  /** The template's `namespace_name`. */
  namespace: string;
  /** The template's `name`. */
  name: string;
  /** A registered version; the highest one when absent. */
  version?: string;
  /** The task's input, validated against the template's `input_schema`. */
  context: unknown;
  /** Who asked for the task (a user, a service). Optional, as in every language. */
  initiator?: string;
  /** The system the request came from. */
  sourceSystem?: string;
  /** Why the task exists. */
  reason?: string;
  tags?: string[];
  /**
   * Higher runs first: each point is worth a second of waiting on the queue (so a low priority
   * is never starved). Default 0.
   */
  priority?: number;
  /** Creating twice with the same key returns the first task (`created === false`). */
  idempotencyKey?: string;
  /**
   * Identify the task by a hash of namespace, name, version and context instead: creating the
   * same request twice returns the first task. Not combinable with `idempotencyKey`.
   */
  strictIdentity?: boolean;
  /** A W3C `traceparent` (e.g. from `propagation.inject`): the task joins that trace. */
  traceparent?: string;
}

/** What {@link Client.metrics} returns: every series of the engine's metrics. */
export interface MetricsSnapshot {
  samples: { name: string; labels: [string, string][]; value: Record<string, unknown> }[];
  start: { secs_since_epoch: number; nanos_since_epoch: number };
  taken: { secs_since_epoch: number; nanos_since_epoch: number };
}

/** What {@link Client.health} returns. */
export interface HealthReport {
  live: boolean;
  ready: boolean;
  checks: { name: string; ok: boolean; detail: string }[];
}

/** Filter of {@link Client.listTasks}. */
export interface ListTasksFilter {
  namespace?: string;
  name?: string;
  state?: TaskState;
  /** At most this many, newest first (default 100). */
  limit?: number;
}

/** Options of {@link Task.wait}. */
export interface WaitOptions {
  /** Give up after this many seconds (default 60) with a `TimeoutError`; seconds, as in every language. */
  timeout?: number;
  /**
   * Give up after this many milliseconds.
   *
   * @deprecated Use `timeout` (seconds, the unit every language uses); removed in the next release.
   */
  timeoutMs?: number;
}

/**
 * Who performs an operator action and why; both are recorded in the audit rows the action
 * writes (and in the task's dead-letter queue entry).
 */
export interface OperatorAction {
  /** Who acts (a user name, a service). */
  by: string;
  /** Why. */
  reason: string;
}

/** Options of {@link Client.completeStepManually}. */
export interface CompleteStepOptions extends OperatorAction {
  /** The step's result (any JSON value), which the steps depending on it receive. */
  result: unknown;
  /** Extra JSON recorded in the audit row (a ticket number…); default `null`. */
  metadata?: unknown;
}

/** Filter of {@link Client.listDlq}. */
export interface ListDlqFilter {
  status?: DlqStatus;
  reason?: DlqReason;
  taskUuid?: string;
  /** Only `pending` and `investigating` entries. */
  openOnly?: boolean;
  /** At most this many, newest first (default 100). */
  limit?: number;
  /** Skip this many first (pagination). */
  offset?: number;
}

/** Options of {@link Client.updateDlqEntry}. */
export interface UpdateDlqEntryOptions {
  /**
   * Move the entry to this status; `manually_resolved`, `permanently_failed` and `cancelled`
   * close it. Without one, only the note is added.
   */
  status?: DlqStatus;
  /** The investigation note. */
  note: string;
  /** Who writes it. */
  by: string;
}

/** Options of {@link Client.addToDlq}. */
export interface AddToDlqOptions {
  /** Who puts the task there. */
  by: string;
  /** Why (the entry's first note). */
  note: string;
}

/** Options of {@link Client.eventDeadLetters}. */
export interface EventDeadLettersOptions {
  /** Only this subscriber group's (default: every group's). */
  group?: string;
  /** At most this many, newest first (default 100). */
  limit?: number;
}

/** Options of {@link Client.stalenessReport}. */
export interface StalenessReportOptions {
  /**
   * Only tasks whose idle time (or age) reached this fraction of their threshold: `0` (the
   * default) reports every unfinished task, `0.8` the ones in `warning` or `stale`.
   */
  minRatio?: number;
  /** At most this many, most overdue first (default 100). */
  limit?: number;
}

const DEFAULT_WAIT_SECONDS = 60;
const DEFAULT_DLQ_QUEUE_LIMIT = 20;
const DEFAULT_STALENESS_LIMIT = 100;
const MAX_COUNT = 2 ** 32 - 1;

/** A task. Returned by {@link Client.createTask}, {@link Client.listTasks} and {@link Client.cancelTask}. */
export class Task implements TaskSummary {
  readonly uuid!: string;
  readonly namespace!: string;
  readonly name!: string;
  readonly version!: string;
  readonly state!: TaskState;
  readonly context!: JsonValue;
  readonly initiator!: string | null;
  readonly sourceSystem!: string | null;
  readonly reason!: string | null;
  readonly tags!: readonly string[];
  readonly priority!: number;
  readonly correlationId!: string;
  readonly idempotencyKey!: string | null;
  readonly totalSteps!: number;
  readonly completedSteps!: number;
  readonly activeSteps!: number;
  readonly failedSteps!: number;
  readonly createdAt!: Date;
  readonly updatedAt!: Date;
  readonly completedAt!: Date | null;
  /** `false` when `createTask` matched an existing task by idempotency key. */
  readonly created: boolean;
  readonly #client: Client;

  /** @internal */
  constructor(client: Client, summary: TaskSummary, created = true) {
    Object.assign(this, summary);
    this.created = created;
    this.#client = client;
  }

  /** Whether the task reached `complete`, `error`, `cancelled` or `resolved_manually`. */
  get isTerminal(): boolean {
    return TERMINAL_TASK_STATES.includes(this.state);
  }

  /**
   * Waits until the task reaches a terminal state and returns it with its steps.
   *
   * @throws TimeoutError when `timeout` (seconds) passes first
   */
  wait(options: WaitOptions = {}): Promise<TaskDetail> {
    return this.#client.waitForTask(this.uuid, options);
  }

  /** Reads the task again, with its steps. */
  refresh(): Promise<TaskDetail> {
    return this.#client.getTask(this.uuid);
  }

  /** Cancels the task (see {@link Client.cancelTask}). */
  cancel(): Promise<Task> {
    return this.#client.cancelTask(this.uuid);
  }
}

/** A task with its steps and state transitions. */
export class TaskDetail extends Task {
  /** The steps, in template order. */
  readonly steps: readonly Step[];
  /** The task's state transitions, oldest first. */
  readonly taskTransitions: readonly Transition[];
  /** Every step's state transitions, oldest first. */
  readonly stepTransitions: readonly Transition[];

  /** @internal */
  constructor(client: Client, raw: Record<string, unknown>) {
    super(client, toTaskSummary(raw.task as Record<string, unknown>));
    this.steps = (raw.steps as Record<string, unknown>[]).map(toStep);
    this.taskTransitions = (raw.task_transitions as Record<string, unknown>[]).map(toTransition);
    this.stepTransitions = (raw.step_transitions as Record<string, unknown>[]).map(toTransition);
  }

  /** The step called `name`, if the template has one. */
  step(name: string): Step | undefined {
    return this.steps.find((s) => s.name === name);
  }

  /** The result of step `name` (`null` until it completes). */
  result<T = JsonValue>(name: string): T | null {
    return (this.step(name)?.results ?? null) as T | null;
  }
}

let warnedTimeoutMs = false;

/** The wait's timeout in milliseconds (what the native layer takes), from `timeout` in seconds or the deprecated `timeoutMs`. */
function waitTimeoutMs(options: WaitOptions): number {
  requireOptions('options', options);
  if (options.timeout !== undefined && options.timeoutMs !== undefined) {
    throw new InvalidArgumentError('timeout', 'give either timeout (seconds) or the deprecated timeoutMs, not both');
  }
  if (options.timeoutMs !== undefined) {
    if (!warnedTimeoutMs) {
      warnedTimeoutMs = true;
      process.emitWarning('WaitOptions.timeoutMs is deprecated; use timeout (seconds, the unit every language uses)', 'DeprecationWarning');
    }
    requireNumber('timeoutMs', options.timeoutMs, false, false);
    if (options.timeoutMs < 0) throw new InvalidArgumentError('timeoutMs', `must not be negative, got ${options.timeoutMs}`);
    return options.timeoutMs;
  }
  const seconds = options.timeout ?? DEFAULT_WAIT_SECONDS;
  requireNumber('timeout', seconds, false, false);
  if (seconds < 0) throw new InvalidArgumentError('timeout', `must not be negative, got ${seconds}`);
  return seconds * 1000;
}

function requireString(path: string, value: unknown, optional = false): void {
  if (value === undefined && optional) return;
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidArgumentError(path, `expected a non-empty string, got ${describe(value)}`);
  }
}

function requireNumber(path: string, value: unknown, integer: boolean, optional = true): void {
  if (value === undefined && optional) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new InvalidArgumentError(path, `expected ${integer ? 'an integer' : 'a finite number'}, got ${describe(value)}`);
  }
}

function requireOptions(path: string, value: unknown): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidArgumentError(path, `expected an object, got ${describe(value)}`);
  }
}

function requireOperator(options: OperatorAction): void {
  requireOptions('options', options);
  requireString('by', options.by);
  requireString('reason', options.reason);
}

function requireOneOf(path: string, value: unknown, allowed: readonly string[]): void {
  if (value === undefined) return;
  if (typeof value !== 'string' || !allowed.includes(value)) {
    throw new InvalidArgumentError(path, `expected one of ${allowed.join(', ')}, got ${describe(value)}`);
  }
}

function requireCount(path: string, value: unknown): number {
  requireNumber(path, value, true, false);
  const n = value as number;
  if (n < 1 || n > MAX_COUNT) throw new InvalidArgumentError(path, `must be between 1 and ${MAX_COUNT}, got ${n}`);
  return n;
}

/** JSON text of a value an operator supplies, or an `InvalidArgumentError` naming what is wrong. */
function jsonArgument(path: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = stringifyStrict(value);
  } catch (e) {
    const bad = findUnserializable(value, path);
    throw new InvalidArgumentError(bad?.path ?? path, `is not JSON-serializable: ${bad?.reason ?? String(e)}`);
  }
  if (text === undefined) throw new InvalidArgumentError(path, `is not JSON-serializable: ${describe(value)}`);
  return text;
}

/**
 * A connection to the engine's database. Create one with {@link connect}; it connects in the
 * background and every method waits for that.
 */
export class Client {
  readonly #native: Promise<NativeClient>;

  /** @internal Use {@link connect}. */
  constructor(nativeClient: Promise<NativeClient>) {
    this.#native = nativeClient;
    // Connection errors surface from the first call (or `ready()`), not as unhandled rejections.
    nativeClient.catch(() => undefined);
  }

  /** @internal The native client, once connected. */
  nativeClient(): Promise<NativeClient> {
    return native(() => this.#native);
  }

  /**
   * Resolves once connected (migrations applied).
   *
   * @throws DatabaseError when the database cannot be reached or migrated
   */
  async ready(): Promise<this> {
    await this.nativeClient();
    return this;
  }

  /** The database in use, without credentials. */
  async database(): Promise<string> {
    return (await this.nativeClient()).database;
  }

  /** The engine's metrics in the Prometheus text format (serve it at `/metrics`). */
  async prometheusMetrics(): Promise<string> {
    const c = await this.nativeClient();
    return native(() => c.prometheusMetrics());
  }

  /** The engine's metrics: `{ samples: [{ name, labels, value }], start, taken }`. */
  async metrics(): Promise<MetricsSnapshot> {
    const c = await this.nativeClient();
    return JSON.parse(await native(() => c.metrics())) as MetricsSnapshot;
  }

  /**
   * Liveness and readiness: the database answers within `telemetry.health_probe_timeout_ms`
   * (2 s by default), the migrations ran, the circuit breaker around PostgreSQL is closed, and
   * each worker this process started on this client is alive (a `worker <id>` check each,
   * failed with the reason when one of its loops died).
   */
  async health(): Promise<HealthReport> {
    const c = await this.nativeClient();
    return JSON.parse(await native(() => c.health())) as HealthReport;
  }

  /** `"sqlite"` or `"postgres"`. */
  async backend(): Promise<'sqlite' | 'postgres'> {
    return (await this.nativeClient()).backend as 'sqlite' | 'postgres';
  }

  /** Every registered template version. */
  async listTemplates(): Promise<TemplateInfo[]> {
    const c = await this.nativeClient();
    return (JSON.parse(await native(() => c.listTemplates())) as Record<string, unknown>[]).map(toTemplateInfo);
  }

  /**
   * One registered template version; the highest one unless `version`.
   *
   * @throws TemplateNotFoundError when there is no such template (version)
   */
  async getTemplate(namespace: string, name: string, version?: string): Promise<TemplateInfo> {
    requireString('namespace', namespace);
    requireString('name', name);
    requireString('version', version, true);
    const c = await this.nativeClient();
    return toTemplateInfo(JSON.parse(await native(() => c.getTemplate(namespace, name, version))) as Record<string, unknown>);
  }

  /**
   * Loads, validates and registers every template in a YAML file or a directory. All or
   * nothing: unless every file is valid and none clashes with a version registered with other
   * content, nothing is stored.
   *
   * @throws TemplateError naming the file, step and field of each problem
   */
  async registerTemplates(path: string): Promise<RegisteredTemplate[]> {
    requireString('path', path);
    const c = await this.nativeClient();
    return JSON.parse(await native(() => c.registerTemplates(path))) as RegisteredTemplate[];
  }

  /**
   * Creates a task and enqueues its first steps.
   *
   * @throws ValidationError when the context fails the template's `input_schema` (`path` names
   *   the failing value)
   * @throws TemplateNotFoundError when no such template is registered
   * @throws InvalidArgumentError when a request field is malformed
   */
  async createTask(request: CreateTaskRequest): Promise<Task> {
    if (request === null || typeof request !== 'object') {
      throw new InvalidArgumentError('request', `expected an object, got ${describe(request)}`);
    }
    requireString('namespace', request.namespace);
    requireString('name', request.name);
    requireString('version', request.version, true);
    requireString('initiator', request.initiator, true);
    requireString('sourceSystem', request.sourceSystem, true);
    requireString('reason', request.reason, true);
    requireString('idempotencyKey', request.idempotencyKey, true);
    if (request.strictIdentity !== undefined && typeof request.strictIdentity !== 'boolean') {
      throw new InvalidArgumentError('strictIdentity', `expected a boolean, got ${describe(request.strictIdentity)}`);
    }
    requireString('traceparent', request.traceparent, true);
    requireNumber('priority', request.priority, true);
    if (request.priority !== undefined && Math.abs(request.priority) > 2 ** 31 - 1) {
      throw new InvalidArgumentError('priority', `must fit in 32 bits, got ${request.priority}`);
    }
    if (request.tags !== undefined) {
      if (!Array.isArray(request.tags)) throw new InvalidArgumentError('tags', `expected an array of strings, got ${describe(request.tags)}`);
      request.tags.forEach((t, i) => requireString(`tags[${i}]`, t));
    }
    if (request.context === undefined) {
      throw new InvalidArgumentError('context', 'is required (use {} for an empty context)');
    }
    const args = {
      namespace: request.namespace,
      name: request.name,
      version: request.version,
      context: request.context,
      initiator: request.initiator,
      source_system: request.sourceSystem,
      reason: request.reason,
      tags: request.tags,
      priority: request.priority,
      idempotency_key: request.idempotencyKey,
      strict_identity: request.strictIdentity,
      traceparent: request.traceparent,
    };
    let json: string;
    try {
      json = JSON.stringify(args);
    } catch (e) {
      const bad = findUnserializable(request.context, 'context');
      throw new InvalidArgumentError(bad?.path ?? 'context', `is not JSON-serializable: ${bad?.reason ?? String(e)}`);
    }
    const c = await this.nativeClient();
    const out = JSON.parse(await native(() => c.createTask(json))) as { task: Record<string, unknown>; created: boolean };
    return new Task(this, toTaskSummary(out.task), out.created);
  }

  /**
   * A task with its steps and transitions.
   *
   * @throws TaskNotFoundError when no task has this uuid
   */
  async getTask(taskUuid: string): Promise<TaskDetail> {
    requireString('taskUuid', taskUuid);
    const c = await this.nativeClient();
    return new TaskDetail(this, JSON.parse(await native(() => c.getTask(taskUuid))) as Record<string, unknown>);
  }

  /** Tasks, newest first. */
  async listTasks(filter: ListTasksFilter = {}): Promise<Task[]> {
    requireString('namespace', filter.namespace, true);
    requireString('name', filter.name, true);
    requireString('state', filter.state, true);
    requireNumber('limit', filter.limit, true);
    const c = await this.nativeClient();
    const rows = JSON.parse(await native(() => c.listTasks(JSON.stringify(filter)))) as Record<string, unknown>[];
    return rows.map((r) => new Task(this, toTaskSummary(r)));
  }

  /**
   * Cancels a task: pending, enqueued and waiting steps are cancelled now; results of steps
   * already running are ignored when they arrive.
   *
   * @throws IllegalTransitionError when the task already finished
   */
  async cancelTask(taskUuid: string): Promise<Task> {
    requireString('taskUuid', taskUuid);
    const c = await this.nativeClient();
    return new Task(this, toTaskSummary(JSON.parse(await native(() => c.cancelTask(taskUuid))) as Record<string, unknown>));
  }

  /**
   * Waits until a task reaches a terminal state, without blocking the event loop.
   *
   * @throws TimeoutError when `timeout` (seconds) passes first
   */
  async waitForTask(taskUuid: string, options: WaitOptions = {}): Promise<TaskDetail> {
    requireString('taskUuid', taskUuid);
    const timeoutMs = waitTimeoutMs(options);
    const c = await this.nativeClient();
    const raw = JSON.parse(await native(() => c.waitForTask(taskUuid, timeoutMs))) as Record<string, unknown>;
    return new TaskDetail(this, raw);
  }

  // --- recovering failed work -----------------------------------------------------------------
  //
  // Operator actions: `step` is a step's name or uuid. Each action is one transaction with its
  // audit row (`by`, `reason`); it refuses a state it does not apply to with an
  // InvalidStateError naming the state and what is allowed, and resolves to the step afterwards.

  /**
   * Sends an `error` (or stuck `waiting_for_retry` / `enqueued`) step back to `pending` with a
   * fresh retry budget; it is enqueued as soon as its dependencies allow, and a failed task
   * re-opens. Attempt numbers keep growing, so a late result of the old attempt is ignored.
   *
   * @throws InvalidStateError when the step is in another state (or the task finished otherwise than in error)
   * @throws StepNotFoundError / TaskNotFoundError
   */
  async resetStep(taskUuid: string, step: string, options: OperatorAction): Promise<StepDetail> {
    this.#checkStepAction(taskUuid, step, options);
    const c = await this.nativeClient();
    return toStepDetail(JSON.parse(await native(() => c.resetStep(taskUuid, step, options.by, options.reason))) as Record<string, unknown>);
  }

  /**
   * Marks a step `resolved_manually`: it satisfies its dependents, which run (without a result
   * from it); a failed task re-opens and can complete.
   *
   * @throws InvalidStateError when the step already finished
   * @throws StepNotFoundError / TaskNotFoundError
   */
  async resolveStepManually(taskUuid: string, step: string, options: OperatorAction): Promise<StepDetail> {
    this.#checkStepAction(taskUuid, step, options);
    const c = await this.nativeClient();
    return toStepDetail(
      JSON.parse(await native(() => c.resolveStepManually(taskUuid, step, options.by, options.reason))) as Record<string, unknown>,
    );
  }

  /**
   * Completes a step with the operator's `result`, which its dependents receive as the
   * dependency result (`metadata` goes into the audit row). A failed task re-opens.
   *
   * @throws InvalidStateError when the step already finished
   * @throws InvalidArgumentError when the result or metadata is not JSON or over the engine's limits
   * @throws StepNotFoundError / TaskNotFoundError
   */
  async completeStepManually(taskUuid: string, step: string, options: CompleteStepOptions): Promise<StepDetail> {
    this.#checkStepAction(taskUuid, step, options);
    if (options.result === undefined) {
      throw new InvalidArgumentError('result', 'is required (use null for no result)');
    }
    const result = jsonArgument('result', options.result);
    const metadata = jsonArgument('metadata', options.metadata ?? null);
    const c = await this.nativeClient();
    return toStepDetail(
      JSON.parse(await native(() => c.completeStepManually(taskUuid, step, result, metadata, options.by, options.reason))) as Record<
        string,
        unknown
      >,
    );
  }

  /**
   * Cancels a step that has not finished, and the pending steps below it. Cancelled steps
   * count as done: the task finishes as its other steps allow.
   *
   * @throws InvalidStateError when the step already finished
   * @throws StepNotFoundError / TaskNotFoundError
   */
  async cancelStep(taskUuid: string, step: string, options: OperatorAction): Promise<StepDetail> {
    this.#checkStepAction(taskUuid, step, options);
    const c = await this.nativeClient();
    return toStepDetail(JSON.parse(await native(() => c.cancelStep(taskUuid, step, options.by, options.reason))) as Record<string, unknown>);
  }

  /**
   * Resets every `error` step of an `error` task (as {@link resetStep}), in one transaction.
   *
   * @throws InvalidStateError when the task is not in `error`
   * @throws TaskNotFoundError
   */
  async retryTask(taskUuid: string, options: OperatorAction): Promise<Task> {
    requireString('taskUuid', taskUuid);
    requireOperator(options);
    const c = await this.nativeClient();
    return new Task(this, toTaskSummary(JSON.parse(await native(() => c.retryTask(taskUuid, options.by, options.reason))) as Record<string, unknown>));
  }

  /**
   * Closes a task by hand: `resolved_manually`, from `error` or any unfinished state. Its open
   * steps are cancelled and its open DLQ entry is closed (`manually_resolved`).
   *
   * @throws InvalidStateError when the task already finished otherwise than in error
   * @throws TaskNotFoundError
   */
  async resolveTask(taskUuid: string, options: OperatorAction): Promise<Task> {
    requireString('taskUuid', taskUuid);
    requireOperator(options);
    const c = await this.nativeClient();
    return new Task(
      this,
      toTaskSummary(JSON.parse(await native(() => c.resolveTask(taskUuid, options.by, options.reason))) as Record<string, unknown>),
    );
  }

  /**
   * A step (by name or uuid) with every attempt's error, whether its dependencies are satisfied
   * and whether a retry is still possible.
   *
   * @throws StepNotFoundError / TaskNotFoundError
   */
  async getStep(taskUuid: string, step: string): Promise<StepDetail> {
    requireString('taskUuid', taskUuid);
    requireString('step', step);
    const c = await this.nativeClient();
    return toStepDetail(JSON.parse(await native(() => c.getStep(taskUuid, step))) as Record<string, unknown>);
  }

  /**
   * Every step of a task, in template order, as {@link getStep}.
   *
   * @throws TaskNotFoundError
   */
  async listSteps(taskUuid: string): Promise<StepDetail[]> {
    requireString('taskUuid', taskUuid);
    const c = await this.nativeClient();
    return (JSON.parse(await native(() => c.listSteps(taskUuid))) as Record<string, unknown>[]).map(toStepDetail);
  }

  /** Dead-letter queue entries, newest first. */
  async listDlq(filter: ListDlqFilter = {}): Promise<DlqEntry[]> {
    requireOptions('filter', filter);
    requireOneOf('status', filter.status, DLQ_STATUSES);
    requireOneOf('reason', filter.reason, DLQ_REASONS);
    requireString('taskUuid', filter.taskUuid, true);
    if (filter.openOnly !== undefined && typeof filter.openOnly !== 'boolean') {
      throw new InvalidArgumentError('openOnly', `expected a boolean, got ${describe(filter.openOnly)}`);
    }
    requireNumber('limit', filter.limit, true);
    requireNumber('offset', filter.offset, true);
    const args = JSON.stringify({
      status: filter.status,
      reason: filter.reason,
      task_uuid: filter.taskUuid,
      open_only: filter.openOnly,
      limit: filter.limit,
      offset: filter.offset,
    });
    const c = await this.nativeClient();
    return (JSON.parse(await native(() => c.listDlq(args))) as Record<string, unknown>[]).map(toDlqEntry);
  }

  /**
   * One dead-letter queue entry.
   *
   * @throws DlqEntryNotFoundError
   */
  async getDlqEntry(entryUuid: string): Promise<DlqEntry> {
    requireString('entryUuid', entryUuid);
    const c = await this.nativeClient();
    return toDlqEntry(JSON.parse(await native(() => c.getDlqEntry(entryUuid))) as Record<string, unknown>);
  }

  /**
   * Records an investigation step: a note by `by` and, with `status`, the entry's new status.
   *
   * @throws InvalidStateError when re-opening an entry whose task has another open one
   * @throws DlqEntryNotFoundError
   */
  async updateDlqEntry(entryUuid: string, options: UpdateDlqEntryOptions): Promise<DlqEntry> {
    requireString('entryUuid', entryUuid);
    requireOptions('options', options);
    requireOneOf('status', options.status, DLQ_STATUSES);
    requireString('note', options.note);
    requireString('by', options.by);
    const c = await this.nativeClient();
    return toDlqEntry(
      JSON.parse(await native(() => c.updateDlqEntry(entryUuid, options.status, options.note, options.by))) as Record<string, unknown>,
    );
  }

  /**
   * Puts a task in the dead-letter queue by hand (reason `manual`); nothing happens to the task.
   *
   * @throws InvalidStateError when the task already has an open entry
   * @throws TaskNotFoundError
   */
  async addToDlq(taskUuid: string, options: AddToDlqOptions): Promise<DlqEntry> {
    requireString('taskUuid', taskUuid);
    requireOptions('options', options);
    requireString('by', options.by);
    requireString('note', options.note);
    const c = await this.nativeClient();
    return toDlqEntry(JSON.parse(await native(() => c.addToDlq(taskUuid, options.by, options.note))) as Record<string, unknown>);
  }

  /** Dead-letter queue entries counted by reason and by status. */
  async dlqStats(): Promise<DlqStats> {
    const c = await this.nativeClient();
    return toDlqStats(JSON.parse(await native(() => c.dlqStats())) as Record<string, unknown>);
  }

  /**
   * The open dead-letter queue entries in investigation order (highest `score` first), at most
   * `limit` (default 20).
   */
  async dlqQueue(limit: number = DEFAULT_DLQ_QUEUE_LIMIT): Promise<QueuedDlqEntry[]> {
    const n = requireCount('limit', limit);
    const c = await this.nativeClient();
    return (JSON.parse(await native(() => c.dlqQueue(n))) as Record<string, unknown>[]).map(toQueuedDlqEntry);
  }

  /**
   * Every unfinished task whose idle time (or age) reached `minRatio` of its threshold, with its
   * health (`healthy` < 80 %, `warning`, `stale`), most overdue first: alert on it before the
   * staleness detector moves tasks to the DLQ.
   */
  async stalenessReport(options: StalenessReportOptions = {}): Promise<TaskHealth[]> {
    requireOptions('options', options);
    const minRatio = options.minRatio ?? 0;
    requireNumber('minRatio', minRatio, false, false);
    if (minRatio < 0) throw new InvalidArgumentError('minRatio', `must not be negative, got ${minRatio}`);
    const limit = requireCount('limit', options.limit ?? DEFAULT_STALENESS_LIMIT);
    const c = await this.nativeClient();
    return (JSON.parse(await native(() => c.stalenessReport(minRatio, limit))) as Record<string, unknown>[]).map(toTaskHealth);
  }

  /** Worker processes seen within the last hour (live ones first), with whether each is alive. */
  async listWorkers(): Promise<WorkerInfo[]> {
    const c = await this.nativeClient();
    return (JSON.parse(await native(() => c.listWorkers())) as Record<string, unknown>[]).map(toWorkerInfo);
  }

  // --- events ---------------------------------------------------------------------------------
  //
  // Durable subscribers run with a SubscriberRunner (subscriber.ts); these are the fast reader
  // and the operator's view of subscriber groups.

  /**
   * Joins (creating it if needed) the durable subscriber group `group` as a new member that
   * receives the events matching `patterns`, to poll by hand (see {@link EventSubscription});
   * a `SubscriberRunner` does the polling for a `Subscriber`.
   *
   * @throws InvalidArgumentError for a bad group name, pattern or option
   */
  async subscribe(group: string, patterns: readonly string[], options: SubscriptionOptions = {}): Promise<EventSubscription> {
    requireOptions('options', options);
    const json = subscriptionJson(group, patterns, options);
    const c = await this.nativeClient();
    return new EventSubscription(await native(() => c.subscribe(json)));
  }

  /**
   * Reads this process's fast event broadcast (see {@link FastSubscription}): lifecycle events
   * of the changes this process commits and the `delivery: fast` domain events of its
   * completions, matching `patterns` (`*` wildcards). Nothing is stored: for metrics and logs.
   *
   * @throws InvalidArgumentError for an empty pattern list or an empty pattern
   */
  async subscribeFast(patterns: readonly string[]): Promise<FastSubscription> {
    const list = checkPatterns('patterns', patterns);
    const c = await this.nativeClient();
    return new FastSubscription(nativeSync(() => c.subscribeFast(list)), Object.freeze(list));
  }

  /** Every subscriber group, with its live members, its lag and its dead letters. */
  async eventGroups(): Promise<EventGroupStatus[]> {
    const c = await this.nativeClient();
    return (JSON.parse(await native(() => c.eventGroups())) as Record<string, unknown>[]).map(toEventGroupStatus);
  }

  /** Events subscribers gave up on (after `maxAttempts` failures), newest first. */
  async eventDeadLetters(options: EventDeadLettersOptions = {}): Promise<EventDeadLetter[]> {
    requireOptions('options', options);
    requireString('group', options.group, true);
    const limit = requireCount('limit', options.limit ?? 100);
    const c = await this.nativeClient();
    return (JSON.parse(await native(() => c.eventDeadLetters(options.group, limit))) as Record<string, unknown>[]).map(
      toEventDeadLetter,
    );
  }

  /**
   * Deletes a subscriber group with its positions and members (its dead letters stay). Resolves
   * to whether it existed. Members still running re-create it when they next join.
   */
  async deleteEventGroup(group: string): Promise<boolean> {
    requireString('group', group);
    const c = await this.nativeClient();
    return native(() => c.deleteEventGroup(group));
  }

  /**
   * Stamps log positions on committed events (PostgreSQL; nothing to do on SQLite) and resolves
   * to how many. Subscribers do this as they read; tools call it to see the log up to now.
   */
  async sequenceEvents(): Promise<number> {
    const c = await this.nativeClient();
    return native(() => c.sequenceEvents());
  }

  #checkStepAction(taskUuid: string, step: string, options: OperatorAction): void {
    requireString('taskUuid', taskUuid);
    requireString('step', step);
    requireOperator(options);
  }

  /**
   * Closes the connection pool. Stop workers first. The engine's log records still waiting are
   * handed to the logger (see {@link setLogger}) before this resolves.
   */
  async close(): Promise<void> {
    let c: NativeClient;
    try {
      c = await this.#native;
    } catch {
      flushLogs(); // the connection attempt's records (database retries)
      return; // never connected: nothing to close
    }
    try {
      await native(() => c.close());
    } finally {
      // Synchronously, so that records logged just before a process exits are not lost.
      flushLogs();
    }
  }
}

/**
 * Connects to the engine's database with the same configuration as the CLI: built-in defaults
 * < `base/*.toml` < `environments/<TASKER_ENV>/*.toml` (under `TASKER_CONFIG_ROOT`, else
 * `./config/tasker`) < `TASKER_<SECTION>__<KEY>` variables < `options`. The configuration is
 * read now; the connection (and migrations) proceed in the background: `await client.ready()`
 * to surface connection errors early, or let the first call report them.
 *
 * @example
 * const client = connect({ databaseUrl: 'sqlite://./tasker.db' });
 * await client.registerTemplates('./templates');
 *
 * The first successful call starts forwarding the engine's log records to the logger
 * {@link setLogger} set (`console` by default), once per process.
 *
 * @throws InvalidArgumentError for a malformed option
 * @throws ConfigurationError when the configuration is invalid (every problem, with its file or
 *   variable and key)
 */
export function connect(options: ConnectOptions = {}): Client {
  if (options === null || typeof options !== 'object') {
    throw new InvalidArgumentError('options', `expected an object, got ${describe(options)}`);
  }
  requireString('databaseUrl', options.databaseUrl, true);
  const { maxConnections } = options;
  if (maxConnections !== undefined && (!Number.isInteger(maxConnections) || maxConnections < 2 || maxConnections > 1000)) {
    throw new InvalidArgumentError('maxConnections', `expected an integer from 2 to 1000, got ${describe(maxConnections)}`);
  }
  // The native call reads the configuration synchronously (throwing ConfigurationError here)
  // and returns the pending connection.
  const connecting = nativeSync(() => NativeClient.connect(options.databaseUrl, maxConnections));
  // The configuration is valid: from now on the engine's log records go to the logger
  // (ts/logging.ts), including those of the connection attempt (database retries).
  startLogForwarding();
  return new Client(native(() => connecting));
}
