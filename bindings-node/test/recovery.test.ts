/**
 * Recovering failed work through the public client, with TypeScript handlers, on both
 * backends: operator actions on steps and tasks (complete / reset / resolve / cancel a step,
 * retry / resolve a task), every attempt's error, the dead-letter queue (entries, snapshot,
 * investigation, stats, queue), the staleness report, and the registry of live workers.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  defineHandler,
  DlqEntryNotFoundError,
  type DlqStatus,
  InvalidArgumentError,
  InvalidStateError,
  PermanentError,
  RetryableError,
  StepNotFoundError,
  type TaskDetail,
  TaskNotFoundError,
  Worker,
} from '../ts/index.js';
import { backends, describeBackend, explain, type Harness, harness, sleep } from './helpers.js';

/** Tasks whose `flaky` steps now succeed: the operator "fixed" the handler. */
const fixed = new Set<string>();
/** Releases of `held` steps, by task. */
const holds = new Map<string, () => void>();
/** Tasks whose `held` step is running. */
const running = new Set<string>();

const HOLD_AT_MOST_MS = 20_000;

const handlers = [
  defineHandler('NodeRecovery.work', (ctx) => ({ value: ctx.stepName })),
  defineHandler('NodeRecovery.echo', (ctx) => ({ received: ctx.dependencyResults })),
  defineHandler<{ fail?: string }>('NodeRecovery.flaky', (ctx) => {
    if (fixed.has(ctx.taskUuid)) return { fixed: true, attempt: ctx.attempt };
    if (ctx.input.fail === 'retryable') {
      throw new RetryableError(`${ctx.stepName} failed on attempt ${ctx.attempt}`, { errorType: 'Flaky' });
    }
    throw new PermanentError(`${ctx.stepName} is broken`, { errorType: 'Broken' });
  }),
  defineHandler('NodeRecovery.held', async (ctx) => {
    running.add(ctx.taskUuid);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, HOLD_AT_MOST_MS);
      holds.set(ctx.taskUuid, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    return { held: true };
  }),
];

function release(taskUuid: string): void {
  holds.get(taskUuid)?.();
}

/** Waits (polling) until `check` holds. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

for (const backend of backends()) {
  describeBackend(backend, `recovering failed work on ${backend.name}`, () => {
    let h: Harness;
    let worker: Worker;
    const workerErrors: unknown[] = [];
    let workerId: string;

    before(async () => {
      h = await harness(backend, ['recovery.yaml']);
      workerId = `node-recovery-${h.ns('w')}`;
      worker = new Worker(h.client, {
        queues: [h.ns('nd_recovery')],
        handlers,
        concurrency: 4,
        workerId,
        onError: (e) => workerErrors.push(e),
      });
      await worker.start();
    });

    after(async () => {
      for (const letGo of holds.values()) letGo();
      await worker?.stop({ timeout: 5 });
      await h?.close();
    });

    /** A task of `name` that ended in `error`. */
    async function failedTask(name: string, context: Record<string, unknown> = {}): Promise<TaskDetail> {
      const done = await (await h.createTask('nd_recovery', name, context)).wait({ timeout: 30 });
      assert.equal(done.state, 'error', explain(done));
      return done;
    }

    async function onlyEntry(taskUuid: string) {
      const entries = await h.client.listDlq({ taskUuid });
      assert.equal(entries.length, 1, JSON.stringify(entries));
      return entries[0]!;
    }

    test('a permanent failure goes to the DLQ; completing the step by hand finishes the task', async () => {
      const failed = await failedTask('chain');
      assert.equal(failed.step('b')?.state, 'error');
      assert.equal(failed.step('c')?.state, 'pending');

      // The failure put the task in the DLQ, with a snapshot of its steps.
      const entry = await onlyEntry(failed.uuid);
      assert.equal(entry.reason, 'permanent_failure');
      assert.equal(entry.status, 'pending');
      assert.equal(entry.taskState, 'error');
      assert.equal(entry.resolvedBy, null);
      assert.ok(entry.createdAt instanceof Date && !Number.isNaN(entry.createdAt.getTime()));
      assert.equal(entry.snapshot.task.uuid, failed.uuid);
      assert.deepEqual(entry.snapshot.template, { namespace: h.ns('nd_recovery'), name: 'chain', version: '1.0.0' });
      assert.deepEqual(
        entry.snapshot.steps.map((s) => [s.name, s.state]),
        [
          ['a', 'complete'],
          ['b', 'error'],
          ['c', 'pending'],
        ],
      );
      const b = entry.snapshot.steps.find((s) => s.name === 'b');
      assert.equal(b?.lastError?.errorType, 'Broken');
      assert.equal(b?.lastError?.message, 'b is broken');
      assert.deepEqual(await h.client.getDlqEntry(entry.entryUuid), entry);

      // The operator supplies b's result; c receives it.
      const step = await h.client.completeStepManually(failed.uuid, 'b', {
        result: { manual: 42 },
        metadata: { ticket: 'OPS-1' },
        by: 'alice',
        reason: 'fixed upstream',
      });
      assert.equal(step.name, 'b');
      assert.equal(step.state, 'complete');
      assert.deepEqual(step.results, { manual: 42 });
      const audit = step.transitions.find((t) => t.event === 'complete_manually');
      assert.deepEqual(audit?.metadata, { by: 'alice', reason: 'fixed upstream', metadata: { ticket: 'OPS-1' } });

      const done = await h.client.waitForTask(failed.uuid, { timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.deepEqual(done.result('c'), { received: { b: { manual: 42 } } });
      // Re-opened on the way, audited with who and why.
      const states = done.taskTransitions.map((t) => t.toState);
      assert.ok(states.includes('error') && states.join(' ').includes('enqueuing_steps steps_in_process'), states.join(' '));
      const reopen = done.taskTransitions.find((t) => t.event === 'reopen');
      assert.deepEqual(reopen?.metadata, { by: 'alice', reason: 'fixed upstream' });

      // The investigation is over, credited to the operator.
      const closed = await h.client.getDlqEntry(entry.entryUuid);
      assert.equal(closed.status, 'manually_resolved');
      assert.equal(closed.resolvedBy, 'alice');
      assert.ok(closed.resolvedAt instanceof Date);
      assert.ok(
        closed.notes.some((n) => n.text.includes('fixed upstream') && n.by === 'alice'),
        JSON.stringify(closed.notes),
      );
    });

    test('every attempt\'s error is kept; resetting the fixed step runs it again', async () => {
      const failed = await failedTask('chain', { fail: 'retryable' });
      const b = await h.client.getStep(failed.uuid, 'b');
      assert.equal(b.state, 'error');
      assert.equal(b.attempts, 2);
      assert.equal(b.maxAttempts, 2);
      assert.deepEqual(
        b.errors.map((e) => [e.attempt, e.errorType, e.message, e.retryable]),
        [
          [1, 'Flaky', 'b failed on attempt 1', true],
          [2, 'Flaky', 'b failed on attempt 2', true],
        ],
      );
      assert.equal(b.lastError?.message, 'b failed on attempt 2');
      assert.match(b.errors[0]?.backtrace ?? '', /RetryableError: b failed on attempt 1/);
      assert.equal(b.dependenciesSatisfied, true);
      assert.equal(b.retryPossible, false);
      assert.ok(b.firstAttemptedAt instanceof Date && b.lastAttemptedAt instanceof Date);
      // c waits on b.
      const c = await h.client.getStep(failed.uuid, 'c');
      assert.equal(c.dependenciesSatisfied, false);
      assert.deepEqual(c.errors, []);
      // Found by uuid too; listSteps gives every step in template order.
      assert.equal((await h.client.getStep(failed.uuid, b.uuid)).name, 'b');
      assert.deepEqual(
        (await h.client.listSteps(failed.uuid)).map((s) => [s.name, s.state, s.errors.length]),
        [
          ['a', 'complete', 0],
          ['b', 'error', 2],
          ['c', 'pending', 0],
        ],
      );
      const entry = await onlyEntry(failed.uuid);
      assert.equal(entry.reason, 'max_retries_exceeded');

      fixed.add(failed.uuid);
      const reset = await h.client.resetStep(failed.uuid, 'b', { by: 'bob', reason: 'deployed the fix' });
      assert.ok(['enqueued', 'in_progress', 'complete'].includes(reset.state), reset.state);
      assert.equal(reset.freeAttempts, 2, 'the attempts before the reset no longer count');
      const audit = reset.transitions.find((t) => t.event === 'reset');
      assert.deepEqual(audit?.metadata, { by: 'bob', reason: 'deployed the fix' });

      const done = await h.client.waitForTask(failed.uuid, { timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.equal(done.step('b')?.attempts, 3, 'attempt numbers keep growing across a reset');
      assert.deepEqual(done.result('b'), { fixed: true, attempt: 3 });
      assert.deepEqual(done.result('c'), { received: { b: { fixed: true, attempt: 3 } } });
      const closed = await h.client.getDlqEntry(entry.entryUuid);
      assert.equal(closed.status, 'manually_resolved');
      assert.equal(closed.resolvedBy, 'bob');
    });

    test('resolving a failed step by hand releases its dependents', async () => {
      const failed = await failedTask('chain');
      const step = await h.client.resolveStepManually(failed.uuid, 'b', { by: 'carol', reason: 'not needed this time' });
      assert.equal(step.state, 'resolved_manually');
      const done = await h.client.waitForTask(failed.uuid, { timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.equal(done.step('b')?.state, 'resolved_manually');
      assert.equal(done.step('c')?.state, 'complete');
      const entry = await onlyEntry(failed.uuid);
      assert.equal(entry.status, 'manually_resolved');
      assert.equal(entry.resolvedBy, 'carol');
    });

    test('retryTask resets every failed step of a failed task', async () => {
      const failed = await failedTask('pair');
      const inError = (await h.client.listSteps(failed.uuid)).filter((s) => s.state === 'error').map((s) => s.name);
      assert.deepEqual(inError, ['b1', 'b2']);
      fixed.add(failed.uuid);
      const task = await h.client.retryTask(failed.uuid, { by: 'dave', reason: 'both fixed' });
      assert.equal(task.uuid, failed.uuid);
      assert.ok(!task.isTerminal || task.state === 'complete', task.state);
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.equal(done.failedSteps, 0);
      assert.deepEqual(done.result('d'), {
        received: { b1: { fixed: true, attempt: 2 }, b2: { fixed: true, attempt: 2 } },
      });
      assert.equal((await onlyEntry(failed.uuid)).status, 'manually_resolved');
      await assert.rejects(h.client.retryTask(failed.uuid, { by: 'dave', reason: 'again' }), (e: unknown) => {
        assert.ok(e instanceof InvalidStateError, String(e));
        assert.equal(e.code, 'invalid_state');
        assert.match(e.message, /is complete; only a task in error can be retried/);
        return true;
      });
    });

    test('resolveTask closes a failed task by hand', async () => {
      const failed = await failedTask('chain');
      const task = await h.client.resolveTask(failed.uuid, { by: 'erin', reason: 'handled outside' });
      assert.equal(task.state, 'resolved_manually');
      assert.equal(task.isTerminal, true);
      const detail = await h.client.getTask(failed.uuid);
      assert.equal(detail.step('c')?.state, 'cancelled');
      const audit = detail.taskTransitions.find((t) => t.event === 'resolve_manually');
      assert.deepEqual(audit?.metadata, { by: 'erin', reason: 'handled outside' });
      const entry = await onlyEntry(failed.uuid);
      assert.equal(entry.status, 'manually_resolved');
      assert.equal(entry.resolvedBy, 'erin');
      await assert.rejects(
        h.client.resolveTask(failed.uuid, { by: 'erin', reason: 'twice' }),
        (e: unknown) => e instanceof InvalidStateError && /is resolved_manually/.test(e.message),
      );
    });

    test('cancelling a running step cancels what depends on it; its late result is ignored', async () => {
      const task = await h.createTask('nd_recovery', 'held', {});
      await until('s runs', async () => running.has(task.uuid) && (await h.client.getStep(task.uuid, 's')).state === 'in_progress');
      const s = await h.client.cancelStep(task.uuid, 's', { by: 'frank', reason: 'no longer wanted' });
      assert.equal(s.state, 'cancelled');
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'complete', `cancelled steps count as done: ${explain(done)}`);
      assert.equal(done.step('t')?.state, 'cancelled');
      // The running attempt finishes now: fenced off, nothing changes.
      release(task.uuid);
      await sleep(300);
      const later = await h.client.getStep(task.uuid, 's');
      assert.equal(later.state, 'cancelled');
      assert.equal(later.results, null);
      assert.deepEqual(workerErrors, []);
    });

    test('illegal actions are refused with the engine\'s message; nothing changes', async () => {
      const failed = await failedTask('chain');
      await assert.rejects(h.client.resetStep(failed.uuid, 'a', { by: 'x', reason: 'y' }), (e: unknown) => {
        assert.ok(e instanceof InvalidStateError, String(e));
        assert.equal(e.code, 'invalid_state');
        assert.equal(e.message, "step 'a' is complete; only error, waiting_for_retry, enqueued steps can be reset");
        return true;
      });
      await assert.rejects(
        h.client.cancelStep(failed.uuid, 'b', { by: 'x', reason: 'y' }),
        (e: unknown) => e instanceof InvalidStateError && e.message.includes("step 'b' is error"),
      );
      await assert.rejects(h.client.resolveStepManually(failed.uuid, 'nope', { by: 'x', reason: 'y' }), (e: unknown) => {
        assert.ok(e instanceof StepNotFoundError, String(e));
        assert.equal(e.code, 'step_not_found');
        assert.equal(e.step, 'nope');
        assert.equal(e.taskUuid, failed.uuid);
        return true;
      });
      await assert.rejects(h.client.getStep(failed.uuid, 'nope'), StepNotFoundError);
      const unknownTask = '0190a000-0000-7000-8000-000000000000';
      await assert.rejects(h.client.resetStep(unknownTask, 'b', { by: 'x', reason: 'y' }), TaskNotFoundError);
      await assert.rejects(h.client.listSteps(unknownTask), TaskNotFoundError);
      // Arguments are checked before anything is sent.
      await assert.rejects(
        h.client.resetStep('not-a-uuid', 'b', { by: 'x', reason: 'y' }),
        (e: unknown) => e instanceof InvalidArgumentError && e.path === 'taskUuid',
      );
      await assert.rejects(
        h.client.resetStep(failed.uuid, 'b', { by: '', reason: 'y' }),
        (e: unknown) => e instanceof InvalidArgumentError && e.path === 'by',
      );
      await assert.rejects(
        h.client.resolveStepManually(failed.uuid, 'b', { by: 'x' } as never),
        (e: unknown) => e instanceof InvalidArgumentError && e.path === 'reason',
      );
      await assert.rejects(
        h.client.completeStepManually(failed.uuid, 'b', { by: 'x', reason: 'y' } as never),
        (e: unknown) => e instanceof InvalidArgumentError && e.path === 'result',
      );
      await assert.rejects(
        h.client.completeStepManually(failed.uuid, 'b', { result: { amount: 10n }, by: 'x', reason: 'y' }),
        (e: unknown) => e instanceof InvalidArgumentError && e.path === 'result.amount' && /BigInt/.test(e.message),
      );
      await assert.rejects(
        h.client.completeStepManually(failed.uuid, 'b', { result: { blob: 'x'.repeat(2 * 1024 * 1024) }, by: 'x', reason: 'y' }),
        (e: unknown) => e instanceof InvalidArgumentError && e.code === 'invalid_argument',
      );
      // Nothing changed.
      const unchanged = await h.client.getTask(failed.uuid);
      assert.equal(unchanged.state, 'error');
      assert.deepEqual(
        unchanged.steps.map((s) => s.state),
        ['complete', 'error', 'pending'],
      );
      assert.equal((await onlyEntry(failed.uuid)).status, 'pending');
      await h.client.resolveTask(failed.uuid, { by: 'x', reason: 'clean up' });
    });

    test('DLQ entries are investigated, filtered, paginated, counted and queued', async () => {
      const permanent = await failedTask('chain');
      const exhausted = await failedTask('chain', { fail: 'retryable' });
      const held = await h.createTask('nd_recovery', 'held', {});
      const manual = await h.client.addToDlq(held.uuid, { by: 'hank', note: 'looks odd' });
      assert.equal(manual.reason, 'manual');
      assert.equal(manual.status, 'pending');
      assert.equal(manual.taskUuid, held.uuid);
      assert.deepEqual(
        manual.notes.map((n) => [n.by, n.text, n.status]),
        [['hank', 'looks odd', null]],
      );
      await assert.rejects(
        h.client.addToDlq(held.uuid, { by: 'hank', note: 'twice' }),
        (e: unknown) => e instanceof InvalidStateError && /already has an open DLQ entry/.test(e.message),
      );

      const e1 = await onlyEntry(permanent.uuid);
      const e2 = await onlyEntry(exhausted.uuid);

      // The investigation queue: most urgent first (permanent 40, max retries 30, manual 10).
      const queue = await h.client.dlqQueue(10_000);
      const scores = queue.map((q) => q.score);
      assert.deepEqual(
        scores,
        [...scores].sort((a, b) => b - a),
        'highest score first',
      );
      const mine = queue.filter((q) => [e1.entryUuid, e2.entryUuid, manual.entryUuid].includes(q.entryUuid));
      assert.deepEqual(
        mine.map((q) => q.reason),
        ['permanent_failure', 'max_retries_exceeded', 'manual'],
      );
      assert.ok(mine[0]!.score >= 40 && mine[0]!.score < 41, String(mine[0]!.score));
      assert.ok(queue.every((q) => q.status === 'pending' || q.status === 'investigating'));
      assert.ok((await h.client.dlqQueue(1)).length <= 1);

      // Stats: this database may be shared, so check they add up and include these entries.
      const stats = await h.client.dlqStats();
      const sum = (o: Readonly<Partial<Record<string, number>>>) => Object.values(o).reduce<number>((a, b) => a + (b ?? 0), 0);
      assert.equal(sum(stats.byReason), stats.total);
      assert.equal(sum(stats.byStatus), stats.total);
      assert.equal(
        stats.counts.reduce((a, c) => a + c.count, 0),
        stats.total,
      );
      assert.equal(stats.open, (stats.byStatus.pending ?? 0) + (stats.byStatus.investigating ?? 0));
      assert.ok((stats.byReason.permanent_failure ?? 0) >= 1);
      assert.ok((stats.byReason.max_retries_exceeded ?? 0) >= 1);
      assert.ok((stats.byReason.manual ?? 0) >= 1);

      // Investigate, then close.
      const investigating = await h.client.updateDlqEntry(e1.entryUuid, { status: 'investigating', note: 'looking', by: 'ivy' });
      assert.equal(investigating.status, 'investigating');
      assert.equal(investigating.resolvedBy, null);
      const noted = await h.client.updateDlqEntry(e1.entryUuid, { note: 'card processor was down', by: 'ivy' });
      assert.equal(noted.status, 'investigating', 'a note alone does not move it');
      const closed = await h.client.updateDlqEntry(e1.entryUuid, { status: 'permanently_failed', note: "bad input, won't fix", by: 'ivy' });
      assert.equal(closed.status, 'permanently_failed');
      assert.equal(closed.resolvedBy, 'ivy');
      assert.ok(closed.resolvedAt instanceof Date);
      assert.deepEqual(
        closed.notes.map((n) => [n.by, n.text, n.status]),
        [
          ['ivy', 'looking', 'investigating'],
          ['ivy', 'card processor was down', null],
          ['ivy', "bad input, won't fix", 'permanently_failed'],
        ],
      );
      const statsAfter = await h.client.dlqStats();
      assert.ok((statsAfter.byStatus.permanently_failed ?? 0) >= 1);

      // Filters.
      assert.deepEqual(await h.client.listDlq({ taskUuid: permanent.uuid, openOnly: true }), []);
      assert.equal((await h.client.listDlq({ taskUuid: permanent.uuid, status: 'permanently_failed' })).length, 1);
      assert.deepEqual(
        (await h.client.listDlq({ taskUuid: held.uuid, reason: 'manual' })).map((e) => e.entryUuid),
        [manual.entryUuid],
      );
      assert.deepEqual(await h.client.listDlq({ taskUuid: held.uuid, reason: 'permanent_failure' }), []);
      const open = await h.client.listDlq({ openOnly: true, limit: 1_000 });
      assert.ok(open.some((e) => e.entryUuid === e2.entryUuid) && !open.some((e) => e.entryUuid === e1.entryUuid));

      // The task is still in error: it can enter the DLQ again, and then its closed entry cannot
      // re-open (one open entry per task).
      const again = await h.client.addToDlq(permanent.uuid, { by: 'ivy', note: 'second look' });
      await assert.rejects(
        h.client.updateDlqEntry(e1.entryUuid, { status: 'investigating', note: 'reopen', by: 'ivy' }),
        (e: unknown) => e instanceof InvalidStateError && /already has an open DLQ entry/.test(e.message),
      );
      // Pagination, newest first.
      assert.deepEqual(
        (await h.client.listDlq({ taskUuid: permanent.uuid })).map((e) => e.entryUuid),
        [again.entryUuid, e1.entryUuid],
      );
      assert.deepEqual(
        (await h.client.listDlq({ taskUuid: permanent.uuid, limit: 1, offset: 1 })).map((e) => e.entryUuid),
        [e1.entryUuid],
      );
      // Resolving the step lets the task complete, which closes the open entry.
      await h.client.resolveStepManually(permanent.uuid, 'b', { by: 'ivy', reason: 'skip it' });
      assert.equal((await h.client.waitForTask(permanent.uuid, { timeout: 30 })).state, 'complete');
      const closedAgain = await h.client.getDlqEntry(again.entryUuid);
      assert.equal(closedAgain.status, 'manually_resolved');
      assert.equal(closedAgain.resolvedBy, 'ivy');
      assert.equal((await h.client.getDlqEntry(e1.entryUuid)).status, 'permanently_failed', 'history is kept');

      // Errors.
      const missing = '0190a000-0000-7000-8000-000000000001';
      await assert.rejects(h.client.getDlqEntry(missing), (e: unknown) => {
        assert.ok(e instanceof DlqEntryNotFoundError, String(e));
        assert.equal(e.code, 'dlq_entry_not_found');
        assert.equal(e.entryUuid, missing);
        return true;
      });
      await assert.rejects(h.client.updateDlqEntry(missing, { note: 'x', by: 'y' }), DlqEntryNotFoundError);
      await assert.rejects(
        h.client.listDlq({ status: 'lost' as DlqStatus }),
        (e: unknown) => e instanceof InvalidArgumentError && e.path === 'status' && /investigating/.test(e.message),
      );
      await assert.rejects(h.client.dlqQueue(0), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'limit');
      await assert.rejects(h.client.listDlq({ limit: 0 }), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'limit');

      // Clean up: the held task is resolved by hand, which closes its manual entry.
      await h.client.resolveTask(held.uuid, { by: 'hank', reason: 'done looking' });
      release(held.uuid);
      assert.equal((await h.client.getDlqEntry(manual.entryUuid)).status, 'manually_resolved');
      await h.client.resolveTask(exhausted.uuid, { by: 'hank', reason: 'done looking' });
    });

    test('the staleness report rates unfinished tasks against their template\'s lifecycle', async () => {
      const task = await h.createTask('nd_recovery', 'stale', {});
      await until('s runs', async () => running.has(task.uuid));
      await sleep(150);
      // The staleness detector of any orchestrator (this worker's, or another process's on a
      // shared database) may already have moved it to the DLQ.
      const report = await h.client.stalenessReport({ minRatio: 0.8, limit: 1_000 });
      const health = report.find((r) => r.taskUuid === task.uuid);
      if (health !== undefined) {
        assert.equal(health.health, 'stale');
        assert.equal(health.thresholdMs, 60);
        assert.equal(health.maxDurationMs, 24 * 60 * 60 * 1000);
        assert.equal(health.state, 'steps_in_process');
        assert.ok(health.idleMs >= 60 && health.ageMs >= health.idleMs, JSON.stringify(health));
      } else {
        const entry = await onlyEntry(task.uuid);
        assert.equal(entry.reason, 'staleness_timeout');
        assert.match(entry.notes[0]?.text ?? '', /threshold 60 ms/);
      }
      assert.ok(report.every((r) => r.health !== 'healthy'), 'minRatio 0.8: warning or stale only');
      const ratios = report.map((r) => Math.max(r.idleMs / r.thresholdMs, r.ageMs / r.maxDurationMs));
      assert.ok(ratios.every((r, i) => i === 0 || r <= ratios[i - 1]! * 1.01 + 0.01), 'most overdue first');
      await assert.rejects(h.client.stalenessReport({ minRatio: Number.NaN }), InvalidArgumentError);
      await assert.rejects(h.client.stalenessReport({ limit: 1.5 }), InvalidArgumentError);
      if ((await h.client.getTask(task.uuid)).state !== 'error') {
        // The report with every open task, healthy ones included.
        assert.ok((await h.client.stalenessReport({ limit: 1_000 })).some((r) => r.taskUuid === task.uuid));
      }
      await h.client.resolveTask(task.uuid, { by: 'test', reason: 'clean up' });
      release(task.uuid);
    });

    test('listWorkers shows this worker live, in TypeScript; a stopped worker is no longer live', async () => {
      const workers = await h.client.listWorkers();
      const me = workers.find((w) => w.workerId === workerId);
      assert.ok(me !== undefined, JSON.stringify(workers.map((w) => w.workerId)));
      assert.equal(me.live, true);
      assert.equal(me.language, 'typescript');
      assert.deepEqual(me.queues, [h.ns('nd_recovery')]);
      assert.equal(me.concurrency, 4);
      assert.equal(me.pid, process.pid);
      assert.equal(me.stoppedAt, null);
      assert.ok(me.startedAt instanceof Date && me.lastHeartbeatAt.getTime() >= me.startedAt.getTime());
      assert.ok(me.inFlight >= 0);
      assert.ok(me.registrationUuid.length === 36);

      const other = new Worker(h.client, { queues: [h.ns('nd_recovery_other')], handlers, workerId: `${workerId}-other` });
      await other.start();
      const listed = (await h.client.listWorkers()).find((w) => w.workerId === `${workerId}-other`);
      assert.equal(listed?.live, true);
      await other.stop({ timeout: 1 });
      const stopped = (await h.client.listWorkers()).find((w) => w.registrationUuid === listed?.registrationUuid);
      assert.equal(stopped?.live, false);
      assert.ok(stopped?.stoppedAt instanceof Date);
      // Live workers come first.
      const all = await h.client.listWorkers();
      const firstDead = all.findIndex((w) => !w.live);
      assert.ok(firstDead === -1 || all.slice(firstDead).every((w) => !w.live));
    });
  });
}
