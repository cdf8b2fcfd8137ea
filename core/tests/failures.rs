//! Retries, permanent errors, exhaustion, idempotency, cancellation, timeouts and bad input.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::{json, Value};
use tasker_core::handler::HandlerRegistry;
use tasker_core::template::parse_str;
use tasker_core::{StepFailure, TaskDetail, TaskFilter, TaskRequest, Tasker, TaskerError};

on_every_backend!(
    retryable_failures_then_success_with_backoff,
    permanent_error_blocks_only_downstream,
    retries_stop_at_max_attempts,
    handler_retry_after_wins_over_backoff,
    idempotency_key_returns_the_same_task,
    cancel_stops_pending_work_and_discards_in_flight_results,
    hanging_handler_times_out_per_attempt,
    bad_input_is_rejected_and_nothing_changes,
);

async fn register(tasker: &Tasker, yaml: &str) {
    let loaded = parse_str(yaml, None, "test").expect("valid template");
    tasker.register_template(&loaded).await.expect("register");
}

fn registry() -> HandlerRegistry {
    let mut r = math_registry();
    // Fails with a retryable error until the attempt named by `succeed_on`.
    r.register_fn("flaky", |step| async move {
        let succeed_on = step.config()["succeed_on"].as_u64().unwrap_or(3) as u32;
        if step.attempt < succeed_on {
            let mut f = StepFailure::retryable("Flaky", format!("attempt {} failed", step.attempt));
            if let Some(secs) = step.config()["retry_after"].as_f64() {
                f = f.with_retry_after(Duration::from_secs_f64(secs));
            }
            return Err(f);
        }
        Ok(json!({ "value": step.attempt, "attempt": step.attempt }))
    });
    r.register_fn("boom", |_step| async move {
        Err::<Value, _>(StepFailure::permanent("Boom", "cannot ever work"))
    });
    r.register_fn("hang", |step| async move {
        let ms = step.config()["ms"].as_u64().unwrap_or(60_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(json!({ "value": 1 }))
    });
    r
}

fn transition_times(detail: &TaskDetail, step: &str, event: &str) -> Vec<DateTime<Utc>> {
    detail
        .step_transitions
        .iter()
        .filter(|t| t.step_name.as_deref() == Some(step) && t.event == event)
        .map(|t| t.created_at)
        .collect()
}

async fn setup(db: Db, ns: &str) -> (TestDb, Tasker, RunningWorker) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    let worker = RunningWorker::start(&tasker, &[ns], 4, registry()).await;
    (test_db, tasker, worker)
}

async fn teardown(test_db: TestDb, tasker: Tasker, worker: RunningWorker) {
    worker.stop().await;
    tasker.close().await;
    test_db.cleanup().await;
}

async fn retryable_failures_then_success_with_backoff(db: Db) {
    let (test_db, tasker, worker) = setup(db, "retries").await;
    register(
        &tasker,
        r#"
name: flaky_then_ok
namespace_name: retries
version: 0.1.0
steps:
  - name: flaky
    handler: { callable: flaky, initialization: { succeed_on: 3 } }
    retry: { max_attempts: 3, backoff: linear, backoff_base_ms: 120, max_backoff_ms: 10000 }
  - name: after
    dependencies: [flaky]
    handler: { callable: math }
"#,
    )
    .await;
    let task = create(&tasker, "retries", "flaky_then_ok", json!({})).await;
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete");
    let flaky = d.step("flaky").expect("step");
    assert_eq!(flaky.attempts, 3);
    assert_eq!(flaky.results.as_ref().map(|r| r["attempt"].clone()), Some(json!(3)));
    // The last failure is kept for inspection.
    let err = flaky.last_error.as_ref().expect("last error kept");
    assert_eq!(err["attempt"], json!(2));
    assert_eq!(err["error_type"], json!("Flaky"));
    assert_eq!(result_of(&d, "after"), 3);
    // Backoff observed: linear 120 ms then 240 ms, jitter removes at most 25%.
    let claims = transition_times(&d, "flaky", "claim");
    assert_eq!(claims.len(), 3);
    let gap1 = (claims[1] - claims[0]).num_milliseconds();
    let gap2 = (claims[2] - claims[1]).num_milliseconds();
    assert!(gap1 >= 90, "first retry came after {gap1} ms");
    assert!(gap2 >= 180, "second retry came after {gap2} ms");
    let path: Vec<&str> = d
        .step_transitions
        .iter()
        .filter(|t| t.step_name.as_deref() == Some("flaky"))
        .map(|t| t.to_state.as_str())
        .collect();
    assert_eq!(
        path,
        [
            "enqueued",
            "in_progress",
            "waiting_for_retry",
            "enqueued",
            "in_progress",
            "waiting_for_retry",
            "enqueued",
            "in_progress",
            "complete"
        ]
    );
    teardown(test_db, tasker, worker).await;
}

async fn permanent_error_blocks_only_downstream(db: Db) {
    let (test_db, tasker, worker) = setup(db, "permanent").await;
    register(
        &tasker,
        r#"
name: boom
namespace_name: permanent
version: 1.0.0
steps:
  - { name: start, handler: { callable: math } }
  - { name: explode, dependencies: [start], handler: { callable: boom } }
  - { name: after_explode, dependencies: [explode], handler: { callable: math } }
  - { name: side, dependencies: [start], handler: { callable: math, initialization: { add: 1 } } }
  - { name: side_after, dependencies: [side], handler: { callable: math, initialization: { add: 1 } } }
"#,
    )
    .await;
    let task = create(&tasker, "permanent", "boom", json!({"value": 1})).await;
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "error");
    let explode = d.step("explode").expect("step");
    assert_eq!(explode.state, "error");
    assert_eq!(explode.attempts, 1, "a permanent error is not retried");
    assert_eq!(
        explode.last_error.as_ref().map(|e| e["error_type"].clone()),
        Some(json!("Boom"))
    );
    assert_eq!(
        d.step("after_explode").map(|s| (s.state.as_str(), s.attempts)),
        Some(("pending", 0))
    );
    // The independent branch still ran to completion before the task was given up.
    assert_eq!(result_of(&d, "side_after"), 3);
    let path: Vec<&str> = d.task_transitions.iter().map(|t| t.to_state.as_str()).collect();
    assert_eq!(
        path[path.len() - 3..],
        ["evaluating_results", "blocked_by_failures", "error"]
    );
    teardown(test_db, tasker, worker).await;
}

async fn retries_stop_at_max_attempts(db: Db) {
    let (test_db, tasker, worker) = setup(db, "exhaust").await;
    register(
        &tasker,
        r#"
name: never
namespace_name: exhaust
version: 1.0.0
steps:
  - name: never
    handler: { callable: flaky, initialization: { succeed_on: 1000 } }
    retry: { max_attempts: 4, backoff: exponential, backoff_base_ms: 5, max_backoff_ms: 20 }
"#,
    )
    .await;
    let task = create(&tasker, "exhaust", "never", json!({})).await;
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "error");
    let step = d.step("never").expect("step");
    assert_eq!((step.state.as_str(), step.attempts, step.max_attempts), ("error", 4, 4));
    assert_eq!(step.last_error.as_ref().map(|e| e["attempt"].clone()), Some(json!(4)));
    assert_eq!(transition_times(&d, "never", "claim").len(), 4);
    teardown(test_db, tasker, worker).await;
}

async fn handler_retry_after_wins_over_backoff(db: Db) {
    let (test_db, tasker, worker) = setup(db, "retry_after").await;
    register(
        &tasker,
        r#"
name: later
namespace_name: retry_after
version: 1.0.0
steps:
  - name: later
    handler: { callable: flaky, initialization: { succeed_on: 2, retry_after: 0.4 } }
    retry: { max_attempts: 2, backoff: none }
"#,
    )
    .await;
    let task = create(&tasker, "retry_after", "later", json!({})).await;
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete");
    let claims = transition_times(&d, "later", "claim");
    let gap = (claims[1] - claims[0]).num_milliseconds();
    assert!(gap >= 400, "retry_after 0.4 s ignored: retried after {gap} ms");
    teardown(test_db, tasker, worker).await;
}

async fn idempotency_key_returns_the_same_task(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    tasker.register_templates(fixtures()).await.expect("register");
    let request = |key: &str| TaskRequest {
        namespace: "engine_tests".into(),
        name: "diamond".into(),
        context: json!({"value": 1}),
        idempotency_key: Some(key.into()),
        ..Default::default()
    };
    let first = tasker.create_task(request("order-42")).await.expect("create");
    let again = tasker.create_task(request("order-42")).await.expect("create again");
    let other = tasker.create_task(request("order-43")).await.expect("create other");
    assert!(first.created && !again.created && other.created);
    assert_eq!(first.task.task_uuid, again.task.task_uuid);
    assert_ne!(first.task.task_uuid, other.task.task_uuid);
    // Concurrent creations with one key also yield one task.
    let racers = (0..8).map(|_| {
        let t = tasker.clone();
        let r = request("order-44");
        tokio::spawn(async move { t.create_task(r).await })
    });
    let mut ids = Vec::new();
    for r in racers {
        ids.push(r.await.expect("join").expect("create").task.task_uuid);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let all = tasker.list_tasks(&TaskFilter::default()).await.expect("list");
    assert_eq!(all.len(), 3);
    // Only the first creation enqueued root steps.
    let detail = tasker.get_task(first.task.task_uuid).await.expect("get");
    assert_eq!(detail.step_transitions.len(), 1);
    tasker.close().await;
    test_db.cleanup().await;
}

async fn cancel_stops_pending_work_and_discards_in_flight_results(db: Db) {
    let (test_db, tasker, worker) = setup(db, "cancelling").await;
    register(
        &tasker,
        r#"
name: slow
namespace_name: cancelling
version: 1.0.0
steps:
  - { name: slow, handler: { callable: hang, initialization: { ms: 1500 } } }
  - { name: next, dependencies: [slow], handler: { callable: math } }
"#,
    )
    .await;
    let task = create(&tasker, "cancelling", "slow", json!({"value": 1})).await;
    // Wait until the slow step is running.
    for _ in 0..200 {
        let d = tasker.get_task(task).await.expect("get");
        if d.step("slow").is_some_and(|s| s.state == "in_progress") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancelled = tasker.cancel_task(task).await.expect("cancel");
    assert_eq!(cancelled.state, "cancelled");
    let d = tasker.get_task(task).await.expect("get");
    assert_eq!(d.step("next").map(|s| s.state.as_str()), Some("cancelled"));
    assert_eq!(d.step("slow").map(|s| s.state.as_str()), Some("in_progress"));
    // Cancelling again is a clear error.
    let again = tasker.cancel_task(task).await.expect_err("already cancelled");
    assert!(matches!(again, TaskerError::IllegalTaskTransition { .. }), "{again}");
    // The running handler finishes; its result is discarded.
    let mut slow_state = String::new();
    for _ in 0..400 {
        let d = tasker.get_task(task).await.expect("get");
        slow_state = d.step("slow").map(|s| s.state.clone()).unwrap_or_default();
        if slow_state != "in_progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let d = tasker.get_task(task).await.expect("get");
    assert_eq!(slow_state, "cancelled");
    assert_eq!(d.step("slow").and_then(|s| s.results.clone()), None);
    assert_eq!(d.task.state, "cancelled");
    teardown(test_db, tasker, worker).await;
}

async fn hanging_handler_times_out_per_attempt(db: Db) {
    let (test_db, tasker, worker) = setup(db, "timeouts").await;
    register(
        &tasker,
        r#"
name: hang
namespace_name: timeouts
version: 1.0.0
steps:
  - name: hang
    handler: { callable: hang, initialization: { ms: 30000 } }
    timeout_seconds: 1
    retry: { max_attempts: 2, backoff: none }
"#,
    )
    .await;
    let task = create(&tasker, "timeouts", "hang", json!({})).await;
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "error");
    let step = d.step("hang").expect("step");
    assert_eq!(step.attempts, 2);
    assert_eq!(
        step.last_error.as_ref().map(|e| e["error_type"].clone()),
        Some(json!("timeout"))
    );
    let claims = transition_times(&d, "hang", "claim");
    let failed = d
        .step_transitions
        .iter()
        .find(|t| t.event == "schedule_retry")
        .map(|t| t.created_at)
        .expect("retry");
    let ran = (failed - claims[0]).num_milliseconds();
    assert!(
        ran >= 950,
        "attempt 1 was failed after {ran} ms, before its 1 s timeout"
    );
    teardown(test_db, tasker, worker).await;
}

async fn bad_input_is_rejected_and_nothing_changes(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    tasker.register_templates(fixtures()).await.expect("register");
    let before = tasker.list_templates().await.expect("templates").len();
    let request = |context: Value| TaskRequest {
        namespace: "engine_tests".into(),
        name: "mixed".into(),
        context,
        ..Default::default()
    };

    // Schema violation: the error names the property and the reason.
    let err = tasker
        .create_task(request(json!({"value": "seven"})))
        .await
        .expect_err("schema");
    match &err {
        TaskerError::Validation(v) => {
            assert_eq!(v.path, "/value");
            assert!(v.message.contains("integer"), "{v}");
        }
        other => panic!("expected a validation error, got {other}"),
    }
    let err = tasker
        .create_task(request(json!({})))
        .await
        .expect_err("missing property");
    assert!(err.to_string().contains("value"), "{err}");

    // Over 1 MiB of context.
    let big = "x".repeat(1024 * 1024 + 10);
    let err = tasker
        .create_task(request(json!({"value": 1, "blob": big})))
        .await
        .expect_err("too big");
    assert!(matches!(err, TaskerError::Validation(_)), "{err}");
    assert!(
        err.to_string().contains("MiB") || err.to_string().contains("bytes"),
        "{err}"
    );

    // Unknown template / version.
    let err = tasker
        .create_task(TaskRequest {
            name: "nope".into(),
            ..request(json!({"value": 1}))
        })
        .await
        .expect_err("unknown");
    assert!(matches!(err, TaskerError::TemplateNotFound { .. }), "{err}");
    assert!(err.to_string().contains("engine_tests/nope"), "{err}");
    let err = tasker
        .create_task(TaskRequest {
            version: Some("9.9.9".into()),
            ..request(json!({"value": 1}))
        })
        .await
        .expect_err("unknown version");
    assert!(err.to_string().contains("9.9.9"), "{err}");

    // Re-registering a version with different content is refused; the stored one is kept.
    let changed = std::fs::read_to_string(fixtures().join("diamond.yaml"))
        .expect("read")
        .replace("mul: 3", "mul: 4");
    let err = tasker
        .register_template(&parse_str(&changed, None, "test").expect("parse"))
        .await
        .expect_err("conflict");
    assert!(matches!(err, TaskerError::TemplateConflict { .. }), "{err}");
    let diamond = tasker
        .template("engine_tests", "diamond", Some("1.0.0"))
        .await
        .expect("kept");
    assert_eq!(diamond.template.steps[2].handler.initialization, json!({"mul": 3}));

    // Registering an invalid directory stores nothing.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("good.yaml"),
        changed.replace("name: diamond", "name: diamond_two"),
    )
    .expect("write");
    std::fs::write(dir.path().join("bad.yaml"), "name: [unclosed").expect("write");
    let err = tasker.register_templates(dir.path()).await.expect_err("malformed yaml");
    assert!(err.to_string().contains("bad.yaml"), "{err}");
    assert_eq!(tasker.list_templates().await.expect("templates").len(), before);

    assert!(tasker
        .list_tasks(&TaskFilter::default())
        .await
        .expect("list")
        .is_empty());
    tasker.close().await;
    test_db.cleanup().await;
}

#[tokio::test]
async fn unreachable_database_names_the_host_never_the_password() {
    let started = std::time::Instant::now();
    let err = Tasker::connect(Some("postgres://tasker:s3cret-pw@127.0.0.1:1/tasker"))
        .await
        .expect_err("unreachable");
    let text = err.to_string();
    // The driver's own reason, at once (not a pool timeout seconds later).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(matches!(err, TaskerError::Connect { .. }), "{text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
    let err = Tasker::connect(Some("mysql://root@localhost/db"))
        .await
        .expect_err("unsupported");
    assert!(matches!(err, TaskerError::DatabaseUrl(_)), "{err}");
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("no/such/dir/tasker.db");
    let err = Tasker::connect(Some(&format!("sqlite://{}", missing.display())))
        .await
        .expect_err("bad path");
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}
