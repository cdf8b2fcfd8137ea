"""A step that publishes a domain event, and a subscriber of it (Python).

The template declares the event and which step publishes it::

    domain_events:
      - name: payment.charged
        schema: {type: object, required: [amount], properties: {amount: {type: number}}}
    steps:
      - name: charge
        handler: {callable: payments.ChargeCard}
        publishes_events:
          - {name: payment.charged, condition: success, delivery: durable}

Run the subscriber beside a worker, or in a process of its own::

    with SubscriberRunner(client, Ledger), tasker_core.Worker(client, queues=["payments"]):
        ...
"""

from typing import Dict, Set
from uuid import UUID

from tasker_core import StepContext, StepHandler
from tasker_core.events import Event, Subscriber


class ChargeCard(StepHandler):
    def call(self, context: StepContext) -> Dict[str, str]:
        amount = context.get_input("amount")
        # Written with the step's outcome, in the same transaction: never lost, never
        # published for an attempt whose result was not recorded.
        context.publish("payment.charged", {"amount": amount})
        return {"charge_id": f"ch_{context.task_uuid[:8]}"}


class Ledger(Subscriber):
    """Books every charge once (group "ledger"), and notes failed tasks."""

    subscribe_to = ["payment.charged", "task.failed"]

    def __init__(self) -> None:
        self.booked: Dict[UUID, float] = {}
        self.failed_tasks: Set[UUID] = set()

    def handle_payment_charged(self, event: Event) -> None:
        # Delivery is at least once: the event id makes booking idempotent.
        self.booked.setdefault(event.event_id, event.payload["amount"])

    def handle_task_failed(self, event: Event) -> None:
        if event.task_uuid is not None:
            self.failed_tasks.add(event.task_uuid)
