import * as assert from 'node:assert/strict';
import { test } from 'node:test';

import { assertSuccess, buildStepContext, checkpointsOf, runHandler } from 'tasker-core/testing';

import { {{function_name}} } from '{{import_path}}';

const SUM_0_TO_250 = (249 * 250) / 2;

test('{{step_name}} processes its range with checkpoints', async () => {
  const ctx = buildStepContext({ batch: { startCursor: 0, endCursor: 250, config: { checkpoint_interval: 100 } } });
  assertSuccess(await runHandler({{function_name}}, ctx), { items: 250, sum: SUM_0_TO_250 });
  assert.deepEqual(
    checkpointsOf(ctx).map((c) => c.cursor),
    [100, 200, 250],
  );
});

test('{{step_name}} resumes from the last checkpoint', async () => {
  const ctx = buildStepContext({
    batch: { startCursor: 0, endCursor: 250, config: { checkpoint_interval: 100 } },
    checkpoint: { cursor: 200, itemsDone: 200, accumulated: { sum: (199 * 200) / 2 } },
  });
  assertSuccess(await runHandler({{function_name}}, ctx), { items: 250, sum: SUM_0_TO_250 });
  assert.deepEqual(
    checkpointsOf(ctx).map((c) => c.cursor),
    [250],
  );
});
