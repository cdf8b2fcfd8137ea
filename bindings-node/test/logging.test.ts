/**
 * The engine's log records reach the application's logger (`setLogger`, ts/logging.ts): a
 * permanent failure arrives as a `warn` record with the step's fields, a logger that throws
 * does not stop forwarding, object loggers get `(message, fields)`, and the drain timer never
 * keeps a process alive.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import {
  defaultLogger,
  defineHandler,
  InvalidArgumentError,
  type LogRecord,
  PermanentError,
  setLogger,
  type TaskDetail,
  Worker,
} from '../ts/index.js';
import { backends, describeBackend, type Harness, harness, sleep } from './helpers.js';

const FAILED = 'step attempt failed permanently';
const INDEX = join(__dirname, '..', 'ts', 'index.ts');

/** Waits (up to `timeoutMs`) until `find` returns something; the drain runs every 100 ms. */
async function until<T>(what: string, find: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The permanent-failure record of `taskUuid` among `records`. */
function failureOf(records: readonly LogRecord[], taskUuid: string): LogRecord | undefined {
  return records.find((r) => r.message === FAILED && r.fields.task_uuid === taskUuid);
}

interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from the child's `closed` line to its exit (`null`: it never printed it). */
  afterClose: number | null;
}

/** Runs a short script (CommonJS, `tasker` bound to the package) in a fresh `node`; killed after 30 s. */
function runChild(script: string, env: NodeJS.ProcessEnv = {}): Promise<ChildRun> {
  const source = `const tasker = require(${JSON.stringify(INDEX)});\n${script}`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=commonjs', '-e', source], {
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    let closedAt: number | null = null;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (closedAt === null && stdout.includes('closed\n')) closedAt = Date.now();
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, afterClose: closedAt === null ? null : Date.now() - closedAt });
    });
  });
}

test('the default logger writes warnings and errors to console, nothing below', () => {
  const seen: string[] = [];
  const saved = { warn: console.warn, error: console.error, info: console.info, debug: console.debug };
  console.warn = (m: string) => seen.push(`warn ${m}`);
  console.error = (m: string) => seen.push(`error ${m}`);
  console.info = (m: string) => seen.push(`info ${m}`);
  console.debug = (m: string) => seen.push(`debug ${m}`);
  try {
    for (const level of ['error', 'warn', 'info', 'debug', 'trace'] as const) {
      defaultLogger({ level, target: 'tasker_core::worker', message: level, fields: {}, timestamp: new Date() });
    }
  } finally {
    Object.assign(console, saved);
  }
  assert.deepEqual(seen, ['error error', 'warn warn']);
});

test('setLogger refuses what is not a logger, naming what is missing', () => {
  assert.throws(() => setLogger(42 as never), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'logger');
  assert.throws(() => setLogger(undefined as never), InvalidArgumentError);
  assert.throws(
    () => setLogger({ warn() {}, error() {} } as never),
    (e: unknown) => e instanceof InvalidArgumentError && /no info, debug methods/.test(e.message),
  );
  setLogger(console); // the default: accepted as it is
});

for (const backend of backends()) {
  describeBackend(backend, `logging on ${backend.name}`, () => {
    let h: Harness;
    let worker: Worker;
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };

    /** Runs one task whose only step fails permanently. */
    const failTask = async (): Promise<TaskDetail> => {
      const done = await (await h.createTask('nd_fail', 'permanent', {})).wait({ timeout: 30 });
      assert.equal(done.state, 'error');
      return done;
    };

    before(async () => {
      process.on('warning', onWarning);
      h = await harness(backend, ['failures.yaml']);
      worker = new Worker(h.client, {
        queues: [h.ns('nd_fail')],
        handlers: [
          defineHandler('NodeFail.Permanent', () => {
            throw new PermanentError('card declined', { errorType: 'CardDeclined' });
          }),
        ],
      });
      await worker.start();
    });

    after(async () => {
      await worker?.stop({ timeout: 5 });
      await h?.close();
      setLogger(defaultLogger);
      process.off('warning', onWarning);
    });

    test('a permanent failure reaches the logger as a warn record with the step fields', async () => {
      const records: LogRecord[] = [];
      setLogger((r) => records.push(r));
      const before = Date.now();
      const done = await failTask();
      const r = await until('the failure record', () => failureOf(records, done.uuid));
      assert.equal(r.level, 'warn');
      assert.match(r.target, /^tasker_core/);
      const step = done.step('permanent_step');
      assert.equal(r.fields.task_uuid, done.uuid);
      assert.equal(r.fields.step_uuid, step?.uuid);
      assert.equal(r.fields.step_name, 'permanent_step');
      assert.equal(r.fields.attempt, '1');
      assert.equal(r.fields.correlation_id, done.correlationId);
      assert.equal(r.fields.error_type, 'CardDeclined');
      assert.ok(r.timestamp instanceof Date && !Number.isNaN(r.timestamp.getTime()), String(r.timestamp));
      assert.ok(r.timestamp.getTime() >= before - 1000 && r.timestamp.getTime() <= Date.now() + 1000, r.timestamp.toISOString());
    });

    test('a throwing logger does not stop later records reaching it, nor a good one', async () => {
      const thrownFor: string[] = [];
      setLogger((r) => {
        if (r.message === FAILED) thrownFor.push(r.fields.task_uuid ?? '');
        throw new Error('broken logger');
      });
      const first = await failTask();
      await until('the first failure at the throwing logger', () => (thrownFor.includes(first.uuid) ? true : undefined));
      const second = await failTask();
      await until('the second failure at the throwing logger', () => (thrownFor.includes(second.uuid) ? true : undefined));
      const reported = warnings.filter((w) => (w as Error & { code?: string }).code === 'TASKER_LOGGER_FAILED');
      assert.equal(reported.length, 1, 'reported once, as a process warning');
      assert.match(reported[0]?.message ?? '', /broken logger/);

      const good: LogRecord[] = [];
      setLogger((r) => good.push(r));
      const third = await failTask();
      await until('the failure at the good logger', () => failureOf(good, third.uuid));
    });

    test('an async logger that rejects is caught like one that throws', async () => {
      let calls = 0;
      setLogger(async () => {
        calls++;
        throw new Error('async broken logger');
      });
      await failTask();
      await until('a call of the async logger', () => (calls > 0 ? true : undefined));
      // An unhandled rejection would fail this test file; a later record still gets through.
      const good: LogRecord[] = [];
      setLogger((r) => good.push(r));
      const done = await failTask();
      await until('the failure at the good logger', () => failureOf(good, done.uuid));
    });

    test('an object logger gets (message, fields) on the method of the level', async () => {
      const calls: { method: string; message: string; fields: Record<string, string> }[] = [];
      const record =
        (method: string) =>
        (message: string, fields: Record<string, string>): void => {
          calls.push({ method, message, fields });
        };
      setLogger({ error: record('error'), warn: record('warn'), info: record('info'), debug: record('debug') });
      const done = await failTask();
      const call = await until('the warn call', () => calls.find((c) => c.message === FAILED && c.fields.task_uuid === done.uuid));
      assert.equal(call.method, 'warn');
      assert.equal(call.fields.step_name, 'permanent_step');
    });

    test('null silences the records', async () => {
      setLogger(null);
      await failTask(); // nothing to assert but that nothing breaks; the drain keeps emptying the channel
      await sleep(250);
    });

    test('a process that only connects and closes exits on its own', async () => {
      const run = await runChild(
        `process.on('warning', (w) => console.log('warning ' + w.code));
        (async () => {
          const client = tasker.connect({ databaseUrl: ${JSON.stringify(h.url)} });
          await client.ready();
          await client.close();
          console.log('closed');
        })().catch((e) => { console.error(e); process.exitCode = 1; });`,
      );
      assert.equal(run.signal, null, `killed: the process did not exit on its own\n${run.stderr}`);
      assert.equal(run.code, 0, run.stderr);
      assert.doesNotMatch(run.stdout, /warning/, 'forwarding started');
      assert.ok(run.afterClose !== null && run.afterClose < 3000, `exited ${run.afterClose} ms after close`);
    });

    test('records logged just before close are delivered by close; the process still exits', async () => {
      // Its own namespace and queue: the worker of this file must not take the child's step.
      const solo = await harness(backend, ['failures.yaml']);
      const ns = solo.ns('nd_fail');
      const url = solo.url; // on SQLite, a database of its own
      await solo.close();
      const run = await runChild(
        `const seen = [];
        tasker.setLogger((r) => seen.push(r));
        (async () => {
          const client = tasker.connect({ databaseUrl: ${JSON.stringify(url)} });
          const worker = new tasker.Worker(client, {
            queues: [${JSON.stringify(ns)}],
            handlers: [tasker.defineHandler('NodeFail.Permanent', () => { throw new tasker.PermanentError('card declined'); })],
          });
          await worker.start();
          const task = await client.createTask({ namespace: ${JSON.stringify(ns)}, name: 'permanent', context: {},
            initiator: 't', sourceSystem: 't', reason: 't' });
          await task.wait({ timeout: 30 });
          await worker.stop({ timeout: 5 });
          await client.close();
          const r = seen.find((r) => r.message === ${JSON.stringify(FAILED)} && r.fields.task_uuid === task.uuid);
          console.log(JSON.stringify({ level: r ? r.level : null }));
          console.log('closed');
        })().catch((e) => { console.error(e); process.exit(1); }); // a started worker would hold the process`,
      );
      assert.equal(run.signal, null, `killed: the process did not exit on its own\n${run.stderr}`);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /\{"level":"warn"\}/, 'the failure record reached the logger by the time close resolved');
      assert.ok(run.afterClose !== null && run.afterClose < 3000, `exited ${run.afterClose} ms after close`);
    });

    test('a TASKER_LOG that is not a filter is a process warning; the client still works', async () => {
      const run = await runChild(
        `process.on('warning', (w) => console.log('warning ' + w.code + ' ' + w.message));
        (async () => {
          const client = tasker.connect({ databaseUrl: ${JSON.stringify(h.url)} });
          await client.ready();
          await client.listTemplates();
          await client.close();
          console.log('closed');
        })().catch((e) => { console.error(e); process.exitCode = 1; });`,
        { TASKER_LOG: 'loud[' },
      );
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /warning TASKER_LOGS_NOT_FORWARDED .*TASKER_LOG/);
      assert.match(run.stdout, /closed/);
    });
  });
}
