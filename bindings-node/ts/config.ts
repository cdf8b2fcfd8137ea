/**
 * The configuration this process runs with, read-only: the same layers the CLI reads (built-in
 * defaults < `base/*.toml` < `environments/<TASKER_ENV>/*.toml` < `TASKER_<SECTION>__<KEY>`
 * variables; see docs/configuration.md). Options passed in code ({@link connect},
 * {@link Worker}) win over it and are not shown here.
 *
 * @module
 */

import { loadConfig as nativeLoadConfig } from '../native/index.js';
import { nativeSync } from './errors.js';
import type { JsonValue } from './records.js';

/** Where a configured value came from. */
export type ConfigOrigin =
  | { readonly kind: 'default' }
  /** A file of the configuration tree. */
  | { readonly kind: 'file'; readonly path: string }
  /** A `TASKER_<SECTION>__<KEY>` environment variable. */
  | { readonly kind: 'env'; readonly var: string };

/** One configured value, as `tasker config show` prints it. */
export interface ConfigValue {
  /** `section.key`, e.g. `worker.concurrency`. */
  readonly key: string;
  /** The value; secrets (the database URL) are shown without credentials. */
  readonly value: JsonValue;
  readonly origin: ConfigOrigin;
}

/**
 * Reads the configuration now (files and environment) and returns every key that has a value,
 * with its origin, sorted by key.
 *
 * @example
 * const concurrency = loadConfig().find((v) => v.key === 'worker.concurrency');
 *
 * @throws ConfigurationError when the configuration is invalid
 */
export function loadConfig(): ConfigValue[] {
  return JSON.parse(nativeSync(() => nativeLoadConfig())) as ConfigValue[];
}
