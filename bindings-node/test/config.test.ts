/**
 * The package reads the same configuration as the CLI (docs/configuration.md): a config tree
 * under TASKER_CONFIG_ROOT (or ./config/tasker), overridden by TASKER_<SECTION>__<KEY>
 * variables, overridden by options passed in code; an invalid configuration makes connect
 * throw a ConfigurationError naming each file or variable and key.
 *
 * Every case that needs a configuration runs in a child process (fixtures/config-child.ts)
 * with its own environment and working directory, so nothing leaks into the other tests (nor
 * races the engine's threads reading the environment).
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { ConfigurationError, type ConfigValue, connect, InvalidArgumentError, loadConfig } from '../ts/index.js';
import { fromNative } from '../ts/errors.js';
import { type Backend, backends, describeBackend, tempDir } from './helpers.js';

const CHILD = join(__dirname, 'fixtures', 'config-child.ts');
/** By URL, so that a child whose working directory is elsewhere still finds it. */
const TSX = pathToFileURL(require.resolve('tsx')).href;

interface ChildReport {
  listed?: number | null;
  worker?: number;
  config?: ConfigValue[];
  error?: { name: string; code: string; message: string; problems: { source: string; key: string; message: string }[] };
}

/** A config tree: `files` maps paths below the root (`base/worker.toml`) to their text. */
function configTree(files: Record<string, string>, root = tempDir('tasker-node-config-')): string {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

/**
 * Runs the child with this process's environment minus every TASKER_ variable, plus the
 * backend's own (PostgreSQL with RabbitMQ), plus `env`.
 */
function runChild(
  backend: Backend,
  options: { env?: Record<string, string>; cwd?: string; concurrency?: number } = {},
): Promise<ChildReport> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TASKER_')) env[k] = v;
  Object.assign(env, backend.env, options.env);
  const url = backend.url();
  const queue = `cfg_${randomBytes(4).toString('hex')}`;
  const args = ['--import', TSX, CHILD, url, queue];
  if (options.concurrency !== undefined) args.push(String(options.concurrency));
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { env, cwd: options.cwd, timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`config-child failed: ${error.message}\n${stdout}${stderr}`));
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as ChildReport);
      } catch {
        reject(new Error(`config-child printed no JSON:\n${stdout}${stderr}`));
      }
    });
  });
}

function value(report: ChildReport, key: string): ConfigValue | undefined {
  return report.config?.find((v) => v.key === key);
}

const WORKER_TOML = '[worker]\nconcurrency = 3\n';

for (const backend of backends()) {
  describeBackend(backend, `configuration (${backend.name})`, () => {
    test('a worker started without concurrency gets the configured one (base/worker.toml)', async () => {
      const root = configTree({ 'base/worker.toml': WORKER_TOML });
      const report = await runChild(backend, { env: { TASKER_CONFIG_ROOT: root } });
      assert.equal(report.listed, 3, JSON.stringify(report));
      assert.equal(report.worker, 3);
      assert.deepEqual(value(report, 'worker.concurrency'), {
        key: 'worker.concurrency',
        value: 3,
        origin: { kind: 'file', path: join(root, 'base', 'worker.toml') },
      });
    });

    test('a child process inherits the backend (PostgreSQL with RabbitMQ: messaging.backend)', async () => {
      // Inheriting this process's environment, as the worker processes other tests start do.
      const queue = `cfg_${randomBytes(4).toString('hex')}`;
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile(process.execPath, ['--import', TSX, CHILD, backend.url(), queue], { timeout: 60_000 }, (error, out, err) =>
          error ? reject(new Error(`config-child failed: ${error.message}\n${out}${err}`)) : resolve(out),
        );
      });
      const report = JSON.parse(stdout.trim().split('\n').pop() ?? '') as ChildReport;
      const messaging = value(report, 'messaging.backend');
      assert.equal(messaging?.value, backend.name === 'postgres_rabbitmq' ? 'rabbitmq' : 'database', JSON.stringify(messaging));
    });

    test('TASKER_WORKER__CONCURRENCY beats the file', async () => {
      const root = configTree({ 'base/worker.toml': WORKER_TOML });
      const report = await runChild(backend, { env: { TASKER_CONFIG_ROOT: root, TASKER_WORKER__CONCURRENCY: '5' } });
      assert.equal(report.listed, 5, JSON.stringify(report));
      assert.deepEqual(value(report, 'worker.concurrency')?.origin, { kind: 'env', var: 'TASKER_WORKER__CONCURRENCY' });
    });

    test('an explicit concurrency beats the variable and the file', async () => {
      const root = configTree({ 'base/worker.toml': WORKER_TOML });
      const report = await runChild(backend, {
        env: { TASKER_CONFIG_ROOT: root, TASKER_WORKER__CONCURRENCY: '5' },
        concurrency: 7,
      });
      assert.equal(report.listed, 7, JSON.stringify(report));
      assert.equal(report.worker, 7);
      // The configuration itself is unchanged: explicit options are not part of it.
      assert.equal(value(report, 'worker.concurrency')?.value, 5);
    });
  });
}

describe('configuration', () => {
  const sqlite = backends()[0]!;

  test('./config/tasker is found from the working directory; TASKER_ENV picks the environment layer', async () => {
    const cwd = tempDir('tasker-node-cwd-');
    configTree(
      { 'base/worker.toml': WORKER_TOML, 'environments/test/worker.toml': '[worker]\nconcurrency = 4\n' },
      join(cwd, 'config', 'tasker'),
    );
    const dev = await runChild(sqlite, { cwd });
    assert.equal(dev.listed, 3, JSON.stringify(dev));
    const testEnv = await runChild(sqlite, { cwd, env: { TASKER_ENV: 'test' } });
    assert.equal(testEnv.listed, 4, JSON.stringify(testEnv));
    assert.equal(value(testEnv, 'worker.concurrency')?.origin.kind, 'file');
  });

  test('without any configuration the core defaults apply (concurrency 8, as before)', async () => {
    const report = await runChild(sqlite, { cwd: tempDir('tasker-node-cwd-') });
    assert.equal(report.listed, 8, JSON.stringify(report));
    assert.deepEqual(value(report, 'worker.concurrency')?.origin, { kind: 'default' });
  });

  test('loadConfig shows the database URL without its password', async () => {
    const report = await runChild(sqlite, {
      env: { TASKER_CONFIG_ROOT: configTree({}), TASKER_DATABASE__URL: 'postgres://app:s3cr3t@db.example:5432/tasker' },
    });
    const shown = value(report, 'database.url');
    assert.equal(shown?.origin.kind, 'env');
    assert.doesNotMatch(JSON.stringify(shown), /s3cr3t/);
    assert.match(String(shown?.value), /db\.example/);
  });

  test('an unknown key makes connect throw a ConfigurationError naming the file and key', async () => {
    const root = configTree({ 'base/worker.toml': '[worker]\nconcurency = 3\n' });
    const report = await runChild(sqlite, { env: { TASKER_CONFIG_ROOT: root } });
    const error = report.error;
    assert.ok(error, JSON.stringify(report));
    assert.equal(error.name, 'ConfigurationError');
    assert.equal(error.code, 'config_invalid');
    assert.equal(error.problems.length, 1, JSON.stringify(error.problems));
    assert.equal(error.problems[0]!.key, 'worker.concurency');
    assert.equal(error.problems[0]!.source, join(root, 'base', 'worker.toml'));
    assert.match(error.problems[0]!.message, /concurrency/, 'did you mean');
    assert.match(error.message, /worker\.concurency/);
    assert.match(error.message, /worker\.toml/);
  });

  test('every problem is listed, a bad variable by its name', async () => {
    const root = configTree({ 'base/worker.toml': '[worker]\nconcurency = 3\n' });
    const report = await runChild(sqlite, { env: { TASKER_CONFIG_ROOT: root, TASKER_WORKER__LEASE_MS: 'soon' } });
    const problems = report.error?.problems ?? [];
    assert.equal(problems.length, 2, JSON.stringify(report));
    const variable = problems.find((p) => p.source === '$TASKER_WORKER__LEASE_MS');
    assert.equal(variable?.key, 'worker.lease_ms', JSON.stringify(problems));
    assert.match(report.error?.message ?? '', /TASKER_WORKER__LEASE_MS/);
    assert.match(report.error?.message ?? '', /worker\.concurency/);
  });

  test('loadConfig in this process: every key with a value and its origin, sorted', () => {
    const values = loadConfig();
    const keys = values.map((v) => v.key);
    assert.deepEqual(keys, [...keys].sort());
    for (const key of ['worker.concurrency', 'worker.lease_ms', 'worker.dispatch_mode', 'database.max_connections']) {
      assert.ok(keys.includes(key), `${key} in ${keys.join(', ')}`);
    }
    for (const v of values) assert.ok(['default', 'file', 'env'].includes(v.origin.kind), JSON.stringify(v));
  });

  test('connect refuses a maxConnections out of range before reading anything', () => {
    for (const bad of [1, 1001, 2.5, Number.NaN]) {
      assert.throws(
        () => connect({ databaseUrl: sqlite.url(), maxConnections: bad }),
        (e: unknown) => e instanceof InvalidArgumentError && e.path === 'maxConnections',
      );
    }
  });

  test('config_invalid from the native layer becomes a ConfigurationError with its problems', () => {
    const payload = {
      code: 'config_invalid',
      message: 'invalid configuration: /etc/t/base/worker.toml: worker.x: no such configuration key',
      problems: [{ source: '/etc/t/base/worker.toml', key: 'worker.x', message: 'no such configuration key' }],
    };
    const e = fromNative(new Error(`__tasker_error__:${JSON.stringify(payload)}`));
    assert.ok(e instanceof ConfigurationError);
    assert.equal(e.code, 'config_invalid');
    assert.deepEqual(e.problems, payload.problems);
  });
});
