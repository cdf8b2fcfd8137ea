/**
 * Decision points and deferred convergence end to end, with TypeScript handlers: the approval
 * template routes small / medium / large amounts to one, another or two parallel branches (or
 * none), only the chosen steps exist, and the convergence step receives exactly their results.
 * A bad step name fails the decision step. On SQLite and (with DATABASE_URL) PostgreSQL.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { defineHandler, PermanentError, type StepContext, StepResult, type TaskDetail, Worker } from '../ts/index.js';
import { backends, describeBackend, explain, type Harness, harness } from './helpers.js';

type Request = { amount: number; requester: string; skip_approval?: boolean; route_to?: string[] };

const handlers = [
  defineHandler<Request>('NodeApproval.Validate', (ctx) => {
    if (!(ctx.input.amount >= 0)) throw new PermanentError(`bad amount ${ctx.input.amount}`);
    return { amount: ctx.input.amount, requester: ctx.input.requester };
  }),
  // The routing rule under test: < 1000 auto, < 5000 a manager, else a manager and finance.
  defineHandler<Request>('NodeApproval.Route', (ctx) => {
    const { amount } = ctx.getDependencyResult<{ amount: number }>('validate_request') ?? { amount: NaN };
    if (ctx.input.skip_approval === true) return StepResult.noBranches({ amount, reason: 'pre-approved' });
    if (ctx.input.route_to !== undefined) return StepResult.decision(ctx.input.route_to);
    if (amount < 1000) return StepResult.decision(['auto_approve'], { amount, tier: 'small' });
    if (amount < 5000) return StepResult.decision(['manager_approval'], { amount, tier: 'medium' });
    return StepResult.decision(['manager_approval', 'finance_review'], { amount, tier: 'large' });
  }),
  defineHandler<Request, { approver: string }>('NodeApproval.Branch', (ctx: StepContext<Request, { approver: string }>) => {
    const routing = ctx.getDependencyResult<{ amount: number; tier: string }>('routing_decision');
    assert.ok(routing, 'a branch sees the decision step result');
    return { approved: true, by: ctx.config.approver, amount: routing.amount, tier: routing.tier };
  }),
  defineHandler('NodeApproval.Finalize', (ctx) => {
    const received = Object.keys(ctx.dependencyResults).sort();
    const approvers = Object.values(ctx.dependencyResults).map((r) => (r as { by: string }).by).sort();
    return { received, approvers, approved: received.length > 0 };
  }),
];

const BRANCHES = ['auto_approve', 'manager_approval', 'finance_review'];

for (const backend of backends()) {
  describeBackend(backend, `decision points on ${backend.name}`, () => {
    let h: Harness;
    let worker: Worker;

    before(async () => {
      h = await harness(backend, ['approval.yaml']);
      worker = new Worker(h.client, { queues: [h.ns('nd_approval')], handlers, concurrency: 4 });
      await worker.start();
    });

    after(async () => {
      await worker?.stop({ timeout: 5 });
      await h?.close();
    });

    /** Runs one request and checks what every routing must satisfy. */
    async function route(context: Request, chosen: string[]): Promise<TaskDetail> {
      const task = await h.createTask('nd_approval', 'approval_routing', context);
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      const names = done.steps.map((s) => s.name);
      assert.deepEqual(
        [...names].sort(),
        ['validate_request', 'routing_decision', ...chosen, 'finalize_approval'].sort(),
        'exactly the chosen branches (and the convergence) were created',
      );
      for (const s of done.steps) assert.equal(s.state, 'complete', `${s.name}: ${explain(done)}`);
      for (const name of BRANCHES.filter((b) => !chosen.includes(b))) assert.equal(done.step(name), undefined, name);
      // Steps made by the decision say so; the task's own steps have no creator.
      assert.equal(done.step('validate_request')?.createdBy, null);
      assert.equal(done.step('routing_decision')?.createdBy, null);
      for (const name of [...chosen, 'finalize_approval']) assert.equal(done.step(name)?.createdBy, 'routing_decision', name);
      assert.equal(done.totalSteps, done.steps.length);
      assert.equal(done.completedSteps, done.steps.length);
      const finalize = done.result<{ received: string[]; approved: boolean }>('finalize_approval');
      assert.deepEqual(finalize?.received, [...chosen].sort(), 'the convergence saw exactly the chosen branches');
      return done;
    }

    test('small amount: auto_approve only', async () => {
      const done = await route({ amount: 250, requester: 'ada' }, ['auto_approve']);
      assert.deepEqual(done.result('auto_approve'), { approved: true, by: 'system', amount: 250, tier: 'small' });
      assert.deepEqual(done.result('finalize_approval'), { received: ['auto_approve'], approvers: ['system'], approved: true });
      // The extra keys of the decision's result are kept beside the outcome.
      assert.deepEqual(done.result('routing_decision'), {
        amount: 250,
        tier: 'small',
        decision_point_outcome: { type: 'create_steps', step_names: ['auto_approve'] },
      });
    });

    test('medium amount: manager_approval only', async () => {
      const done = await route({ amount: 2500, requester: 'grace' }, ['manager_approval']);
      assert.deepEqual(done.result('finalize_approval'), { received: ['manager_approval'], approvers: ['manager'], approved: true });
    });

    test('large amount: manager_approval and finance_review in parallel', async () => {
      const done = await route({ amount: 25_000, requester: 'linus' }, ['manager_approval', 'finance_review']);
      assert.deepEqual(done.result('finalize_approval'), {
        received: ['finance_review', 'manager_approval'],
        approvers: ['finance', 'manager'],
        approved: true,
      });
      for (const name of ['manager_approval', 'finance_review']) {
        assert.deepEqual(done.step(name)?.dependencies, ['routing_decision']);
      }
    });

    test('no branches: the convergence still runs, with no results', async () => {
      const done = await route({ amount: 90_000, requester: 'ken', skip_approval: true }, []);
      assert.deepEqual(done.result('finalize_approval'), { received: [], approvers: [], approved: false });
      assert.deepEqual(done.result('routing_decision'), {
        amount: 90_000,
        reason: 'pre-approved',
        decision_point_outcome: { type: 'no_branches' },
      });
    });

    test('a name that is no branch of the decision fails it permanently, naming the name', async () => {
      const task = await h.createTask('nd_approval', 'approval_routing', { amount: 1, requester: 'x', route_to: ['auto_approve', 'ceo_signoff'] });
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'error', explain(done));
      const decision = done.step('routing_decision');
      assert.equal(decision?.state, 'error');
      assert.equal(decision?.lastError?.errorType, 'invalid_decision');
      assert.equal(decision?.lastError?.retryable, false);
      assert.match(decision?.lastError?.message ?? '', /ceo_signoff/);
      assert.deepEqual(
        done.steps.map((s) => s.name).sort(),
        ['routing_decision', 'validate_request'],
        'nothing was created',
      );
    });
  });
}
