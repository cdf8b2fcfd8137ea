"""Scenario 3: hostile results from a Python, a Ruby and a TypeScript handler, on SQLite and
PostgreSQL, side by side with normal steps on the same workers.

The engine's contract:
* NUL characters in any string or key of a result, metadata, error message or backtrace are
  replaced by U+FFFD, and the step goes on normally;
* a result or metadata larger than 1 MiB (1,048,576 bytes serialized) fails that step alone,
  permanently, with error_type `result_too_large`;
* nesting deeper than 64 levels fails it permanently with error_type `result_too_deep`;
* the message names the limit; the other steps of the same completion batch are unaffected,
  and `get_task` keeps working for every task.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Dict, List, Tuple

from faultlib import size, wait_terminal

LANGUAGES = {"python": "solo_python", "ruby": "solo_ruby", "typescript": "solo_node"}
NORMAL_PER_LANGUAGE = size(30, 700)  # x 3 languages: 90 reduced, 2,100 full
FFFD = "\ufffd"


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for i in range(levels):
        value = [value] if i % 2 == 0 else {"d": value}
    return value


def _result(expected: Any) -> Callable[[Any, str], List[str]]:
    def check(task: Any, language: str) -> List[str]:
        got = task.step("s").result
        return [] if got == expected else [f"result is {str(got)[:200]!r}, expected {str(expected)[:200]!r}"]

    return check


def _nul_metadata(task: Any, language: str) -> List[str]:
    succeeded = [t for t in task.step_transitions if t.event == "succeed"]
    if len(succeeded) != 1:
        return [f"{len(succeeded)} succeed transitions"]
    meta = (succeeded[0].metadata or {}).get("metadata")
    want = {"note": f"m{FFFD}", f"k{FFFD}": 1}
    return [] if meta == want else [f"stored metadata is {meta!r}, expected {want!r}"]


def _error(error_type: str, limit: str) -> Callable[[Any, str], List[str]]:
    def check(task: Any, language: str) -> List[str]:
        s = task.step("s")
        e = s.error or {}
        problems = []
        if (s.state, s.attempts) != ("error", 1):
            problems.append(f"step is {s.state} after {s.attempts} attempts, expected error after 1 (permanent)")
        if e.get("error_type") != error_type:
            problems.append(f"error_type is {e.get('error_type')!r}, expected {error_type!r} ({e.get('message')!r})")
        if not re.search(limit, e.get("message") or ""):
            problems.append(f"the message does not name the limit /{limit}/: {e.get('message')!r}")
        if e.get("retryable") not in (False, None):
            problems.append(f"the error is recorded as retryable: {e!r}")
        return problems

    return check


def _nul_failure(permanent: bool) -> Callable[[Any, str], List[str]]:
    def check(task: Any, language: str) -> List[str]:
        s = task.step("s")
        e = s.error or {}
        problems = []
        want = ("error", 1) if permanent else ("complete", 2)
        if (s.state, s.attempts) != want:
            problems.append(f"step is {s.state} after {s.attempts} attempts, expected {want}")
        message = f"fatal{FFFD}here" if permanent else f"boom{FFFD}here"
        if e.get("message") != message or e.get("error_type") != "HostileFailure":
            problems.append(f"stored error is {e!r}, expected message {message!r} and error_type HostileFailure")
        if f"frame one{FFFD}frame two" not in (e.get("backtrace") or ""):
            problems.append(f"stored backtrace is {e.get('backtrace')!r}")
        return problems

    return check


SIZE_LIMIT = r"1048576|1,048,576|1 ?MiB"
DEPTH_LIMIT = r"\b64\b"
# kind -> (expected task state, check of the task read back with get_task)
HOSTILE: Dict[str, Tuple[str, Callable[[Any, str], List[str]]]] = {
    "nul_value": (
        "complete",
        lambda t, lang: _result({"text": f"a{FFFD}b", "nested": {"list": [f"x{FFFD}", FFFD]}, "by": lang})(t, lang),
    ),
    "nul_key": ("complete", lambda t, lang: _result({f"k{FFFD}ey": 1, "nested": {FFFD: "v"}, "by": lang})(t, lang)),
    "nul_metadata": ("complete", _nul_metadata),
    "nul_failure": ("complete", _nul_failure(permanent=False)),
    "nul_failure_permanent": ("error", _nul_failure(permanent=True)),
    "oversize": ("error", _error("result_too_large", SIZE_LIMIT)),
    "oversize_metadata": ("error", _error("result_too_large", SIZE_LIMIT)),
    "deep": ("error", _error("result_too_deep", DEPTH_LIMIT)),
    "deep_metadata": ("error", _error("result_too_deep", DEPTH_LIMIT)),
    "large_ok": ("complete", lambda t, lang: _result({"blob": "y" * 600_000, "by": lang})(t, lang)),
    "deep_ok": ("complete", lambda t, lang: _result({"deep": deep(20), "by": lang})(t, lang)),
}


def test_hostile_results_fail_alone(harness_factory, backend_db) -> None:
    backend, url = backend_db
    h = harness_factory("hostile_results", backend, url)
    for language in LANGUAGES:
        h.worker(language, concurrency=8, lease=10)

    # Hostile tasks interleaved with normal ones, so that they share completion batches.
    hostile: Dict[str, Tuple[str, str]] = {}
    normal: List[str] = []
    kinds = list(HOSTILE)
    for i in range(NORMAL_PER_LANGUAGE):
        for language, template in LANGUAGES.items():
            normal.append(h.create(template, {"sleep_ms": 5}))
            if i < len(kinds):
                hostile[h.create(template, {"hostile": {"s": kinds[i]}, "sleep_ms": 5})] = (language, kinds[i])
    for language, template in LANGUAGES.items():  # the kinds that did not fit in the loop
        for kind in kinds[NORMAL_PER_LANGUAGE:]:
            hostile[h.create(template, {"hostile": {"s": kind}})] = (language, kind)

    wait_terminal(h.db, list(hostile) + normal, timeout=size(120, 600))
    time.sleep(2)
    expected = {u: {"complete"} for u in normal}
    expected.update({u: {HOSTILE[kind][0]} for u, (_, kind) in hostile.items()})
    v = h.finish(expected)

    wrong = []
    for u, (language, kind) in sorted(hostile.items(), key=lambda kv: kv[1]):
        try:
            task = h.client.get_task(u)
        except Exception as e:  # noqa: BLE001 - reported by finish() too
            wrong.append(f"{language} {kind}: get_task raised {type(e).__name__}: {e}")
            continue
        wrong += [f"{language} {kind}: {p}" for p in HOSTILE[kind][1](task, language)]
    v.add("hostile results handled against the contract", wrong, limit=40)
    innocent = []
    for u in normal:
        s = h.client.get_task(u).step("s")
        if (s.state, s.attempts, s.error) != ("complete", 1, None):
            innocent.append(f"normal step {s.step_uuid}: {s.state} after {s.attempts} attempts, error {s.error}")
    v.add("normal steps hurt by their hostile neighbours (not complete on the first attempt)", innocent)
    v.figures.extra["hostile_tasks"] = len(hostile)
    v.figures.extra["hostile_failures"] = len(wrong)
    v.assert_ok()
