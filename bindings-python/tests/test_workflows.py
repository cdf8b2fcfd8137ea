"""Templates in Tasker's format run end to end with Python handlers, and each step receives
exactly the values its dependencies produced."""

import asyncio

import pytest

import tasker_core


def step_results(task):
    return {s.name: s.results for s in task.steps}


def assert_all_complete(task):
    assert task.state == "complete", [(s.name, s.state, s.last_error) for s in task.steps]
    assert all(s.state == "complete" and s.attempts == 1 for s in task.steps)
    assert task.completed_steps == task.total_steps == len(task.steps)


def test_linear_class_path_handlers(client, namespace, register, start_worker):
    (reg,) = register("linear")
    assert (reg.namespace, reg.name, reg.version) == (namespace, "linear_math", "1.0.0")
    assert reg.queues == [namespace]
    # No handlers given: the class path in the template is imported on first use.
    start_worker()
    task = client.create_task(namespace, "linear_math", context={"value": 5})
    assert task.state == "steps_in_process" and task.created and not task.detailed
    done = task.wait(timeout=30)
    assert_all_complete(done)
    r = step_results(done)
    assert r["step_a"] == {"value": 6, "op": "add", "parents": []}
    assert r["step_b"] == {"value": 18, "op": "mul", "parents": ["step_a"]}
    assert r["step_c"] == {"value": 14, "op": "sub", "parents": ["step_b"]}
    assert r["step_d"] == {"value": 196, "op": "square", "parents": ["step_c"]}
    assert done.step("step_c").dependencies == ["step_b"]
    # Each step ran only after its parent completed.
    a, b, c, d = (done.step(n) for n in ("step_a", "step_b", "step_c", "step_d"))
    assert a.completed_at <= b.first_attempted_at and b.completed_at <= c.first_attempted_at
    assert c.completed_at <= d.first_attempted_at


def test_diamond_decorator_handlers_with_ruby_style_names(client, namespace, register, start_worker):
    import sample_handlers.diamond  # noqa: F401  (registers the decorated functions)

    register("diamond")
    start_worker()
    done = client.create_task(namespace, "diamond_pattern", context={"n": 7}).wait(timeout=30)
    assert_all_complete(done)
    r = step_results(done)
    assert r["diamond_start"] == {"n": 7}
    assert r["diamond_branch_b"] == {"square": 49}
    assert r["diamond_branch_c"] == {"plus_ten": 17}
    assert r["diamond_end"] == {"sum": 66, "inputs": [49, 17]}
    end = done.step("diamond_end")
    assert end.first_attempted_at >= max(
        done.step("diamond_branch_b").completed_at, done.step("diamond_branch_c").completed_at
    )


def test_tree_async_class_handlers(client, namespace, register, start_worker):
    register("tree")
    start_worker(concurrency=8)
    done = client.create_task(namespace, "hierarchical_tree", context={"base": 0}).wait(timeout=30)
    assert_all_complete(done)
    r = step_results(done)
    assert r["tree_root"] == {"value": 1, "path": ["tree_root"]}
    assert r["tree_branch_left"]["value"] == 11 and r["tree_branch_right"]["value"] == 101
    assert r["tree_leaf_d"] == {"value": 1011, "path": ["tree_root", "tree_branch_left", "tree_leaf_d"]}
    assert r["tree_leaf_g"]["value"] == 4101
    final = r["tree_final_convergence"]
    assert final["total"] == 1011 + 2011 + 3101 + 4101
    assert final["leaves"] == ["tree_leaf_d", "tree_leaf_e", "tree_leaf_f", "tree_leaf_g"]
    assert "tree_root/tree_branch_right/tree_leaf_f" in final["paths"]


def test_mixed_dag_sync_async_class_function_and_method(client, namespace, register, start_worker):
    register("mixed_dag")
    start_worker()
    task = client.create_task(namespace, "complex_dag", version="2.1.0-beta.1", context={"seed": 2})
    done = task.wait(timeout=30)
    assert_all_complete(done)
    r = step_results(done)
    assert r["dag_init"] == {"value": 2}
    assert r["dag_process_left"] == {"value": 4}
    assert r["dag_process_right"] == {"value": 6}
    assert r["dag_validate"] == {"valid": True, "sum": 10, "saw": ["dag_process_left", "dag_process_right"]}
    assert r["dag_transform"] == {"value": 104}
    assert r["dag_analyze"] == {"value": 36}
    assert r["dag_finalize"] == {"total": 150, "saw": ["dag_analyze", "dag_transform", "dag_validate"]}


def test_many_tasks_concurrently(client, namespace, register, start_worker):
    register("diamond")
    import sample_handlers.diamond  # noqa: F401

    start_worker(concurrency=8)
    tasks = [client.create_task(namespace, "diamond_pattern", context={"n": n}) for n in range(20)]
    for n, t in enumerate(tasks):
        done = t.wait(timeout=60)
        assert_all_complete(done)
        assert done.step("diamond_end").results["sum"] == n * n + n + 10


def test_async_client_api(client, namespace, register, start_worker):
    register("linear")
    start_worker()

    async def main():
        task = await client.create_task_async(namespace, "linear_math", context={"value": 1})
        done = await task.wait_async(timeout=30)
        again = await client.get_task_async(task.task_uuid)
        listed = await client.list_tasks_async(namespace=namespace)
        return done, again, listed

    done, again, listed = asyncio.run(main())
    assert done.state == "complete" and done.step("step_d").results["value"] == 4  # ((1+1)*3-4)^2
    assert again.task_uuid == done.task_uuid and again.state == "complete"
    assert [t.task_uuid for t in listed] == [done.task_uuid]


@pytest.mark.parametrize("template", ["linear"])
def test_transitions_are_recorded(client, namespace, register, start_worker, template):
    register(template)
    start_worker()
    done = client.create_task(namespace, "linear_math", context={"value": 0}).wait(timeout=30)
    task_states = [t.to_state for t in done.transitions]
    assert task_states[0] == "pending" and task_states[-1] == "complete"
    assert sum(1 for t in done.transitions if t.most_recent) == 1
    step_a = [t.to_state for t in done.step_transitions if t.step_name == "step_a"]
    assert step_a[-1] == "complete" and "in_progress" in step_a
    assert isinstance(done, tasker_core.Task)
