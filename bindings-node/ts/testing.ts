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
 * @module
 */

import { AssertionError, deepStrictEqual } from 'node:assert';
import { randomUUID } from 'node:crypto';

import { type HandlerSpec, StepContext } from './context.js';
import { InvalidArgumentError } from './errors.js';
import {
  defineHandler,
  type HandlerFunction,
  HandlerRegistry,
  type HandlerSource,
  runAttempt,
  StepHandler,
} from './handler.js';
import type { JsonValue } from './records.js';
import type { StepFailure, StepResult } from './result.js';
import { describe } from './util.js';

/** Options of {@link buildStepContext}; everything is optional. */
export interface BuildStepContextOptions<I = Record<string, unknown>, C = Record<string, unknown>> {
  /** The task context (default `{}`). */
  input?: I;
  /** Results of the step's dependencies by step name (default `{}`). */
  dependencyResults?: Record<string, JsonValue>;
  /** The handler's `initialization` config (default `{}`). */
  config?: C;
  /** The attempt, from 1 (default 1). */
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
}

function positiveInt(path: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(path, `expected an integer >= 1, got ${describe(v)}`);
  return v;
}

/** Builds a step context from plain data, as a worker would build it from a step event. */
export function buildStepContext<I = Record<string, unknown>, C = Record<string, unknown>>(
  options: BuildStepContextOptions<I, C> = {},
): StepContext<I, C> {
  const attempt = positiveInt('attempt', options.attempt ?? 1);
  const maxAttempts = positiveInt('maxAttempts', options.maxAttempts ?? Math.max(3, attempt));
  return new StepContext<I, C>({
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
  });
}

/**
 * Runs a handler once, exactly as a worker would: sync or async, returned values, `StepResult`s
 * and thrown values all become a {@link StepResult}; a result that cannot be serialized becomes
 * a `result_not_serializable` failure. Never throws for handler errors.
 *
 * @param handler a StepHandler class or instance, a `defineHandler` result, or a plain function
 * @param ctx a context, or options for {@link buildStepContext}
 */
export async function runHandler(
  handler: HandlerSource | HandlerFunction<any, any>,
  ctx: StepContext<any, any> | BuildStepContextOptions<any, any> = {},
): Promise<StepResult> {
  const context = ctx instanceof StepContext ? ctx : buildStepContext(ctx);
  const source: HandlerSource =
    typeof handler === 'function' && !(handler.prototype instanceof StepHandler)
      ? defineHandler(context.handler.callable, handler as HandlerFunction<any, any>)
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

export { StepContext } from './context.js';
export { StepResult } from './result.js';
