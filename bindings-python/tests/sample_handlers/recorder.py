"""What handlers saw, for tests to assert on. Keyed by step uuid (unique across tests)."""

import threading
from collections import defaultdict
from typing import Any, Dict, List

_lock = threading.Lock()
_seen: Dict[str, List[Any]] = defaultdict(list)
_events: Dict[str, threading.Event] = defaultdict(threading.Event)


def record(key: str, value: Any) -> None:
    with _lock:
        _seen[key].append(value)


def seen(key: str) -> List[Any]:
    with _lock:
        return list(_seen.get(key, ()))


def event(key: str) -> threading.Event:
    with _lock:
        return _events[key]
