"""Python handler of the cross-language recovery workflow
(tests/fixtures/templates/manual_recovery_polyglot.yaml, tests/e2e/test_recovery.py):

  recovery.prepare  the order to charge: its id and the amount in cents

The Ruby charge (which fails for good) is in ../ruby/recovery_handlers.rb, the TypeScript ship
in ../node/recovery_handlers.ts. The operator who completes the charge by hand is
tests/e2e/operator_complete_step.py.
"""

from __future__ import annotations

import os
from typing import Any, Dict

from tasker_core import StepContext, step_handler

LANGUAGE = "python"


@step_handler("recovery.prepare")
def prepare(context: StepContext) -> Dict[str, Any]:
    return {
        "order_id": int(context.input["order_id"]),
        "amount_cents": round(float(context.input["amount"]) * 100),
        "by": LANGUAGE,
        "pid": os.getpid(),
    }


HANDLERS = [prepare]
