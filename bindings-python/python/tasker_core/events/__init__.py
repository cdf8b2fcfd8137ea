"""Events: what the engine tells the rest of a system about its work.

* The **catalog** (:func:`catalog`, :func:`event_info`): every system event — task and step
  lifecycle, operator actions, the DLQ, workers — with its payload's JSON Schema and an example.
* **Domain events** a template declares (``domain_events:``, per step ``publishes_events:``)
  and its handlers publish with ``context.publish("payment.charged", {...})``.
* **Subscribers** (:class:`Subscriber`, run by a :class:`SubscriberRunner`), durable — stored
  in the transaction of the change, delivered at least once, in order per task, to subscriber
  groups whose position survives restarts — or fast (this process's broadcast, for metrics
  and logs).
* The **logging bridge** (:class:`LoggingSubscriber`).

::

    from tasker_core.events import Subscriber, SubscriberRunner, catalog, event_info

    class Audit(Subscriber):
        subscribe_to = ["task.completed", "payment.*"]

        def handle(self, event):
            print(event.name, event.task_uuid, event.payload)

    with SubscriberRunner(client, Audit), tasker_core.Worker(client, queues=["orders"]):
        client.create_task("orders", "process_order", context={"order_id": 7}).wait()
"""

from .logging_bridge import DEFAULT_LEVELS, LoggingSubscriber
from .records import (
    Delivery,
    DeliveryMode,
    Event,
    EventCategory,
    EventDeadLetter,
    EventGroupStatus,
    EventInfo,
    catalog,
    envelope_schema,
    event_info,
    pattern_matches,
)
from .subscriber import Subscriber, SubscriberRunner
from .subscription import EventSubscription, FastSubscription

__all__ = [
    "catalog",
    "event_info",
    "envelope_schema",
    "pattern_matches",
    "Event",
    "EventInfo",
    "EventCategory",
    "DeliveryMode",
    "Delivery",
    "EventGroupStatus",
    "EventDeadLetter",
    "EventSubscription",
    "FastSubscription",
    "Subscriber",
    "SubscriberRunner",
    "LoggingSubscriber",
    "DEFAULT_LEVELS",
]
