"""The polyglot demo: one order-fulfilment workflow whose steps are handled by Python, Ruby and
TypeScript worker processes, coordinated by the Rust core through an embedded SQLite database.

Run through scripts/demo.sh, which builds the three packages first.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import tasker_core  # noqa: E402
from polyglot import ORDER_QUEUES, TEMPLATES, WorkerGroup  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default="sqlite://./tasker-demo.db")
    parser.add_argument("--orders", type=int, default=5)
    args = parser.parse_args()

    client = tasker_core.connect(args.database_url)
    print(f"Tasker polyglot demo on {client.database} ({client.backend})\n")
    for t in client.register_templates(str(TEMPLATES / "order_fulfillment_polyglot.yaml")):
        print(f"registered {t.namespace}/{t.name}@{t.version}: queues {', '.join(t.queues)}")

    group = WorkerGroup()
    printer_threads = []
    try:
        for language in ("python", "ruby", "typescript"):
            w = group.start(language, args.database_url, [ORDER_QUEUES[language]], quiet=False)
            print(f"started {language} worker, pid {w.pid}, queue {ORDER_QUEUES[language]}")
            stream = w.process.stdout
            assert stream is not None
            t = threading.Thread(target=lambda s=stream: [print(line, end="", flush=True) for line in s], daemon=True)
            t.start()
            printer_threads.append(t)
        print("\nEach line: [language, worker pid] step, order, attempt, handler time, outcome\n")
        started = time.monotonic()
        tasks = []
        for i in range(args.orders):
            order_id = 1001 + i
            context = {
                "order_id": order_id,
                "customer_email": f"customer{order_id}@example.com",
                "items": [
                    {"sku": "WIDGET", "quantity": i + 1, "price": 9.99},
                    {"sku": "GADGET", "quantity": 1, "price": 24.50},
                ],
            }
            if i == 1:
                # This order's payment gateway times out once: the TypeScript step is retried.
                context["fail_once_at"] = ["charge_payment"]
            tasks.append(client.create_task("polyglot", "order_fulfillment", context=context, initiator="demo"))
        finished = [t.wait(timeout=60) for t in tasks]
        elapsed = time.monotonic() - started
        time.sleep(0.2)  # let the last worker lines print
    finally:
        group.stop()

    print(f"\nAll {len(finished)} orders finished in {elapsed:.2f} s:\n")
    ok = True
    for task in finished:
        ok &= task.state == "complete"
        r = task.results
        print(f"order {task.context['order_id']}: {task.state}")
        if task.state == "complete":
            print(f"  total {r['validate_order']['total']:>7}  (python)")
            print(f"  {r['reserve_inventory']['reservation_id']:<14} (ruby)        {r['charge_payment']['payment_id']} (typescript)")
            print(f"  {r['ship_order']['tracking_number']:<14} (python)      \"{r['notify_customer']['message']}\" (ruby)")
        for step in task.steps:
            if step.attempts > 1:
                print(f"  {step.name} needed {step.attempts} attempts (first failure: {step.last_error['message']})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
