/**
 * Benchmark of the Node binding: W2 (1,000 diamond workflows submitted at once) with TypeScript
 * no-op handlers, next to the same workload with Rust no-op handlers (`tasker bench`), and the
 * binding hop in µs. Prints figures; asserts nothing.
 *
 *   npm run build && npx tsx bindings-node/bench/bench.ts \
 *     [--backend sqlite|postgres|both] [--tasks 1000] [--concurrency 128] [--rust-bin target/release/tasker]
 *
 * PostgreSQL: a scratch database created on the DATABASE_URL server with `psql` (dropped
 * afterwards), as `tasker bench` does; without `psql`, a unique namespace in DATABASE_URL itself.
 */

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { hopProbe } from '../native/index.js';
import { contextFromEvent, type RawStepEvent } from '../ts/context.js';
import { connect, defineHandler, HandlerRegistry, Worker } from '../ts/index.js';
import { runAttempt } from '../ts/handler.js';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'both' },
    tasks: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '128' },
    'rust-bin': { type: 'string' },
    'hop-iterations': { type: 'string', default: '20000' },
  },
});

const TASKS = Number(args.tasks);
const CONCURRENCY = Number(args.concurrency);

function diamond(namespace: string): string {
  return `name: bench_diamond
namespace_name: ${namespace}
version: 1.0.0
steps:
  - { name: a, handler: { callable: noop } }
  - { name: b, dependencies: [a], handler: { callable: noop } }
  - { name: c, dependencies: [a], handler: { callable: noop } }
  - { name: d, dependencies: [b, c], handler: { callable: noop } }
`;
}

interface W2 {
  wallS: number;
  stepsPerS: number;
}

async function w2(databaseUrl: string): Promise<W2> {
  const dir = mkdtempSync(join(tmpdir(), 'tasker-node-bench-'));
  const namespace = `bench_${Math.random().toString(16).slice(2, 10)}`;
  writeFileSync(join(dir, 'diamond.yaml'), diamond(namespace));
  const client = connect({ databaseUrl });
  await client.registerTemplates(dir);
  let finalSteps = 0;
  let target = Number.POSITIVE_INFINITY;
  let allDone: () => void = () => undefined;
  const worker = new Worker(client, {
    queues: [namespace],
    concurrency: CONCURRENCY,
    handlers: [
      defineHandler('noop', (ctx) => {
        if (ctx.stepName === 'd' && ++finalSteps === target) allDone();
        return null;
      }),
    ],
  });
  await worker.start();
  const request = {
    namespace,
    name: 'bench_diamond',
    context: {},
    initiator: 'bench',
    sourceSystem: 'bench.ts',
    reason: 'benchmark',
  };
  // Warm-up.
  await Promise.all(Array.from({ length: 20 }, async () => (await client.createTask(request)).wait({ timeout: 60 })));

  finalSteps = 0;
  target = TASKS;
  const finished = new Promise<void>((resolve) => (allDone = resolve));
  const start = process.hrtime.bigint();
  const creators = 8;
  await Promise.all(
    Array.from({ length: creators }, async (_, k) => {
      const n = Math.min(Math.ceil(TASKS / creators), TASKS - k * Math.ceil(TASKS / creators));
      for (let i = 0; i < n; i++) await client.createTask(request);
    }),
  );
  await finished;
  const handlersDoneS = Number(process.hrtime.bigint() - start) / 1e9;
  // The last handlers ran; wait until the engine recorded every task as complete (one cheap
  // query per round rather than a wait per task).
  for (;;) {
    const complete = await client.listTasks({ namespace, state: 'complete', limit: TASKS + 100 });
    if (complete.length >= TASKS + 20) break;
    await new Promise((r) => setTimeout(r, 2));
  }
  const wallS = Number(process.hrtime.bigint() - start) / 1e9;
  if (process.env.BENCH_VERBOSE) console.log(`  handlers done after ${handlersDoneS.toFixed(2)} s, all complete after ${wallS.toFixed(2)} s`);
  await worker.stop({ timeout: 5 });
  await client.close();
  rmSync(dir, { recursive: true, force: true });
  return { wallS, stepsPerS: (TASKS * 4) / wallS };
}

function rustW2(bin: string, backend: string): W2 | undefined {
  try {
    const out = execFileSync(
      bin,
      ['bench', '--backend', backend, '--w1-runs', '20', '--w2-tasks', String(TASKS), '--w3-steps', '10', '--concurrency', String(CONCURRENCY), '--json'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const line = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { backend: string; w2_wall_s: number; w2_steps_per_s: number })
      .find((f) => f.backend === backend);
    return line ? { wallS: line.w2_wall_s, stepsPerS: line.w2_steps_per_s } : undefined;
  } catch (e) {
    console.error(`rust baseline failed: ${String(e)}`);
    return undefined;
  }
}

/** The binding hop: native round trip + JSON both ways + context + no-op handler + outcome. */
async function hop(iterations: number): Promise<{ sequentialUs: number; p50Us: number; p99Us: number; pipelinedUs: number }> {
  const event: RawStepEvent = {
    event_id: 1,
    task_uuid: '01934f7a-3c1e-7a2b-9c4d-5e6f7a8b9c0d',
    step_uuid: '01934f7a-3c1e-7a2b-9c4d-5e6f7a8b9c0e',
    step_name: 'd',
    namespace: 'bench',
    task_name: 'bench_diamond',
    task_version: '1.0.0',
    handler: { callable: 'noop', method: 'call', initialization: {} },
    task_context: {},
    dependency_results: { b: null, c: null },
    attempt: 1,
    max_attempts: 3,
    correlation_id: '01934f7a-3c1e-7a2b-9c4d-5e6f7a8b9c0f',
    deadline: null,
  };
  const eventJson = JSON.stringify(event);
  const registry = new HandlerRegistry([defineHandler('noop', () => null)]);
  const noop = registry.get('noop');
  const known = (): string[] => registry.callables;
  let outcome = '{"status":"success","result":null,"metadata":null}';
  const once = async (): Promise<void> => {
    const events = JSON.parse(await hopProbe(eventJson, outcome)) as RawStepEvent[];
    const e = events[0] as RawStepEvent;
    const settled = await runAttempt(noop, e.handler.callable, contextFromEvent(e, () => new AbortController().signal), known);
    outcome = settled.json;
  };
  for (let i = 0; i < 2000; i++) await once();
  const samples: number[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    const s = process.hrtime.bigint();
    await once();
    samples.push(Number(process.hrtime.bigint() - s) / 1000);
  }
  const sequentialUs = Number(process.hrtime.bigint() - t0) / 1000 / iterations;
  samples.sort((a, b) => a - b);
  const p = (q: number): number => samples[Math.min(samples.length - 1, Math.floor(samples.length * q))] as number;
  // Pipelined: `CONCURRENCY` hops in flight, as a busy worker has.
  const t1 = process.hrtime.bigint();
  let left = iterations;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (left-- > 0) await once();
    }),
  );
  const pipelinedUs = Number(process.hrtime.bigint() - t1) / 1000 / iterations;
  return { sequentialUs, p50Us: p(0.5), p99Us: p(0.99), pipelinedUs };
}

async function main(): Promise<void> {
  const backends: Array<{ name: string; url: string }> = [];
  if (args.backend === 'sqlite' || args.backend === 'both') {
    backends.push({ name: 'sqlite', url: `sqlite://${join(mkdtempSync(join(tmpdir(), 'tasker-node-bench-db-')), 'bench.db')}` });
  }
  let dropScratch: (() => void) | undefined;
  if (args.backend === 'postgres' || args.backend === 'both') {
    const url = process.env.DATABASE_URL;
    if (!url) throw new Error('--backend postgres needs DATABASE_URL');
    const scratch = scratchPostgres(url);
    dropScratch = scratch?.drop;
    backends.push({ name: 'postgres', url: scratch?.url ?? url });
  }
  console.log(`tasker-node bench: W2 ${TASKS} diamonds (${TASKS * 4} steps), concurrency ${CONCURRENCY}, node ${process.version}`);
  const h = await hop(Number(args['hop-iterations']));
  console.log(
    `binding hop (native round trip + JSON both ways + context + no-op handler + outcome): ` +
      `sequential ${h.sequentialUs.toFixed(1)} µs (p50 ${h.p50Us.toFixed(1)}, p99 ${h.p99Us.toFixed(1)}), ` +
      `pipelined ×${CONCURRENCY}: ${h.pipelinedUs.toFixed(1)} µs of main thread per hop`,
  );
  console.log('| backend | TS W2 wall s | TS W2 steps/s | Rust W2 wall s | Rust W2 steps/s | TS / Rust |');
  console.log('|---|---|---|---|---|---|');
  for (const b of backends) {
    const ts = await w2(b.url);
    const rust = args['rust-bin'] ? rustW2(args['rust-bin'], b.name) : undefined;
    const ratio = rust ? `${((ts.stepsPerS / rust.stepsPerS) * 100).toFixed(0)}%` : 'n/a';
    console.log(
      `| ${b.name} | ${ts.wallS.toFixed(2)} | ${ts.stepsPerS.toFixed(0)} | ${rust ? rust.wallS.toFixed(2) : 'n/a'} | ${
        rust ? rust.stepsPerS.toFixed(0) : 'n/a'
      } | ${ratio} |`,
    );
  }
  dropScratch?.();
}

/** A fresh database on the server of `url`, like `tasker bench` uses; undefined without psql. */
function scratchPostgres(url: string): { url: string; drop: () => void } | undefined {
  const name = `tasker_node_bench_${Math.random().toString(16).slice(2, 10)}`;
  try {
    execFileSync('psql', [url, '-qc', `CREATE DATABASE ${name}`], { stdio: 'ignore' });
  } catch {
    console.error('psql not available: benchmarking PostgreSQL in DATABASE_URL itself');
    return undefined;
  }
  const u = new URL(url);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: () => execFileSync('psql', [url, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'ignore' }),
  };
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
