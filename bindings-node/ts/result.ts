/**
 * What a step handler returns.
 *
 * @module
 */

import { checkRetryAfter } from './errors.js';
import { stringifyStrict } from './util.js';

/** Arguments of {@link StepResult.failure}. */
export interface FailureOptions {
  /** Why the attempt failed. */
  message: string;
  /** Machine-readable kind stored as `error_type` (default `StepFailure`). */
  errorType?: string;
  /** `false` fails the step at once; `true` (default) retries while attempts remain. */
  retryable?: boolean;
  /** Seconds before the next attempt, overriding the template's backoff. */
  retryAfter?: number;
  /** Extra JSON stored with the error. */
  metadata?: Record<string, unknown>;
  /** A stack trace or similar, stored with the error. */
  backtrace?: string;
}

/** The failure half of a {@link StepResult}. */
export interface StepFailure {
  readonly message: string;
  readonly errorType: string;
  readonly retryable: boolean;
  /** Seconds. */
  readonly retryAfter: number | undefined;
  readonly metadata: Record<string, unknown> | undefined;
  readonly backtrace: string | undefined;
}

/**
 * The outcome of one attempt. Handlers may return one of these, or any other value — a plain
 * object, an array, a number… — which means success with that value as the step's result.
 */
export class StepResult {
  /** `success` or `failure`. */
  readonly status: 'success' | 'failure';
  /** The step's result (success only). */
  readonly result: unknown;
  /** Extra JSON about the attempt (success only). */
  readonly metadata: Record<string, unknown> | undefined;
  /** What went wrong (failure only). */
  readonly error: StepFailure | undefined;

  private constructor(
    status: 'success' | 'failure',
    result: unknown,
    metadata: Record<string, unknown> | undefined,
    error: StepFailure | undefined,
  ) {
    this.status = status;
    this.result = result;
    this.metadata = metadata;
    this.error = error;
  }

  /**
   * A successful attempt.
   *
   * @param result the step's result, visible to dependent steps (must be JSON-serializable)
   * @param metadata extra JSON about the attempt
   */
  static success(result: unknown = null, metadata?: Record<string, unknown>): StepResult {
    return new StepResult('success', result === undefined ? null : result, metadata, undefined);
  }

  /**
   * A failed attempt.
   *
   * @throws RangeError when `retryAfter` is not a finite, non-negative number
   * @throws TypeError when `message` is not a string
   */
  static failure(options: FailureOptions): StepResult {
    if (options === null || typeof options !== 'object' || typeof options.message !== 'string') {
      throw new TypeError('StepResult.failure needs { message: string, ... }');
    }
    const error: StepFailure = {
      message: options.message,
      errorType: options.errorType ?? 'StepFailure',
      retryable: options.retryable ?? true,
      retryAfter: checkRetryAfter(options.retryAfter),
      metadata: options.metadata,
      backtrace: options.backtrace,
    };
    return new StepResult('failure', undefined, undefined, error);
  }

  /** Whether the attempt succeeded. */
  get isSuccess(): boolean {
    return this.status === 'success';
  }

  /** Whether the attempt failed. */
  get isFailure(): boolean {
    return this.status === 'failure';
  }

  /** @internal The core's `StepOutcome` JSON. Throws when the result cannot be serialized. */
  toOutcomeJson(): string {
    if (this.status === 'success') {
      const result = stringifyStrict(this.result ?? null);
      if (result === undefined) {
        throw new TypeError(`a ${typeof this.result} is not a JSON value`);
      }
      const metadata = this.metadata === undefined ? 'null' : stringifyStrict(this.metadata);
      return `{"status":"success","result":${result},"metadata":${metadata ?? 'null'}}`;
    }
    const e = this.error as StepFailure;
    const metadata = stringifyStrict(e.metadata ?? null) ?? 'null';
    const head = JSON.stringify({
      status: 'failure',
      message: e.message,
      error_type: e.errorType,
      retryable: e.retryable,
      retry_after: e.retryAfter,
      backtrace: e.backtrace,
    });
    return `${head.slice(0, -1)},"metadata":${metadata}}`;
  }
}
