// TypeScript handler of the cross-language decision and batch workflow
// (tests/fixtures/templates/approval_batches_polyglot.yaml, tests/e2e/test_step_types.py):
//
//   step_types.process_items  batch worker: adds up its items (item i is worth 2i + 1),
//                             checkpointing every `checkpoint_interval` items (the template's
//                             batch_config) and resuming from ctx.checkpoint on a retry.
//
// `fail_after_checkpoint: [instance names]` in the task context fails attempt 1 of those
// instances (retryable) right after their first checkpoint, so attempt 2 resumes from it.

import { defineHandler, RetryableError, type StepContext } from 'tasker-core';

const LANGUAGE = 'typescript';

export function itemValue(item: number): number {
  return 2 * item + 1;
}

export const processItems = defineHandler('step_types.process_items', async (ctx: StepContext) => {
  const batch = ctx.batch;
  if (batch === null) throw new Error('step_types.process_items runs batch_worker instances only');
  if (batch.isNoOp) return { sum: 0, items: 0, noOp: true, attempt: ctx.attempt, checkpoints: 0, by: LANGUAGE };
  const start = Number(batch.startCursor);
  const end = Number(batch.endCursor);
  const interval = Number((batch.config as Record<string, unknown>).checkpoint_interval);
  const resume = Number(batch.resumeCursor);
  const accumulated = ctx.checkpoint?.accumulated as { sum?: number } | null | undefined;
  let sum = accumulated?.sum ?? 0;
  const input = ctx.input as Record<string, unknown>;
  const failing = Array.isArray(input.fail_after_checkpoint) && input.fail_after_checkpoint.includes(ctx.stepName);
  let checkpoints = 0;
  for (let item = resume; item < end; item++) {
    sum += itemValue(item);
    const done = item + 1 - start;
    if (done % interval === 0 && item + 1 < end) {
      await batch.checkpoint(item + 1, done, { sum });
      checkpoints++;
      if (failing && ctx.attempt === 1) {
        throw new RetryableError(`${ctx.stepName}: failing after checkpoint ${item + 1}, on purpose`, {
          errorType: 'AfterCheckpoint',
        });
      }
    }
  }
  return {
    sum,
    items: end - start,
    resumedFrom: resume,
    receivedCheckpoint: ctx.checkpoint === null ? null : { cursor: ctx.checkpoint.cursor, attempt: ctx.checkpoint.attempt },
    attempt: ctx.attempt,
    checkpoints,
    by: LANGUAGE,
    pid: process.pid,
  };
});

export const HANDLERS = [processItems];
