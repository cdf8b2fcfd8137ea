// The handlers of docs/getting-started-typescript.md (run by bindings-node/test/snippets.test.ts).
import { defineHandler, PermanentError, StepResult } from 'tasker-core';

type Order = { order_id: number; items: { price: number; quantity: number }[] };

/** Refuses orders nobody should ship; a PermanentError is not retried. */
export const validateOrder = defineHandler<Order>('getting_started.validate_order', (ctx) => {
  const { items } = ctx.input;
  if (items.some((item) => item.quantity > 100)) {
    throw new PermanentError('at most 100 of an item per order', { errorType: 'quantity_too_large' });
  }
  return { order_id: ctx.input.order_id, lines: items.length };
});

/** Totals the order with the tax rate of the template's `initialization`. */
export const computeTotal = defineHandler<Order, { tax_rate: number }>('getting_started.compute_total', (ctx) => {
  const subtotal = ctx.input.items.reduce((sum, item) => sum + item.price * item.quantity, 0);
  const total = Math.round(subtotal * (1 + ctx.config.tax_rate) * 100) / 100;
  const order = ctx.getDependencyResult<{ order_id: number; lines: number }>('validate_order');
  return StepResult.success({ order_id: order?.order_id, total }, { lines: order?.lines });
});
