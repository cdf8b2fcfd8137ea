/**
 * What a step handler receives.
 *
 * @module
 */

import type { JsonValue } from './records.js';

/** The step's `handler` block from the template. */
export interface HandlerSpec {
  /** The handler identifier the worker resolves (a registered name). */
  readonly callable: string;
  /** The method to call on a class handler (default `call`). */
  readonly method: string;
  readonly resolver: string | null;
}

/** The data a {@link StepContext} is built from (a step event of the engine, in camelCase). */
export interface StepContextData<I = Record<string, unknown>, C = Record<string, unknown>> {
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
}

/**
 * One attempt of one step: the task's input, the handler's config, the results of the step's
 * dependencies and the attempt counters.
 *
 * @typeParam I the shape of the task context (`input`)
 * @typeParam C the shape of the handler's `initialization` config
 */
export class StepContext<I = Record<string, unknown>, C = Record<string, unknown>> {
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
  #signal: AbortSignal | (() => AbortSignal) | undefined;

  /** Builds a context. Workers do this; tests use `buildStepContext` from `tasker-core/testing`. */
  constructor(data: StepContextData<I, C>) {
    this.taskUuid = data.taskUuid;
    this.stepUuid = data.stepUuid;
    this.stepName = data.stepName;
    this.namespace = data.namespace;
    this.taskName = data.taskName;
    this.taskVersion = data.taskVersion;
    this.correlationId = data.correlationId;
    this.handler = data.handler;
    this.input = data.input;
    this.config = data.config;
    this.dependencyResults = data.dependencyResults;
    this.attempt = data.attempt;
    this.maxAttempts = data.maxAttempts;
    this.deadline = data.deadline;
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
}

/** @internal Builds the context of a step event. */
export function contextFromEvent(e: RawStepEvent, signal: () => AbortSignal): StepContext {
  const init = e.handler.initialization;
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
  });
}
