/**
 * Shared test plumbing: backends (SQLite always; PostgreSQL through DATABASE_URL; PostgreSQL with
 * RabbitMQ carrying the messages when RABBITMQ_URL is set too), fresh databases, and fixture
 * templates registered under namespaces unique to one test run.
 */

import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';

import { type Client, connect, type CreateTaskRequest, type Task, type TaskDetail } from '../ts/index.js';

export const FIXTURES = join(__dirname, 'fixtures');

/** A backend the suites run against. */
export interface Backend {
  /** `postgres_rabbitmq`: PostgreSQL keeps every state, RabbitMQ carries the step messages. */
  readonly name: 'sqlite' | 'postgres' | 'postgres_rabbitmq';
  /** The database, as `client.backend()` reports it. */
  readonly database: 'sqlite' | 'postgres';
  /**
   * The `TASKER_*` variables that make this backend what it is, set in `process.env` for the
   * duration of its suites (see {@link describeBackend}); empty for SQLite and PostgreSQL.
   */
  readonly env: Readonly<Record<string, string>>;
  /** A database URL: a fresh SQLite file each call, or DATABASE_URL. */
  url(): string;
}

const tempDirs: string[] = [];

/** A temporary directory removed when the process exits. */
export function tempDir(prefix = 'tasker-node-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

process.on('exit', () => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh SQLite database URL (never the default ./tasker.db, never DATABASE_URL). */
export function sqliteUrl(): string {
  return `sqlite://${join(tempDir(), 'tasker.db')}`;
}

/**
 * The backends to test: SQLite, plus PostgreSQL when DATABASE_URL is set, plus PostgreSQL with
 * RabbitMQ (`messaging.backend = "rabbitmq"`, on RABBITMQ_URL) when RABBITMQ_URL is set too.
 * With TASKER_REQUIRE_POSTGRES=1 (the test script sets it), a missing DATABASE_URL is an error.
 */
export function backends(): Backend[] {
  const list: Backend[] = [{ name: 'sqlite', database: 'sqlite', env: {}, url: sqliteUrl }];
  const pg = process.env.DATABASE_URL;
  if (pg !== undefined && pg !== '') {
    if (!/^postgres(ql)?:\/\//.test(pg)) throw new Error(`DATABASE_URL must be a postgres:// URL, got ${pg}`);
    list.push({ name: 'postgres', database: 'postgres', env: {}, url: () => pg });
    const rabbit = process.env.RABBITMQ_URL;
    if (rabbit !== undefined && rabbit !== '') {
      list.push({
        name: 'postgres_rabbitmq',
        database: 'postgres',
        // Queues of this file's own (each test file is a process; the exchange is shared).
        env: {
          TASKER_MESSAGING__BACKEND: 'rabbitmq',
          TASKER_MESSAGING__RABBITMQ_QUEUE_PREFIX: `nd${randomBytes(6).toString('hex')}.`,
        },
        url: () => pg,
      });
    }
  } else if (process.env.TASKER_REQUIRE_POSTGRES === '1') {
    throw new Error('PostgreSQL tests were requested (TASKER_REQUIRE_POSTGRES=1) but DATABASE_URL is not set');
  }
  return list;
}

/**
 * `describe(title, body)` with `backend.env` set in `process.env` from before the suite's first
 * hook until after its last: every client the suite connects, and every child process it starts
 * (they inherit the environment), runs on the backend. The variables are restored afterwards.
 * Suites of one file run one after the other, so the variables never leak into another suite.
 */
export function describeBackend(backend: Backend, title: string, body: () => void): void {
  describe(title, () => {
    const saved = new Map<string, string | undefined>();
    before(() => {
      for (const [k, v] of Object.entries(backend.env)) {
        saved.set(k, process.env[k]);
        process.env[k] = v;
      }
    });
    body();
    // Registered last, so it runs after the suite's own `after` hooks (they run in order).
    after(() => {
      for (const [k, v] of saved) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      saved.clear();
    });
  });
}

/** A connected client with fixture templates registered under unique namespaces. */
export interface Harness {
  readonly client: Client;
  readonly backend: Backend;
  /** The database URL the client is connected to. */
  readonly url: string;
  /** The unique namespace that replaced `original` (e.g. `nd_linear` → `nd_linear_1a2b3c4d`). */
  ns(original: string): string;
  /** Creates a task of a fixture template (namespace given by its original name). */
  createTask(namespace: string, name: string, context: unknown, extra?: Partial<CreateTaskRequest>): Promise<Task>;
  close(): Promise<void>;
}

/**
 * Copies fixture files into a temp dir with every `namespace_name` (and `queue`) made unique,
 * then registers them. Tests sharing a database never see each other's steps.
 */
export async function harness(backend: Backend, fixtures: string[]): Promise<Harness> {
  const suffix = randomBytes(4).toString('hex');
  const dir = join(tempDir(), 'templates');
  mkdirSync(dir);
  for (const f of fixtures) {
    const text = readFileSync(join(FIXTURES, f), 'utf8').replace(
      /^(\s*(?:namespace_name|queue):\s*)([a-z][a-z0-9_]*)\s*$/gm,
      (_m, key: string, name: string) => `${key}${name}_${suffix}`,
    );
    writeFileSync(join(dir, f), text);
  }
  const url = backend.url();
  const client = connect({ databaseUrl: url });
  await client.registerTemplates(dir);
  const ns = (original: string): string => `${original}_${suffix}`;
  return {
    client,
    backend,
    url,
    ns,
    createTask: (namespace, name, context, extra = {}) =>
      client.createTask({
        namespace: ns(namespace),
        name,
        context,
        initiator: 'tasker-node tests',
        sourceSystem: 'node --test',
        reason: 'test',
        ...extra,
      }),
    close: () => client.close(),
  };
}

/** A promise with its resolve function, for handlers the test controls. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The steps' states and errors, for assertion messages. */
export function explain(task: TaskDetail): string {
  return JSON.stringify(task.steps.map((s) => ({ step: s.name, state: s.state, attempts: s.attempts, error: s.lastError?.message })));
}
