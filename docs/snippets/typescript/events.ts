// A step that publishes a domain event, and a subscriber of it (TypeScript).
//
// The template declares the event and which step publishes it:
//
//   domain_events:
//     - name: payment.charged
//       schema: {type: object, required: [amount], properties: {amount: {type: number}}}
//   steps:
//     - name: charge
//       handler: {callable: payments.ChargeCard}
//       publishes_events:
//         - {name: payment.charged, condition: success, delivery: durable}
//
// Run the subscriber beside a worker, or in a process of its own:
//
//   const ledger = await new SubscriberRunner(client, Ledger).start();   // group "ledger"
//   const worker = await new Worker(client, { queues: ['payments'], handlers: [chargeCard] }).start();
import { defineHandler, type Event, Subscriber } from 'tasker-core';

export const chargeCard = defineHandler<{ amount: number }>('payments.ChargeCard', (ctx) => {
  // Written with the step's outcome, in the same transaction: never lost, never published
  // for an attempt whose result was not recorded.
  ctx.publish('payment.charged', { amount: ctx.input.amount });
  return { chargeId: `ch_${ctx.taskUuid.slice(0, 8)}` };
});

/** Books every charge once (group "ledger"), and notes failed tasks. */
export class Ledger extends Subscriber {
  static override subscribeTo = ['payment.charged', 'task.failed'];
  readonly booked = new Map<string, number>();
  readonly failedTasks = new Set<string>();

  handlePaymentCharged(event: Event): void {
    // Delivery is at least once: the event id makes booking idempotent.
    if (!this.booked.has(event.eventId)) this.booked.set(event.eventId, Number(event.payload.amount));
  }

  handleTaskFailed(event: Event): void {
    if (event.taskUuid !== null) this.failedTasks.add(event.taskUuid);
  }

  handle(): void {
    // Every subscribed event has a routed method above.
  }
}
