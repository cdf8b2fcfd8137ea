/**
 * Decision and batch outcomes: the wire format that a decision step's or a batchable step's
 * result carries, built by `StepResult.decision` / `noBranches` / `batches` / `noBatches` and
 * read back by the testing helpers. The format is the engine's contract, shared by every
 * language; a handler may also return it as plain JSON.
 *
 * @module
 */

import { InvalidArgumentError } from './errors.js';
import type { BatchCursor, JsonValue } from './records.js';
import { describe } from './util.js';

/** The result key of a decision step's outcome. */
export const DECISION_KEY = 'decision_point_outcome';

/** The result key of a batchable step's outcome. */
export const BATCH_KEY = 'batch_processing_outcome';

/** What a decision step chose, read back from its result. */
export type DecisionOutcome =
  | { readonly type: 'create_steps'; readonly stepNames: readonly string[] }
  | { readonly type: 'no_branches' };

/** What a batchable step asked for, read back from its result. */
export type BatchOutcome =
  | {
      readonly type: 'create_batches';
      /** The `batch_worker` step of the template whose instances process the batches. */
      readonly worker: string;
      readonly workerCount: number;
      readonly totalItems: number;
      readonly cursors: readonly BatchCursor[];
    }
  | { readonly type: 'no_batches' };

/** Batches given cursor by cursor (see {@link batchCursors} for even ones). */
export interface ExplicitBatches {
  /** The `batch_worker` step of the template whose instances process the batches. */
  worker: string;
  /** One cursor per worker instance; none means `no_batches`. */
  cursors: readonly BatchCursor[];
  /** Items in all batches (default: the sum of the cursors' `batchSize`). */
  totalItems?: number;
}

/** `total` items in batches of `batchSize` (the last one may be smaller). */
export interface EvenBatches {
  /** The `batch_worker` step of the template whose instances process the batches. */
  worker: string;
  /** Items to process, 0 or more; 0 means `no_batches`. */
  total: number;
  /** Items per batch, 1 or more. */
  batchSize: number;
}

/** What `StepResult.batches` takes. */
export type BatchesSpec = ExplicitBatches | EvenBatches;

function nonNegativeInt(path: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new InvalidArgumentError(path, `expected an integer >= 0, got ${describe(v)}`);
  }
  return v;
}

/**
 * Splits `total` items into batches of `batchSize`: batch ids `"001"`, `"002"`, … (at least
 * three digits, as the engine numbers the worker instances), integer cursors
 * `[i * batchSize, min((i + 1) * batchSize, total))`, the last batch holding the remainder.
 * No items, no cursors.
 *
 * @example
 * batchCursors(2500, 1000);
 * // [{ batchId: '001', startCursor: 0, endCursor: 1000, batchSize: 1000 },
 * //  { batchId: '002', startCursor: 1000, endCursor: 2000, batchSize: 1000 },
 * //  { batchId: '003', startCursor: 2000, endCursor: 2500, batchSize: 500 }]
 *
 * @throws InvalidArgumentError when `total` is not an integer >= 0 or `batchSize` not one >= 1
 */
export function batchCursors(total: number, batchSize: number): BatchCursor[] {
  nonNegativeInt('total', total);
  if (typeof batchSize !== 'number' || !Number.isSafeInteger(batchSize) || batchSize < 1) {
    throw new InvalidArgumentError('batchSize', `expected an integer >= 1, got ${describe(batchSize)}`);
  }
  const cursors: BatchCursor[] = [];
  for (let start = 0, i = 1; start < total; start += batchSize, i++) {
    const end = Math.min(start + batchSize, total);
    cursors.push({ batchId: String(i).padStart(3, '0'), startCursor: start, endCursor: end, batchSize: end - start });
  }
  return cursors;
}

/**
 * The result object of a decision or batch helper: the caller's extra keys plus the outcome.
 * The extra keys are handed to dependents like any result.
 */
function withOutcome(helper: string, key: string, outcome: Record<string, unknown>, result: unknown): Record<string, unknown> {
  if (result === undefined || result === null) return { [key]: outcome };
  if (typeof result !== 'object' || Array.isArray(result)) {
    throw new InvalidArgumentError('result', `${helper} merges its outcome into an object; expected an object, got ${describe(result)}`);
  }
  if (Object.prototype.hasOwnProperty.call(result, key)) {
    throw new InvalidArgumentError(`result.${key}`, `${helper} writes '${key}' itself; leave it out of the result`);
  }
  return { ...(result as Record<string, unknown>), [key]: outcome };
}

/** @internal The result of `StepResult.decision(steps, result)`. */
export function decisionResult(steps: readonly string[], result: unknown): Record<string, unknown> {
  if (!Array.isArray(steps)) {
    throw new InvalidArgumentError('steps', `expected an array of step names, got ${describe(steps)}`);
  }
  const seen = new Set<string>();
  steps.forEach((s: unknown, i) => {
    if (typeof s !== 'string' || s.length === 0) {
      throw new InvalidArgumentError(`steps[${i}]`, `expected a step name, got ${describe(s)}`);
    }
    if (seen.has(s)) throw new InvalidArgumentError(`steps[${i}]`, `'${s}' is named twice`);
    seen.add(s);
  });
  // Choosing nothing is the `no_branches` outcome: a list computed at run time may be empty.
  if (steps.length === 0) return noBranchesResult(result);
  return withOutcome('StepResult.decision', DECISION_KEY, { type: 'create_steps', step_names: [...steps] }, result);
}

/** @internal The result of `StepResult.noBranches(result)`. */
export function noBranchesResult(result: unknown): Record<string, unknown> {
  return withOutcome('StepResult.noBranches', DECISION_KEY, { type: 'no_branches' }, result);
}

function checkCursor(c: unknown, i: number, ids: Set<string>): BatchCursor {
  const path = `cursors[${i}]`;
  if (c === null || typeof c !== 'object' || Array.isArray(c)) {
    throw new InvalidArgumentError(path, `expected { batchId, startCursor, endCursor, batchSize }, got ${describe(c)}`);
  }
  const { batchId, startCursor, endCursor, batchSize } = c as Record<string, unknown>;
  if (typeof batchId !== 'string' || batchId.length === 0) {
    throw new InvalidArgumentError(`${path}.batchId`, `expected a non-empty string, got ${describe(batchId)}`);
  }
  if (ids.has(batchId)) throw new InvalidArgumentError(`${path}.batchId`, `'${batchId}' is used by an earlier cursor`);
  ids.add(batchId);
  // `undefined` would vanish from the JSON and reach the worker as a missing cursor.
  if (startCursor === undefined) throw new InvalidArgumentError(`${path}.startCursor`, 'is required (any JSON value)');
  if (endCursor === undefined) throw new InvalidArgumentError(`${path}.endCursor`, 'is required (any JSON value)');
  nonNegativeInt(`${path}.batchSize`, batchSize);
  return { batchId, startCursor: startCursor as JsonValue, endCursor: endCursor as JsonValue, batchSize: batchSize as number };
}

/** @internal The result of `StepResult.batches(spec, result)`. */
export function batchesResult(spec: BatchesSpec, result: unknown): Record<string, unknown> {
  if (spec === null || typeof spec !== 'object') {
    throw new InvalidArgumentError('batches', `expected { worker, cursors } or { worker, total, batchSize }, got ${describe(spec)}`);
  }
  const { worker } = spec;
  if (typeof worker !== 'string' || worker.length === 0) {
    throw new InvalidArgumentError('worker', `expected the name of a batch_worker step, got ${describe(worker)}`);
  }
  let cursors: BatchCursor[];
  let totalItems: number;
  if ('cursors' in spec) {
    if ('total' in spec || 'batchSize' in spec) {
      throw new InvalidArgumentError('batches', 'give either cursors or total and batchSize, not both');
    }
    if (!Array.isArray(spec.cursors)) {
      throw new InvalidArgumentError('cursors', `expected an array of cursors, got ${describe(spec.cursors)}`);
    }
    const ids = new Set<string>();
    cursors = spec.cursors.map((c, i) => checkCursor(c, i, ids));
    totalItems =
      spec.totalItems === undefined ? cursors.reduce((sum, c) => sum + c.batchSize, 0) : nonNegativeInt('totalItems', spec.totalItems);
  } else {
    cursors = batchCursors(spec.total, spec.batchSize);
    totalItems = spec.total;
  }
  if (cursors.length === 0) return noBatchesResult(result);
  const outcome = {
    type: 'create_batches',
    worker_template_name: worker,
    worker_count: cursors.length,
    total_items: totalItems,
    cursor_configs: cursors.map((c) => ({
      batch_id: c.batchId,
      start_cursor: c.startCursor,
      end_cursor: c.endCursor,
      batch_size: c.batchSize,
    })),
  };
  return withOutcome('StepResult.batches', BATCH_KEY, outcome, result);
}

/** @internal The result of `StepResult.noBatches(result)`. */
export function noBatchesResult(result: unknown): Record<string, unknown> {
  return withOutcome('StepResult.noBatches', BATCH_KEY, { type: 'no_batches' }, result);
}

function outcomeOf(result: unknown, key: string): Record<string, unknown> | undefined {
  if (result === null || typeof result !== 'object' || Array.isArray(result)) return undefined;
  if (!Object.prototype.hasOwnProperty.call(result, key)) return undefined;
  const outcome = (result as Record<string, unknown>)[key];
  if (outcome === null || typeof outcome !== 'object' || Array.isArray(outcome)) {
    throw new TypeError(`'${key}' is ${describe(outcome)}, not an outcome object`);
  }
  return outcome as Record<string, unknown>;
}

/**
 * @internal Reads the decision outcome of a step's result (`undefined`: the result carries
 * none).
 *
 * @throws TypeError naming what is malformed
 */
export function parseDecision(result: unknown): DecisionOutcome | undefined {
  const o = outcomeOf(result, DECISION_KEY);
  if (o === undefined) return undefined;
  if (o.type === 'no_branches') return { type: 'no_branches' };
  if (o.type !== 'create_steps') throw new TypeError(`${DECISION_KEY}.type is ${describe(o.type)}, not 'create_steps' or 'no_branches'`);
  const names = o.step_names;
  if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) {
    throw new TypeError(`${DECISION_KEY}.step_names is ${describe(names)}, not an array of step names`);
  }
  return { type: 'create_steps', stepNames: names as string[] };
}

/**
 * @internal Reads the batch outcome of a step's result (`undefined`: the result carries none).
 *
 * @throws TypeError naming what is malformed
 */
export function parseBatches(result: unknown): BatchOutcome | undefined {
  const o = outcomeOf(result, BATCH_KEY);
  if (o === undefined) return undefined;
  if (o.type === 'no_batches') return { type: 'no_batches' };
  if (o.type !== 'create_batches') throw new TypeError(`${BATCH_KEY}.type is ${describe(o.type)}, not 'create_batches' or 'no_batches'`);
  if (!Array.isArray(o.cursor_configs)) throw new TypeError(`${BATCH_KEY}.cursor_configs is ${describe(o.cursor_configs)}, not an array`);
  const cursors = (o.cursor_configs as unknown[]).map((c, i): BatchCursor => {
    if (c === null || typeof c !== 'object') throw new TypeError(`${BATCH_KEY}.cursor_configs[${i}] is ${describe(c)}, not a cursor`);
    const r = c as Record<string, unknown>;
    return {
      batchId: String(r.batch_id),
      startCursor: (r.start_cursor ?? null) as JsonValue,
      endCursor: (r.end_cursor ?? null) as JsonValue,
      batchSize: Number(r.batch_size),
    };
  });
  return {
    type: 'create_batches',
    worker: String(o.worker_template_name),
    workerCount: Number(o.worker_count),
    totalItems: Number(o.total_items),
    cursors,
  };
}
