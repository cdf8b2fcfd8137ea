"""Turning what a handler did (returned or raised) into the outcome the engine stores.

Shared by the worker and by :mod:`tasker_core.testing`, so a handler tested without a
database behaves exactly as it does in a worker.
"""

from __future__ import annotations

import json
import traceback
from typing import Any, Dict, Optional

from ._native import MAX_JSON_DEPTH
from .errors import HandlerNotFound, PermanentError, RetryableError
from .handler import StepResult

HANDLER_NOT_FOUND = "handler_not_found"
RESULT_NOT_SERIALIZABLE = "result_not_serializable"
RESULT_TOO_DEEP = "result_too_deep"

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

    A result (or metadata) that JSON cannot represent — a set, an object, NaN or Infinity, a
    cycle — becomes a permanent ``result_not_serializable`` failure naming the problem, and
    one nested too deeply for the serialiser a permanent ``result_too_deep`` failure, instead
    of an exception: the step fails clearly and the worker keeps serving. The engine checks
    the rest (size, nesting, ``\\u0000``) the same way for every language.
    """
    try:
        return json.dumps(to_outcome(result), allow_nan=False, separators=(",", ":"))
    except RecursionError:
        what = "result" if result.is_success else "failure metadata"
        where = f" of step '{step_name}'" if step_name else ""
        failure = StepResult.failure(
            f"the handler's {what}{where} is nested too deeply to serialise "
            f"(the engine stores at most {MAX_JSON_DEPTH} levels)",
            error_type=RESULT_TOO_DEEP,
            retryable=False,
        )
        return json.dumps(to_outcome(failure))
    except (TypeError, ValueError, OverflowError) as e:
        what = "result" if result.is_success else "failure metadata"
        where = f" of step '{step_name}'" if step_name else ""
        failure = StepResult.failure(
            f"the handler's {what}{where} is not JSON-serialisable: {type(e).__name__}: {e}",
            error_type=RESULT_NOT_SERIALIZABLE,
            retryable=False,
        )
        return json.dumps(to_outcome(failure))
