/**
 * Small helpers shared by the modules of the package.
 *
 * @module
 * @internal
 */

/** @internal Short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'bigint') return `${value}n`;
  return `${typeof value === 'symbol' ? value.toString() : String(value)} (${typeof value})`;
}

/**
 * The engine's nesting limit for stored JSON values: the native `MAX_JSON_DEPTH` (a test checks
 * they agree), repeated here so that the handler and testing modules do not load the addon.
 *
 * @internal
 */
export const MAX_JSON_DEPTH = 64;

/**
 * `JSON.stringify`, except that NaN and ±Infinity (which it would silently write as `null`)
 * throw a `TypeError`. Only a text containing `null` can hide one, so other values are
 * serialized once.
 *
 * @internal
 */
export function stringifyStrict(value: unknown): string | undefined {
  const text = JSON.stringify(value);
  if (text === undefined || !text.includes('null')) return text;
  JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'number' && !Number.isFinite(v)) throw new TypeError(`${v} is not a JSON number`);
    return v;
  });
  return text;
}

/**
 * Whether `value` nests arrays/objects more than `limit` levels deep (a scalar is depth 0),
 * as the engine counts. Iterative, so a value too deep for `JSON.stringify` cannot overflow the
 * stack here; gives up (false) after a million values.
 *
 * @internal
 */
export function nestedDeeperThan(value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  for (let budget = 1_000_000; budget > 0 && stack.length > 0; budget--) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > limit) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

/** Where a value cannot be turned into JSON. */
export interface Unserializable {
  /** Path of the offending value, e.g. `result.items[2].amount`. */
  path: string;
  /** Why, e.g. `a BigInt` or `a circular reference`. */
  reason: string;
}

/**
 * Finds the first value that `JSON.stringify` rejects (a BigInt, a circular reference, or a
 * `toJSON` that throws) or that {@link stringifyStrict} refuses (NaN, ±Infinity). Only called
 * after serializing failed, so it may be slow.
 *
 * @internal
 */
export function findUnserializable(value: unknown, path: string, ancestors: object[] = []): Unserializable | undefined {
  if (typeof value === 'bigint') return { path, reason: `a BigInt (${value}n); convert it to a string or number` };
  if (typeof value === 'number' && !Number.isFinite(value)) return { path, reason: `${value}, which JSON cannot represent` };
  if (value === null || typeof value !== 'object') return undefined;
  if (ancestors.includes(value)) return { path, reason: 'a circular reference' };
  const withToJson = value as { toJSON?: unknown };
  if (typeof withToJson.toJSON === 'function') {
    try {
      const replaced: unknown = (withToJson.toJSON as () => unknown).call(value);
      if (replaced !== value) return findUnserializable(replaced, path, [...ancestors, value]);
    } catch (e) {
      return { path, reason: `its toJSON() threw: ${e instanceof Error ? e.message : String(e)}` };
    }
  }
  const next = [...ancestors, value];
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = findUnserializable(value[i], `${path}[${i}]`, next);
      if (bad) return bad;
    }
    return undefined;
  }
  for (const [k, v] of Object.entries(value)) {
    const bad = findUnserializable(v, /^[A-Za-z_$][\w$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`, next);
    if (bad) return bad;
  }
  return undefined;
}
