//! Recovering failed work: operator actions, the dead-letter queue, staleness and live workers,
//! on both backends.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tasker_core::engine::{Completion, CompletionReport, Health, RecoveryOptions, StalenessThresholds};
use tasker_core::handler::HandlerRegistry;
use tasker_core::outcome::StepOutcome;
use tasker_core::store::WorkerRecord;
use tasker_core::{DlqFilter, DlqStatus, StepFailure, Tasker, TaskerError, TaskerOptions};
use uuid::Uuid;

on_every_backend!(
    completing_a_failed_step_by_hand_finishes_the_task_and_closes_its_dlq_entry,
    resetting_a_fixed_step_runs_it_again,
    resolving_a_step_releases_its_dependents,
    retry_task_resets_every_failed_step,
    resolve_task_closes_it_by_hand,
    cancelling_a_step_cancels_what_depends_on_it,
    illegal_actions_are_refused_naming_the_state,
    a_late_completion_of_a_reset_attempt_is_fenced,
    two_operators_resolving_the_same_step_one_wins,
    a_reset_racing_a_task_cancel_leaves_nothing_inconsistent,
    stale_tasks_go_to_the_dlq_with_the_templates_thresholds,
    unserved_queues_put_their_tasks_in_the_dlq_once,
    workers_register_and_heartbeat,
    dlq_entries_are_investigated_and_counted,
    a_task_whose_steps_all_wait_for_a_retry_waits_for_retry,
);

const NS: &str = "recovery_tests";

/// Tasks whose `flaky` steps succeed (the operator "fixed" the handler).
static FIXED: LazyLock<Mutex<HashSet<Uuid>>> = LazyLock::new(Default::default);

fn fix(task: Uuid) {
    FIXED.lock().unwrap().insert(task);
}

fn registry() -> HandlerRegistry {
    let mut r = HandlerRegistry::new();
    r.register_fn("work", |e| async move { Ok(json!({"value": e.step_name})) });
    r.register_fn("echo", |e| async move { Ok(json!({"received": e.dependency_results})) });
    r.register_fn("flaky", |e| async move {
        if FIXED.lock().unwrap().contains(&e.task_uuid) {
            return Ok(json!({"fixed": true, "attempt": e.attempt}));
        }
        match e.task_context["fail"].as_str() {
            Some("retryable") => Err(StepFailure::retryable("Flaky", format!("{} failed", e.step_name))),
            _ => Err(StepFailure::permanent("Broken", format!("{} is broken", e.step_name))),
        }
    });
    r.register_fn("slow", |e| async move {
        let ms = e.task_context["sleep_ms"].as_u64().unwrap_or(300);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(json!({"slept": ms}))
    });
    r
}

fn fixtures_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recovery")
}

async fn setup_with(db: Db, recovery: RecoveryOptions) -> (TestDb, Tasker, RunningWorker) {
    let test_db = TestDb::new(db).await;
    let tasker = Tasker::connect_with(TaskerOptions {
        database_url: Some(test_db.url.clone()),
        recovery,
        ..TaskerOptions::default()
    })
    .await
    .expect("connect");
    tasker
        .register_templates(fixtures_dir())
        .await
        .expect("register fixtures");
    let worker = RunningWorker::start(&tasker, &[NS], 4, registry()).await;
    (test_db, tasker, worker)
}

async fn setup(db: Db) -> (TestDb, Tasker, RunningWorker) {
    setup_with(db, RecoveryOptions::default()).await
}

async fn failed_task(tasker: &Tasker, name: &str, context: Value) -> Uuid {
    let task = create(tasker, NS, name, context).await;
    let d = wait(tasker, task).await;
    assert_eq!(d.task.state, "error", "{d:#?}");
    task
}

async fn completing_a_failed_step_by_hand_finishes_the_task_and_closes_its_dlq_entry(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let task = failed_task(&tasker, "chain", json!({})).await;
    // The failure put the task in the DLQ, with a snapshot of its steps.
    let entries = tasker
        .list_dlq(&DlqFilter {
            task_uuid: Some(task),
            ..DlqFilter::default()
        })
        .await
        .expect("dlq");
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let entry = &entries[0];
    assert_eq!(
        (entry.reason.as_str(), entry.status.as_str()),
        ("permanent_failure", "pending")
    );
    assert_eq!(entry.task_state, "error");
    let snapshot_steps = entry.snapshot["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(snapshot_steps.len(), 3, "{}", entry.snapshot);
    assert_eq!(entry.snapshot["template"]["name"], "chain");
    let b = snapshot_steps
        .iter()
        .find(|s| s["name"] == "b")
        .cloned()
        .unwrap_or_default();
    assert_eq!(b["state"], "error");
    assert_eq!(b["last_error"]["error_type"], "Broken");

    // The operator supplies b's result; c receives it.
    let step = tasker
        .complete_step_manually(
            task,
            "b",
            json!({"manual": 42}),
            json!({"ticket": "OPS-1"}),
            "alice",
            "fixed upstream",
        )
        .await
        .expect("complete by hand");
    assert_eq!(step.step.state, "complete");
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    let c = d.step("c").and_then(|s| s.results.clone()).unwrap_or_default();
    assert_eq!(c["received"]["b"], json!({"manual": 42}));
    // Re-opened on the way: error -> enqueuing_steps -> steps_in_process -> … -> complete.
    let states: Vec<&str> = d.task_transitions.iter().map(|t| t.to_state.as_str()).collect();
    let reopened = states.windows(2).any(|w| w == ["enqueuing_steps", "steps_in_process"]) && states.contains(&"error");
    assert!(reopened, "{states:?}");
    let reopen = d
        .task_transitions
        .iter()
        .find(|t| t.event == "reopen")
        .expect("reopen audited");
    assert_eq!(
        (reopen.metadata["by"].clone(), reopen.metadata["reason"].clone()),
        (json!("alice"), json!("fixed upstream"))
    );
    let manual = d
        .step_transitions
        .iter()
        .find(|t| t.event == "complete_manually")
        .expect("audited");
    assert_eq!(manual.metadata["metadata"]["ticket"], "OPS-1");
    // Its investigation is over.
    let entry = tasker.get_dlq_entry(entry.entry_uuid).await.expect("entry");
    assert_eq!(entry.status, "manually_resolved");
    assert_eq!(entry.resolved_by.as_deref(), Some("alice"));
    assert!(
        entry.notes.iter().any(|n| n.text.contains("fixed upstream")),
        "{:?}",
        entry.notes
    );
    worker.stop().await;
    test_db.cleanup().await;
}

async fn resetting_a_fixed_step_runs_it_again(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let task = failed_task(&tasker, "chain", json!({"fail": "retryable"})).await;
    let b = tasker.get_step(task, "b").await.expect("step");
    assert_eq!((b.step.state.as_str(), b.step.attempts), ("error", 2));
    assert_eq!(b.errors.len(), 2, "every attempt's error: {:?}", b.errors);
    assert!(b.errors.iter().all(|e| e["error_type"] == "Flaky"));
    assert!(b.dependencies_satisfied);
    assert!(!b.retry_possible);
    let entry = &tasker
        .list_dlq(&DlqFilter {
            task_uuid: Some(task),
            ..DlqFilter::default()
        })
        .await
        .expect("dlq")[0];
    assert_eq!(entry.reason, "max_retries_exceeded");

    fix(task);
    let reset = tasker
        .reset_step(task, "b", "bob", "deployed the fix")
        .await
        .expect("reset");
    assert!(
        matches!(reset.step.state.as_str(), "enqueued" | "in_progress" | "complete"),
        "{}",
        reset.step.state
    );
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    let b = d.step("b").expect("b");
    assert_eq!(b.attempts, 3, "attempt numbers keep growing across a reset");
    assert_eq!(b.results.as_ref().map(|r| r["fixed"].clone()), Some(json!(true)));
    let entry = tasker.get_dlq_entry(entry.entry_uuid).await.expect("entry");
    assert_eq!(entry.status, "manually_resolved");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn resolving_a_step_releases_its_dependents(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let task = failed_task(&tasker, "chain", json!({})).await;
    tasker
        .resolve_step_manually(task, "b", "carol", "not needed this time")
        .await
        .expect("resolve");
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    assert_eq!(d.step("b").map(|s| s.state.as_str()), Some("resolved_manually"));
    assert_eq!(d.step("c").map(|s| s.state.as_str()), Some("complete"));
    worker.stop().await;
    test_db.cleanup().await;
}

async fn retry_task_resets_every_failed_step(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let task = failed_task(&tasker, "pair", json!({})).await;
    let failed: Vec<String> = tasker
        .list_steps(task)
        .await
        .expect("steps")
        .into_iter()
        .filter(|s| s.step.state == "error")
        .map(|s| s.step.name)
        .collect();
    assert_eq!(failed, ["b1", "b2"]);
    fix(task);
    let summary = tasker.retry_task(task, "dave", "both fixed").await.expect("retry");
    assert!(
        !summary.is_terminal() || summary.state == "complete",
        "{}",
        summary.state
    );
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    assert_eq!(d.task.failed_steps, 0);
    let err = tasker
        .retry_task(task, "dave", "again")
        .await
        .expect_err("not in error");
    assert_eq!(err.code(), "invalid_state");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn resolve_task_closes_it_by_hand(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let task = failed_task(&tasker, "chain", json!({})).await;
    let summary = tasker
        .resolve_task(task, "erin", "handled outside")
        .await
        .expect("resolve");
    assert_eq!(summary.state, "resolved_manually");
    let d = tasker.get_task(task).await.expect("task");
    assert_eq!(d.step("c").map(|s| s.state.as_str()), Some("cancelled"));
    let entries = tasker
        .list_dlq(&DlqFilter {
            task_uuid: Some(task),
            ..DlqFilter::default()
        })
        .await
        .expect("dlq");
    assert_eq!(entries[0].status, "manually_resolved");
    let err = tasker.resolve_task(task, "erin", "twice").await.expect_err("finished");
    assert_eq!(err.code(), "invalid_state");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn cancelling_a_step_cancels_what_depends_on_it(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let task = create(&tasker, NS, "slow", json!({"sleep_ms": 400})).await;
    // Wait until `s` runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tasker.get_step(task, "s").await.expect("s").step.state != "in_progress" {
        assert!(std::time::Instant::now() < deadline, "s never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = tasker
        .cancel_step(task, "s", "frank", "no longer wanted")
        .await
        .expect("cancel");
    assert_eq!(s.step.state, "cancelled");
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete", "cancelled steps count as done: {d:#?}");
    assert_eq!(d.step("t").map(|s| s.state.as_str()), Some("cancelled"));
    // The running attempt's result, when it comes, is fenced off.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let d = tasker.get_task(task).await.expect("task");
    assert_eq!(d.step("s").map(|s| s.state.as_str()), Some("cancelled"));
    worker.stop().await;
    test_db.cleanup().await;
}

async fn illegal_actions_are_refused_naming_the_state(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let task = failed_task(&tasker, "chain", json!({})).await;
    let err = tasker.reset_step(task, "a", "x", "y").await.expect_err("a is complete");
    assert_eq!(err.code(), "invalid_state");
    assert_eq!(
        err.to_string(),
        "step 'a' is complete; only error, waiting_for_retry, enqueued steps can be reset"
    );
    let err = tasker.cancel_step(task, "b", "x", "y").await.expect_err("b is error");
    assert!(err.to_string().contains("step 'b' is error"), "{err}");
    let err = tasker
        .resolve_step_manually(task, "nope", "x", "y")
        .await
        .expect_err("no such step");
    assert_eq!(err.code(), "step_not_found");
    assert!(matches!(err, TaskerError::StepNotFound { .. }));
    let err = tasker
        .reset_step(Uuid::now_v7(), "b", "x", "y")
        .await
        .expect_err("no such task");
    assert_eq!(err.code(), "task_not_found");
    let too_big = json!({"blob": "x".repeat(2 * 1024 * 1024)});
    let err = tasker
        .complete_step_manually(task, "b", too_big, Value::Null, "x", "y")
        .await
        .expect_err("over the limit");
    assert_eq!(err.code(), "invalid_argument");
    // A step is found by uuid too.
    let b = tasker.get_step(task, "b").await.expect("b");
    let by_uuid = tasker
        .get_step(task, &b.step.step_uuid.to_string())
        .await
        .expect("by uuid");
    assert_eq!(by_uuid.step.name, "b");
    // Nothing changed.
    assert_eq!(tasker.task_summary(task).await.expect("task").state, "error");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn a_late_completion_of_a_reset_attempt_is_fenced(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let task = failed_task(&tasker, "chain", json!({})).await;
    let b = tasker.get_step(task, "b").await.expect("b");
    fix(task);
    tasker.reset_step(task, "b", "gina", "retry").await.expect("reset");
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete");
    // The attempt that failed before the reset reports (again, late): fenced, nothing changes.
    let reports = tasker
        .apply_completions(vec![Completion {
            step_uuid: b.step.step_uuid,
            attempt: b.step.attempts,
            message: None,
            outcome: StepOutcome::success(json!({"stale": true})),
            worker: None,
            lost_lease: false,
        }])
        .await
        .expect("applied");
    assert!(matches!(reports[0], CompletionReport::Fenced { .. }), "{reports:?}");
    let after = tasker.get_step(task, "b").await.expect("b");
    assert_eq!(
        after.step.results.as_ref().map(|r| r["fixed"].clone()),
        Some(json!(true))
    );
    worker.stop().await;
    test_db.cleanup().await;
}

async fn two_operators_resolving_the_same_step_one_wins(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let task = failed_task(&tasker, "chain", json!({})).await;
    let (t1, t2) = (tasker.clone(), tasker.clone());
    let (r1, r2) = tokio::join!(
        t1.resolve_step_manually(task, "b", "op1", "mine"),
        t2.complete_step_manually(task, "b", json!({"by": "op2"}), Value::Null, "op2", "mine too"),
    );
    let wins = [r1.is_ok(), r2.is_ok()].iter().filter(|w| **w).count();
    assert_eq!(wins, 1, "{r1:?} / {r2:?}");
    let loser = r1.err().or(r2.err()).expect("one lost");
    assert_eq!(loser.code(), "invalid_state", "{loser}");
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete");
    let manual = d
        .step_transitions
        .iter()
        .filter(|t| matches!(t.event.as_str(), "resolve_manually" | "complete_manually"))
        .count();
    assert_eq!(manual, 1);
    worker.stop().await;
    test_db.cleanup().await;
}

async fn a_reset_racing_a_task_cancel_leaves_nothing_inconsistent(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    // b waits for a retry far away: the task is still running. (With `chain`'s immediate retry,
    // b could run again and fail the task between the check and the race.)
    let task = create(&tasker, NS, "chain_retry_later", json!({"fail": "retryable"})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let b = tasker.get_step(task, "b").await.expect("b");
        if b.step.state == "waiting_for_retry" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "b never failed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (t1, t2) = (tasker.clone(), tasker.clone());
    let (reset, cancel) = tokio::join!(t1.reset_step(task, "b", "op1", "again"), t2.cancel_task(task));
    let d = wait(&tasker, task).await;
    match (&reset, &cancel) {
        (_, Ok(_)) => assert_eq!(d.task.state, "cancelled"),
        (Ok(_), Err(e)) => assert!(e.code() == "illegal_transition", "{e}"),
        (Err(a), Err(b)) => panic!("both lost: {a} / {b}"),
    }
    if let Err(e) = &reset {
        assert!(matches!(e.code(), "invalid_state"), "{e}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = tasker.get_task(task).await.expect("task");
    if d.task.state == "cancelled" {
        for s in &d.steps {
            assert!(
                !matches!(s.state.as_str(), "pending" | "enqueued" | "waiting_for_retry"),
                "{} left {} under a cancelled task",
                s.name,
                s.state
            );
        }
    }
    worker.stop().await;
    test_db.cleanup().await;
}

async fn stale_tasks_go_to_the_dlq_with_the_templates_thresholds(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    // Older unfinished tasks under default thresholds must not crowd it out of the report.
    for _ in 0..4 {
        create(&tasker, NS, "orphan", json!({})).await;
    }
    // `slow` is stale after 60 ms without progress; its step sleeps 1.5 s.
    let task = create(&tasker, NS, "slow", json!({"sleep_ms": 1_500})).await;
    let other = create(&tasker, NS, "chain", json!({})).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let most_overdue = tasker.staleness_report(1.0, 1).await.expect("report");
    assert_eq!(most_overdue.iter().map(|h| h.task_uuid).collect::<Vec<_>>(), [task]);
    let report = tasker.staleness_report(0.0, 100).await.expect("report");
    let health = report.iter().find(|h| h.task_uuid == task).expect("in the report");
    assert_eq!(health.health, Health::Stale, "{health:?}");
    assert_eq!(health.threshold_ms, 60);
    assert!(report
        .iter()
        .all(|h| h.task_uuid != other || h.health == Health::Healthy));
    let failed = tasker.detect_stale_tasks().await.expect("detect");
    assert!(failed >= 1);
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "error");
    let entry = &tasker
        .list_dlq(&DlqFilter {
            task_uuid: Some(task),
            ..DlqFilter::default()
        })
        .await
        .expect("dlq")[0];
    assert_eq!(entry.reason, "staleness_timeout");
    assert!(entry.notes[0].text.contains("threshold 60 ms"), "{:?}", entry.notes);
    let path: Vec<&str> = d.task_transitions.iter().map(|t| t.event.as_str()).collect();
    assert!(path.ends_with(&["evaluate_results", "block", "fail"]), "{path:?}");
    // The other task (default thresholds) is left alone.
    assert_ne!(
        tasker
            .list_dlq(&DlqFilter {
                task_uuid: Some(other),
                reason: Some(tasker_core::DlqReason::StalenessTimeout),
                ..DlqFilter::default()
            })
            .await
            .expect("dlq")
            .len(),
        1
    );
    worker.stop().await;
    test_db.cleanup().await;
}

async fn unserved_queues_put_their_tasks_in_the_dlq_once(db: Db) {
    let recovery = RecoveryOptions {
        worker_unavailable_after: Duration::from_millis(50),
        heartbeat_interval: Duration::from_millis(50),
        staleness: StalenessThresholds::default(),
        ..RecoveryOptions::default()
    };
    let (test_db, tasker, worker) = setup_with(db, recovery).await;
    // A worker that served the orphan queue died: its heartbeat is long gone.
    let long_ago = chrono::Utc::now() - chrono::Duration::minutes(10);
    tasker
        .store()
        .register_worker(&WorkerRecord {
            registration_uuid: Uuid::now_v7(),
            worker_id: "dead:1".into(),
            host: "dead".into(),
            pid: 1,
            language: "python".into(),
            queues: vec!["orphan_queue".into()],
            concurrency: 1,
            in_flight: 1,
            started_at: long_ago,
            last_heartbeat_at: long_ago,
            stopped_at: None,
        })
        .await
        .expect("register");
    let task = create(&tasker, NS, "orphan", json!({})).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(tasker.detect_unavailable_workers().await.expect("detect") >= 1);
    assert_eq!(
        tasker.detect_unavailable_workers().await.expect("again"),
        0,
        "deduplicated"
    );
    let entries = tasker
        .list_dlq(&DlqFilter {
            task_uuid: Some(task),
            ..DlqFilter::default()
        })
        .await
        .expect("dlq");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].reason, "worker_unavailable");
    assert!(entries[0].notes[0].text.contains("orphan_queue"));
    let workers = tasker.list_workers().await.expect("workers");
    assert!(workers.iter().any(|w| w.record.worker_id == "dead:1" && !w.live));
    worker.stop().await;
    test_db.cleanup().await;
}

async fn workers_register_and_heartbeat(db: Db) {
    let recovery = RecoveryOptions {
        heartbeat_interval: Duration::from_millis(50),
        ..RecoveryOptions::default()
    };
    let (test_db, tasker, worker) = setup_with(db, recovery).await;
    let started = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let workers = tasker.list_workers().await.expect("workers");
    let me = workers
        .iter()
        .find(|w| w.record.queues == [NS.to_string()])
        .expect("registered");
    assert!(me.live);
    assert_eq!(me.record.language, "rust");
    assert_eq!(me.record.concurrency, 4);
    assert_eq!(me.record.pid, std::process::id() as i32);
    assert!(me.record.last_heartbeat_at >= started, "heartbeats");
    let id = me.record.registration_uuid;
    worker.stop().await;
    let workers = tasker.list_workers().await.expect("workers");
    let me = workers
        .iter()
        .find(|w| w.record.registration_uuid == id)
        .expect("still listed");
    assert!(!me.live && me.record.stopped_at.is_some());
    test_db.cleanup().await;
}

async fn dlq_entries_are_investigated_and_counted(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let t1 = failed_task(&tasker, "chain", json!({})).await;
    failed_task(&tasker, "chain", json!({"fail": "retryable"})).await;
    let running = create(&tasker, NS, "slow", json!({"sleep_ms": 300})).await;
    let manual = tasker.add_to_dlq(running, "hank", "looks odd").await.expect("manual");
    assert_eq!(manual.reason, "manual");
    let err = tasker
        .add_to_dlq(running, "hank", "twice")
        .await
        .expect_err("one open entry");
    assert_eq!(err.code(), "invalid_state");

    let stats = tasker.dlq_stats().await.expect("stats");
    assert_eq!((stats.total, stats.open), (3, 3));
    assert_eq!(stats.by_reason.get("permanent_failure"), Some(&1));
    assert_eq!(stats.by_reason.get("max_retries_exceeded"), Some(&1));
    assert_eq!(stats.by_reason.get("manual"), Some(&1));

    let queue = tasker.dlq_queue(10).await.expect("queue");
    let order: Vec<&str> = queue.iter().map(|q| q.entry.reason.as_str()).collect();
    assert_eq!(order, ["permanent_failure", "max_retries_exceeded", "manual"]);

    let e1 = &tasker
        .list_dlq(&DlqFilter {
            task_uuid: Some(t1),
            ..DlqFilter::default()
        })
        .await
        .expect("dlq")[0];
    let e1 = tasker
        .update_dlq_entry(e1.entry_uuid, Some(DlqStatus::Investigating), "looking", "ivy")
        .await
        .expect("update");
    assert_eq!(e1.status, "investigating");
    let e1 = tasker
        .update_dlq_entry(
            e1.entry_uuid,
            Some(DlqStatus::PermanentlyFailed),
            "bad input, won't fix",
            "ivy",
        )
        .await
        .expect("close");
    assert_eq!(
        (e1.status.as_str(), e1.resolved_by.as_deref()),
        ("permanently_failed", Some("ivy"))
    );
    assert_eq!(e1.notes.len(), 2);
    let open = tasker
        .list_dlq(&DlqFilter {
            open_only: true,
            ..DlqFilter::default()
        })
        .await
        .expect("open");
    assert_eq!(open.len(), 2);
    let page = tasker
        .list_dlq(&DlqFilter {
            limit: Some(1),
            offset: Some(1),
            ..DlqFilter::default()
        })
        .await
        .expect("page");
    assert_eq!(page.len(), 1);
    let err = tasker
        .update_dlq_entry(Uuid::now_v7(), None, "x", "y")
        .await
        .expect_err("missing");
    assert_eq!(err.code(), "dlq_entry_not_found");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn a_task_whose_steps_all_wait_for_a_retry_waits_for_retry(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let task = create(&tasker, NS, "retry_wait", json!({"fail": "retryable"})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tasker.task_summary(task).await.expect("task").state != "waiting_for_retry" {
        assert!(std::time::Instant::now() < deadline, "never waited for its retry");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fix(task);
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    let events: Vec<&str> = d.task_transitions.iter().map(|t| t.event.as_str()).collect();
    let waited = events.windows(2).position(|w| w == ["evaluate_results", "await_retry"]);
    let resumed = events
        .windows(2)
        .position(|w| w == ["enqueue_ready_steps", "steps_enqueued"]);
    assert!(matches!((waited, resumed), (Some(a), Some(b)) if a < b), "{events:?}");
    worker.stop().await;
    test_db.cleanup().await;
}
