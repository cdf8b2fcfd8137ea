/**
 * The example shop's step handlers: one class, three functions.
 */

import { defineHandler, PermanentError, type StepContext, StepHandler } from 'tasker-core';

export interface OrderInput {
  order_id: number;
  email: string;
  items: Array<{ sku: string; quantity: number; unit_price: number }>;
}

/** Rejects orders that cannot be fulfilled at all. */
export class ValidateOrder extends StepHandler<OrderInput> {
  static override handlerName = 'shop.ValidateOrder';

  call(ctx: StepContext<OrderInput>) {
    const skus = ctx.input.items.map((i) => i.sku);
    if (skus.includes('DISCONTINUED')) {
      throw new PermanentError('order contains a discontinued item', { errorType: 'DiscontinuedItem' });
    }
    return { valid: true, lines: skus.length };
  }
}

export const priceOrder = defineHandler<OrderInput, { tax_rate: number }>('shop.PriceOrder', (ctx) => {
  const net = ctx.input.items.reduce((sum, i) => sum + i.quantity * i.unit_price, 0);
  const total = Math.round(net * (1 + ctx.config.tax_rate) * 100) / 100;
  return { net, total };
});

export const reserveStock = defineHandler<OrderInput>('shop.ReserveStock', async (ctx) => {
  await new Promise((r) => setTimeout(r, 5)); // a call to the warehouse
  return { reserved: ctx.input.items.map((i) => ({ sku: i.sku, quantity: i.quantity })) };
});

export const sendConfirmation = defineHandler<OrderInput>('shop.SendConfirmation', (ctx) => {
  const price = ctx.getDependencyResult<{ total: number }>('price_order');
  return { sentTo: ctx.input.email, total: price?.total };
});

export const shopHandlers = [ValidateOrder, priceOrder, reserveStock, sendConfirmation];
