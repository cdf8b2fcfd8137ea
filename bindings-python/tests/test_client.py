"""The client API and how engine errors surface as Python exceptions."""

import pickle
import uuid
from pathlib import Path

import pytest

import tasker_core
from tasker_core import errors

from conftest import HERE


def test_connect_defaults_like_the_cli(monkeypatch, tmp_path):
    monkeypatch.delenv("TASKER_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tasker_core.resolve_database_url() == "sqlite://./tasker.db"
    client = tasker_core.connect()
    assert client.backend == "sqlite" and (tmp_path / "tasker.db").exists()
    client.close()
    monkeypatch.setenv("DATABASE_URL", "sqlite://" + str(tmp_path / "from_database_url.db"))
    assert tasker_core.resolve_database_url().endswith("from_database_url.db")
    monkeypatch.setenv("TASKER_DATABASE_URL", "sqlite://" + str(tmp_path / "from_tasker.db"))
    assert tasker_core.resolve_database_url().endswith("from_tasker.db")
    client = tasker_core.connect()
    assert client.database.endswith("from_tasker.db")
    client.close()
    assert tasker_core.resolve_database_url("sqlite://explicit.db") == "sqlite://explicit.db"


@pytest.mark.parametrize(
    "url, fragment",
    [("mysql://db/x", "unsupported scheme"), ("sqlite::memory:", "needs a file path")],
)
def test_connect_rejects_bad_urls(url, fragment):
    with pytest.raises(errors.InvalidDatabaseUrl, match=fragment) as e:
        tasker_core.connect(url)
    assert isinstance(e.value, ValueError) and e.value.code == "database_url_invalid"


def test_unreachable_database_names_host_not_password():
    with pytest.raises(errors.DatabaseConnectionError) as e:
        tasker_core.connect("postgres://someone:hunter2secret@127.0.0.1:1/nothing")
    assert "127.0.0.1:1" in str(e.value) and "hunter2secret" not in str(e.value)
    assert e.value.code == "database_unreachable" and isinstance(e.value, errors.DatabaseError)


def test_invalid_templates_report_file_step_and_field(client, namespace, tmp_path):
    from conftest import write_templates

    d = tmp_path / "bad"
    d.mkdir()
    for name in ("cycle", "unknown_dependency"):
        text = (HERE / "fixtures" / "invalid" / f"{name}.yaml").read_text()
        (d / f"{name}.yaml").write_text(text.replace("NAMESPACE", namespace))
    with pytest.raises(errors.TemplateError) as e:
        client.register_templates(d)
    problems = {Path(p.file).name: p for p in e.value.problems}
    assert set(problems) == {"cycle.yaml", "unknown_dependency.yaml"}
    cycle = problems["cycle.yaml"]
    assert cycle.field == "dependencies" and "cycle" in cycle.message
    assert "extract" in cycle.message and "load" in cycle.message
    dangling = problems["unknown_dependency.yaml"]
    assert dangling.step == "only" and "missing_step" in dangling.message
    assert e.value.code == "template_invalid" and isinstance(e.value, ValueError)
    # Nothing was registered.
    good = write_templates(tmp_path / "good", namespace, "linear")
    with pytest.raises(errors.TemplateNotFound):
        client.create_task(namespace, "cyclic")
    assert client.register_templates(good)[0].name == "linear_math"


def test_missing_template_path(client):
    with pytest.raises(errors.TemplateError) as e:
        client.register_templates("/no/such/dir")
    assert e.value.problems[0].file == "/no/such/dir" and "cannot read" in e.value.problems[0].message


def test_template_conflict_and_versions(client, namespace, tmp_path, register):
    register("linear")
    changed = tmp_path / "changed"
    changed.mkdir()
    text = (HERE / "fixtures" / "templates" / "linear.yaml").read_text().replace("NAMESPACE", namespace)
    (changed / "linear.yaml").write_text(text.replace("operand: 1}", "operand: 2}"))
    with pytest.raises(errors.TemplateConflict, match="bump the version"):
        client.register_templates(changed)
    (changed / "linear.yaml").write_text(text.replace("operand: 1}", "operand: 2}").replace("1.0.0", "1.1.0"))
    client.register_templates(changed)
    assert client.create_task(namespace, "linear_math", context={"value": 1}).version == "1.1.0"
    assert client.create_task(namespace, "linear_math", "1.0.0", context={"value": 1}).version == "1.0.0"
    with pytest.raises(errors.TemplateNotFound) as e:
        client.create_task(namespace, "linear_math", "9.9.9", context={"value": 1})
    assert (e.value.namespace, e.value.name, e.value.version) == (namespace, "linear_math", "9.9.9")
    assert isinstance(e.value, LookupError) and e.value.code == "template_not_found"


def test_create_task_fields_and_idempotency(client, namespace, register):
    register("linear")
    task = client.create_task(
        namespace,
        "linear_math",
        context={"value": 1, "note": "ünïcode ✓"},
        initiator="alice",
        source_system="tests",
        reason="because",
        tags=["a", "b"],
        priority=5,
        idempotency_key="order-1",
    )
    assert task.created and task.namespace == namespace and task.total_steps == 4
    assert (task.initiator, task.source_system, task.reason, task.tags, task.priority) == (
        "alice",
        "tests",
        "because",
        ["a", "b"],
        5,
    )
    assert task.context == {"value": 1, "note": "ünïcode ✓"}
    assert task.idempotency_key == "order-1"
    again = client.create_task(namespace, "linear_math", context={"value": 99}, idempotency_key="order-1")
    assert again.task_uuid == task.task_uuid and not again.created
    assert uuid.UUID(task.task_uuid).version == 7


def test_get_list_cancel_and_wait_timeout(client, namespace, register):
    register("linear")
    task = client.create_task(namespace, "linear_math", context={"value": 1})
    detail = client.get_task(uuid.UUID(task.task_uuid))
    assert detail.detailed and [s.name for s in detail.steps] == ["step_a", "step_b", "step_c", "step_d"]
    assert detail.step("step_a").state == "enqueued" and detail.step("step_b").state == "pending"
    with pytest.raises(KeyError, match="no step 'nope'"):
        detail.step("nope")
    with pytest.raises(KeyError, match="summary"):
        task.step("step_a")
    # Nobody works this queue: waiting times out with a TimeoutError.
    with pytest.raises(errors.WaitTimeout) as e:
        task.wait(timeout=0.3)
    assert isinstance(e.value, TimeoutError) and e.value.code == "timeout"
    listed = client.list_tasks(namespace=namespace)
    assert [t.task_uuid for t in listed] == [task.task_uuid]
    assert client.list_tasks(namespace=namespace, state="complete") == []
    cancelled = task.cancel()
    assert cancelled.state == "cancelled" and cancelled.is_terminal
    assert client.wait_for_task(task, timeout=5).step("step_a").state == "cancelled"
    assert [t.task_uuid for t in client.list_tasks(namespace=namespace, state="cancelled", limit=1)] == [task.task_uuid]
    with pytest.raises(errors.IllegalTransition, match="cancel"):
        client.cancel_task(task.task_uuid)


def test_lookup_errors(client):
    missing = str(uuid.uuid4())
    with pytest.raises(errors.TaskNotFound) as e:
        client.get_task(missing)
    assert e.value.task_uuid == missing and isinstance(e.value, LookupError)
    with pytest.raises(errors.InvalidArgument, match="task_uuid 'not-a-uuid' is not a valid UUID"):
        client.get_task("not-a-uuid")
    with pytest.raises(errors.InvalidArgument, match="state 'finished' is not a task state"):
        client.list_tasks(state="finished")
    with pytest.raises(errors.InvalidArgument, match="limit must be at least 1"):
        client.list_tasks(limit=0)
    with pytest.raises(errors.TemplateNotFound):
        client.create_task("no_such_namespace", "nothing")


def test_create_task_argument_errors(client, namespace, register):
    register("linear")
    with pytest.raises(TypeError, match="context must be a mapping"):
        client.create_task(namespace, "linear_math", context=[1, 2])
    with pytest.raises(errors.InvalidArgument, match="context is not JSON-serialisable"):
        client.create_task(namespace, "linear_math", context={"value": {1, 2}})
    with pytest.raises(errors.InvalidArgument, match="context is not JSON-serialisable"):
        client.create_task(namespace, "linear_math", context={"value": float("inf")})
    with pytest.raises(errors.InvalidArgument, match="priority must fit in 32 bits"):
        client.create_task(namespace, "linear_math", context={"value": 1}, priority=2**40)
    with pytest.raises(TypeError, match="tags must be a sequence of str"):
        client.create_task(namespace, "linear_math", context={"value": 1}, tags="urgent")
    with pytest.raises(TypeError, match="namespace must be a non-empty str"):
        client.create_task("", "linear_math")
    with pytest.raises(TypeError, match="version must be a str"):
        client.create_task(namespace, "linear_math", 1)
    with pytest.raises(TypeError, match="timeout must be a number"):
        client.wait_for_task(str(uuid.uuid4()), timeout="soon")
    with pytest.raises(errors.InvalidArgument, match="timeout must be a non-negative"):
        client.wait_for_task(str(uuid.uuid4()), timeout=-1)


def test_exceptions_are_a_hierarchy_and_pickle():
    e = errors.ValidationError("invalid task context: at '/x': bad", code="validation_failed", path="/x", detail="bad")
    assert isinstance(e, errors.TaskerError) and isinstance(e, ValueError)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is errors.ValidationError and back.path == "/x" and back.code == "validation_failed"
    t = errors.TemplateError(
        "x", problems=[{"message": "m", "step": "s", "field": "f", "file": None, "template": None}]
    )
    assert pickle.loads(pickle.dumps(t)).problems == t.problems
    r = errors.RetryableError("slow down", retry_after=2)
    assert r.retry_after == 2 and pickle.loads(pickle.dumps(r)).retry_after == 2
    with pytest.raises(ValueError, match="retry_after"):
        errors.RetryableError("x", retry_after=-1)
    for cls in (errors.PermanentError, errors.RetryableError, errors.HandlerNotFound, errors.WaitTimeout):
        assert issubclass(cls, tasker_core.TaskerError)
