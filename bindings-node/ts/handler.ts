/**
 * Step handlers: classes extending {@link StepHandler}, or functions given a name with
 * {@link defineHandler}. Both may be sync or async; the worker treats them alike.
 *
 * @module
 */

import { isAbsolute, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';

import { describe, findUnserializable, MAX_JSON_DEPTH, nestedDeeperThan } from './util.js';
import type { StepContext } from './context.js';
import { HandlerNotFoundError, InvalidArgumentError, PermanentError, RetryableError } from './errors.js';
import { type StepFailure, StepResult } from './result.js';

/**
 * A handler function: returns a {@link StepResult}, or any JSON value meaning success with that
 * result (`undefined` means `null`). Throwing fails the attempt (see {@link PermanentError},
 * {@link RetryableError}). May return a promise.
 */
export type HandlerFunction<I = Record<string, unknown>, C = Record<string, unknown>, B = Record<string, unknown>> = (
  ctx: StepContext<I, C, B>,
) => unknown;

/**
 * Base class of class-style handlers.
 *
 * @example
 * class ChargePayment extends StepHandler<{ amount: number }> {
 *   static handlerName = 'payments.ChargePayment';
 *   async call(ctx: StepContext<{ amount: number }>) {
 *     return { charged: ctx.input.amount };
 *   }
 * }
 */
export abstract class StepHandler<I = Record<string, unknown>, C = Record<string, unknown>, B = Record<string, unknown>> {
  /**
   * The `handler.callable` this class serves. Defaults to the class name.
   */
  static handlerName?: string;

  /** Runs one attempt of a step. The template's `handler.method` may name another method. */
  abstract call(ctx: StepContext<I, C, B>): unknown;
}

/** A class extending {@link StepHandler} with a no-argument constructor. */
export type StepHandlerClass = (abstract new () => StepHandler<any, any, any>) & { handlerName?: string };

const DEFINITION: unique symbol = Symbol('tasker.handlerDefinition');

/** A named handler function, made by {@link defineHandler}. */
export interface HandlerDefinition<I = Record<string, unknown>, C = Record<string, unknown>, B = Record<string, unknown>> {
  /** The `handler.callable` it serves. */
  readonly handlerName: string;
  /** The function. */
  readonly fn: HandlerFunction<I, C, B>;
  /** @internal */
  readonly [DEFINITION]: true;
}

/**
 * Names a plain (sync or async) function as the handler of `callable`.
 *
 * @example
 * const double = defineHandler<{ n: number }>('math.Double', (ctx) => ({ value: ctx.input.n * 2 }));
 */
export function defineHandler<I = Record<string, unknown>, C = Record<string, unknown>, B = Record<string, unknown>>(
  callable: string,
  fn: HandlerFunction<I, C, B>,
): HandlerDefinition<I, C, B> {
  if (typeof callable !== 'string' || callable.length === 0) {
    throw new InvalidArgumentError('callable', `expected a non-empty string, got ${describe(callable)}`);
  }
  if (typeof fn !== 'function') {
    throw new InvalidArgumentError('fn', `expected a function, got ${describe(fn)}`);
  }
  return Object.freeze({ handlerName: callable, fn, [DEFINITION]: true as const });
}

/** Anything a worker accepts as a handler. */
export type HandlerSource = StepHandlerClass | StepHandler<any, any, any> | HandlerDefinition<any, any, any>;

/**
 * Handlers of a worker: a list (classes, instances, definitions), or an object mapping each
 * callable to a function or a class.
 */
export type Handlers = readonly HandlerSource[] | Readonly<Record<string, HandlerFunction<any, any, any> | StepHandlerClass>>;

/** A resolved handler. */
interface Resolved {
  readonly callable: string;
  invoke(ctx: StepContext<any, any, any>): unknown;
}

function isDefinition(v: unknown): v is HandlerDefinition<any, any, any> {
  return v !== null && typeof v === 'object' && (v as { [DEFINITION]?: unknown })[DEFINITION] === true;
}

function isHandlerClass(v: unknown): v is StepHandlerClass {
  return typeof v === 'function' && v.prototype instanceof StepHandler;
}

function fromInstance(callable: string, instance: StepHandler<any, any, any>): Resolved {
  return {
    callable,
    invoke(ctx) {
      const method = ctx.handler.method;
      if (method === 'call' || method === '') return instance.call(ctx);
      const fn = (instance as unknown as Record<string, unknown>)[method];
      if (typeof fn !== 'function') {
        throw new HandlerNotFoundError(
          callable,
          `handler '${callable}' has no method '${method}' (named by the template's handler.method)`,
        );
      }
      return (fn as (c: StepContext<any, any, any>) => unknown).call(instance, ctx);
    },
  };
}

function fromClass(callable: string, cls: StepHandlerClass, path: string): Resolved {
  let instance: StepHandler<any, any, any>;
  try {
    instance = new (cls as unknown as new () => StepHandler<any, any, any>)();
  } catch (e) {
    throw new InvalidArgumentError(path, `constructing ${cls.name || 'the handler class'} failed: ${String(e)}`);
  }
  return fromInstance(callable, instance);
}

function fromFunction(callable: string, fn: HandlerFunction<any, any, any>): Resolved {
  return { callable, invoke: (ctx) => fn(ctx) };
}

function classCallable(cls: { handlerName?: unknown; name: string }, path: string): string {
  const name = Object.prototype.hasOwnProperty.call(cls, 'handlerName') ? cls.handlerName : cls.name;
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidArgumentError(path, 'a handler class needs a static handlerName (or a class name)');
  }
  return name;
}

/**
 * A callable naming a module and one of its exports: `"<module>#<export>"`, e.g.
 * `"./handlers/payments.js#ChargeHandler"` (a path relative to the worker's `handlerRoot`, an
 * absolute path, or a package name such as `"@acme/handlers#Charge"`); `#default` names the default
 * export. The export may be a {@link StepHandler} class (constructed once, without arguments) or
 * instance, a {@link defineHandler} result, or a function. The TypeScript counterpart of Python's
 * `module.Class` and Ruby's `Module::Class` callables. `undefined` when `callable` is not one.
 */
export function parseModulePath(callable: string): { module: string; exportName: string } | undefined {
  const hash = callable.lastIndexOf('#');
  if (hash <= 0 || hash === callable.length - 1) return undefined;
  return { module: callable.slice(0, hash), exportName: callable.slice(hash + 1) };
}

/** The handler a module-path callable names, imported; a handler that throws `HandlerNotFoundError` when it cannot be. */
async function fromModulePath(callable: string, root: string): Promise<Resolved> {
  const missing = (why: string): Resolved => ({
    callable,
    invoke() {
      throw new HandlerNotFoundError(callable, `no handler for callable '${callable}': ${why}`);
    },
  });
  const parsed = parseModulePath(callable);
  if (parsed === undefined) return missing('not registered, and not a "<module>#<export>" path');
  const { module, exportName } = parsed;
  const relative = module.startsWith('./') || module.startsWith('../');
  const specifier = relative || isAbsolute(module) ? pathToFileURL(resolvePath(root, module)).href : module;
  let loaded: Record<string, unknown>;
  try {
    loaded = (await import(specifier)) as Record<string, unknown>;
  } catch (e) {
    return missing(`module '${module}' (from ${relative ? root : 'the module resolver'}) cannot be imported: ${e instanceof Error ? e.message : String(e)}`);
  }
  const exported = loaded[exportName];
  try {
    if (isHandlerClass(exported)) return fromClass(callable, exported, callable);
    if (exported instanceof StepHandler) return fromInstance(callable, exported);
    if (isDefinition(exported)) return fromFunction(callable, exported.fn);
    if (typeof exported === 'function') return fromFunction(callable, exported as HandlerFunction<any, any, any>);
  } catch (e) {
    return missing(e instanceof Error ? e.message : String(e));
  }
  const names = Object.keys(loaded).slice(0, 20).join(', ') || '(none)';
  return missing(
    exported === undefined
      ? `module '${module}' has no export '${exportName}' (its exports: ${names})`
      : `export '${exportName}' of module '${module}' is ${describe(exported)}, not a StepHandler class or instance, a defineHandler(...) result or a function`,
  );
}

/** Handlers by callable. */
export class HandlerRegistry {
  readonly #handlers = new Map<string, Resolved>();
  readonly #fromModules = new Map<string, Promise<Resolved>>();
  readonly #handlerRoot: string;

  /**
   * @param handlerRoot where relative module-path callables resolve from (default the current directory)
   * @throws InvalidArgumentError naming the entry at fault (wrong kind, duplicate callable)
   */
  constructor(handlers: Handlers, handlerRoot: string = process.cwd()) {
    this.#handlerRoot = handlerRoot;
    const add = (r: Resolved, path: string): void => {
      if (this.#handlers.has(r.callable)) {
        throw new InvalidArgumentError(path, `a second handler for callable '${r.callable}'`);
      }
      this.#handlers.set(r.callable, r);
    };
    if (Array.isArray(handlers)) {
      (handlers as readonly unknown[]).forEach((h, i) => {
        const path = `handlers[${i}]`;
        if (isDefinition(h)) add(fromFunction(h.handlerName, h.fn), path);
        else if (isHandlerClass(h)) add(fromClass(classCallable(h, path), h, path), path);
        else if (h instanceof StepHandler) add(fromInstance(classCallable(h.constructor, path), h), path);
        else {
          throw new InvalidArgumentError(
            path,
            `expected a StepHandler class or instance or a defineHandler(...) result, got ${describe(h)}`,
          );
        }
      });
    } else if (handlers !== null && typeof handlers === 'object') {
      for (const [callable, h] of Object.entries(handlers as Record<string, unknown>)) {
        const path = `handlers[${JSON.stringify(callable)}]`;
        if (isHandlerClass(h)) add(fromClass(callable, h, path), path);
        else if (typeof h === 'function') add(fromFunction(callable, h as HandlerFunction<any, any, any>), path);
        else throw new InvalidArgumentError(path, `expected a function or a StepHandler class, got ${describe(h)}`);
      }
    } else {
      throw new InvalidArgumentError('handlers', `expected an array or an object, got ${describe(handlers)}`);
    }
  }

  /** The callables served. */
  get callables(): string[] {
    return [...this.#handlers.keys()];
  }

  /** @internal */
  get(callable: string): Resolved | undefined {
    return this.#handlers.get(callable);
  }

  /**
   * @internal The handler of `callable`: a registered one, else the export a module-path callable
   * names (see {@link parseModulePath}), imported once; `undefined` for another unregistered callable.
   */
  async resolve(callable: string): Promise<Resolved | undefined> {
    const registered = this.#handlers.get(callable);
    if (registered !== undefined || parseModulePath(callable) === undefined) return registered;
    let pending = this.#fromModules.get(callable);
    if (pending === undefined) {
      pending = fromModulePath(callable, this.#handlerRoot);
      this.#fromModules.set(callable, pending);
    }
    return pending;
  }
}

/** @internal A settled attempt: the result and the core's `StepOutcome` JSON. */
export interface Settled {
  readonly result: StepResult;
  readonly json: string;
}

function messageOf(e: Error): string {
  return typeof e.message === 'string' ? e.message : String(e.message);
}

function safeString(v: unknown): string {
  try {
    if (typeof v === 'string') return v;
    if (typeof v === 'symbol') return v.toString();
    if (typeof v === 'bigint') return `${v}n`;
    const json = JSON.stringify(v);
    return json === undefined ? String(v) : json;
  } catch {
    return Object.prototype.toString.call(v);
  }
}

/** @internal Turns whatever a handler threw (or rejected with) into a failure. */
export function failureFromThrown(e: unknown): StepResult {
  if (e instanceof PermanentError) {
    return StepResult.failure({
      message: e.message,
      errorType: e.errorType,
      retryable: false,
      metadata: e.metadata,
      backtrace: e.stack,
    });
  }
  if (e instanceof RetryableError) {
    return StepResult.failure({
      message: e.message,
      errorType: e.errorType,
      retryable: true,
      retryAfter: e.retryAfter,
      metadata: e.metadata,
      backtrace: e.stack,
    });
  }
  if (e instanceof HandlerNotFoundError) {
    return StepResult.failure({ message: e.message, errorType: 'handler_not_found', retryable: false });
  }
  if (e instanceof Error) {
    return StepResult.failure({
      message: messageOf(e),
      errorType: typeof e.name === 'string' && e.name.length > 0 ? e.name : 'Error',
      retryable: true,
      backtrace: typeof e.stack === 'string' ? e.stack : undefined,
    });
  }
  return StepResult.failure({
    message: `handler threw a non-Error value: ${safeString(e)}`,
    errorType: 'NonErrorThrown',
    retryable: true,
    metadata: { thrownType: e === null ? 'null' : typeof e },
  });
}

/**
 * @internal Runs one attempt: resolves the handler, normalises sync/async returns and throws
 * into a {@link StepResult}, and serializes it. Never throws.
 */
export async function runAttempt(handler: Resolved | undefined, callable: string, ctx: StepContext<any, any, any>, known: () => string[]): Promise<Settled> {
  let result: StepResult;
  if (handler === undefined) {
    const names = known();
    const hint = names.length > 0 ? ` (this worker serves: ${names.slice(0, 20).join(', ')}${names.length > 20 ? ', …' : ''})` : '';
    result = StepResult.failure({
      message: `no handler registered for callable '${callable}'${hint}`,
      errorType: 'handler_not_found',
      retryable: false,
    });
  } else {
    try {
      const returned: unknown = await handler.invoke(ctx);
      result = returned instanceof StepResult ? returned : StepResult.success(returned);
    } catch (e) {
      result = failureFromThrown(e);
    }
    // Published events travel with either outcome: `publishes_events` conditions decide.
    result = result.withEvents(ctx.publishedEvents);
  }
  return serialize(result);
}

/**
 * @internal Serializes a result. A result that is not JSON (a BigInt, a cycle, NaN or
 * ±Infinity, a throwing `toJSON`) becomes a clear `result_not_serializable` failure, and one
 * nested too deeply for `JSON.stringify` (a `RangeError`) a `result_too_deep` failure, as the
 * engine reports values over its nesting limit: never an exception that would leave the event
 * uncompleted.
 */
export function serialize(result: StepResult): Settled {
  try {
    return { result, json: result.toOutcomeJson() };
  } catch (e) {
    if (result.isFailure && result.error !== undefined) {
      // The failure stands as the handler reported it (type, message, retryability); only the
      // metadata that cannot be stored is replaced by a note saying why, as in every language.
      const kept = withoutBadMetadata(result.error, e);
      return { result: kept, json: kept.toOutcomeJson() };
    }
    const what = result.isSuccess ? 'result' : 'failure metadata';
    const values: Array<[unknown, string]> = result.isSuccess
      ? [
          [result.result, 'result'],
          [result.metadata, 'metadata'],
        ]
      : [[result.error?.metadata, 'metadata']];
    const original = result.isFailure ? { originalMessage: result.error?.message, originalErrorType: result.error?.errorType } : undefined;
    let failure: StepResult;
    if (e instanceof RangeError && values.some(([v]) => nestedDeeperThan(v, MAX_JSON_DEPTH))) {
      failure = StepResult.failure({
        message: `the handler's ${what} is nested too deeply to serialize (the engine stores at most ${MAX_JSON_DEPTH} levels)`,
        errorType: 'result_too_deep',
        retryable: false,
        metadata: original,
      });
    } else {
      let bad: ReturnType<typeof findUnserializable>;
      try {
        for (const [v, path] of values) bad ??= findUnserializable(v, path);
      } catch {
        bad = undefined; // the search itself ran out of stack: report the serializer's error
      }
      const detail = bad !== undefined ? `${bad.path} is ${bad.reason}` : e instanceof Error ? e.message : String(e);
      failure = StepResult.failure({
        message: `the handler's ${what} cannot be serialized to JSON: ${detail}`,
        errorType: 'result_not_serializable',
        retryable: false,
        metadata: original,
      });
    }
    return { result: failure, json: failure.toOutcomeJson() };
  }
}

/** Code of the note that replaces a failure's metadata JSON cannot hold (the same in every language). */
export const METADATA_NOT_SERIALIZABLE = 'metadata_not_serializable';
/** Code of the note that replaces a failure's metadata nested too deep to serialize. */
export const METADATA_TOO_DEEP = 'metadata_too_deep';

/** The note that replaces a failure's metadata the engine cannot store: `{metadata_dropped: {code, path, reason}}`. */
export function droppedMetadata(code: string, path: string, reason: string): Record<string, unknown> {
  return { metadata_dropped: { code, path, reason } };
}

function withoutBadMetadata(error: StepFailure, thrown: unknown): StepResult {
  let note: Record<string, unknown>;
  if (thrown instanceof RangeError && nestedDeeperThan(error.metadata, MAX_JSON_DEPTH)) {
    note = droppedMetadata(METADATA_TOO_DEEP, 'metadata', `nested too deeply to serialize (the engine stores at most ${MAX_JSON_DEPTH} levels)`);
  } else {
    let bad: ReturnType<typeof findUnserializable>;
    try {
      bad = findUnserializable(error.metadata, 'metadata');
    } catch {
      bad = undefined; // the search itself ran out of stack
    }
    const reason = bad?.reason ?? (thrown instanceof Error ? thrown.message : String(thrown));
    note = droppedMetadata(METADATA_NOT_SERIALIZABLE, bad?.path ?? 'metadata', reason);
  }
  return StepResult.failure({
    message: error.message,
    errorType: error.errorType,
    retryable: error.retryable,
    retryAfter: error.retryAfter,
    backtrace: error.backtrace,
    metadata: note,
  });
}
