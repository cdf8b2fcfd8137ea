/**
 * Errors raised by Tasker, and the errors handlers throw to steer retries.
 *
 * Every error the engine reports is a {@link TaskerError} with a stable machine-readable
 * `code` (the same codes in every language binding). Native errors are mapped to these classes
 * in exactly one place: {@link fromNative}.
 *
 * @module
 */

/** Extra fields a native error may carry. */
export interface TaskerErrorDetails {
  readonly [key: string]: unknown;
}

/** The root of every error Tasker raises. */
export class TaskerError extends Error {
  /** Stable machine-readable code, e.g. `validation_failed`, `template_not_found`. */
  readonly code: string;
  /** Structured details reported by the engine (fields depend on `code`). */
  readonly details: TaskerErrorDetails;

  /**
   * @param message human-readable description
   * @param code stable machine-readable code
   * @param details structured details
   */
  constructor(message: string, code = 'tasker_error', details: TaskerErrorDetails = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}

/** An argument passed to a Tasker API is malformed. `path` names the argument or field at fault. */
export class InvalidArgumentError extends TaskerError {
  /** The argument or field at fault, e.g. `createTask.namespace` or `queues[1]`. */
  readonly path: string;

  /**
   * @param path the argument or field at fault
   * @param message what is wrong with it
   * @param details structured details
   */
  constructor(path: string, message: string, details: TaskerErrorDetails = {}) {
    super(message.startsWith('invalid argument') ? message : `invalid argument '${path}': ${message}`, 'invalid_argument', details);
    this.path = path;
  }
}

/** A task context failed the template's `input_schema` (or a size limit). */
export class ValidationError extends TaskerError {
  /** JSON pointer of the failing value inside the context (`''` for the whole context). */
  readonly path: string;
  /** The validation message, without the path prefix. */
  readonly reason: string;

  /**
   * @param message full message
   * @param path JSON pointer of the failing value
   * @param reason the validation message
   * @param details structured details
   */
  constructor(message: string, path: string, reason: string, details: TaskerErrorDetails = {}) {
    super(message, 'validation_failed', details);
    this.path = path;
    this.reason = reason;
  }
}

/** One problem found while loading or validating a template. */
export interface TemplateProblem {
  /** The file the template came from. */
  readonly file: string | null;
  /** `namespace/name@version` when known. */
  readonly template: string | null;
  /** The step the problem is in. */
  readonly step: string | null;
  /** The field path, e.g. `retry.max_attempts`. */
  readonly field: string | null;
  /** What is wrong. */
  readonly message: string;
}

/** A template file could not be read, parsed or validated. */
export class TemplateError extends TaskerError {
  /** Every problem found (nothing is registered when there is any). */
  readonly problems: readonly TemplateProblem[];

  /**
   * @param message full message
   * @param problems each problem, with file, step and field
   * @param details structured details
   */
  constructor(message: string, problems: readonly TemplateProblem[], details: TaskerErrorDetails = {}) {
    super(message, 'template_invalid', details);
    this.problems = problems;
  }
}

/** One problem with the configuration files or `TASKER_<SECTION>__<KEY>` variables. */
export interface ConfigProblem {
  /** The file (path) or environment variable (`$TASKER_WORKER__CONCURRENCY`) at fault. */
  readonly source: string;
  /** `section.key`, or the section. */
  readonly key: string;
  /** What is wrong, with the value and what is allowed ("did you mean" for near misses). */
  readonly message: string;
}

/**
 * The configuration (see docs/configuration.md) is invalid: an unknown file, section or key, a
 * wrong type, a value out of range, a missing `${VAR}`. Code `config_invalid`; the message
 * lists every problem with its file or variable and key.
 */
export class ConfigurationError extends TaskerError {
  /** Every problem found. */
  readonly problems: readonly ConfigProblem[];

  /**
   * @param message full message
   * @param problems each problem, with its source and key
   * @param details structured details
   */
  constructor(message: string, problems: readonly ConfigProblem[], details: TaskerErrorDetails = {}) {
    super(message, 'config_invalid', details);
    this.problems = problems;
  }
}

/** No registered template matches `namespace/name[@version]`. */
export class TemplateNotFoundError extends TaskerError {}

/** A template version is already registered with different content. */
export class TemplateConflictError extends TaskerError {}

/** No task has this uuid. */
export class TaskNotFoundError extends TaskerError {}

/** A task has no step of that name (or uuid). */
export class StepNotFoundError extends TaskerError {
  /** The task that was searched. */
  readonly taskUuid: string;
  /** The step name or uuid that matched nothing. */
  readonly step: string;

  /**
   * @param message description naming the task and the step
   * @param code `step_not_found`
   * @param details structured details (`taskUuid`, `step`)
   */
  constructor(message: string, code = 'step_not_found', details: TaskerErrorDetails = {}) {
    super(message, code, details);
    this.taskUuid = typeof details.taskUuid === 'string' ? details.taskUuid : '';
    this.step = typeof details.step === 'string' ? details.step : '';
  }
}

/**
 * An operator action that the step's or task's current state does not allow. The message names
 * the state and what is allowed, e.g. `step 'a' is complete; only error, waiting_for_retry,
 * enqueued steps can be reset`. Also raised by the loser of two operators acting at once.
 */
export class InvalidStateError extends TaskerError {}

/** No dead-letter queue entry has this uuid. */
export class DlqEntryNotFoundError extends TaskerError {
  /** The uuid that matched nothing. */
  readonly entryUuid: string;

  /**
   * @param message description naming the entry
   * @param code `dlq_entry_not_found`
   * @param details structured details (`entryUuid`)
   */
  constructor(message: string, code = 'dlq_entry_not_found', details: TaskerErrorDetails = {}) {
    super(message, code, details);
    this.entryUuid = typeof details.entryUuid === 'string' ? details.entryUuid : '';
  }
}

/** An operation did not finish in time (e.g. waiting for a task). */
export class TimeoutError extends TaskerError {}

/**
 * The database could not be reached (`database_unreachable`), or a query or migration failed; or,
 * with `messaging.backend = "rabbitmq"`, the message broker could not be reached
 * (`broker_unreachable`, transient like an unreachable database).
 */
export class DatabaseError extends TaskerError {}

/** A state change that the task or step state machine does not allow. */
export class IllegalTransitionError extends TaskerError {}

/** The worker is shut down. */
export class ShutDownError extends TaskerError {}

/** A background task of the worker died; it claims nothing more (see the message). */
export class WorkerFailedError extends TaskerError {}

/**
 * The database is unreachable and the circuit breaker around it is open: the call was refused
 * at once instead of waiting on it (`code` `unavailable`). Retry after {@link retryAfter}
 * seconds; nothing was written.
 */
export class UnavailableError extends TaskerError {
  /** What is unavailable (`database`). */
  readonly resource: string;
  /** Seconds until the breaker lets the next probe through. */
  readonly retryAfter: number;

  /**
   * @param message what was refused, and the failure that opened the breaker
   * @param code `unavailable`
   * @param details structured details (`resource`, `retryAfterMs`)
   */
  constructor(message: string, code = 'unavailable', details: TaskerErrorDetails = {}) {
    super(message, code, details);
    this.resource = typeof details.resource === 'string' ? details.resource : 'database';
    this.retryAfter = typeof details.retryAfterMs === 'number' ? details.retryAfterMs / 1000 : 0;
  }
}

/**
 * Creating the task would put more waiting steps on a queue than `backpressure.max_queue_depth`
 * allows: workers are not keeping up (`code` `backpressure`). Nothing was written; retry after
 * {@link retryAfter} seconds, or add workers.
 */
export class BackpressureError extends TaskerError {
  /** The queue at its limit. */
  readonly queue: string;
  /** Steps waiting on it. */
  readonly depth: number;
  /** The configured limit. */
  readonly limit: number;
  /** Seconds until the depths are read again. */
  readonly retryAfter: number;

  /**
   * @param message the queue, its depth and the limit
   * @param code `backpressure`
   * @param details structured details (`queue`, `depth`, `limit`, `retryAfterMs`)
   */
  constructor(message: string, code = 'backpressure', details: TaskerErrorDetails = {}) {
    super(message, code, details);
    this.queue = typeof details.queue === 'string' ? details.queue : '';
    this.depth = typeof details.depth === 'number' ? details.depth : 0;
    this.limit = typeof details.limit === 'number' ? details.limit : 0;
    this.retryAfter = typeof details.retryAfterMs === 'number' ? details.retryAfterMs / 1000 : 0;
  }
}

/**
 * A checkpoint came from an attempt that no longer holds its step: it timed out, was
 * re-claimed by another worker or cancelled. Nothing was stored; stop working, nobody will use
 * the attempt's result.
 */
export class FencedError extends TaskerError {
  /**
   * @param message what was refused
   * @param code `fenced`
   * @param details structured details
   */
  constructor(message: string, code = 'fenced', details: TaskerErrorDetails = {}) {
    super(message, code, details);
  }
}

/** Options of errors thrown by handlers. */
export interface HandlerErrorOptions {
  /** Machine-readable kind stored as the step error's `error_type` (default: the class name). */
  errorType?: string;
  /** Extra JSON stored with the step error. */
  metadata?: Record<string, unknown>;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * Thrown by a handler: the step fails at once and is not retried, whatever attempts remain.
 */
export class PermanentError extends TaskerError {
  /** Stored as the step error's `error_type`. */
  readonly errorType: string;
  /** Extra JSON stored with the step error. */
  readonly metadata: Record<string, unknown> | undefined;

  /**
   * @param message why the step failed
   * @param options error type, metadata, cause
   */
  constructor(message: string, options: HandlerErrorOptions = {}) {
    super(message, 'permanent_failure');
    this.errorType = options.errorType ?? this.name;
    this.metadata = options.metadata;
    if (options.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** Options of {@link RetryableError}. */
export interface RetryableErrorOptions extends HandlerErrorOptions {
  /** Seconds to wait before the next attempt, overriding the template's backoff. */
  retryAfter?: number;
}

/**
 * Thrown by a handler: the attempt fails and the step is retried while attempts remain,
 * after `retryAfter` seconds when given (else after the template's backoff).
 */
export class RetryableError extends TaskerError {
  /** Stored as the step error's `error_type`. */
  readonly errorType: string;
  /** Seconds before the next attempt, if the handler asked for a delay. */
  readonly retryAfter: number | undefined;
  /** Extra JSON stored with the step error. */
  readonly metadata: Record<string, unknown> | undefined;

  /**
   * @param message why the attempt failed
   * @param options `retryAfter` (seconds), error type, metadata, cause
   * @throws RangeError when `retryAfter` is not a finite, non-negative number
   */
  constructor(message: string, options: RetryableErrorOptions = {}) {
    super(message, 'retryable_failure');
    this.errorType = options.errorType ?? this.name;
    this.retryAfter = checkRetryAfter(options.retryAfter);
    this.metadata = options.metadata;
    if (options.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** No handler is registered for a step's callable. The step fails permanently. */
export class HandlerNotFoundError extends TaskerError {
  /** The step's `handler.callable`. */
  readonly callable: string;

  /**
   * @param callable the callable no handler matched
   * @param message description (defaults to one naming the callable)
   */
  constructor(callable: string, message = `no handler registered for callable '${callable}'`) {
    super(message, 'handler_not_found', { callable });
    this.callable = callable;
  }
}

/** @internal Validates a `retryAfter` value (seconds). */
export function checkRetryAfter(value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`retryAfter must be a finite, non-negative number of seconds, got ${String(value)}`);
  }
  return value;
}

/** Must match `bindings-node/src/error.rs`. */
const MARKER = '__tasker_error__:';

/** The JSON document the native layer puts in its error messages. */
interface NativeErrorPayload {
  code: string;
  message: string;
  [key: string]: unknown;
}

function parsePayload(error: unknown): NativeErrorPayload | undefined {
  if (!(error instanceof Error) || !error.message.startsWith(MARKER)) return undefined;
  try {
    const parsed: unknown = JSON.parse(error.message.slice(MARKER.length));
    if (parsed !== null && typeof parsed === 'object' && typeof (parsed as NativeErrorPayload).code === 'string') {
      return parsed as NativeErrorPayload;
    }
  } catch {
    // fall through: not one of ours after all
  }
  return undefined;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/**
 * Maps an error thrown by the native addon to its {@link TaskerError} subclass. Errors that do
 * not come from the engine are returned unchanged. The one place where codes become classes.
 *
 * @internal
 */
export function fromNative(error: unknown): unknown {
  const p = parsePayload(error);
  if (p === undefined) return error;
  const { code, message, ...details } = p;
  let mapped: TaskerError;
  switch (code) {
    case 'validation_failed':
      mapped = new ValidationError(message, str(p.path) ?? '', str(p.reason) ?? message, details);
      break;
    case 'template_invalid': {
      const problems = Array.isArray(p.problems)
        ? (p.problems as Record<string, unknown>[]).map((q) => ({
            file: str(q.file),
            template: str(q.template),
            step: str(q.step),
            field: str(q.field),
            message: str(q.message) ?? '',
          }))
        : [];
      mapped = new TemplateError(message, problems, details);
      break;
    }
    case 'config_invalid': {
      const problems = Array.isArray(p.problems)
        ? (p.problems as Record<string, unknown>[]).map((q) => ({
            source: str(q.source) ?? '',
            key: str(q.key) ?? '',
            message: str(q.message) ?? '',
          }))
        : [];
      mapped = new ConfigurationError(message, problems, details);
      break;
    }
    case 'invalid_argument':
      mapped = new InvalidArgumentError(str(p.path) ?? '', message, details);
      break;
    case 'template_not_found':
      mapped = new TemplateNotFoundError(message, code, details);
      break;
    case 'template_conflict':
      mapped = new TemplateConflictError(message, code, details);
      break;
    case 'task_not_found':
      mapped = new TaskNotFoundError(message, code, details);
      break;
    case 'step_not_found':
      mapped = new StepNotFoundError(message, code, details);
      break;
    case 'invalid_state':
      mapped = new InvalidStateError(message, code, details);
      break;
    case 'dlq_entry_not_found':
      mapped = new DlqEntryNotFoundError(message, code, details);
      break;
    case 'timeout':
      mapped = new TimeoutError(message, code, details);
      break;
    case 'database_url_invalid':
    case 'database_unreachable':
    case 'broker_unreachable':
    case 'database_error':
    case 'migration_failed':
    case 'queue_error':
    case 'corrupt_data':
      mapped = new DatabaseError(message, code, details);
      break;
    case 'illegal_transition':
      mapped = new IllegalTransitionError(message, code, details);
      break;
    case 'shut_down':
      mapped = new ShutDownError(message, code, details);
      break;
    case 'worker_failed':
      mapped = new WorkerFailedError(message, code, details);
      break;
    case 'fenced':
      mapped = new FencedError(message, code, details);
      break;
    case 'unavailable':
      mapped = new UnavailableError(message, code, details);
      break;
    case 'backpressure':
      mapped = new BackpressureError(message, code, details);
      break;
    default:
      mapped = new TaskerError(message, code, details);
  }
  return mapped;
}

/**
 * Awaits a native promise, mapping its rejection with {@link fromNative}.
 *
 * @internal
 */
export async function native<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw fromNative(e);
  }
}

/**
 * Runs a synchronous native call, mapping its exception with {@link fromNative}.
 *
 * @internal
 */
export function nativeSync<T>(call: () => T): T {
  try {
    return call();
  } catch (e) {
    throw fromNative(e);
  }
}
