"""Configuration: connect() and Worker read the same layered configuration as the CLI
(defaults < base/*.toml < environments/<TASKER_ENV>/*.toml < TASKER_<SECTION>__<KEY> <
arguments in code).

Every environment variable is set through ``monkeypatch`` (restored after each test) or only
in a child process, so nothing leaks into other tests.
"""

import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import tasker_core
from tasker_core.errors import ConfigProblem, ConfigurationError

_CONFIG_VARS = ("TASKER_CONFIG_ROOT", "TASKER_ENV", "TASKER_WORKER__CONCURRENCY")


@pytest.fixture(autouse=True)
def _clean_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _CONFIG_VARS:
        monkeypatch.delenv(var, raising=False)


def write_tree(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def config_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_tree(tmp_path / "config", {"base/worker.toml": "[worker]\nconcurrency = 3\n"})
    monkeypatch.setenv("TASKER_CONFIG_ROOT", str(root))
    return root


def registered(client: tasker_core.Client, worker: tasker_core.Worker) -> tasker_core.WorkerInfo:
    return next(w for w in client.list_workers() if w.worker_id == worker.worker_id)


def test_without_configuration_the_package_defaults_are_unchanged(client, namespace):
    w = tasker_core.Worker(client, [namespace])
    assert (w.concurrency, w.threads, w.lease_seconds, w.dispatch_mode) == (8, 8, 30.0, "hybrid")
    assert w.poll_interval is None and w.embedded_orchestration is True
    c = tasker_core.config()
    assert c.root is None and c.files == []
    # On postgres_rabbitmq the suite itself selects the broker through the environment.
    ours = {"TASKER_MESSAGING__BACKEND", "TASKER_MESSAGING__RABBITMQ_QUEUE_PREFIX"}
    assert all(v.origin == "default" or (v.origin == "env" and v.source in ours) for v in c.values)
    assert c.get("worker.concurrency") == 8


def test_a_worker_without_explicit_concurrency_gets_the_configured_one(client, namespace, register, config_root):
    register("linear")
    worker_id = f"cfg-{uuid.uuid4().hex[:8]}"
    w = tasker_core.Worker(client, [namespace], worker_id=worker_id)
    assert w.concurrency == 3 and w.threads == 3
    with w:
        info = registered(client, w)
        assert info.concurrency == 3 and info.language == "python"


def test_the_environment_variable_beats_the_file(client, namespace, register, config_root, monkeypatch):
    register("linear")
    monkeypatch.setenv("TASKER_WORKER__CONCURRENCY", "5")
    w = tasker_core.Worker(client, [namespace], worker_id=f"cfg-{uuid.uuid4().hex[:8]}")
    assert w.concurrency == 5
    with w:
        assert registered(client, w).concurrency == 5
    origin = tasker_core.config().origin("worker.concurrency")
    assert origin is not None
    assert (origin.value, origin.origin, origin.source) == (5, "env", "TASKER_WORKER__CONCURRENCY")


def test_an_explicit_argument_beats_both(client, namespace, register, config_root, monkeypatch):
    register("linear")
    monkeypatch.setenv("TASKER_WORKER__CONCURRENCY", "5")
    w = tasker_core.Worker(client, [namespace], concurrency=2, worker_id=f"cfg-{uuid.uuid4().hex[:8]}")
    assert w.concurrency == 2
    with w:
        assert registered(client, w).concurrency == 2


def test_every_worker_option_comes_from_the_configuration(client, namespace, config_root, monkeypatch):
    write_tree(
        config_root,
        {
            "base/worker.toml": (
                '[worker]\nconcurrency = 3\nlease_ms = 45000\ndispatch_mode = "polling"\n'
                'poll_interval_ms = 250\nembedded_orchestration = false\nqueues = ["from_config"]\n'
            ),
            "environments/test/worker.toml": "[worker]\nlease_ms = 50000\n",
        },
    )
    monkeypatch.setenv("TASKER_ENV", "test")
    w = tasker_core.Worker(client, [namespace])
    assert (w.concurrency, w.lease_seconds, w.dispatch_mode, w.poll_interval) == (3, 50.0, "polling", 0.25)
    assert w.embedded_orchestration is False
    assert w.queues == ["from_config", namespace]
    # Explicit arguments win, one by one.
    w = tasker_core.Worker(
        client, [namespace], lease_seconds=10, dispatch_mode="hybrid", poll_interval=1, embedded_orchestration=True
    )
    assert (w.concurrency, w.lease_seconds, w.dispatch_mode, w.poll_interval) == (3, 10.0, "hybrid", 1.0)
    assert w.embedded_orchestration is True
    c = tasker_core.config()
    assert c.env == "test" and c.root == str(config_root)
    env_file = str(config_root / "environments/test/worker.toml")
    assert c.files == [str(config_root / "base/worker.toml"), env_file]
    lease = c.origin("worker.lease_ms")
    assert lease is not None and (lease.origin, lease.source) == ("file", env_file)


def test_configured_queues_alone_are_enough(client, config_root):
    write_tree(config_root, {"base/worker.toml": '[worker]\nqueues = ["only_configured"]\n'})
    assert tasker_core.Worker(client, []).queues == ["only_configured"]


def test_threads_are_checked_against_the_configured_concurrency(client, namespace, config_root):
    with pytest.raises(tasker_core.errors.InvalidArgument, match=r"concurrency \(3\)"):
        tasker_core.Worker(client, [namespace], threads=4)


def test_connect_uses_the_configured_database_and_an_explicit_url_wins(tmp_path, config_root, monkeypatch):
    for var in ("TASKER_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    configured = tmp_path / "configured.db"
    write_tree(config_root, {"base/common.toml": f'[database]\nurl = "sqlite://{configured}"\nmax_connections = 4\n'})
    assert tasker_core.resolve_database_url() == f"sqlite://{configured}"
    c = tasker_core.connect()
    try:
        assert "configured.db" in c.database and configured.exists()
    finally:
        c.close()
    explicit = tmp_path / "explicit.db"
    c = tasker_core.connect(f"sqlite://{explicit}", max_connections=3)
    try:
        assert "explicit.db" in c.database
    finally:
        c.close()
    # DATABASE_URL still comes before database.url, as for the CLI.
    other = tmp_path / "from_env.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite://{other}")
    assert tasker_core.resolve_database_url() == f"sqlite://{other}"


def test_an_unknown_key_makes_connect_raise_a_configuration_error(db_url, config_root):
    bad = config_root / "base" / "worker.toml"
    bad.write_text("[worker]\nconcurency = 3\n")
    with pytest.raises(ConfigurationError) as raised:
        tasker_core.connect(db_url)
    err = raised.value
    assert err.code == "config_invalid"
    assert isinstance(err, tasker_core.TaskerError) and isinstance(err, ValueError)
    assert "worker.concurency" in str(err) and str(bad) in str(err) and "did you mean 'concurrency'" in str(err)
    assert [(p.source, p.key) for p in err.problems] == [(str(bad), "worker.concurency")]
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ConfigurationError and copy.problems == err.problems and copy.code == "config_invalid"


def test_every_problem_is_listed_with_its_file_or_variable(client, namespace, config_root, monkeypatch):
    (config_root / "base" / "worker.toml").write_text('[worker]\nconcurrency = 0\ndispatch_mode = "hybird"\n')
    monkeypatch.setenv("TASKER_DATABASE__MAX_CONNECTIONS", "1")
    with pytest.raises(ConfigurationError) as raised:
        tasker_core.Worker(client, [namespace])
    problems = {(p.source.rsplit("/", 1)[-1], p.key) for p in raised.value.problems}
    assert problems == {
        ("worker.toml", "worker.concurrency"),
        ("worker.toml", "worker.dispatch_mode"),
        ("$TASKER_DATABASE__MAX_CONNECTIONS", "database.max_connections"),
    }
    message = str(raised.value)
    assert "3 problems" in message and "out of range" in message and "did you mean 'hybrid'" in message
    with pytest.raises(ConfigurationError):
        tasker_core.config()
    assert isinstance(raised.value.problems[0], ConfigProblem)


def test_a_python_process_reads_config_tasker_in_its_directory_like_the_cli(db_url, tmp_path):
    # A child process with its own environment: ./config/tasker (no TASKER_CONFIG_ROOT) is found
    # from the working directory, and its variables cannot leak into this process.
    write_tree(tmp_path / "config" / "tasker", {"base/worker.toml": "[worker]\nconcurrency = 3\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    script = (
        "import json, sys, tasker_core\n"
        "c = tasker_core.connect(sys.argv[1])\n"
        "w = tasker_core.Worker(c, ['q'])\n"
        "print(json.dumps([w.concurrency, [(v.key, v.origin) for v in tasker_core.config().values "
        "if v.origin != 'default']]))\n"
        "c.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, db_url], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    concurrency, configured = json.loads(out.stdout)
    assert concurrency == 3 and configured == [["worker.concurrency", "file"]]
    env["TASKER_WORKER__CONCURRENCY"] = "5"
    out = subprocess.run(
        [sys.executable, "-c", script, db_url], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0] == 5
