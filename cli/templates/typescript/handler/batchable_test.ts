import * as assert from 'node:assert/strict';
import { test } from 'node:test';

import { batchesOf, runHandler } from 'tasker-core/testing';

import { {{function_name}} } from '{{import_path}}';

test('{{step_name}} splits the items into batches', async () => {
  const batches = batchesOf(await runHandler({{function_name}}, { input: { total_items: 250 } }));
  assert.equal(batches.type, 'create_batches');
  if (batches.type !== 'create_batches') return;
  assert.equal(batches.worker, 'process_batch');
  assert.deepEqual(
    batches.cursors.map((c) => [c.startCursor, c.endCursor]),
    [
      [0, 100],
      [100, 200],
      [200, 250],
    ],
  );
});

test('{{step_name}} creates no batches without items', async () => {
  assert.equal(batchesOf(await runHandler({{function_name}}, { input: { total_items: 0 } })).type, 'no_batches');
});
