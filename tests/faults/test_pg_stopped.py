"""Scenario: PostgreSQL stopped for several seconds in the middle of a run (`pg_ctl stop -m fast`,
then started again), to prove the circuit breaker (docs/operations.md, "Circuit breaker").

While the server is away, the engine's breaker must open within its configured bound (the
failure threshold times the connection-acquire timeout, plus the first failing statement);
callers then get `unavailable` at once instead of waiting on a connection, and readiness is red.
Once the server is back, the breaker closes after its cool-down and a successful probe, work
resumes, and every task completes with each successful attempt in the ledger exactly once.
"""

from __future__ import annotations

import shutil
import statistics
import time

import ledger
import pytest
from faultlib import PgCluster, create_pg_database, size, wait_terminal

import tasker_core
from tasker_core.errors import TaskerError, Unavailable

TASKS = size(60, 400)  # x 6 steps: 360 reduced, 2,400 full
ACQUIRE_TIMEOUT_S = 2.0
FAILURE_THRESHOLD = 3
COOL_DOWN_S = 1.0
OUTAGE_S = size(8, 20)
# Sequential calls from one client: each failure costs at most one acquire timeout (a call on a
# connection the server just closed fails at once), and a few seconds of slack for a loaded
# machine.
OPEN_BOUND_S = FAILURE_THRESHOLD * ACQUIRE_TIMEOUT_S + 3.0
# After the server is back: the cool-down, then the probe (at most one acquire timeout while the
# server finishes starting), plus slack.
CLOSE_BOUND_S = COOL_DOWN_S + ACQUIRE_TIMEOUT_S + 5.0
FAST_FAIL_LIMIT_S = 0.05


def test_postgres_stopped_mid_run_opens_the_breaker_and_loses_nothing(harness_factory, monkeypatch) -> None:
    # Every process of the scenario (the client below, the workers, `tasker serve`) reads these.
    monkeypatch.setenv("TASKER_DATABASE__ACQUIRE_TIMEOUT_MS", str(int(ACQUIRE_TIMEOUT_S * 1000)))
    monkeypatch.setenv("TASKER_CIRCUIT_BREAKER__FAILURE_THRESHOLD", str(FAILURE_THRESHOLD))
    monkeypatch.setenv("TASKER_CIRCUIT_BREAKER__COOL_DOWN_MS", str(int(COOL_DOWN_S * 1000)))
    cluster = PgCluster().start()
    h = None
    try:
        url, _ = create_pg_database(cluster.url)
        h = harness_factory("pg_stopped", "postgres", url, pg_log=cluster.log)
        h.serve()
        # Leases longer than the outage: a step must not be re-run because its worker could not
        # renew a lease while the server was away (that is the restart scenario's subject).
        for language in ("python", "ruby", "typescript"):
            h.worker(language, lease=OUTAGE_S + 30)
        tasks = [h.create("diamond", {"sleep_ms": 15}) for _ in range(TASKS)]
        total = TASKS * 6
        deadline = time.monotonic() + 300
        while ledger.count(h.ledger_url) < 0.3 * total:
            assert time.monotonic() < deadline, f"the run stalled before the outage\n{h.log_excerpt()}"
            time.sleep(0.05)
        assert h.client.health()["ready"], h.client.health()

        cluster.pause()
        stopped = time.monotonic()

        # 1. The breaker opens within its bound.
        before_open = []
        while True:
            try:
                h.client.get_task(tasks[0])
            except Unavailable:
                open_after = time.monotonic() - stopped
                break
            except TaskerError as e:
                before_open.append(e.code)
            assert time.monotonic() - stopped < OPEN_BOUND_S + 30, "the breaker never opened"
        assert open_after <= OPEN_BOUND_S, (
            f"the breaker opened {open_after:.1f} s after the server stopped; the bound is {OPEN_BOUND_S} s "
            f"(failures before: {before_open})"
        )
        assert len(before_open) >= 1, "a failure must come before the breaker opens"

        # 2. Callers fail fast: creation and reads get `unavailable` without waiting. A call that
        # happens to be the half-open probe waits (and fails as unreachable); it is not counted.
        fast, probes = [], 0
        for i in range(40):
            t = time.monotonic()
            try:
                if i % 2:
                    h.client.create_task("faults", "diamond", context={"sleep_ms": 1})
                else:
                    h.client.list_tasks(limit=5)
            except Unavailable as e:
                fast.append(time.monotonic() - t)
                assert e.code == "unavailable" and e.resource == "database" and e.retry_after <= COOL_DOWN_S
            except TaskerError:
                probes += 1
            else:
                pytest.fail("a call succeeded while the server was stopped")
        assert len(fast) >= 30, f"only {len(fast)} of 40 calls failed fast ({probes} were probes)"
        assert max(fast) < FAST_FAIL_LIMIT_S, f"slowest `unavailable`: {max(fast) * 1000:.1f} ms"

        # 3. Readiness is red and says why; the state is in the metrics.
        health = h.client.health()
        assert not health["ready"], health
        breaker = next(c for c in health["checks"] if c["name"] == "circuit_breaker")
        assert not breaker["ok"] and ("open" in breaker["detail"] or "half_open" in breaker["detail"]), breaker
        # A gauge's value reads {"gauge": 2.0}.
        states_seen = {
            s["value"].get("gauge")
            for s in h.client.metrics()["samples"]
            if s["name"] == "tasker.circuit_breaker.state"
        }
        assert states_seen & {1.0, 2.0}, states_seen

        remaining = OUTAGE_S - (time.monotonic() - stopped)
        if remaining > 0:
            time.sleep(remaining)
        cluster.resume()
        resumed = time.monotonic()

        # 4. The breaker closes, and the work resumes.
        while True:
            try:
                h.client.get_task(tasks[0])
                close_after = time.monotonic() - resumed
                break
            except TaskerError:
                assert time.monotonic() - resumed < CLOSE_BOUND_S + 30, "the breaker never closed"
                time.sleep(0.05)
        assert close_after <= CLOSE_BOUND_S, f"closed {close_after:.1f} s after the server came back"
        assert h.client.health()["ready"], h.client.health()

        h.figures.restarts = 1
        h.figures.extra.update(
            {
                "outage_s": round(time.monotonic() - stopped, 1),
                "breaker_open_after_s": round(open_after, 2),
                "unavailable_p50_ms": round(statistics.median(fast) * 1000, 2),
                "unavailable_max_ms": round(max(fast) * 1000, 2),
                "probe_calls": probes,
                "breaker_closed_after_s": round(close_after, 2),
            }
        )

        wait_terminal(h.db, tasks, timeout=size(240, 1200))
        time.sleep(2)  # let the processes settle before measuring them idle
        v = h.finish({u: {"complete"} for u in tasks})
        v.assert_ok()
    finally:
        if h is not None:
            h.stop()
            shutil.copy(cluster.log, h.tmp / "postgres.log")
        cluster.stop()


def test_a_client_without_a_breaker_waits_instead(monkeypatch) -> None:
    """The contrast, and the switch: with `circuit_breaker.enabled = false` a call waits out the
    acquire timeout every time."""
    monkeypatch.setenv("TASKER_DATABASE__ACQUIRE_TIMEOUT_MS", "1000")
    monkeypatch.setenv("TASKER_CIRCUIT_BREAKER__ENABLED", "false")
    cluster = PgCluster().start()
    try:
        url, _ = create_pg_database(cluster.url)
        client = tasker_core.connect(url)
        client.list_tasks(limit=1)
        cluster.pause()
        waits = []
        for _ in range(FAILURE_THRESHOLD + 2):
            t = time.monotonic()
            with pytest.raises(TaskerError) as failure:
                client.list_tasks(limit=1)
            assert not isinstance(failure.value, Unavailable)
            waits.append(time.monotonic() - t)
        # The first call may fail at once on a connection the server closed; the rest wait.
        assert min(waits[1:]) >= 0.9, waits
        health = client.health()
        assert not health["ready"] and all(c["name"] != "circuit_breaker" for c in health["checks"]), health
        cluster.resume()
        client.list_tasks(limit=1)
        client.close()
    finally:
        cluster.stop()
