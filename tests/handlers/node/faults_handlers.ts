// TypeScript handler of the fault-injection tests (tests/faults): `faults.work`. It behaves like
// the Python one (tests/handlers/python/faults_handlers.py, which documents the switches) and
// writes its ledger rows through the helper process of tests/faults/ledger.py.

import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

import { defineHandler, RetryableError, type StepContext, StepResult } from 'tasker-core';

const LANGUAGE = 'typescript';
const MIB = 1024 * 1024;
const ROOT = resolve(__dirname, '..', '..', '..');

type Json = Record<string, unknown>;
type Helper = ChildProcessByStdio<Writable, Readable, null>;

/** The ledger helper: one per worker process, started on first use, one request at a time. */
class LedgerHelper {
  private child: Helper | undefined;
  private waiting: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly url: string) {}

  call(doc: Json): Promise<void> {
    const next = this.chain.then(() => this.send(doc));
    this.chain = next.catch(() => undefined);
    return next;
  }

  private start(): Helper {
    const venv = join(ROOT, 'bindings-python/.venv/bin/python');
    const python = process.env.TASKER_FAULT_PYTHON ?? (existsSync(venv) ? venv : 'python3');
    const child = spawn(python, [join(ROOT, 'tests/faults/ledger.py'), 'serve', this.url], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const w = this.waiting.shift();
      if (!w) return;
      if (line.startsWith('ok')) w.resolve();
      else w.reject(new Error(`ledger: ${line}`));
    });
    child.on('exit', () => {
      for (const w of this.waiting.splice(0)) w.reject(new Error('ledger helper exited'));
      this.child = undefined;
    });
    // The helper must not keep the worker alive.
    child.unref();
    return child;
  }

  private send(doc: Json): Promise<void> {
    this.child ??= this.start();
    const child = this.child;
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      child.stdin.write(`${JSON.stringify(doc)}\n`);
    });
  }
}

const ledgerUrl = process.env.TASKER_FAULT_LEDGER ?? '';
const ledger = ledgerUrl ? new LedgerHelper(ledgerUrl) : undefined;

const now = (): number => (performance.timeOrigin + performance.now()) / 1000;

export function deep(levels: number): unknown {
  let value: unknown = 'bottom';
  for (let i = 0; i < levels; i++) value = i % 2 === 0 ? [value] : { d: value };
  return value;
}

function hostile(kind: string, ctx: StepContext): unknown {
  switch (kind) {
    case 'nul_value':
      return { text: 'a\u0000b', nested: { list: ['x\u0000', '\u0000'] }, by: LANGUAGE };
    case 'nul_key':
      return { 'k\u0000ey': 1, nested: { '\u0000': 'v' }, by: LANGUAGE };
    case 'nul_metadata':
      return StepResult.success({ by: LANGUAGE }, { note: 'm\u0000', 'k\u0000': 1 });
    case 'nul_failure':
      if (ctx.attempt === 1) {
        return StepResult.failure({
          message: 'boom\u0000here',
          errorType: 'HostileFailure',
          retryable: true,
          backtrace: 'frame one\u0000frame two',
        });
      }
      return { recovered: true, by: LANGUAGE };
    case 'nul_failure_permanent':
      return StepResult.failure({
        message: 'fatal\u0000here',
        errorType: 'HostileFailure',
        retryable: false,
        backtrace: 'frame one\u0000frame two',
      });
    case 'oversize':
      return { blob: 'x'.repeat(2 * MIB), by: LANGUAGE };
    case 'oversize_metadata':
      return StepResult.success({ by: LANGUAGE }, { blob: 'x'.repeat(2 * MIB) });
    case 'deep':
      return deep(200);
    case 'deep_metadata':
      return StepResult.success({ by: LANGUAGE }, { deep: deep(200) });
    case 'large_ok':
      return { blob: 'y'.repeat(600_000), by: LANGUAGE };
    case 'deep_ok':
      return { deep: deep(20), by: LANGUAGE };
    default:
      throw new Error(`unknown hostile kind ${kind}`);
  }
}

function lookup(map: unknown, key: string): unknown {
  return map !== null && typeof map === 'object' ? (map as Json)[key] : undefined;
}

function sleepMs(ctx: StepContext): number {
  const input = ctx.input as Json;
  const slow = lookup(input.slow_steps, ctx.stepName);
  if (slow !== undefined) return Number(slow);
  return Number((ctx.config as Json).sleep_ms ?? input.sleep_ms ?? 0);
}

function failAttempts(ctx: StepContext): number {
  const n = lookup((ctx.input as Json).fail_steps, ctx.stepName);
  return Number(n ?? (ctx.config as Json).fail_attempts ?? 0);
}

async function run(ctx: StepContext): Promise<[unknown, string]> {
  const ms = sleepMs(ctx);
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  if (ctx.attempt <= failAttempts(ctx)) {
    throw new RetryableError(`${LANGUAGE}: injected failure of attempt ${ctx.attempt}`, { errorType: 'Injected' });
  }
  const kind = lookup((ctx.input as Json).hostile, ctx.stepName);
  if (typeof kind === 'string') return [hostile(kind, ctx), `hostile:${kind}`];
  let n = 1;
  for (const r of Object.values(ctx.dependencyResults)) n += Number(lookup(r, 'n') ?? 0);
  return [{ n, step: ctx.stepName, attempt: ctx.attempt, by: LANGUAGE }, 'ok'];
}

export const work = defineHandler('faults.work', async (ctx: StepContext) => {
  const token = randomUUID();
  await ledger?.call({
    op: 'start',
    token,
    step_uuid: ctx.stepUuid,
    task_uuid: ctx.taskUuid,
    step_name: ctx.stepName,
    attempt: ctx.attempt,
    language: LANGUAGE,
    pid: process.pid,
    t: now(),
  });
  let outcome = 'ok';
  try {
    const [result, o] = await run(ctx);
    outcome = o;
    return result;
  } catch (e) {
    outcome = e instanceof RetryableError ? 'retryable' : `error:${e instanceof Error ? e.name : typeof e}`;
    throw e;
  } finally {
    await ledger?.call({ op: 'finish', token, outcome, t: now() });
  }
});

export const HANDLERS = [work];
