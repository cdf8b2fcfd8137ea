"""Handlers that publish domain events (template: fixtures/templates/payments.yaml)."""

from tasker_core import PermanentError, StepContext, StepHandler, StepResult


class Charge(StepHandler):
    def call(self, context: StepContext):
        card = context.get_input("card", "ok")
        amount = context.get_input("amount", 10.5)
        if card == "declined":
            context.publish("payment.declined", {"reason": "insufficient funds"})
            raise PermanentError("card declined", error_type="card_declined")
        if card == "undeclared":
            context.publish("payment.refunded", {"amount": amount})
        elif card == "bad_payload":
            context.publish("payment.charged", {"amount": "ten"})
        else:
            context.publish("payment.charged", {"amount": amount})
        return StepResult.success({"charge_id": f"ch-{amount}"}, metadata={"provider": "test"})


async def send_receipt(context: StepContext):
    context.publish("payment.receipt_sent", {"to": context.get_input("email", "a@example.com")})
    return {"sent": True}
