"""Scenario 4: hostile templates. Every numeric field of a step at an extreme — u64::MAX,
u64::MAX + 1, i64::MAX, i64::MIN, -1, a huge float, infinity.

Each template must either be refused at registration with a clear error that names the file,
the step, the field and the allowed range, or (a value inside the allowed range) be accepted and
then run: its task completes, through a retry, and nothing panics. Afterwards the workers are
alive and still process other tasks."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from faultlib import QUEUES, size, wait_terminal
from polyglot import TASKER_BIN

import tasker_core

FIELDS = ["timeout_seconds", "retry.max_attempts", "retry.backoff_base_ms", "retry.max_backoff_ms"]
VALUES = {
    "u64_max": "18446744073709551615",
    "u64_max_plus_1": "18446744073709551616",
    "i64_max": "9223372036854775807",
    "i64_min": "-9223372036854775808",
    "minus_1": "-1",
    "huge_float": "1.0e308",
    "infinity": ".inf",
}
# The documented maximum of max_attempts (README: 0..=100): must be accepted and run.
AT_MAXIMUM = [("retry.max_attempts", "max_100", "100")]
STEP = "hostile_step"
RANGE = re.compile(
    r"\d[\d_,]*\s*(\.\.=?|…|–|\bto\b|\band\b)\s*-?\d|\b(at most|no more than|between|maximum|less than|up to)\b|<=|≤"
)


def template_yaml(name: str, field: str, value: str, queue: str) -> str:
    retry = {"max_attempts": "3", "backoff": "exponential", "backoff_base_ms": "10", "max_backoff_ms": "100"}
    timeout = "60"
    if field == "timeout_seconds":
        timeout = value
    else:
        retry[field.split(".", 1)[1]] = value
    retry_text = ", ".join(f"{k}: {v}" for k, v in retry.items())
    return f"""name: {name}
namespace_name: faults
version: 1.0.0
steps:
  - name: {STEP}
    queue: {queue}
    handler: {{ callable: faults.work }}
    retry: {{ {retry_text} }}
    timeout_seconds: {timeout}
"""


def refusal_problems(error: BaseException, file: Path, field: str) -> List[str]:
    """What a refusal lacks: a problem about this field that names the file, the step, the
    field and the allowed range (in its message, and in the error's text)."""
    short = field.split(".")[-1]
    text = str(error)
    problems = list(getattr(error, "problems", []))
    mine = [p for p in problems if short in (p.field or "") or short in p.message]
    if not mine:
        return [f"no problem is about {field}: {text[:400]!r}"]
    p = mine[0]
    missing = [
        what
        for what, ok in (
            ("the file", file.name in (p.file or "") and file.name in text),
            ("the step", p.step == STEP and STEP in text),
            ("the field", short in (p.field or "") and short in text),
            ("the allowed range", bool(RANGE.search(p.message))),
        )
        if not ok
    ]
    if missing:
        return [f"the error does not name {', '.join(missing)}: {p!r}"]
    return []


def test_hostile_templates_are_refused_or_run(harness_factory, backend_db, workdir: Path) -> None:
    backend, url = backend_db
    h = harness_factory("hostile_templates", backend, url)
    for language in QUEUES:
        h.worker(language, lease=10)
    tasker = str(TASKER_BIN)

    cases: List[Tuple[str, str, str]] = [(f, k, v) for f in FIELDS for k, v in VALUES.items()] + AT_MAXIMUM
    queues = list(QUEUES.values())
    accepted: Dict[str, Tuple[str, str, str]] = {}
    refused, wrong = 0, []
    for i, (field, key, value) in enumerate(cases):
        name = f"hostile_{field.replace('.', '_')}_{key}"
        directory = workdir / "templates" / name
        directory.mkdir(parents=True)
        file = directory / f"{name}.yaml"
        file.write_text(template_yaml(name, field, value, queues[i % 3]))
        what = f"{field} = {value}"
        error: Optional[BaseException] = None
        try:
            h.client.register_templates(str(file))
        except BaseException as e:  # noqa: BLE001 - a panic surfaces as a BaseException
            error = e
        if error is not None and not isinstance(error, tasker_core.TemplateError):
            wrong.append(f"{what}: registration raised {type(error).__name__}, not a TemplateError: {error}")
        elif error is not None:
            refused += 1
            wrong += [f"{what}: {p}" for p in refusal_problems(error, file, field)]
        # The CLI's validator agrees, and does not panic either.
        cli = subprocess.run([tasker, "template", "validate", str(file)], capture_output=True, text=True, timeout=60)
        if "panicked" in cli.stderr or cli.returncode not in (0, 1):
            wrong.append(f"{what}: `tasker template validate` exited {cli.returncode}: {cli.stderr[-400:]}")
        elif (cli.returncode == 1) != (error is not None):
            wrong.append(
                f"{what}: `tasker template validate` exited {cli.returncode} but registration "
                f"{'refused' if error else 'accepted'} it"
            )
        if error is None:
            # Accepted: it must run, through one retry (so the backoff is computed).
            task = h.client.create_task("faults", name, context={"fail_steps": {STEP: 1}})
            accepted[task.uuid] = (field, key, value)

    if AT_MAXIMUM and not any(k == "max_100" for (_, k, _) in accepted.values()):
        wrong.append("max_attempts: 100 (the documented maximum) was refused")
    states = wait_terminal(h.db, list(accepted), timeout=60)
    for u, (field, _, value) in accepted.items():
        if states.get(u) != "complete":
            step = h.client.get_task(u).step(STEP)
            wrong.append(
                f"{field} = {value} was accepted, but its task is {states.get(u)} (step {step.state}, "
                f"attempts {step.attempts}, next retry {step.next_retry_at}, error {step.error})"
            )

    # The workers are alive and still serve other tasks.
    others = [h.create("diamond", {"sleep_ms": 5}) for _ in range(size(10, 350))]  # x 6 steps
    wait_terminal(h.db, others, timeout=size(120, 900))
    time.sleep(2)
    expected = {u: {"complete"} for u in others}
    expected.update({u: {"complete"} for u in accepted})
    v = h.finish(expected)
    v.add("hostile templates handled against the contract", wrong, limit=40)
    v.figures.extra.update(cases=len(cases), refused=refused, accepted=len(accepted))
    v.assert_ok()
