//! The circuit breaker around PostgreSQL and backpressure on task creation.
//!
//! The breaker test puts a TCP proxy between the engine and the server and cuts it: every
//! connection through it is closed and new ones are refused at once, as when the server goes
//! away. (`tests/faults/test_pg_stopped.py` does the same with the real server stopped, across
//! processes in three languages.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tasker_core::breaker::{BreakerOptions, BreakerState};
use tasker_core::telemetry::metrics as m;
use tasker_core::{BackpressureOptions, TaskRequest, Tasker, TaskerError, TaskerOptions};

const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);
const FAILURE_THRESHOLD: u32 = 3;
const COOL_DOWN: Duration = Duration::from_millis(300);

async fn until<T>(what: &str, bound: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < bound + Duration::from_secs(30),
            "{what}: never happened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_while_postgres_is_away_and_closes_when_it_is_back() {
    let db = TestDb::new(Db::Postgres).await;
    let proxy = Proxy::start(server_of(&db.url)).await;
    let url = through_proxy(&db.url, &proxy);
    let tasker = Tasker::connect_with(TaskerOptions {
        database_url: Some(url),
        max_connections: 6,
        // No LISTEN connection: its reconnect loop is not what this test is about.
        listen: false,
        acquire_timeout: ACQUIRE_TIMEOUT,
        circuit_breaker: BreakerOptions {
            failure_threshold: FAILURE_THRESHOLD,
            cool_down: COOL_DOWN,
            ..BreakerOptions::default()
        },
        ..TaskerOptions::default()
    })
    .await
    .expect("connect through the proxy");
    tasker.register_templates(fixtures()).await.expect("register");
    let before = create(&tasker, "engine_tests", "diamond", json!({"value": 1})).await;
    assert!(tasker.health(&[]).await.ready);

    proxy.cut();
    // 1. It opens within its bound: each failing call costs at most one acquire timeout.
    let bound = ACQUIRE_TIMEOUT * FAILURE_THRESHOLD + Duration::from_secs(1);
    let mut failures = Vec::new();
    let ((), opened_after) = until("the breaker opens", bound, async || {
        match tasker.get_task(before).await {
            Err(TaskerError::Unavailable { resource, .. }) => {
                assert_eq!(resource, "database");
                Some(())
            }
            Err(e) => {
                assert!(e.is_unreachable(), "{e}");
                failures.push(e.code());
                None
            }
            Ok(_) => None,
        }
    })
    .await;
    assert!(opened_after <= bound, "opened after {opened_after:?}, bound {bound:?}");
    assert!(!failures.is_empty());

    // 2. Calls fail fast (a call that is the half-open probe waits, and is not counted).
    let mut fast = Vec::new();
    for i in 0..30 {
        let started = Instant::now();
        let result = if i % 2 == 0 {
            tasker.get_task(before).await.map(|_| ())
        } else {
            tasker
                .create_task(TaskRequest {
                    namespace: "engine_tests".into(),
                    name: "diamond".into(),
                    context: json!({"value": 1}),
                    ..Default::default()
                })
                .await
                .map(|_| ())
        };
        match result {
            Err(e @ TaskerError::Unavailable { .. }) => {
                assert!(e.is_transient(), "workers keep their work and retry");
                fast.push(started.elapsed());
            }
            Err(e) => assert!(e.is_unreachable(), "{e}"),
            Ok(()) => panic!("a call succeeded through a cut proxy"),
        }
    }
    fast.sort();
    assert!(fast.len() >= 20, "only {} of 30 calls failed fast", fast.len());
    let slowest = *fast.last().expect("fast failures");
    assert!(
        slowest < Duration::from_millis(20),
        "slowest `unavailable`: {slowest:?}"
    );
    println!(
        "breaker opened after {opened_after:?} ({} failures first); `unavailable` p50 {:?}, max {slowest:?}",
        failures.len(),
        fast[fast.len() / 2]
    );

    // 3. Readiness is red and says why; the state is a metric.
    let health = tasker.health(&[]).await;
    assert!(!health.ready);
    let check = health
        .checks
        .iter()
        .find(|c| c.name == "circuit_breaker")
        .expect("a breaker check");
    assert!(!check.ok && check.detail.contains("open"), "{check:?}");
    let state = tasker.metrics().await.value(m::BREAKER_STATE, &[("name", "database")]);
    assert!(matches!(state, Some(s) if s >= 1.0), "{state:?}");
    let status = tasker.breaker_status().expect("a breaker on PostgreSQL");
    assert!(status.rejected >= fast.len() as u64 && status.opened >= 1, "{status:?}");

    // 4. Back: it closes after the cool-down and a probe, and work resumes.
    proxy.restore();
    let bound = COOL_DOWN + ACQUIRE_TIMEOUT + Duration::from_secs(2);
    let (_, closed_after) = until("the breaker closes", bound, async || tasker.get_task(before).await.ok()).await;
    assert!(closed_after <= bound, "closed after {closed_after:?}, bound {bound:?}");
    assert_eq!(tasker.breaker_status().map(|s| s.state), Some(BreakerState::Closed));
    assert!(tasker.health(&[]).await.ready);
    let worker = RunningWorker::start(&tasker, &["engine_tests"], 4, math_registry()).await;
    let after = create(&tasker, "engine_tests", "diamond", json!({"value": 1})).await;
    for task in [before, after] {
        let detail = wait(&tasker, task).await;
        assert_eq!(result_of(&detail, "d"), 10, "{detail:#?}");
    }
    worker.stop().await;
    tasker.close().await;
    drop(proxy);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_has_no_breaker_and_it_can_be_turned_off() {
    let db = TestDb::new(Db::Sqlite).await;
    let tasker = db.connect().await;
    assert!(tasker.breaker_status().is_none());
    assert!(tasker
        .health(&[])
        .await
        .checks
        .iter()
        .all(|c| c.name != "circuit_breaker"));
    tasker.close().await;
    db.cleanup().await;

    let db = TestDb::new(Db::Postgres).await;
    let tasker = Tasker::connect_with(TaskerOptions {
        database_url: Some(db.url.clone()),
        circuit_breaker: BreakerOptions {
            enabled: false,
            ..BreakerOptions::default()
        },
        ..TaskerOptions::default()
    })
    .await
    .expect("connect");
    assert!(tasker.breaker_status().is_none());
    tasker.close().await;
    db.cleanup().await;
}

async fn creation_is_refused_beyond_the_queue_limit(kind: Db) {
    let db = TestDb::new(kind).await;
    let tasker = Tasker::connect_with(TaskerOptions {
        database_url: Some(db.url.clone()),
        backpressure: BackpressureOptions {
            max_queue_depth: 3,
            refresh: Duration::from_millis(1),
        },
        ..TaskerOptions::default()
    })
    .await
    .expect("connect");
    tasker.register_templates(fixtures()).await.expect("register");
    // Nobody works on the queue: each task leaves its root step waiting.
    for _ in 0..3 {
        create(&tasker, "engine_tests", "diamond", json!({"value": 1})).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let refused = tasker
        .create_task(TaskRequest {
            namespace: "engine_tests".into(),
            name: "diamond".into(),
            context: json!({"value": 1}),
            ..Default::default()
        })
        .await
        .expect_err("the queue is at its limit");
    assert_eq!(refused.code(), "backpressure");
    match &refused {
        TaskerError::Backpressure {
            queue,
            depth,
            limit,
            retry_after,
        } => {
            assert_eq!((queue.as_str(), *depth, *limit), ("engine_tests", 3, 3));
            assert!(*retry_after > Duration::ZERO);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        refused
            .to_string()
            .contains("'engine_tests' has 3 steps waiting, the limit is 3"),
        "{refused}"
    );
    assert_eq!(
        tasker.list_tasks(&Default::default()).await.expect("list").len(),
        3,
        "nothing written"
    );

    // Workers drain it; creation goes through again.
    let worker = RunningWorker::start(&tasker, &["engine_tests"], 4, math_registry()).await;
    let mut created = None;
    for _ in 0..500 {
        match tasker
            .create_task(TaskRequest {
                namespace: "engine_tests".into(),
                name: "diamond".into(),
                context: json!({"value": 1}),
                ..Default::default()
            })
            .await
        {
            Ok(c) => {
                created = Some(c.task.task_uuid);
                break;
            }
            Err(TaskerError::Backpressure { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let created = created.expect("creation resumes once workers drain the queue");
    assert_eq!(result_of(&wait(&tasker, created).await, "d"), 10);
    worker.stop().await;
    tasker.close().await;
    db.cleanup().await;
}

on_both_backends!(creation_is_refused_beyond_the_queue_limit);

/// Readiness names every worker this process started on the engine, without the caller listing
/// them (the packages' `health()` passes none), and forgets a worker stopped on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_this_processs_workers() {
    for kind in [Db::Sqlite, Db::Postgres] {
        let db = TestDb::new(kind).await;
        let tasker = db.connect().await;
        let worker = RunningWorker::start(&tasker, &["engine_tests"], 2, math_registry()).await;
        let id = worker.worker.config().worker_id.clone();
        let report = tasker.health(&[]).await;
        let check = report
            .checks
            .iter()
            .find(|c| c.name == format!("worker {id}"))
            .unwrap_or_else(|| panic!("{kind:?}: no check for the worker in {report:?}"));
        assert!(check.ok && report.ready, "{kind:?}: {report:?}");
        let listed = tasker.health(&[(id.clone(), None)]).await;
        assert_eq!(
            listed.checks.iter().filter(|c| c.name.starts_with("worker ")).count(),
            1,
            "{kind:?}: a worker the caller lists too is reported once"
        );
        worker.stop().await;
        let after = tasker.health(&[]).await;
        assert!(
            after.checks.iter().all(|c| !c.name.starts_with("worker ")),
            "{kind:?}: a stopped worker is not a failed one: {after:?}"
        );
        tasker.close().await;
        db.cleanup().await;
    }
}
