"""The checks themselves, on made-up records: each one catches what it is meant to catch (so a
passing scenario means something). No database, no processes."""

from __future__ import annotations

from typing import List, Optional

from faultlib import (
    STEP_TABLE,
    TASK_TABLE,
    Figures,
    StepRow,
    TransitionRow,
    Verdict,
    check_ledger,
    trail_problems,
)
from ledger import Run

S = "00000000-0000-0000-0000-00000000000a"
T = "00000000-0000-0000-0000-0000000000ff"


def trail(*hops: str, last_flag_only: bool = True, attempt_meta: Optional[List[dict]] = None) -> List[TransitionRow]:
    """`trail("pending-enqueue->enqueued", ...)` as audit rows of step S."""
    rows = []
    for i, hop in enumerate(hops):
        left, to = hop.split("->")
        frm, event = left.rsplit("-", 1)
        meta = (attempt_meta or [{}] * len(hops))[i]
        rows.append(TransitionRow(i + 1, S, T, None if frm == "null" else frm, to, event, meta, False))
    if last_flag_only:
        rows[-1].most_recent = True
    return rows


def run(attempt: int, start: float, end: Optional[float], pid: int = 1, outcome: str = "ok") -> Run:
    return Run(f"tok{attempt}{start}", S, T, "a", attempt, "python", pid, outcome, start, end)


def verdict() -> Verdict:
    return Verdict(Figures("self-test", "none"))


def test_the_state_tables_are_read_from_the_engine() -> None:
    assert ("enqueued", "claim", "in_progress") in STEP_TABLE
    assert ("in_progress", "succeed", "complete") in STEP_TABLE
    assert not any(frm == "complete" for frm, _, _ in STEP_TABLE)
    assert ("evaluating_results", "all_steps_complete", "complete") in TASK_TABLE
    assert ("complete", "cancel", "cancelled") in TASK_TABLE  # `(_, T::Cancel)`


def test_a_legal_trail_passes() -> None:
    rows = trail("pending-enqueue->enqueued", "enqueued-claim->in_progress", "in_progress-succeed->complete")
    assert trail_problems("step", rows, STEP_TABLE, {S: "complete"}, {}) == []


def test_illegal_trails_are_caught() -> None:
    def problems(rows: List[TransitionRow], state: str = "complete") -> List[str]:
        return trail_problems("step", rows, STEP_TABLE, {S: state}, {})

    skipped = trail("pending-enqueue->enqueued", "enqueued-succeed->complete")
    assert any("not in the state table" in p for p in problems(skipped))
    gap = trail("pending-enqueue->enqueued", "in_progress-succeed->complete")
    assert any("starts from 'in_progress'" in p for p in problems(gap))
    late_start = trail("enqueued-claim->in_progress", "in_progress-succeed->complete")
    assert any("first audit row" in p for p in problems(late_start))
    two_flags = trail("pending-enqueue->enqueued", "enqueued-claim->in_progress", "in_progress-succeed->complete")
    two_flags[0].most_recent = True
    assert any("most_recent" in p for p in problems(two_flags))
    good = trail("pending-enqueue->enqueued", "enqueued-claim->in_progress", "in_progress-succeed->complete")
    assert any("last audit row ends" in p for p in problems(good, state="error"))


def _ledger(runs: List[Run], step: StepRow, rows: List[TransitionRow], killed: Optional[dict] = None) -> Verdict:
    v = verdict()
    check_ledger(runs, [step], rows, killed or {}, v)
    return v


SUCCESS_AT_2 = trail(
    "pending-enqueue->enqueued",
    "enqueued-claim->in_progress",
    "in_progress-schedule_retry->waiting_for_retry",
    "waiting_for_retry-enqueue->enqueued",
    "enqueued-claim->in_progress",
    "in_progress-succeed->complete",
    attempt_meta=[{}, {"attempt": 1}, {"attempt": 1, "error_type": "worker_lost"}, {}, {"attempt": 2}, {"attempt": 2}],
)
COMPLETE_AT_2 = StepRow(S, T, "a", "complete", 2, None)


def test_a_clean_run_passes() -> None:
    rows = trail(
        "pending-enqueue->enqueued", "enqueued-claim->in_progress", "in_progress-succeed->complete",
        attempt_meta=[{}, {"attempt": 1}, {"attempt": 1}],
    )  # fmt: skip
    v = _ledger([run(1, 10.0, 11.0)], StepRow(S, T, "a", "complete", 1, None), rows)
    assert v.problems == [] and (v.figures.lost, v.figures.doubled) == (0, 0)


def test_overlapping_runs_are_doubled() -> None:
    v = _ledger([run(1, 10.0, 12.0, pid=1), run(2, 11.0, 13.0, pid=2)], COMPLETE_AT_2, SUCCESS_AT_2)
    assert v.figures.doubled == 1 and any("overlapped" in p for p in v.problems)


def test_an_attempt_run_twice_is_doubled() -> None:
    v = _ledger([run(2, 10.0, 11.0, pid=1), run(2, 12.0, 13.0, pid=2)], COMPLETE_AT_2, SUCCESS_AT_2)
    assert v.figures.doubled >= 1


def test_a_complete_step_without_its_run_is_lost() -> None:
    v = _ledger([run(1, 10.0, 11.0, pid=9, outcome="retryable")], COMPLETE_AT_2, SUCCESS_AT_2, killed={9: 11.5})
    assert v.figures.lost == 1


def test_a_live_workers_result_failed_as_worker_lost_is_dropped() -> None:
    v = _ledger([run(1, 10.0, 11.0, pid=1), run(2, 20.0, 21.0, pid=2)], COMPLETE_AT_2, SUCCESS_AT_2)
    assert v.figures.dropped == 1 and v.figures.reruns == 1


def test_a_killed_workers_result_is_a_rerun_not_a_drop() -> None:
    v = _ledger([run(1, 10.0, 11.0, pid=1), run(2, 20.0, 21.0, pid=2)], COMPLETE_AT_2, SUCCESS_AT_2, killed={1: 11.2})
    assert v.problems == [] and (v.figures.reruns, v.figures.dropped) == (1, 0)


def test_a_killed_run_ends_when_its_worker_was_killed() -> None:
    early = _ledger([run(1, 10.0, None, pid=1), run(2, 20.0, 21.0, pid=2)], COMPLETE_AT_2, SUCCESS_AT_2, {1: 15.0})
    assert early.figures.doubled == 0
    late = _ledger([run(1, 10.0, None, pid=1), run(2, 20.0, 21.0, pid=2)], COMPLETE_AT_2, SUCCESS_AT_2, {1: 25.0})
    assert late.figures.doubled == 1


def test_a_success_recorded_as_a_handler_failure_is_caught() -> None:
    rows = trail(
        "pending-enqueue->enqueued", "enqueued-claim->in_progress", "in_progress-fail->error",
        attempt_meta=[{}, {"attempt": 1}, {"attempt": 1, "error_type": "outcome_rejected"}],
    )  # fmt: skip
    v = _ledger([run(1, 10.0, 11.0)], StepRow(S, T, "a", "error", 1, None), rows)
    assert any("recorded as something else" in p for p in v.problems)
