"""FastAPI integration: run a Tasker worker with the app and hand routes the client.

::

    from fastapi import FastAPI
    from tasker_core.contrib.fastapi import TaskerClient, tasker_lifespan

    app = FastAPI(lifespan=tasker_lifespan(
        templates="templates/",
        queues=["orders"],
        handlers=[ValidateOrder, ChargePayment],
    ))

    @app.post("/orders")
    async def create_order(order: dict, client: TaskerClient):
        task = await client.create_task_async("orders", "process_order", context=order)
        return {"task_uuid": task.task_uuid}

On startup the lifespan connects (``database_url``, else the usual environment variables),
registers ``templates``, starts a :class:`~tasker_core.events.SubscriberRunner` per entry of
``subscribers`` and a :class:`~tasker_core.Worker` when ``queues`` are given; on shutdown it
stops the worker gracefully (running handlers get ``shutdown_timeout`` seconds to finish),
then the subscribers, and closes the client. They are also on ``app.state.tasker_client``,
``app.state.tasker_worker`` and ``app.state.tasker_subscribers``.

Events into the application's logs (the logging bridge)::

    from tasker_core.events import LoggingSubscriber

    app = FastAPI(lifespan=tasker_lifespan(queues=["orders"], subscribers=[LoggingSubscriber(["task.*"])]))
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, AsyncIterator, Callable, List, Optional, Sequence, Type, Union

from fastapi import Depends, FastAPI, HTTPException, Request

try:  # Python 3.9+: typing.Annotated
    from typing import Annotated
except ImportError:  # pragma: no cover
    from typing_extensions import Annotated  # type: ignore[assignment]

from ..client import Client, connect
from ..events import Subscriber, SubscriberRunner
from ..worker import Handlers, Worker

__all__ = ["tasker_lifespan", "get_client", "get_worker", "get_subscribers", "TaskerClient"]

Lifespan = Callable[[FastAPI], "contextlib.AbstractAsyncContextManager[None]"]


def tasker_lifespan(
    *,
    database_url: Optional[str] = None,
    templates: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], None] = None,
    queues: Optional[Sequence[str]] = None,
    handlers: Handlers = None,
    concurrency: Optional[int] = None,
    shutdown_timeout: float = 30.0,
    client: Optional[Client] = None,
    inner: Optional[Lifespan] = None,
    subscribers: Sequence[Union[Subscriber, Type[Subscriber]]] = (),
    **worker_options: Any,
) -> Lifespan:
    """A FastAPI ``lifespan`` that owns a Tasker client and (with ``queues``) a worker.

    Args:
        database_url: passed to :func:`~tasker_core.connect` (ignored when ``client`` is given).
        templates: a template file or directory (or several) to register at startup.
        queues: queues for the worker; ``None`` runs no worker (client only).
        handlers, concurrency, worker_options: passed to :class:`~tasker_core.Worker` (options
            left out come from the configuration, as for ``Worker``).
        shutdown_timeout: seconds running handlers get to finish on shutdown.
        inner: the application's own lifespan, entered inside this one.
        subscribers: :class:`~tasker_core.events.Subscriber` classes or instances, each run by
            a :class:`~tasker_core.events.SubscriberRunner` with its own ``group`` and
            ``delivery`` (e.g. :class:`~tasker_core.events.LoggingSubscriber`). They start
            before the worker, so its first events reach them.
    """
    for s in subscribers:
        if not (isinstance(s, Subscriber) or (isinstance(s, type) and issubclass(s, Subscriber))):
            raise TypeError(f"subscribers must be Subscriber classes or instances, got {s!r}")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = client is None
        tasker = client if client is not None else await asyncio.to_thread(connect, database_url)
        worker: Optional[Worker] = None
        runners: List[SubscriberRunner] = []
        try:
            for path in _paths(templates):
                await asyncio.to_thread(tasker.register_templates, path)
            for s in subscribers:
                runner = SubscriberRunner(tasker, s, shutdown_timeout=shutdown_timeout)
                await asyncio.to_thread(runner.start)
                runners.append(runner)
            if queues:
                worker = Worker(
                    tasker, queues, handlers, concurrency, shutdown_timeout=shutdown_timeout, **worker_options
                )
                await asyncio.to_thread(worker.start)
            app.state.tasker_client = tasker
            app.state.tasker_worker = worker
            app.state.tasker_subscribers = runners
            if inner is not None:
                async with inner(app):
                    yield
            else:
                yield
        finally:
            if worker is not None:
                await asyncio.to_thread(worker.stop, shutdown_timeout)
            for runner in runners:
                with contextlib.suppress(Exception):  # logged by the runner; the rest still stop
                    await asyncio.to_thread(runner.stop, shutdown_timeout)
            if owned:
                await asyncio.to_thread(tasker.close)

    return lifespan


def _paths(templates: Any) -> Sequence[Any]:
    if templates is None:
        return ()
    if isinstance(templates, (str, os.PathLike)):
        return (templates,)
    return tuple(templates)


def get_client(request: Request) -> Client:
    """FastAPI dependency: the client opened by :func:`tasker_lifespan`."""
    client = getattr(request.app.state, "tasker_client", None)
    if client is None:
        raise HTTPException(status_code=503, detail="Tasker is not running (is tasker_lifespan installed?)")
    return client


def get_worker(request: Request) -> Optional[Worker]:
    """FastAPI dependency: the worker started by :func:`tasker_lifespan` (``None`` if none)."""
    return getattr(request.app.state, "tasker_worker", None)


def get_subscribers(request: Request) -> List[SubscriberRunner]:
    """FastAPI dependency: the subscriber runners started by :func:`tasker_lifespan`."""
    return list(getattr(request.app.state, "tasker_subscribers", None) or [])


TaskerClient = Annotated[Client, Depends(get_client)]
"""Annotate a route parameter with this to receive the client."""
