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

/** Where a value cannot be turned into JSON. */
export interface Unserializable {
  /** Path of the offending value, e.g. `result.items[2].amount`. */
  path: string;
  /** Why, e.g. `a BigInt` or `a circular reference`. */
  reason: string;
}

/**
 * Finds the first value that `JSON.stringify` rejects (a BigInt, a circular reference, or a
 * `toJSON` that throws). Only called after `JSON.stringify` failed, so it may be slow.
 *
 * @internal
 */
export function findUnserializable(value: unknown, path: string, ancestors: object[] = []): Unserializable | undefined {
  if (typeof value === 'bigint') return { path, reason: `a BigInt (${value}n); convert it to a string or number` };
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
