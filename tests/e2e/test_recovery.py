"""Recovering failed work across languages, through the real worker processes, on SQLite and
PostgreSQL: a Ruby step fails for good, the task ends in `error` and enters the dead-letter
queue; an operator script in its own Python process (operator_complete_step.py, the public
`tasker_core` client) completes the step by hand; the TypeScript step below it runs with the
operator's result, the task completes and its DLQ entry closes, credited to the operator
(tests/fixtures/templates/manual_recovery_polyglot.yaml, handlers `recovery` in
tests/handlers/{python,ruby,node}/)."""

from __future__ import annotations

import json
import subprocess
from typing import Iterator, List

import pytest
from polyglot import ROOT, ScratchDb, WorkerGroup, python_bin

import tasker_core

NAMESPACE, TEMPLATE = "polyglot_recovery", "manual_recovery"
QUEUES = {"python": "recovery_python", "ruby": "recovery_ruby", "typescript": "recovery_node"}
OPERATOR = ROOT / "tests" / "e2e" / "operator_complete_step.py"
MANUAL_RESULT = {"charge_id": "manual-1"}


@pytest.fixture
def recovery_workers(db: ScratchDb, client: tasker_core.Client) -> Iterator[WorkerGroup]:
    """One worker process per language serving the `recovery` handlers."""
    group = WorkerGroup()
    try:
        for language, queue in QUEUES.items():
            group.start(language, db.url, [queue], lease=5, env={"TASKER_ENV": "test"}, handlers="recovery")
        yield group
    finally:
        group.stop()


def run_operator(url: str, task_uuid: str, *extra: str) -> subprocess.CompletedProcess:
    """operator_complete_step.py completing `charge` with MANUAL_RESULT, as `ops`."""
    command = [
        python_bin(),
        str(OPERATOR),
        "--database-url",
        url,
        "--task",
        task_uuid,
        "--step",
        "charge",
        "--result",
        json.dumps(MANUAL_RESULT),
        "--by",
        "ops",
        "--reason",
        "charged by phone",
        *extra,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def events(transitions: List[tasker_core.Transition]) -> List[str]:
    return [t.event for t in transitions]


def test_a_ruby_failure_completed_by_a_python_operator_reaches_the_typescript_step(
    db: ScratchDb, client: tasker_core.Client, recovery_workers: WorkerGroup
) -> None:
    pids = {w.language: w.pid for w in recovery_workers.workers}
    task = client.create_task(NAMESPACE, TEMPLATE, context={"order_id": 42, "amount": 19.99})

    # The Ruby charge fails for good on its first attempt; nothing below it runs.
    failed = task.wait(timeout=30)
    assert failed.state == "error", [(s.name, s.state, s.last_error) for s in failed.steps]
    prepare = failed.step("prepare")
    assert prepare.state == "complete" and prepare.results["by"] == "python", prepare
    assert prepare.results["pid"] == pids["python"]
    charge = client.get_step(task.uuid, "charge")
    assert (charge.state, charge.attempts, charge.max_attempts) == ("error", 1, 3), charge
    assert charge.retry_possible is False and charge.results is None
    assert charge.last_error is not None and charge.last_error["error_type"] == "CardDeclined", charge.last_error
    assert charge.last_error["retryable"] is False
    assert charge.last_error["message"] == "card declined for order 42"
    assert charge.last_error["metadata"] == {"amount_cents": 1999, "gateway": "demo-pay", "by": "ruby", "pid": pids["ruby"]}
    assert [e["error_type"] for e in charge.errors] == ["CardDeclined"]
    ship = failed.step("ship")
    assert (ship.state, ship.attempts) == ("pending", 0), ship

    # One DLQ entry, written with the failure, holding the task as it was.
    entries = client.list_dlq(task_uuid=task.uuid)
    assert len(entries) == 1, entries
    entry = entries[0]
    assert (entry.reason, entry.status, entry.task_state) == ("permanent_failure", "pending", "error"), entry
    assert entry.is_open and entry.resolved_by is None and entry.resolved_at is None
    assert entry.snapshot["template"] == {"namespace": NAMESPACE, "name": TEMPLATE, "version": "1.0.0"}
    assert entry.snapshot["task"]["state"] == "error", entry.snapshot["task"]
    snapshot = {s["name"]: s for s in entry.snapshot["steps"]}
    assert {n: s["state"] for n, s in snapshot.items()} == {"prepare": "complete", "charge": "error", "ship": "pending"}
    assert entry.snapshot_step("charge")["attempts"] == 1
    assert entry.snapshot_step("charge")["last_error"]["error_type"] == "CardDeclined"
    assert [e.entry_uuid for e in client.list_dlq(open_only=True)] == [entry.entry_uuid]

    # The operator, in a Python process of its own, looks at the entry and completes the charge.
    done_by_hand = run_operator(db.url, task.uuid, "--note", "customer called; card charged by phone")
    assert done_by_hand.returncode == 0, done_by_hand.stderr
    report = json.loads(done_by_hand.stdout)
    assert report == {
        "task_uuid": task.uuid,
        "step": "charge",
        "state": "complete",
        "result": MANUAL_RESULT,
        "attempts": 1,
        "dlq_entry": entry.entry_uuid,
        "dlq_reason": "permanent_failure",
    }, report

    # The TypeScript ship runs once, with the operator's result as charge's, and the task completes.
    done = task.wait(timeout=30)
    assert done.state == "complete", [(s.name, s.state, s.last_error) for s in done.steps]
    ship = done.step("ship")
    assert ship.attempts == 1, ship
    assert ship.results == {
        "received": MANUAL_RESULT,
        "dependencies": ["charge"],
        "tracking": "TRK-42",
        "attempt": 1,
        "by": "typescript",
        "pid": pids["typescript"],
    }, ship.results
    assert done.results["charge"] == MANUAL_RESULT
    # The Ruby handler did not run again: charge kept its one attempt and its error history.
    charge = client.get_step(task.uuid, "charge")
    assert (charge.state, charge.attempts, charge.results) == ("complete", 1, MANUAL_RESULT), charge
    assert [e["error_type"] for e in charge.errors] == ["CardDeclined"]
    manual = [t for t in charge.transitions if t.event == "complete_manually"]
    assert len(manual) == 1, events(charge.transitions)
    assert (manual[0].metadata["by"], manual[0].metadata["reason"]) == ("ops", "charged by phone"), manual[0]
    # The task re-opened on the operator's word: error -> enqueuing_steps -> steps_in_process -> complete.
    states = [t.to_state for t in done.transitions]
    assert states[-1] == "complete" and "error" in states, states
    after_error = states[len(states) - 1 - states[::-1].index("error") :]
    assert after_error[:3] == ["error", "enqueuing_steps", "steps_in_process"], states
    reopen = [t for t in done.transitions if t.event == "reopen"]
    assert len(reopen) == 1, events(done.transitions)
    assert (reopen[0].metadata["by"], reopen[0].metadata["reason"]) == ("ops", "charged by phone")

    # The investigation closed by itself, credited to the operator, with both notes.
    closed = client.get_dlq_entry(entry.entry_uuid)
    assert (closed.status, closed.resolved_by) == ("manually_resolved", "ops"), closed
    assert closed.resolved_at is not None and not closed.is_open
    notes = [(n.by, n.status) for n in closed.notes]
    assert ("ops", "investigating") in notes and notes[-1] == ("ops", "manually_resolved"), closed.notes
    assert any("customer called" in n.text for n in closed.notes), closed.notes
    assert any("charged by phone" in n.text for n in closed.notes), closed.notes
    assert client.list_dlq(open_only=True) == []
    assert client.dlq_stats().by_status == {"manually_resolved": 1}

    # A second run of the script is refused with the engine's reason, and changes nothing.
    again = run_operator(db.url, task.uuid)
    assert again.returncode == 1 and again.stdout == "", (again.returncode, again.stdout, again.stderr)
    refusal = json.loads(again.stderr)
    assert refusal["error"] == "invalid_state" and "is complete" in refusal["message"], refusal
    assert client.get_task(task.uuid).state == "complete"
    assert len(client.list_dlq(task_uuid=task.uuid)) == 1

    # The three worker processes are registered and live, each with its language and queue.
    live = sorted((w.language, w.pid, tuple(w.queues)) for w in client.list_workers() if w.live)
    assert live == sorted((language, pids[language], (queue,)) for language, queue in QUEUES.items()), live
