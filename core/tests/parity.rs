//! The rows of `docs/parity.md` that the Rust API proves: registration is all-or-nothing, a
//! failure's unstorable metadata never changes its error, non-finite numbers are refused, handlers
//! return success metadata and honour the template's `method`, strict identity, and the test
//! helpers. Each scenario that needs a database runs on both backends.

mod common;

use common::*;
use serde_json::json;
use tasker_core::handler::HandlerRegistry;
use tasker_core::outcome::error_types;
use tasker_core::testing::{self, OutcomeAssertions, TestEvent};
use tasker_core::{StepFailure, StepSuccess, TaskRequest, Tasker};

on_both_backends!(
    registering_a_directory_is_all_or_nothing,
    a_template_conflict_names_the_file_and_the_registered_one,
    list_templates_and_get_template,
    strict_identity_returns_the_first_task_for_the_same_request,
    a_worker_keeps_a_failure_whose_metadata_cannot_be_serialized,
    success_metadata_and_the_templates_method_reach_the_database,
);

const DIAMOND: &str = include_str!("fixtures/engine/diamond.yaml");

/// A directory whose middle file (by name) clashes with a version already registered: the files
/// before and after it are new, and none of them may be stored.
async fn registering_a_directory_is_all_or_nothing(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker: Tasker = test_db.connect().await;
    tasker
        .register_templates(fixtures().join("diamond.yaml"))
        .await
        .expect("register");
    let before = tasker.list_templates().await.expect("templates").len();

    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("a_new.yaml"),
        DIAMOND.replace("name: diamond", "name: first_new"),
    )
    .expect("write");
    std::fs::write(dir.path().join("b_clash.yaml"), DIAMOND.replace("mul: 3", "mul: 4")).expect("write");
    std::fs::write(
        dir.path().join("c_new.yaml"),
        DIAMOND.replace("name: diamond", "name: last_new"),
    )
    .expect("write");
    let err = tasker.register_templates(dir.path()).await.expect_err("clash");
    assert_eq!(err.code(), "template_conflict", "{err}");
    assert!(err.to_string().contains("engine_tests/diamond version 1.0.0"), "{err}");
    assert_eq!(tasker.list_templates().await.expect("templates").len(), before);
    for name in ["first_new", "last_new"] {
        assert!(
            tasker.template("engine_tests", name, None).await.is_err(),
            "{name} was stored"
        );
    }

    // Two files in one directory defining one version are refused before anything is stored,
    // naming both files.
    let dir = tempfile::tempdir().expect("tmp");
    let twin = DIAMOND.replace("name: diamond", "name: twin");
    std::fs::write(dir.path().join("one.yaml"), &twin).expect("write");
    std::fs::write(dir.path().join("two.yaml"), twin.replace("mul: 3", "mul: 5")).expect("write");
    let err = tasker.register_templates(dir.path()).await.expect_err("twins");
    assert_eq!(err.code(), "template_invalid", "{err}");
    assert!(
        err.to_string().contains("one.yaml") && err.to_string().contains("two.yaml"),
        "{err}"
    );
    assert_eq!(tasker.list_templates().await.expect("templates").len(), before);

    // The store refuses such twins too (a caller registering parsed templates in one call).
    let one = tasker_core::template::parse_str(&twin, None, "test").expect("parse");
    let other = tasker_core::template::parse_str(&twin.replace("mul: 3", "mul: 5"), None, "test").expect("parse");
    let first_new =
        tasker_core::template::parse_str(&DIAMOND.replace("name: diamond", "name: first_new"), None, "test")
            .expect("parse");
    let err = tasker
        .register_loaded_templates(&[first_new, one, other])
        .await
        .expect_err("twins clash");
    assert_eq!(err.code(), "template_conflict", "{err}");
    assert_eq!(tasker.list_templates().await.expect("templates").len(), before);

    // Without the clash, the whole directory is stored; registering it again changes nothing.
    std::fs::remove_file(dir.path().join("two.yaml")).expect("rm");
    let registered = tasker.register_templates(dir.path()).await.expect("register");
    assert_eq!(registered.len(), 1);
    let again = tasker.register_templates(dir.path()).await.expect("idempotent");
    assert_eq!(again[0].id, registered[0].id);
    assert_eq!(tasker.list_templates().await.expect("templates").len(), before + 1);
    tasker.close().await;
    test_db.cleanup().await;
}

/// The conflict error names the file being registered and the one the stored version came
/// from: in a directory of templates, the version alone does not say which file to fix.
async fn a_template_conflict_names_the_file_and_the_registered_one(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker: Tasker = test_db.connect().await;
    let dir = tempfile::tempdir().expect("tmp");
    let first = dir.path().join("orders.yaml");
    std::fs::write(&first, DIAMOND).expect("write");
    tasker.register_templates(&first).await.expect("register");

    let changed = dir.path().join("orders_v2.yaml");
    std::fs::write(&changed, DIAMOND.replace("mul: 3", "mul: 4")).expect("write");
    let err = tasker.register_templates(&changed).await.expect_err("conflict");
    assert_eq!(err.code(), "template_conflict", "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("version 1.0.0 in {}", changed.display())),
        "{message}"
    );
    assert!(
        message.contains(&format!("already registered (from {})", first.display())),
        "{message}"
    );
    assert!(message.contains("bump the version"), "{message}");

    // A template parsed in memory has no file: the message says only what it knows.
    let parsed = tasker_core::template::parse_str(&DIAMOND.replace("mul: 3", "mul: 5"), None, "test").expect("parse");
    let err = tasker.register_template(&parsed).await.expect_err("conflict");
    assert!(
        err.to_string().contains(&format!(
            "version 1.0.0 is already registered (from {})",
            first.display()
        )),
        "{err}"
    );
    tasker.close().await;
    test_db.cleanup().await;
}

async fn list_templates_and_get_template(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    tasker
        .register_templates(fixtures().join("diamond.yaml"))
        .await
        .expect("register");
    let listed = tasker.list_templates().await.expect("list");
    let diamond = listed.iter().find(|t| t.name == "diamond").expect("listed");
    assert_eq!(diamond.steps, ["a", "b", "c", "d"]);
    assert_eq!(diamond.queues, ["engine_tests"]);
    assert!(diamond
        .source_path
        .as_deref()
        .is_some_and(|p| p.ends_with("diamond.yaml")));
    let found = tasker
        .get_template("engine_tests", "diamond", None)
        .await
        .expect("latest");
    assert_eq!(&found, diamond);
    assert_eq!(
        tasker
            .get_template("engine_tests", "diamond", Some("1.0.0"))
            .await
            .expect("v1"),
        found
    );
    let err = tasker
        .get_template("engine_tests", "diamond", Some("9.9.9"))
        .await
        .expect_err("missing");
    assert_eq!(err.code(), "template_not_found");
    assert_eq!(
        tasker.backend().as_str(),
        if db == Db::Sqlite { "sqlite" } else { "postgres" }
    );
    tasker.sequence_events().await.expect("sequence_events");
    assert!(!tasker.delete_event_group("nobody").await.expect("delete_event_group"));
    tasker.close().await;
    test_db.cleanup().await;
}

async fn strict_identity_returns_the_first_task_for_the_same_request(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    tasker
        .register_templates(fixtures().join("diamond.yaml"))
        .await
        .expect("register");
    let request = |context| TaskRequest {
        namespace: "engine_tests".into(),
        name: "diamond".into(),
        context,
        strict_identity: true,
        ..Default::default()
    };
    let first = tasker
        .create_task(request(json!({"value": 1, "b": 2})))
        .await
        .expect("first");
    let same = tasker
        .create_task(request(json!({"b": 2, "value": 1})))
        .await
        .expect("same");
    let other = tasker.create_task(request(json!({"value": 2}))).await.expect("other");
    assert!(first.created && !same.created && other.created);
    assert_eq!(same.task.task_uuid, first.task.task_uuid);
    assert_ne!(other.task.task_uuid, first.task.task_uuid);
    let plain = tasker
        .create_task(TaskRequest {
            strict_identity: false,
            ..request(json!({"value": 1, "b": 2}))
        })
        .await
        .expect("plain");
    assert!(plain.created && plain.task.task_uuid != first.task.task_uuid);
    // No worker runs these tasks: a short wait (a Duration, Rust's unit-safe seconds) times out.
    let waited = tasker
        .wait_for_task(first.task.task_uuid, std::time::Duration::from_millis(50))
        .await;
    assert!(waited.is_err());
    let err = tasker
        .create_task(TaskRequest {
            idempotency_key: Some("k".into()),
            ..request(json!({"value": 1}))
        })
        .await
        .expect_err("both");
    assert_eq!(err.code(), "invalid_argument");
    assert!(err.to_string().contains("cannot be combined"), "{err}");
    tasker.close().await;
    test_db.cleanup().await;
}

const ONE_STEP: &str = "name: one_try
namespace_name: parity_rs
version: 1.0.0
steps:
  - name: only
    handler: {callable: parity.only, method: METHOD}
    retry: {max_attempts: 1}
";

#[derive(serde::Serialize)]
struct Latency {
    p99: f64,
}

async fn a_worker_keeps_a_failure_whose_metadata_cannot_be_serialized(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    let loaded = tasker_core::template::parse_str(&ONE_STEP.replace("METHOD", "call"), None, "test").expect("parse");
    tasker.register_template(&loaded).await.expect("register");
    let mut registry = HandlerRegistry::new();
    registry.register_fn("parity.only", |_step| async move {
        let latency = std::collections::BTreeMap::from([("latency", Latency { p99: f64::NAN })]);
        Err::<serde_json::Value, _>(
            StepFailure::retryable("GatewayDown", "gateway down").with_serialized_metadata(&latency),
        )
    });
    let worker = RunningWorker::start(&tasker, &["parity_rs"], 2, registry).await;
    let task = create(&tasker, "parity_rs", "one_try", json!({})).await;
    let done = wait(&tasker, task).await;
    let error = done.step("only").and_then(|s| s.last_error.clone()).expect("an error");
    assert_eq!(
        (&error["error_type"], &error["message"], &error["retryable"]),
        (&json!("GatewayDown"), &json!("gateway down"), &json!(true))
    );
    assert_eq!(
        error["metadata"],
        json!({"metadata_dropped": {
            "code": "metadata_not_serializable",
            "path": "metadata.latency.p99",
            "reason": "NaN, which JSON cannot represent",
        }})
    );
    worker.stop().await;
    tasker.close().await;
    test_db.cleanup().await;
}

async fn success_metadata_and_the_templates_method_reach_the_database(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    let loaded = tasker_core::template::parse_str(&ONE_STEP.replace("METHOD", "refund"), None, "test").expect("parse");
    tasker.register_template(&loaded).await.expect("register");
    let mut registry = HandlerRegistry::new();
    registry.register_fn("parity.only", |_step| async move { Ok(json!({"ran": "call"})) });
    registry.register_method_fn("parity.only", "refund", |_step| async move {
        Ok(StepSuccess::new(json!({"ran": "refund"})).with_metadata(json!({"gateway": "test"})))
    });
    let worker = RunningWorker::start(&tasker, &["parity_rs"], 2, registry).await;
    let task = create(&tasker, "parity_rs", "one_try", json!({})).await;
    let done = wait(&tasker, task).await;
    let step = done.step("only").expect("step");
    assert_eq!(step.results, Some(json!({"ran": "refund"})), "{step:#?}");
    let history = tasker.get_step(task, "only").await.expect("step detail");
    let completed = serde_json::to_string(&history).expect("json");
    assert!(
        completed.contains("\"gateway\":\"test\""),
        "success metadata is stored: {completed}"
    );
    worker.stop().await;
    tasker.close().await;
    test_db.cleanup().await;
}

#[tokio::test]
async fn handler_test_helpers_need_no_database() {
    let mut registry = HandlerRegistry::new();
    registry.register_fn("double", |step| async move {
        let n = step.input()["n"]
            .as_i64()
            .ok_or_else(|| StepFailure::permanent("invalid_input", "context.n must be an integer"))?;
        Ok(StepSuccess::new(json!({"n": n * 2})).with_metadata(json!({"doubled": true})))
    });
    registry.register_method_fn("double", "undo", |_step| async move { Ok(json!({"undone": true})) });
    let (event, _) = TestEvent::new("double").context(json!({"n": 21})).build();
    let outcome = testing::run(&registry, &event).await;
    assert_eq!(outcome.expect_success(), &json!({"n": 42}));
    assert_eq!(outcome.success_metadata(), &json!({"doubled": true}));
    let (event, _) = TestEvent::new("double").method("undo").build();
    assert_eq!(
        testing::run(&registry, &event).await.expect_success(),
        &json!({"undone": true})
    );
    let (event, _) = TestEvent::new("double").method("redo").build();
    let missing = testing::run(&registry, &event).await.expect_failure().clone();
    assert_eq!(missing.error_type, error_types::HANDLER_NOT_FOUND);
    assert!(missing.message.contains("method 'redo'"), "{}", missing.message);
    let (event, _) = TestEvent::new("double").build();
    let failure = testing::run(&registry, &event).await.expect_failure().clone();
    assert_eq!(
        (failure.error_type.as_str(), failure.retryable),
        ("invalid_input", false)
    );
}

#[test]
fn non_finite_numbers_are_refused_naming_their_path() {
    for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let refused = StepSuccess::serialize(&json_with(value)).expect_err("refused");
        assert_eq!(
            (refused.error_type.as_str(), refused.retryable),
            (error_types::RESULT_NOT_SERIALIZABLE, false)
        );
        assert!(refused.message.contains("result.ratio[1]"), "{}", refused.message);
    }
    // A failure keeps its type, message and retryability; only the metadata becomes a note.
    let kept = StepFailure::retryable("GatewayDown", "gateway down")
        .with_serialized_metadata(&std::collections::BTreeMap::from([("p99", f64::NAN)]));
    assert_eq!((kept.error_type.as_str(), kept.retryable), ("GatewayDown", true));
    assert_eq!(kept.metadata["metadata_dropped"]["code"], "metadata_not_serializable");
    assert_eq!(kept.metadata["metadata_dropped"]["path"], "metadata.p99");
}

#[derive(serde::Serialize)]
struct Ratios {
    ratio: Vec<f64>,
}

fn json_with(value: f64) -> Ratios {
    Ratios {
        ratio: vec![1.0, value],
    }
}

#[tokio::test]
async fn the_handler_context_exposes_every_concept() {
    let (event, _) = TestEvent::new("charge")
        .context(json!({"order": 7}))
        .dependency("validate", json!({"ok": true}))
        .config(json!({"mul": 2}))
        .attempt(2, 3)
        .callable("shop.Charge")
        .method("refund")
        .cancelled()
        .build();
    assert_eq!(
        (event.input(), &event.task_context),
        (&json!({"order": 7}), &json!({"order": 7}))
    );
    assert_eq!(event.dependency_result("validate"), Some(&json!({"ok": true})));
    assert_eq!(event.dependency_results.len(), 1);
    assert_eq!(event.config(), &json!({"mul": 2}));
    assert_eq!(
        (
            event.attempt,
            event.max_attempts,
            event.is_retry(),
            event.is_last_retry()
        ),
        (2, 3, true, false)
    );
    assert_eq!(
        (event.handler.callable.as_str(), event.handler.method.as_str()),
        ("shop.Charge", "refund")
    );
    assert_eq!(event.step_name, "charge");
    assert_eq!(
        (
            event.namespace.as_str(),
            event.task_name.as_str(),
            event.task_version.as_str()
        ),
        ("test", "test", "0.0.0")
    );
    let _ids = (event.task_uuid, event.step_uuid, event.correlation_id, event.event_id);
    assert!(event.deadline.is_none() && event.batch.is_none() && event.checkpoint.is_none());
    assert!(event.cancellation.is_cancelled());
    event.cancellation.cancelled().await;
    event.publish("order.charged", json!({"amount": 7}));
    assert_eq!(
        event.take_published(),
        vec![("order.charged".to_owned(), json!({"amount": 7}))]
    );
    assert!(event.checkpoint(json!(1), 1, json!(null)).await.is_ok());
}
