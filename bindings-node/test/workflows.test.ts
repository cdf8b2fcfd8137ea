/**
 * Linear, diamond, tree and mixed-DAG templates end to end, with TypeScript handlers of every
 * style, asserting the values passed between steps. On SQLite and (with DATABASE_URL) PostgreSQL.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  defineHandler,
  type HandlerFunction,
  type StepContext,
  StepHandler,
  StepResult,
  Worker,
} from '../ts/index.js';
import { backends, describeBackend, explain, type Harness, harness } from './helpers.js';

type Value = { value: number };

// --- linear: a class, a sync function, an async function, a class with another method ---

class SquareClass extends StepHandler<{ even_number: number }, { source: string }> {
  static override handlerName = 'NodeLinear.SquareClass';
  call(ctx: StepContext<{ even_number: number }, { source: string }>): Value {
    const n = ctx.input[ctx.config.source as 'even_number'];
    return { value: n * n };
  }
}

const squareSync = defineHandler('NodeLinear.squareSync', (ctx) => {
  const prev = ctx.getDependencyResult<Value>('linear_step_1');
  assert.ok(prev, 'step 2 sees step 1');
  return { value: prev.value * prev.value };
});

const squareAsync = defineHandler('NodeLinear.squareAsync', async (ctx) => {
  await new Promise((r) => setImmediate(r));
  const prev = ctx.getDependencyResult<Value>('linear_step_2') as Value;
  return StepResult.success({ value: prev.value * prev.value });
});

class FinishClass extends StepHandler {
  static override handlerName = 'NodeLinear.FinishClass';
  call(): never {
    throw new Error('the template names method "finish"; call() must not run');
  }
  async finish(ctx: StepContext): Promise<StepResult> {
    const prev = ctx.getDependencyResult<Value>('linear_step_3') as Value;
    return StepResult.success({ value: prev.value * prev.value, deps: Object.keys(ctx.dependencyResults) }, { style: 'class' });
  }
}

// --- diamond ---

const diamond = {
  'NodeDiamond.Start': (ctx: StepContext<{ n: number }>) => ({ value: ctx.input.n }),
  'NodeDiamond.BranchB': (ctx: StepContext<Record<string, unknown>, { factor: number }>) => ({
    value: (ctx.getDependencyResult<Value>('diamond_start') as Value).value * ctx.config.factor,
  }),
  'NodeDiamond.BranchC': async (ctx: StepContext<Record<string, unknown>, { offset: number }>) => ({
    value: (ctx.getDependencyResult<Value>('diamond_start') as Value).value + ctx.config.offset,
  }),
  'NodeDiamond.End': (ctx: StepContext) => {
    const b = ctx.getDependencyResult<Value>('diamond_branch_b') as Value;
    const c = ctx.getDependencyResult<Value>('diamond_branch_c') as Value;
    return { value: b.value + c.value, inputs: { b: b.value, c: c.value } };
  },
};

// --- tree ---

type BranchConfig = { op: 'add' | 'mul'; operand: number; parent?: string };
const apply = (x: number, c: BranchConfig): number => (c.op === 'add' ? x + c.operand : x * c.operand);

class TreeRoot extends StepHandler<{ n: number }> {
  static override handlerName = 'NodeTree.Root';
  async call(ctx: StepContext<{ n: number }>): Promise<Value> {
    return { value: ctx.input.n };
  }
}
class TreeBranch extends StepHandler<Record<string, unknown>, BranchConfig> {
  static override handlerName = 'NodeTree.Branch';
  call(ctx: StepContext<Record<string, unknown>, BranchConfig>): Value {
    return { value: apply((ctx.getDependencyResult<Value>('tree_root') as Value).value, ctx.config) };
  }
}
class TreeLeaf extends StepHandler<Record<string, unknown>, BranchConfig> {
  static override handlerName = 'NodeTree.Leaf';
  call(ctx: StepContext<Record<string, unknown>, BranchConfig>): Value {
    const parent = ctx.getDependencyResult<Value>(ctx.config.parent as string) as Value;
    return { value: apply(parent.value, ctx.config) };
  }
}
const treeFinalize = defineHandler('NodeTree.Finalize', (ctx) => {
  const leaves = Object.entries(ctx.dependencyResults).map(([k, v]) => [k, (v as Value).value] as const);
  return { sum: leaves.reduce((s, [, v]) => s + v, 0), leaves: Object.fromEntries(leaves) };
});

// --- mixed DAG ---

const dep = (ctx: StepContext, name: string): number => (ctx.getDependencyResult<Value>(name) as Value).value;
const dag = [
  defineHandler<{ n: number }>('NodeDag.Init', (ctx) => ({ value: ctx.input.n })),
  defineHandler('NodeDag.Left', (ctx) => ({ value: dep(ctx, 'dag_init') * 2 })),
  defineHandler('NodeDag.Right', async (ctx) => ({ value: dep(ctx, 'dag_init') + 3 })),
  defineHandler('NodeDag.Validate', (ctx) => {
    const sum = dep(ctx, 'dag_process_left') + dep(ctx, 'dag_process_right');
    return { valid: sum > 0, value: sum };
  }),
  defineHandler('NodeDag.Transform', (ctx) => StepResult.success({ value: dep(ctx, 'dag_process_left') * 10 })),
  defineHandler('NodeDag.Analyze', async (ctx) => ({ value: dep(ctx, 'dag_process_right') ** 2 })),
  defineHandler('NodeDag.Finalize', (ctx) => {
    const v = ctx.getDependencyResult<{ valid: boolean; value: number }>('dag_validate');
    return { valid: v?.valid, total: (v?.value ?? 0) + dep(ctx, 'dag_transform') + dep(ctx, 'dag_analyze') };
  }),
];

for (const backend of backends()) {
  describeBackend(backend, `workflows on ${backend.name}`, () => {
    let h: Harness;
    let worker: Worker;

    before(async () => {
      h = await harness(backend, ['linear.yaml', 'diamond.yaml', 'tree.yaml', 'mixed_dag.yaml']);
      worker = new Worker(h.client, {
        queues: ['nd_linear', 'nd_diamond', 'nd_tree', 'nd_mixed'].map(h.ns),
        handlers: [
          SquareClass,
          squareSync,
          squareAsync,
          FinishClass,
          TreeRoot,
          TreeBranch,
          TreeLeaf,
          treeFinalize,
          ...dag,
          ...Object.entries(diamond).map(([callable, fn]) => defineHandler(callable, fn as HandlerFunction)),
        ],
        concurrency: 4,
      });
      await worker.start();
    });

    after(async () => {
      await worker?.stop({ timeout: 5 });
      await h?.close();
    });

    test('linear: each step squares the previous result', async () => {
      const task = await h.createTask('nd_linear', 'linear_math', { even_number: 6 });
      assert.equal(task.created, true);
      assert.equal(task.totalSteps, 4);
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.deepEqual(done.result('linear_step_1'), { value: 36 });
      assert.deepEqual(done.result('linear_step_2'), { value: 1296 });
      assert.deepEqual(done.result('linear_step_3'), { value: 1679616 });
      assert.deepEqual(done.result('linear_step_4'), { value: 2821109907456, deps: ['linear_step_3'] });
      assert.deepEqual(done.step('linear_step_4')?.dependencies, ['linear_step_3']);
      assert.ok(done.steps.every((s) => s.attempts === 1));
      assert.ok(done.completedAt instanceof Date);
    });

    test('diamond: both branches see the start, the end sees both branches', async () => {
      const done = await (await h.createTask('nd_diamond', 'diamond_math', { n: 5 })).wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.deepEqual(done.result('diamond_branch_b'), { value: 10 });
      assert.deepEqual(done.result('diamond_branch_c'), { value: 15 });
      assert.deepEqual(done.result('diamond_end'), { value: 25, inputs: { b: 10, c: 15 } });
    });

    test('tree: leaves derive from their parent, finalize sums all four', async () => {
      const done = await (await h.createTask('nd_tree', 'tree_math', { n: 2 })).wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.deepEqual(done.result('tree_left'), { value: 3 });
      assert.deepEqual(done.result('tree_right'), { value: 6 });
      assert.deepEqual(done.result('tree_finalize'), {
        sum: 103 + 6 + 1006 + 30,
        leaves: { tree_left_a: 103, tree_left_b: 6, tree_right_a: 1006, tree_right_b: 30 },
      });
    });

    test('mixed DAG: seven steps converge with the right values', async () => {
      const done = await (await h.createTask('nd_mixed', 'mixed_dag_math', { n: 4 })).wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      assert.deepEqual(done.result('dag_validate'), { valid: true, value: 15 });
      assert.deepEqual(done.result('dag_transform'), { value: 80 });
      assert.deepEqual(done.result('dag_analyze'), { value: 49 });
      assert.deepEqual(done.result('dag_finalize'), { valid: true, total: 15 + 80 + 49 });
      assert.equal(done.version, '2.1.0-beta.1');
    });

    test('many tasks at once all complete', async () => {
      const tasks = await Promise.all(
        Array.from({ length: 10 }, (_, i) => h.createTask('nd_diamond', 'diamond_math', { n: i })),
      );
      const done = await Promise.all(tasks.map((t) => t.wait({ timeout: 60 })));
      done.forEach((d, i) => {
        assert.equal(d.state, 'complete', explain(d));
        assert.deepEqual(d.result('diamond_end'), { value: i * 2 + i + 10, inputs: { b: i * 2, c: i + 10 } });
      });
    });
  });
}
