/**
 * The example shop's HTTP API: create an order (a task), and report on it.
 *
 *   POST /orders            {orderId, email, items: [{sku, quantity, unitPrice}]}  → 202 {taskUuid}
 *   GET  /orders/:uuid      → the task's state and step states
 *   GET  /orders/:uuid/wait → waits until it finished, then reports like GET /orders/:uuid
 */

import express, { type NextFunction, type Request, type Response } from 'express';
import { type TaskDetail, TaskerError, TaskNotFoundError, ValidationError, InvalidArgumentError } from 'tasker-core';
import { taskerMiddleware } from 'tasker-core/express';
import type { Client } from 'tasker-core';

/** The report of one order. */
function report(task: TaskDetail) {
  return {
    taskUuid: task.uuid,
    state: task.state,
    steps: Object.fromEntries(task.steps.map((s) => [s.name, s.state])),
    total: task.result<{ total: number }>('price_order')?.total ?? null,
    confirmation: task.result('send_confirmation'),
    errors: task.steps.filter((s) => s.lastError !== null).map((s) => ({ step: s.name, ...s.lastError })),
  };
}

/** Builds the app. `namespace` is where the order template is registered. */
export function createApp(client: Client, namespace: string): express.Express {
  const app = express();
  app.use(express.json());
  app.use(taskerMiddleware(client));

  app.post('/orders', async (req: Request, res: Response) => {
    const body = (req.body ?? {}) as { orderId?: unknown; email?: unknown; items?: Array<Record<string, unknown>> };
    const task = await req.tasker.createTask({
      namespace,
      name: 'place_order',
      context: {
        order_id: body.orderId,
        email: body.email,
        items: Array.isArray(body.items)
          ? body.items.map((i) => ({ sku: i.sku, quantity: i.quantity, unit_price: i.unitPrice }))
          : body.items,
      },
      initiator: 'shop-api',
      sourceSystem: 'express-example',
      reason: 'customer order',
      idempotencyKey: typeof body.orderId === 'number' ? `order-${body.orderId}` : undefined,
    });
    res.status(task.created ? 202 : 200).location(`/orders/${task.uuid}`).json({ taskUuid: task.uuid, created: task.created });
  });

  app.get('/orders/:uuid', async (req: Request<{ uuid: string }>, res: Response) => {
    res.json(report(await req.tasker.getTask(req.params.uuid)));
  });

  app.get('/orders/:uuid/wait', async (req: Request<{ uuid: string }>, res: Response) => {
    const timeoutMs = Math.min(Number(req.query.timeoutMs ?? 10_000) || 10_000, 60_000);
    res.json(report(await req.tasker.waitForTask(req.params.uuid, { timeout: timeoutMs / 1000 })));
  });

  // Tasker errors become HTTP errors naming what was wrong.
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (err instanceof ValidationError) {
      res.status(422).json({ error: err.message, code: err.code, path: err.path });
    } else if (err instanceof InvalidArgumentError) {
      res.status(400).json({ error: err.message, code: err.code, path: err.path });
    } else if (err instanceof TaskNotFoundError) {
      res.status(404).json({ error: err.message, code: err.code });
    } else if (err instanceof TaskerError) {
      res.status(500).json({ error: err.message, code: err.code });
    } else {
      next(err);
    }
  });
  return app;
}
