import * as assert from 'node:assert/strict';
import { test } from 'node:test';

import { chosenSteps, runHandler } from 'tasker-core/testing';

import { {{function_name}} } from '{{import_path}}';

test('{{step_name}} sends large amounts to manual review', async () => {
  assert.deepEqual(chosenSteps(await runHandler({{function_name}}, { input: { amount: 5_000 } })), ['manual_review']);
});

test('{{step_name}} approves small amounts automatically', async () => {
  assert.deepEqual(chosenSteps(await runHandler({{function_name}}, { input: { amount: 20 } })), ['auto_approve']);
});
