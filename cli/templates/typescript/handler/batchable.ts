// The `{{step_name}}` batchable step: splits the task's `total_items` into batches of BATCH_SIZE.
//
// In the template, this step has `type: batchable`, and a `batch_worker` step depending on it
// processes each batch; its name is this handler's `worker` initialization value (default
// `process_batch`). The engine creates one instance of it per batch (process_batch_001, …), and
// a `deferred_convergence` step after them receives all their results. No items still creates
// one no-op instance, so the convergence step runs.

import { defineHandler, StepResult } from 'tasker-core';

const BATCH_SIZE = 100;

type Input = { total_items?: number };
type Config = { worker?: string };

export const {{function_name}} = defineHandler<Input, Config>('{{callable}}', (ctx) => {
  const total = ctx.input.total_items ?? 0;
  const worker = ctx.config.worker ?? 'process_batch';
  return StepResult.batches({ worker, total, batchSize: BATCH_SIZE }, { total_items: total });
});
