"""Python handler of the cross-language events workflow
(tests/fixtures/templates/events_polyglot.yaml, tests/e2e/test_events.py):

  events.place_order  accepts the order and publishes order.placed

The subscribers that receive it are tests/subscribers/ruby_subscriber.rb and
tests/subscribers/node_subscriber.ts.
"""

from __future__ import annotations

import os
from typing import Any, Dict

from tasker_core import StepContext, step_handler


@step_handler("events.place_order")
def place_order(context: StepContext) -> Dict[str, Any]:
    order_id = int(context.input["order_id"])
    total = float(context.input["total"])
    context.publish("order.placed", {"order_id": order_id, "total": total, "by": "python"})
    return {"order_id": order_id, "pid": os.getpid()}


HANDLERS = [place_order]
