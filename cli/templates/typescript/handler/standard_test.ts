import { test } from 'node:test';

import { assertSuccess, runHandler } from 'tasker-core/testing';

import { {{function_name}} } from '{{import_path}}';

test('{{step_name}} greets the name in the context', async () => {
  assertSuccess(await runHandler({{function_name}}, { input: { name: 'Ada' } }), { greeting: 'Hello, Ada!' });
});

test('{{step_name}} greets the world by default', async () => {
  assertSuccess(await runHandler({{function_name}}, { input: {} }), { greeting: 'Hello, world!' });
});
