"""Turning what a handler did (returned or raised) into the outcome the engine stores.

Shared by the worker and by :mod:`tasker_core.testing`, so a handler tested without a
database behaves exactly as it does in a worker.
"""

from __future__ import annotations

import json
import math
import re
import traceback
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ._native import MAX_JSON_DEPTH
from .errors import HandlerNotFound, PermanentError, RetryableError
from .handler import StepResult

HANDLER_NOT_FOUND = "handler_not_found"
RESULT_NOT_SERIALIZABLE = "result_not_serializable"
RESULT_TOO_DEEP = "result_too_deep"
# Codes of the note that replaces a failure's metadata the engine cannot store (the same in every
# language; see tasker_core::outcome::dropped_metadata in the Rust core).
METADATA_NOT_SERIALIZABLE = "metadata_not_serializable"
METADATA_TOO_DEEP = "metadata_too_deep"

# Tracebacks are stored with the step's error; keep them bounded.
_MAX_BACKTRACE = 16_000


def from_return(value: Any) -> StepResult:
    """A handler's return value as a :class:`StepResult` (plain values mean success)."""
    if isinstance(value, StepResult):
        return value
    return StepResult.success(value)


def from_exception(exc: BaseException) -> StepResult:
    """A handler's exception as a failed :class:`StepResult`.

    * :class:`PermanentError`: not retried;
    * :class:`RetryableError`: retried, after ``retry_after`` seconds when given;
    * :class:`HandlerNotFound`: permanent, error type ``handler_not_found``;
    * anything else: retried, error type = the exception's class name, with its traceback.
    """
    message = str(exc) or type(exc).__name__
    if isinstance(exc, HandlerNotFound):
        result = StepResult.failure(message, error_type=HANDLER_NOT_FOUND, retryable=False)
    elif isinstance(exc, PermanentError):
        result = StepResult.failure(
            message,
            error_type=getattr(exc, "error_type", None) or type(exc).__name__,
            retryable=False,
            metadata=getattr(exc, "metadata", None),
        )
    elif isinstance(exc, RetryableError):
        result = StepResult.failure(
            message,
            error_type=getattr(exc, "error_type", None) or type(exc).__name__,
            retryable=True,
            retry_after=getattr(exc, "retry_after", None),
            metadata=getattr(exc, "metadata", None),
        )
    else:
        result = StepResult.failure(message, error_type=type(exc).__name__, retryable=True)
    result.backtrace = _format_traceback(exc)
    return result


def with_events(result: StepResult, events: Sequence[Mapping[str, Any]]) -> StepResult:
    """``result`` with the events a handler published (``context.publish``) appended to its
    metadata's ``events`` list; the other metadata is kept. ``result`` itself is not changed
    (a handler may return a shared constant)."""
    if not events:
        return result
    metadata = dict(result.metadata or {})
    listed = metadata.get("events")
    metadata["events"] = (list(listed) if isinstance(listed, list) else []) + [dict(e) for e in events]
    merged = StepResult(
        result.is_success,
        result=result.result,
        metadata=metadata,
        error_message=result.error_message,
        error_type=result.error_type,
        retryable=result.retryable,
        retry_after=result.retry_after,
        backtrace=result.backtrace,
    )
    return merged


def _format_traceback(exc: BaseException) -> Optional[str]:
    if exc.__traceback__ is None:
        return None
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) > _MAX_BACKTRACE:
        text = "...\n" + text[-_MAX_BACKTRACE:]
    return text


def to_outcome(result: StepResult) -> Dict[str, Any]:
    """The engine's outcome document for ``result``."""
    if result.is_success:
        return {"status": "success", "result": result.result, "metadata": result.metadata}
    doc: Dict[str, Any] = {
        "status": "failure",
        "message": result.error_message or "",
        "error_type": result.error_type or "step_failed",
        "retryable": bool(result.retryable),
    }
    if result.retry_after is not None:
        doc["retry_after"] = float(result.retry_after)
    if result.backtrace:
        doc["backtrace"] = result.backtrace
    if result.metadata:
        doc["metadata"] = result.metadata
    return doc


def encode(result: StepResult, step_name: str = "") -> str:
    """Serialises ``result`` for the engine.

    A success whose result (or metadata) JSON cannot represent — a set, an object, NaN or
    Infinity, a cycle — becomes a permanent ``result_not_serializable`` failure naming the
    problem, and one nested too deeply for the serialiser a permanent ``result_too_deep``
    failure, instead of an exception: the step fails clearly and the worker keeps serving. A
    failure keeps its error type, message and retryability; only metadata that cannot be
    serialised is replaced by the ``metadata_dropped`` note naming the bad path, as in every
    language. The engine checks the rest (size, nesting, ``\\u0000``) the same way for every
    language.
    """
    try:
        return json.dumps(to_outcome(result), allow_nan=False, separators=(",", ":"))
    except (RecursionError, TypeError, ValueError, OverflowError) as e:
        if result.is_failure:
            return json.dumps(to_outcome(_without_bad_metadata(result, e)), separators=(",", ":"))
        where = f" of step '{step_name}'" if step_name else ""
        if isinstance(e, RecursionError):
            failure = StepResult.failure(
                f"the handler's result{where} is nested too deeply to serialise "
                f"(the engine stores at most {MAX_JSON_DEPTH} levels)",
                error_type=RESULT_TOO_DEEP,
                retryable=False,
            )
        else:
            found = find_unserializable(result.result, "result") or find_unserializable(result.metadata, "metadata")
            detail = f"{found[0]} is {found[1]}" if found else f"{type(e).__name__}: {e}"
            failure = StepResult.failure(
                f"the handler's result{where} is not JSON-serialisable: {detail}",
                error_type=RESULT_NOT_SERIALIZABLE,
                retryable=False,
            )
        return json.dumps(to_outcome(failure))


def dropped_metadata(code: str, path: str, reason: str) -> Dict[str, Any]:
    """The note that replaces a failure's metadata the engine cannot store."""
    return {"metadata_dropped": {"code": code, "path": path, "reason": reason}}


def _without_bad_metadata(result: StepResult, error: BaseException) -> StepResult:
    if isinstance(error, RecursionError):
        note = dropped_metadata(
            METADATA_TOO_DEEP,
            "metadata",
            f"nested too deeply to serialise (the engine stores at most {MAX_JSON_DEPTH} levels)",
        )
    else:
        found = find_unserializable(result.metadata, "metadata")
        path, reason = found if found else ("metadata", f"{type(error).__name__}: {error}")
        note = dropped_metadata(METADATA_NOT_SERIALIZABLE, path, reason)
    return StepResult(
        False,
        metadata=note,
        error_message=result.error_message,
        error_type=result.error_type,
        retryable=result.retryable,
        retry_after=result.retry_after,
        backtrace=result.backtrace,
    )


_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def find_unserializable(value: Any, path: str, _ancestors: Tuple[int, ...] = ()) -> Optional[Tuple[str, str]]:
    """The path (``metadata.items[2].price``, the syntax every language reports) and reason of
    the first value in ``value`` that JSON cannot represent, or ``None``."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"float {value!r}, which JSON cannot represent")
    if id(value) in _ancestors:
        return (path, "a circular reference")
    inner = _ancestors + (id(value),)
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                return (path, f"a dict with a {type(k).__name__} key; JSON object keys are strings")
            key = str(k)
            step = f".{key}" if _IDENTIFIER.match(key) else f"[{json.dumps(key)}]"
            found = find_unserializable(v, path + step, inner)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = find_unserializable(item, f"{path}[{i}]", inner)
            if found:
                return found
        return None
    return (path, f"a {type(value).__name__}, which has no JSON form")
