"""Step handlers of the example: plain classes registered by the names the template uses."""

import asyncio

from tasker_core import PermanentError, StepContext, StepHandler


class ValidateOrder(StepHandler):
    handler_name = "orders.validate"

    def call(self, context: StepContext):
        items = context.input["items"]
        total = round(sum(i["quantity"] * i["unit_price"] for i in items), 2)
        if total > 10_000:
            raise PermanentError(f"order total {total} exceeds the limit", error_type="over_limit")
        return {"total": total, "item_count": len(items)}


class ReserveInventory(StepHandler):
    handler_name = "orders.reserve"

    def call(self, context: StepContext):
        skus = sorted(i["sku"] for i in context.input["items"])
        return {"reserved": skus, "warehouse": context.config["warehouse"]}


class ChargePayment(StepHandler):
    handler_name = "orders.charge"

    async def call(self, context: StepContext):
        await asyncio.sleep(0.01)  # a payment provider call
        total = context.get_dependency_result("validate_order")["total"]
        return {"charged": total, "payment_id": f"pay_{context.input['order_id']}"}


class ConfirmOrder(StepHandler):
    handler_name = "orders.confirm"

    def call(self, context: StepContext):
        reservation = context.get_dependency_result("reserve_inventory")
        payment = context.get_dependency_result("charge_payment")
        return {
            "order_id": context.input["order_id"],
            "status": "confirmed",
            "payment_id": payment["payment_id"],
            "items": reservation["reserved"],
        }


HANDLERS = [ValidateOrder, ReserveInventory, ChargePayment, ConfirmOrder]
