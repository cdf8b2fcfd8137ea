// The `{{step_name}}` batch worker step: processes one batch (here: adds up the item numbers),
// checkpointing as it goes.
//
// In the template, this step has `type: batch_worker` and depends on the batchable step that
// splits the work; `batch_config: {checkpoint_interval: N}` there sets how often it records its
// progress. A retry (after a failure, a timeout or a lost worker) resumes from the last
// checkpoint instead of starting over.

import { defineHandler, PermanentError } from 'tasker-core';

type BatchConfig = { checkpoint_interval?: number };
type Progress = { sum: number };

export const {{function_name}} = defineHandler<Record<string, unknown>, Record<string, unknown>, BatchConfig>(
  '{{callable}}',
  async (ctx) => {
    const batch = ctx.batch;
    if (batch === null) throw new PermanentError('{{callable}} runs as a batch_worker instance only');
    if (batch.isNoOp) return { items: 0, sum: 0 };
    const interval = batch.config.checkpoint_interval ?? 100;
    const start = batch.startCursor as number;
    const end = batch.endCursor as number;
    let sum = (ctx.checkpoint?.accumulated as Progress | null | undefined)?.sum ?? 0;
    for (let from = batch.resumeCursor as number; from < end; from += interval) {
      const upto = Math.min(from + interval, end);
      for (let item = from; item < upto; item++) sum += item; // the work on these items
      await batch.checkpoint(upto, upto - start, { sum }); // committed before it resolves
    }
    return { items: end - start, sum };
  },
);
