/**
 * The client API: connect, register templates, create / get / list / cancel / wait for tasks.
 *
 * @module
 */

import { NativeClient } from '../native/index.js';
import { InvalidArgumentError, native } from './errors.js';
import { describe, findUnserializable } from './util.js';
import {
  type JsonValue,
  type RegisteredTemplate,
  type Step,
  type TaskState,
  type TaskSummary,
  type Transition,
  TERMINAL_TASK_STATES,
  toStep,
  toTaskSummary,
  toTransition,
} from './records.js';

/** Options of {@link connect}. */
export interface ConnectOptions {
  /**
   * `sqlite://PATH`, a plain file path, or `postgres://…`. When absent, the same default as the
   * CLI: `TASKER_DATABASE_URL`, else `DATABASE_URL`, else `sqlite://./tasker.db`.
   */
  databaseUrl?: string;
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
  /** Who asked for the task (a user, a service). */
  initiator: string;
  /** The system the request came from. */
  sourceSystem: string;
  /** Why the task exists. */
  reason: string;
  tags?: string[];
  /**
   * Higher runs first: each point is worth a second of waiting on the queue (so a low priority
   * is never starved). Default 0.
   */
  priority?: number;
  /** Creating twice with the same key returns the first task (`created === false`). */
  idempotencyKey?: string;
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
  /** Give up after this long (default 60 000 ms) with a `TimeoutError`. */
  timeoutMs?: number;
}

const DEFAULT_WAIT_MS = 60_000;

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
   * @throws TimeoutError when `timeoutMs` passes first
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

  /**
   * Loads, validates and registers every template in a YAML file or a directory. Nothing is
   * stored unless every file is valid.
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
    requireString('initiator', request.initiator);
    requireString('sourceSystem', request.sourceSystem);
    requireString('reason', request.reason);
    requireString('idempotencyKey', request.idempotencyKey, true);
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
   * @throws TimeoutError when `timeoutMs` passes first
   */
  async waitForTask(taskUuid: string, options: WaitOptions = {}): Promise<TaskDetail> {
    requireString('taskUuid', taskUuid);
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
    requireNumber('timeoutMs', timeoutMs, false, false);
    const c = await this.nativeClient();
    const raw = JSON.parse(await native(() => c.waitForTask(taskUuid, timeoutMs))) as Record<string, unknown>;
    return new TaskDetail(this, raw);
  }

  /** Closes the connection pool. Stop workers first. */
  async close(): Promise<void> {
    let c: NativeClient;
    try {
      c = await this.#native;
    } catch {
      return; // never connected: nothing to close
    }
    await native(() => c.close());
  }
}

/**
 * Connects to the engine's database (same defaults as the CLI). Returns at once; the
 * connection (and migrations) proceed in the background: `await client.ready()` to surface
 * connection errors early, or let the first call report them.
 *
 * @example
 * const client = connect({ databaseUrl: 'sqlite://./tasker.db' });
 * await client.registerTemplates('./templates');
 */
export function connect(options: ConnectOptions = {}): Client {
  if (options === null || typeof options !== 'object') {
    throw new InvalidArgumentError('options', `expected an object, got ${describe(options)}`);
  }
  requireString('databaseUrl', options.databaseUrl, true);
  return new Client(native(() => NativeClient.connect(options.databaseUrl)));
}
