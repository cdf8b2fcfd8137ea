//! Many workers competing for the same steps; graceful shutdown.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use tasker_core::handler::HandlerRegistry;
use tasker_core::{Poll, TaskRequest, Worker, WorkerConfig};

on_every_backend!(
    four_workers_run_every_step_exactly_once,
    shutdown_releases_unstarted_claims,
    poll_with_zero_timeout_returns_a_waiting_event,
);

async fn four_workers_run_every_step_exactly_once(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    tasker.register_templates(fixtures()).await.expect("register");
    // Four independent engines (pools, caches), as four processes would have.
    let mut engines = Vec::new();
    for _ in 0..4 {
        engines.push(test_db.connect().await);
    }
    let runs: Arc<Mutex<HashMap<uuid::Uuid, u32>>> = Arc::default();
    let mut workers = Vec::new();
    for engine in &engines {
        let mut registry = HandlerRegistry::new();
        let runs = runs.clone();
        registry.register_fn("math", move |step| {
            let runs = runs.clone();
            async move {
                *runs.lock().expect("lock").entry(step.step_uuid).or_default() += 1;
                math(&step).await
            }
        });
        workers.push(RunningWorker::start(engine, &["engine_tests"], 16, registry).await);
    }
    // 500 diamonds = 2,000 steps, created from several tasks at once.
    let mut creators = tokio::task::JoinSet::new();
    for engine in &engines {
        let t = engine.clone();
        creators.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..125 {
                let req = TaskRequest {
                    namespace: "engine_tests".into(),
                    name: "diamond".into(),
                    context: json!({"value": i}),
                    ..Default::default()
                };
                ids.push((i, t.create_task(req).await.expect("create").task.task_uuid));
            }
            ids
        });
    }
    let mut tasks = Vec::new();
    while let Some(ids) = creators.join_next().await {
        tasks.extend(ids.expect("join"));
    }
    for (i, id) in &tasks {
        let d = tasker
            .wait_for_task(*id, Duration::from_secs(120))
            .await
            .expect("finish");
        assert_eq!(d.task.state, "complete");
        // diamond: a = v+1, b = 2a, c = 3a, d = 5a
        assert_eq!(result_of(&d, "d"), 5 * (i + 1));
        for step in &d.steps {
            assert_eq!(step.attempts, 1, "{step:?}");
        }
    }
    {
        let runs = runs.lock().expect("lock");
        assert_eq!(runs.len(), 2000);
        assert!(runs.values().all(|&n| n == 1), "a step ran more than once");
    }
    for w in workers {
        w.stop().await;
    }
    test_db.cleanup().await;
}

async fn shutdown_releases_unstarted_claims(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    tasker.register_templates(fixtures()).await.expect("register");
    let mut config = WorkerConfig::new(vec!["engine_tests".into()]);
    config.concurrency = 4;
    let worker = Worker::start(&tasker, config).await.expect("start");
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(create(&tasker, "engine_tests", "diamond", json!({"value": i})).await);
    }
    // Take one event and keep "running" it; the other claims are never polled.
    let first = loop {
        match worker.poll_async(Duration::from_secs(5)).await {
            Poll::Event(e) => break e,
            Poll::Empty => continue,
            Poll::ShutDown => panic!("shut down early"),
            Poll::Failed(e) => panic!("worker failed: {e}"),
        }
    };
    // Let the dispatcher fill the remaining slots.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let w = worker.clone();
    let shutdown = tokio::spawn(async move { w.shutdown(Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        worker.poll_async(Duration::from_millis(10)).await,
        Poll::ShutDown
    ));
    // The in-flight handler may still complete during the drain.
    worker
        .complete(first.event_id, tasker_core::StepOutcome::success(json!({"value": 1})))
        .expect("complete during drain");
    let report = shutdown.await.expect("join").expect("shutdown");
    assert_eq!(report.released, 3, "{report:?}");
    assert_eq!(report.abandoned, 0);
    // Released steps are back in their queue under a fresh message: a new worker runs
    // everything. Attempt numbers only grow (fencing), so a released step runs as attempt 2;
    // the released attempt does not count against max_attempts.
    let second = RunningWorker::start(&tasker, &["engine_tests"], 4, math_registry()).await;
    for id in ids {
        let d = wait(&tasker, id).await;
        assert_eq!(d.task.state, "complete");
        let a = d.step("a").expect("a");
        let released = d
            .step_transitions
            .iter()
            .any(|t| t.step_name.as_deref() == Some("a") && t.event == "release");
        assert_eq!(a.attempts, if released { 2 } else { 1 }, "attempt numbers only grow");
        if released {
            let claims = d
                .step_transitions
                .iter()
                .filter(|t| t.step_name.as_deref() == Some("a") && t.event == "claim")
                .count();
            assert_eq!(claims, 2);
        }
    }
    second.stop().await;
    test_db.cleanup().await;
}

async fn poll_with_zero_timeout_returns_a_waiting_event(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    tasker.register_templates(fixtures()).await.expect("register");
    let worker = Worker::start(&tasker, WorkerConfig::new(vec!["engine_tests".into()]))
        .await
        .expect("start");
    create(&tasker, "engine_tests", "diamond", json!({"value": 1})).await;
    // Non-blocking polls only: once the claim has landed, a zero timeout must return it.
    let mut got = None;
    for _ in 0..500 {
        if let Poll::Event(e) = worker.poll(Duration::ZERO) {
            got = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let event = got.expect("poll(0) never returned the waiting event");
    assert_eq!(event.step_name, "a");
    worker
        .complete(event.event_id, tasker_core::StepOutcome::success(json!({"value": 2})))
        .expect("complete");
    worker.shutdown(Duration::from_secs(5)).await.expect("shutdown");
    test_db.cleanup().await;
}
