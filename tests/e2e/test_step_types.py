"""Decision points and batches across languages, through the real worker processes, on SQLite
and PostgreSQL: a Python decision chooses Ruby approval branches, a Ruby convergence and a Ruby
batchable step plan the items, TypeScript batch workers process them with checkpoints, and a
Python deferred convergence receives the chosen branches' and every batch instance's results
(tests/fixtures/templates/approval_batches_polyglot.yaml, handlers `step_types` in
tests/handlers/{python,ruby,node}/)."""

from __future__ import annotations

from typing import Dict, Iterator, List

import pytest
from polyglot import ScratchDb, WorkerGroup

import tasker_core

NAMESPACE, TEMPLATE = "polyglot_step_types", "approval_batches"
QUEUES = {"python": "steptypes_python", "ruby": "steptypes_ruby", "typescript": "steptypes_node"}
BRANCHES = ["auto_approve", "manager_approval", "finance_review"]
APPROVER = {"auto_approve": "auto", "manager_approval": "manager", "finance_review": "finance"}
INTERVAL = 50  # checkpoint_interval of process_items
LANGUAGE_OF = {
    "route": "python",
    "auto_approve": "ruby",
    "manager_approval": "ruby",
    "finance_review": "ruby",
    "collect_approvals": "ruby",
    "plan_items": "ruby",
    "finalize": "python",
}


@pytest.fixture
def step_type_workers(db: ScratchDb, client: tasker_core.Client) -> Iterator[WorkerGroup]:
    """One worker process per language serving the `step_types` handlers."""
    group = WorkerGroup()
    try:
        for language, queue in QUEUES.items():
            group.start(language, db.url, [queue], lease=5, env={"TASKER_ENV": "test"}, handlers="step_types")
        yield group
    finally:
        group.stop()


def instances(items: int, batch_size: int) -> List[str]:
    if items == 0:
        return ["process_items_000"]
    return [f"process_items_{n:03d}" for n in range(1, -(-items // batch_size) + 1)]


# amount -> the branches the Python decision takes
CASES = {
    "small": ({"amount": 250, "items": 0, "batch_size": 100}, ["auto_approve"]),
    "medium": ({"amount": 5_000, "items": 250, "batch_size": 100}, ["manager_approval"]),
    "large": (
        {"amount": 50_000, "items": 1_000, "batch_size": 400, "fail_after_checkpoint": ["process_items_002"]},
        ["manager_approval", "finance_review"],
    ),
}


def test_decision_branches_batches_and_convergence_across_languages(
    client: tasker_core.Client, step_type_workers: WorkerGroup
) -> None:
    tasks = {case: client.create_task(NAMESPACE, TEMPLATE, context=ctx) for case, (ctx, _) in CASES.items()}
    for case, task in tasks.items():
        context, chosen = CASES[case]
        done = task.wait(timeout=60)
        assert done.state == "complete", (case, [(s.name, s.state, s.last_error) for s in done.steps])
        workers = instances(context["items"], context["batch_size"])
        items = context["items"]

        # Exactly the chosen branches and one instance per batch were created, by the right step.
        names = sorted(s.name for s in done.steps)
        assert names == sorted(["route", "collect_approvals", "plan_items", "finalize", *chosen, *workers]), case
        assert not set(BRANCHES) - set(chosen) & set(names)
        # Created at run time, by the step whose completion created them.
        for name in [*chosen, "collect_approvals", "plan_items"]:
            assert done.step(name).created_by == "route", (case, name, done.step(name).created_by)
        assert done.step("finalize").created_by == "plan_items", (case, done.step("finalize").created_by)
        steps = {s.name: s for s in done.steps}
        for name, language in LANGUAGE_OF.items():
            if name in steps:
                assert steps[name].result["by"] == language, (case, name, steps[name].result)

        # The decision's and the batchable step's outcomes, from Python and Ruby.
        route = done.step("route").results
        assert route["decision_point_outcome"] == {"type": "create_steps", "step_names": chosen}, case
        collect = done.step("collect_approvals").results
        assert collect["approvals"] == sorted(chosen), case
        plan = done.step("plan_items").results
        outcome = plan["batch_processing_outcome"]
        if items == 0:
            assert outcome == {"type": "no_batches"}, case
        else:
            assert (outcome["type"], outcome["worker_template_name"], outcome["worker_count"]) == (
                "create_batches",
                "process_items",
                len(workers),
            ), case
            assert outcome["total_items"] == items
        assert plan["approvals"] == sorted(chosen)

        # The TypeScript batch workers: each its own slice, checkpointed every INTERVAL items.
        for name in workers:
            s = done.step(name)
            assert s.created_by == "plan_items", (case, name)
            assert s.batch is not None and s.results["by"] == "typescript", (case, name, s.results)
            if items == 0:
                assert s.batch.is_no_op and s.results["noOp"] is True and s.checkpoint is None
                continue
            start, end = int(s.batch.start_cursor), int(s.batch.end_cursor)
            assert s.results["sum"] == sum(2 * i + 1 for i in range(start, end)), (case, name)
            assert s.results["items"] == end - start
            checkpoints = list(range(start + INTERVAL, end, INTERVAL))
            retried = name in context.get("fail_after_checkpoint", [])
            if retried:
                # Attempt 1 failed after its first checkpoint; attempt 2 resumed from it.
                assert s.attempts == 2 and s.last_error is not None and s.last_error["error_type"] == "AfterCheckpoint", s
                assert s.results["attempt"] == 2
                assert s.results["receivedCheckpoint"] == {"cursor": checkpoints[0], "attempt": 1}, s.results
                assert s.results["resumedFrom"] == checkpoints[0]
                assert s.results["checkpoints"] == len(checkpoints) - 1
            else:
                assert s.attempts == 1, (case, name, s.attempts)
                assert s.results["resumedFrom"] == start and s.results["receivedCheckpoint"] is None
                assert s.results["checkpoints"] == len(checkpoints)
            if checkpoints:
                assert s.checkpoint is not None, (case, name)
                assert (s.checkpoint.cursor, s.checkpoint.items_done, s.checkpoint.attempt) == (
                    checkpoints[-1],
                    checkpoints[-1] - start,
                    2 if retried else 1,
                ), (case, name, s.checkpoint)
                assert s.checkpoint.accumulated == {"sum": sum(2 * i + 1 for i in range(start, checkpoints[-1]))}

        # The Python convergence received exactly the chosen branches and every instance.
        final = done.step("finalize")
        assert sorted(final.dependencies) == sorted([*chosen, *workers]), (case, final.dependencies)
        r = final.result
        assert r["received"] == sorted([*chosen, *workers]), (case, r)
        assert r["approvers"] == sorted(APPROVER[b] for b in chosen), r
        assert r["branch_languages"] == ["ruby"] and r["instance_languages"] == ["typescript"], r
        assert (r["total"], r["items"]) == (items * items, items), (case, r)
        assert r["resumed"] == sorted(context.get("fail_after_checkpoint", [])), r
        assert done.total_steps == len(names), (case, done.total_steps)

    # Each language ran its steps in its own process.
    pids: Dict[str, set] = {"python": set(), "ruby": set(), "typescript": set()}
    for task in tasks.values():
        for s in task.refresh().steps:
            if isinstance(s.results, dict) and "pid" in s.results:
                pids[s.results["by"]].add(s.results["pid"])
    by_language = {w.language: w.pid for w in step_type_workers.workers}
    assert pids == {language: {pid} for language, pid in by_language.items()}, (pids, by_language)
