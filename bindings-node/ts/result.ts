/**
 * What a step handler returns.
 *
 * @module
 */

import { checkRetryAfter } from './errors.js';
import { type BatchesSpec, batchesResult, decisionResult, noBatchesResult, noBranchesResult } from './outcomes.js';
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
   * A decision step's success: the engine creates exactly the named steps (direct dependents of
   * this step in the template) and the steps below them; the other branches are never created.
   * An empty list means no branches ({@link noBranches}).
   *
   * @example
   * return StepResult.decision(amount < 1000 ? ['auto_approve'] : ['manager_approval', 'finance_review'], { amount });
   *
   * @param steps the chosen step names
   * @param result extra keys of the step's result, handed to dependents as usual
   * @throws InvalidArgumentError for a name that is not a non-empty string, a name given twice,
   *   or a `result` that is not an object
   */
  static decision(steps: readonly string[], result?: Record<string, unknown>): StepResult {
    return StepResult.success(decisionResult(steps, result));
  }

  /**
   * A decision step's success choosing none of its branches. Deferred convergence steps below
   * it still run (with none of the branches' results).
   *
   * @param result extra keys of the step's result
   * @throws InvalidArgumentError for a `result` that is not an object
   */
  static noBranches(result?: Record<string, unknown>): StepResult {
    return StepResult.success(noBranchesResult(result));
  }

  /**
   * A batchable step's success: the engine creates one instance of the `worker` step
   * (`<worker>_001`, `<worker>_002`, …) per cursor, each receiving its cursor as `ctx.batch`.
   * Give the cursors, or `total` and `batchSize` to split evenly as `batchCursors` does. No
   * cursors (or `total: 0`) means {@link noBatches}.
   *
   * @example
   * return StepResult.batches({ worker: 'process_batch', total: rows, batchSize: 1000 }, { rows });
   *
   * @param spec `{ worker, cursors, totalItems? }` or `{ worker, total, batchSize }`
   * @param result extra keys of the step's result, handed to dependents as usual
   * @throws InvalidArgumentError naming the field at fault (`worker`, `total`, `batchSize`,
   *   `cursors[i].batchId`, …)
   */
  static batches(spec: BatchesSpec, result?: Record<string, unknown>): StepResult {
    return StepResult.success(batchesResult(spec, result));
  }

  /**
   * A batchable step's success with nothing to process: the engine creates one placeholder
   * worker instance with `ctx.batch.isNoOp` set (its handler should return at once), so the
   * convergence step still runs.
   *
   * @param result extra keys of the step's result
   * @throws InvalidArgumentError for a `result` that is not an object
   */
  static noBatches(result?: Record<string, unknown>): StepResult {
    return StepResult.success(noBatchesResult(result));
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

  /**
   * @internal This result with `events` appended to its metadata's `events` list (the other
   * metadata kept), where the engine reads published domain events.
   */
  withEvents(events: readonly { name: string; payload: unknown }[]): StepResult {
    if (events.length === 0) return this;
    const add = (metadata: Record<string, unknown> | undefined): Record<string, unknown> => {
      const listed = metadata?.events;
      return { ...metadata, events: [...(Array.isArray(listed) ? listed : []), ...events] };
    };
    if (this.status === 'success') return new StepResult('success', this.result, add(this.metadata), undefined);
    const e = this.error as StepFailure;
    return new StepResult('failure', undefined, undefined, { ...e, metadata: add(e.metadata) });
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
