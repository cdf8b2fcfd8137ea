// Run inside a scratch project where the packed `tasker-core` tarball was installed: requires
// the package by name (main, exports, ./testing, ./express) and runs one workflow on SQLite.
'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');

const { connect, defineHandler, Worker, StepResult, TaskerError } = require('tasker-core');
const { buildStepContext, runHandler, assertSuccess } = require('tasker-core/testing');
const { taskerMiddleware, serveWithWorker } = require('tasker-core/express');

assert.ok(require.resolve('tasker-core').includes('node_modules'), 'resolved from node_modules');
assert.equal(typeof taskerMiddleware, 'function');
assert.equal(typeof serveWithWorker, 'function');
assert.ok(new TaskerError('x', 'y') instanceof Error);

(async () => {
  const dbl = defineHandler('x.Double', (ctx) => ({ value: ctx.input.n * 2 }));
  assertSuccess(await runHandler(dbl, buildStepContext({ input: { n: 2 } })), { value: 4 });

  const client = connect({ databaseUrl: `sqlite://${path.join(process.cwd(), 'smoke.db')}` });
  await client.registerTemplates(path.join(process.cwd(), 'diamond.yaml'));
  const value = (ctx, name) => ctx.getDependencyResult(name).value;
  const worker = new Worker(client, {
    queues: ['nd_diamond'],
    handlers: {
      'NodeDiamond.Start': (ctx) => ({ value: ctx.input.n }),
      'NodeDiamond.BranchB': (ctx) => ({ value: value(ctx, 'diamond_start') * ctx.config.factor }),
      'NodeDiamond.BranchC': async (ctx) => ({ value: value(ctx, 'diamond_start') + ctx.config.offset }),
      'NodeDiamond.End': (ctx) => StepResult.success({ value: value(ctx, 'diamond_branch_b') + value(ctx, 'diamond_branch_c') }),
    },
  });
  await worker.start();
  const task = await client.createTask({
    namespace: 'nd_diamond', name: 'diamond_math', context: { n: 5 },
    initiator: 'pack-smoke', sourceSystem: 'test.sh', reason: 'installed package check',
  });
  const done = await task.wait({ timeoutMs: 30000 });
  assert.equal(done.state, 'complete');
  assert.deepEqual(done.result('diamond_end'), { value: 25 });
  await worker.stop({ timeoutMs: 5000 });
  await client.close();
  console.log('installed tarball works: diamond_end =', JSON.stringify(done.result('diamond_end')));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
