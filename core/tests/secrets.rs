//! `${VAR}` in a handler's `initialization` (docs/configuration.md, "Secrets in templates"): the
//! worker resolves it from its own environment when it hands the step out; the database keeps
//! the reference, never the value.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};
use tasker_core::handler::HandlerRegistry;

const SECRET: &str = "sk_live_not_in_the_database";

async fn handlers_get_resolved_secrets_and_the_database_keeps_references(kind: Db) {
    std::env::set_var("TASKER_TEST_API_KEY", SECRET);
    std::env::remove_var("TASKER_TEST_API_HOST");
    std::env::remove_var("TASKER_TEST_NOT_SET");
    let db = TestDb::new(kind).await;
    let tasker = db.connect().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/secrets");
    tasker.register_templates(dir).await.expect("register");
    let mut registry = HandlerRegistry::new();
    registry.register_fn(
        "echo_config",
        |step| async move { Ok::<Value, _>(step.config().clone()) },
    );
    let worker = RunningWorker::start(&tasker, &["secrets_tests"], 2, registry).await;
    let task = create(&tasker, "secrets_tests", "secrets", json!({})).await;
    let detail = wait(&tasker, task).await;
    worker.stop().await;

    // The handler saw the values.
    let call = detail.step("call_api").expect("call_api");
    assert_eq!(
        call.results,
        Some(json!({"api_key": SECRET, "url": "https://api.example/v1"})),
        "{detail:#?}"
    );
    // A variable this worker lacks fails the attempt, retryably, naming the field and variable.
    assert_eq!(detail.task.state, "error");
    let missing = detail.step("needs_missing").expect("needs_missing");
    let error = missing.last_error.as_ref().expect("an error");
    assert_eq!(error["error_type"], "handler_config_unresolved", "{error}");
    assert_eq!(missing.attempts, 2, "retried up to max_attempts");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("initialization.token: environment variable TASKER_TEST_NOT_SET is not set"),
        "{message}"
    );

    // The stored template keeps the references; the secret is nowhere in the database's copy of
    // the template or of the task.
    let info = tasker
        .get_template("secrets_tests", "secrets", None)
        .await
        .expect("template");
    let row = tasker
        .store()
        .template_by_id(info.id)
        .await
        .expect("read")
        .expect("row");
    let stored = row.definition.to_string();
    assert!(stored.contains("${TASKER_TEST_API_KEY}"), "{stored}");
    assert!(!stored.contains(SECRET));
    let task_row = serde_json::to_string(&tasker.get_task(task).await.expect("task").task).expect("json");
    assert!(!task_row.contains(SECRET));
    tasker.close().await;
    db.cleanup().await;
}

on_both_backends!(handlers_get_resolved_secrets_and_the_database_keeps_references);
