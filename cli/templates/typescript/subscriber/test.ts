import assert from 'node:assert/strict';
import { test } from 'node:test';

import { buildEvent, runSubscriber } from 'tasker-core/testing';

import { {{class_name}} } from '{{import_path}}';

test('{{class_name}} subscribes to its events in group {{group}}', () => {
  assert.equal({{class_name}}.group, '{{group}}');
  assert.deepEqual({{class_name}}.subscribeTo, [{{patterns}}]);
});
{{tests}}
