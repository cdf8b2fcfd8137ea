"""A FastAPI app that runs a Tasker workflow per order.

Run it (from this directory)::

    pip install "tasker-core[fastapi]" uvicorn
    uvicorn app:app

    curl -X POST localhost:8000/orders -H 'content-type: application/json' \
         -d '{"order_id": 1, "items": [{"sku": "A-1", "quantity": 2, "unit_price": 9.5}]}'
    curl 'localhost:8000/orders/<task_uuid>?wait=5'

Configuration (environment): ``TASKER_DATABASE_URL`` / ``DATABASE_URL`` (default
``sqlite://./tasker.db``), ``EXAMPLE_TEMPLATES`` (template directory) and
``EXAMPLE_NAMESPACE`` (the templates' namespace, which is also the worker's queue).
"""

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from tasker_core import errors
from tasker_core.contrib.fastapi import TaskerClient, tasker_lifespan
from tasker_core.events import LoggingSubscriber

try:
    from .handlers import HANDLERS
except ImportError:  # run as a top-level module (uvicorn app:app)
    from handlers import HANDLERS  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent


class Item(BaseModel):
    sku: str
    quantity: int
    unit_price: float


class Order(BaseModel):
    order_id: int
    items: List[Item]


def create_app(
    database_url: Optional[str] = None,
    templates: Optional[str] = None,
    namespace: Optional[str] = None,
) -> FastAPI:
    templates = templates or os.environ.get("EXAMPLE_TEMPLATES") or str(HERE / "templates")
    namespace = namespace or os.environ.get("EXAMPLE_NAMESPACE") or "fastapi_example"
    app = FastAPI(
        title="Tasker orders example",
        lifespan=tasker_lifespan(
            database_url=database_url,
            templates=templates,
            queues=[namespace],
            handlers=HANDLERS,
            concurrency=4,
            shutdown_timeout=10,
            # The logging bridge: this process's task events in the app's logs (logger
            # "tasker.events", fields in record.tasker_event; through structlog when configured).
            subscribers=[LoggingSubscriber(["task.*"])],
        ),
    )

    @app.post("/orders", status_code=202)
    async def create_order(order: Order, client: TaskerClient) -> Dict[str, Any]:
        try:
            task = await client.create_task_async(
                namespace,
                "process_order",
                context=order.model_dump() if hasattr(order, "model_dump") else order.dict(),
                initiator="fastapi-example",
                idempotency_key=f"order-{order.order_id}",
            )
        except errors.ValidationError as e:
            raise HTTPException(status_code=422, detail={"path": e.path, "message": str(e)}) from e
        return {"task_uuid": task.task_uuid, "state": task.state, "created": task.created}

    @app.get("/orders/{task_uuid}")
    async def get_order(task_uuid: str, client: TaskerClient, wait: float = 0) -> Dict[str, Any]:
        try:
            if wait > 0:
                try:
                    task = await client.wait_for_task_async(task_uuid, timeout=min(wait, 30))
                except errors.WaitTimeout:
                    task = await client.get_task_async(task_uuid)
            else:
                task = await client.get_task_async(task_uuid)
        except errors.TaskNotFound as e:
            raise HTTPException(status_code=404, detail=str(e)) from e
        except errors.InvalidArgument as e:
            raise HTTPException(status_code=400, detail=str(e)) from e
        return {
            "task_uuid": task.task_uuid,
            "state": task.state,
            "steps": {
                s.name: {"state": s.state, "attempts": s.attempts, "result": s.result, "error": s.last_error}
                for s in task.steps
            },
        }

    return app


app = create_app()
