/**
 * The engine's log records, handed to the application's logger.
 *
 * The Rust engine logs with `tracing`: a step attempt that failed permanently, an attempt that
 * timed out, a database retry. {@link connect} starts forwarding those records, once per
 * process, at the configured `logging.level` (`TASKER_LOG`, a full filter such as
 * `tasker_core=debug`, wins; see docs/configuration.md). A timer drains them every 100 ms and
 * hands each one to the logger {@link setLogger} installed (`console` by default). The timer
 * is unref'ed: it never keeps the process alive. {@link Client.close} drains once more, so
 * records logged just before exit are not lost.
 *
 * Records about a step carry the fields `task_uuid`, `step_uuid`, `step_name`, `attempt` and
 * `correlation_id`.
 *
 * @example
 * import { setLogger } from 'tasker-core';
 * setLogger(winstonLogger);                                       // error/warn/info/debug(message, fields)
 * setLogger((r) => pinoLogger[r.level](r.fields, r.message));    // pino takes the object first
 * setLogger(null);                                                // silence the engine
 *
 * @module
 */

import { drainLogs, forwardLogs } from '../native/index.js';
import { InvalidArgumentError, nativeSync } from './errors.js';
import { describe } from './util.js';

/** A record's severity, as `tracing` names them. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace';

/** One log record of the engine. */
export interface LogRecord {
  readonly level: LogLevel;
  /** The Rust module that logged it, e.g. `tasker_core::worker`. */
  readonly target: string;
  readonly message: string;
  /**
   * The record's fields, values as text. A record about a step has `task_uuid`, `step_uuid`,
   * `step_name`, `attempt` and `correlation_id`.
   */
  readonly fields: Record<string, string>;
  /** When the engine logged it. */
  readonly timestamp: Date;
}

/** A logger as a function: it receives every record. */
export type LogFunction = (record: LogRecord) => void;

/**
 * A logger with a method per level, called as `logger.warn(message, fields)`: `console`,
 * winston, bunyan-style loggers. `trace` records go to `debug`. (pino takes the fields first:
 * pass a {@link LogFunction} instead, `(r) => pino[r.level](r.fields, r.message)`.)
 */
export interface LoggerObject {
  error(message: string, fields: Record<string, string>): unknown;
  warn(message: string, fields: Record<string, string>): unknown;
  info(message: string, fields: Record<string, string>): unknown;
  debug(message: string, fields: Record<string, string>): unknown;
}

/** What {@link setLogger} takes: a function, a logger object, or `null` to silence. */
export type Logger = LogFunction | LoggerObject | null;

const METHODS = ['error', 'warn', 'info', 'debug'] as const;
/** Records taken from the engine per native call. */
const BATCH = 1000;
/**
 * Records delivered per tick at most: the engine's channel capacity, i.e. everything that can be
 * waiting when the tick starts. Without a bound, an engine logging faster than the logger writes
 * would keep one tick running forever and starve the event loop.
 */
const MAX_PER_TICK = 10_000;
const DRAIN_INTERVAL_MS = 100;

/**
 * The logger until {@link setLogger} is called: `console.warn` / `console.error` for warnings
 * and errors only, as Python's `logging` (its last-resort handler) and Ruby's default
 * `TaskerCore.logger` (level WARN) show them. `setLogger(console)` shows every level.
 */
export const defaultLogger: LogFunction = (record) => {
  if (record.level !== 'error' && record.level !== 'warn') return;
  if (Object.keys(record.fields).length === 0) console[record.level](record.message);
  else console[record.level](record.message, record.fields);
};

let current: Logger = defaultLogger;
/** Whether the current logger's failure was reported (once per installed logger). */
let reportedFailure = false;
let forwarding: 'idle' | 'started' | 'failed' = 'idle';

/**
 * Sets where the engine's log records go, for the whole process (and for clients already
 * connected). The default, {@link defaultLogger}, writes warnings and errors to `console`.
 * `setLogger(console)` writes every level: `error` → `console.error`, `warn` → `console.warn`,
 * `info` → `console.info`, `debug` and `trace` → `console.debug`.
 *
 * A logger that throws (or returns a rejected promise) does not stop forwarding: the failure is
 * reported once as a process warning and later records still reach it.
 *
 * @param logger a function receiving each {@link LogRecord}; an object with `error`, `warn`,
 *   `info` and `debug` methods, each called with `(message, fields)` (console, winston); or
 *   `null` to drop the records
 * @throws InvalidArgumentError for anything else
 */
export function setLogger(logger: Logger): void {
  if (logger !== null && typeof logger !== 'function') {
    if (typeof logger !== 'object') {
      throw new InvalidArgumentError('logger', `expected a function, an object with error/warn/info/debug methods, or null, got ${describe(logger)}`);
    }
    const missing = METHODS.filter((m) => typeof (logger as unknown as Record<string, unknown>)[m] !== 'function');
    if (missing.length > 0) {
      throw new InvalidArgumentError('logger', `the logger object has no ${missing.join(', ')} method${missing.length > 1 ? 's' : ''}`);
    }
  }
  current = logger;
  reportedFailure = false;
}

/**
 * Starts forwarding (once per process) and the drain timer. Never throws: when the engine cannot
 * forward (`TASKER_LOG` or `logging.level` is not a filter, or something else installed a
 * `tracing` subscriber) a process warning says why, and the client works without logs.
 *
 * @internal Called by {@link connect}.
 */
export function startLogForwarding(): void {
  if (forwarding !== 'idle') return;
  try {
    nativeSync(() => forwardLogs());
  } catch (e) {
    forwarding = 'failed';
    process.emitWarning(`the engine's log records are not forwarded: ${e instanceof Error ? e.message : String(e)}`, {
      code: 'TASKER_LOGS_NOT_FORWARDED',
    });
    return;
  }
  forwarding = 'started';
  // unref: a process with nothing else to do exits; close() and 'exit' drain what is left.
  setInterval(flushLogs, DRAIN_INTERVAL_MS).unref();
  process.once('exit', flushLogs);
}

/**
 * Hands every record waiting now to the logger, synchronously. Nothing before forwarding
 * started.
 *
 * @internal Called by the timer, {@link Client.close} and at exit.
 */
export function flushLogs(): void {
  if (forwarding !== 'started') return;
  let delivered = 0;
  while (delivered < MAX_PER_TICK) {
    let batch: RawRecord[];
    try {
      batch = JSON.parse(nativeSync(() => drainLogs(BATCH))) as RawRecord[];
    } catch {
      return; // a serialization failure in the engine (a bug): never let it escape a timer
    }
    for (const raw of batch) deliver(toLogRecord(raw));
    delivered += batch.length;
    if (batch.length < BATCH) return;
  }
}

/** A record as the native layer serializes it. */
interface RawRecord {
  level: LogLevel;
  target: string;
  message: string;
  fields: Record<string, string>;
  timestamp: string;
}

function toLogRecord(raw: RawRecord): LogRecord {
  return { level: raw.level, target: raw.target, message: raw.message, fields: raw.fields, timestamp: new Date(raw.timestamp) };
}

function deliver(record: LogRecord): void {
  const logger = current;
  if (logger === null) return;
  try {
    let result: unknown;
    if (typeof logger === 'function') {
      result = logger(record);
    } else if (logger === console && Object.keys(record.fields).length === 0) {
      console[method(record.level)](record.message); // not a trailing `{}` on the terminal
    } else {
      result = logger[method(record.level)](record.message, record.fields);
    }
    // An async logger's rejection would otherwise be an unhandled rejection (fatal by default).
    if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
      (result as PromiseLike<unknown>).then(undefined, (e: unknown) => reportFailure(logger, e));
    }
  } catch (e) {
    reportFailure(logger, e);
  }
}

/** The logger object's method for a level: `trace` (and a level unknown to this version) has none of its own. */
function method(level: LogLevel): (typeof METHODS)[number] {
  switch (level) {
    case 'error':
    case 'warn':
    case 'info':
    case 'debug':
      return level;
    case 'trace':
      return 'debug';
    default:
      return 'info';
  }
}

function reportFailure(logger: Logger, e: unknown): void {
  if (logger !== current || reportedFailure) return;
  reportedFailure = true;
  process.emitWarning(
    `the logger given to setLogger threw (${e instanceof Error ? `${e.name}: ${e.message}` : describe(e)}); ` +
      'the engine keeps forwarding log records to it (reported once)',
    { code: 'TASKER_LOGGER_FAILED' },
  );
}
