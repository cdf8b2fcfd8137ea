"""Type stubs for the pyo3 extension ``tasker_core._native``.

Internal: values cross as JSON text; use the ``tasker_core`` package instead.
"""

from typing import List, Optional, Tuple, final

__all__ = ["__version__", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "NativeClient", "NativeWorker", "NativeCancelSignal"]
__version__: str
MAX_JSON_BYTES: int
MAX_JSON_DEPTH: int

@final
class NativeClient:
    @staticmethod
    def connect(database_url: Optional[str] = None, max_connections: int = 10) -> NativeClient: ...
    @staticmethod
    def resolve_database_url(explicit: Optional[str] = None) -> str: ...
    @property
    def database(self) -> str: ...
    @property
    def backend(self) -> str: ...
    def register_templates(self, path: str) -> str: ...
    def create_task(
        self,
        namespace: str,
        name: str,
        version: Optional[str],
        context_json: str,
        initiator: Optional[str],
        source_system: Optional[str],
        reason: Optional[str],
        tags: List[str],
        priority: int,
        idempotency_key: Optional[str],
    ) -> str: ...
    def get_task(self, task_uuid: str) -> str: ...
    def list_tasks(
        self,
        namespace: Optional[str] = None,
        name: Optional[str] = None,
        state: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> str: ...
    def cancel_task(self, task_uuid: str) -> str: ...
    def wait_for_task(self, task_uuid: str, timeout_seconds: float) -> str: ...
    def close(self) -> None: ...

@final
class NativeWorker:
    @staticmethod
    def start(
        client: NativeClient,
        queues: List[str],
        concurrency: int = 8,
        lease_seconds: float = 30.0,
        dispatch_mode: str = "hybrid",
        poll_interval_seconds: Optional[float] = None,
        embedded_orchestration: bool = True,
        worker_id: Optional[str] = None,
    ) -> NativeWorker: ...
    # Raises tasker_core.errors.WorkerFailed once a background task of the worker died.
    def poll(self, timeout_ms: int) -> Optional[str]: ...
    def complete(self, event_id: int, outcome_json: str) -> None: ...
    # Raises tasker_core.errors.Fenced once the attempt no longer holds its step.
    def checkpoint(self, event_id: int, checkpoint_json: str) -> None: ...
    def cancel_signal(self, event_id: int) -> Optional[NativeCancelSignal]: ...
    def is_cancelled(self, event_id: int) -> bool: ...
    @property
    def shutting_down(self) -> bool: ...
    def shutdown(self, timeout_seconds: float) -> Tuple[int, int]: ...

@final
class NativeCancelSignal:
    @property
    def is_cancelled(self) -> bool: ...
