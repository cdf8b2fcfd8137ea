//! DAG shapes run to completion with the right values passed between steps.

mod common;

use common::*;
use serde_json::json;
use tasker_core::state::{NamedState, StepState, TaskState};

on_every_backend!(
    linear_diamond_tree_and_mixed_dags_complete,
    every_dispatch_mode_runs_workflows,
    versions_coexist_and_the_highest_is_the_default,
    a_version_registered_by_another_process_is_the_new_default,
    higher_priority_tasks_run_first,
);

async fn linear_diamond_tree_and_mixed_dags_complete(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    let registered = tasker.register_templates(fixtures()).await.expect("register fixtures");
    assert!(registered.len() >= 4, "{registered:?}");
    let worker = RunningWorker::start(&tasker, &["engine_tests"], 4, math_registry()).await;

    // linear: a = 5*2 = 10, b = 13, c = 130, d = 129
    let linear = create(&tasker, "engine_tests", "linear", json!({"value": 5})).await;
    // diamond: a = 4, b = 8, c = 12, d = 20
    let diamond = create(&tasker, "engine_tests", "diamond", json!({"value": 3})).await;
    // tree from root = 1: l = 2, r = 3, ll = 4, lr = 5, rl = 6, rr = 7, lll = 8
    let tree = create(&tasker, "engine_tests", "tree", json!({"value": 1})).await;
    // mixed from 2: a = 3, b = 6, c = 8, d = 14, e = 18, f = 132, g = -140
    let mixed = create(&tasker, "engine_tests", "mixed", json!({"value": 2})).await;

    let d = wait(&tasker, linear).await;
    assert_eq!(d.task.state, "complete");
    assert_eq!(
        [
            result_of(&d, "a"),
            result_of(&d, "b"),
            result_of(&d, "c"),
            result_of(&d, "d")
        ],
        [10, 13, 130, 129]
    );

    let d = wait(&tasker, diamond).await;
    assert_eq!(d.task.state, "complete");
    assert_eq!(
        [
            result_of(&d, "a"),
            result_of(&d, "b"),
            result_of(&d, "c"),
            result_of(&d, "d")
        ],
        [4, 8, 12, 20]
    );
    assert_eq!(
        d.step("d").map(|s| s.dependencies.clone()),
        Some(vec!["b".to_string(), "c".to_string()])
    );

    let d = wait(&tasker, tree).await;
    assert_eq!(d.task.state, "complete");
    let values: Vec<i64> = ["root", "l", "r", "ll", "lr", "rl", "rr", "lll"]
        .iter()
        .map(|s| result_of(&d, s))
        .collect();
    assert_eq!(values, [1, 2, 3, 4, 5, 6, 7, 8]);

    let d = wait(&tasker, mixed).await;
    assert_eq!(d.task.state, "complete");
    let values: Vec<i64> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|s| result_of(&d, s))
        .collect();
    assert_eq!(values, [3, 6, 8, 14, 18, 132, -140]);

    // The audit trail: the task walked the documented path, every step ran exactly once.
    let path: Vec<&str> = d.task_transitions.iter().map(|t| t.to_state.as_str()).collect();
    assert_eq!(
        path,
        [
            "pending",
            "initializing",
            "enqueuing_steps",
            "steps_in_process",
            "evaluating_results",
            "complete"
        ]
    );
    assert_eq!(d.task_transitions.iter().filter(|t| t.most_recent).count(), 1);
    for step in &d.steps {
        assert_eq!(step.attempts, 1, "{step:?}");
        assert_eq!(StepState::parse(&step.state), Some(StepState::Complete));
        let claims = d
            .step_transitions
            .iter()
            .filter(|t| t.step_name.as_deref() == Some(&step.name) && t.event == "claim")
            .count();
        assert_eq!(claims, 1, "step {} claimed {claims} times", step.name);
        assert!(step.completed_at.is_some() && step.first_attempted_at.is_some());
    }
    assert_eq!(d.task.completed_steps, 7);
    assert_eq!(d.task.active_steps, 0);
    assert_eq!(TaskState::parse(&d.task.state), Some(TaskState::Complete));

    worker.stop().await;
    tasker.close().await;
    test_db.cleanup().await;
}

async fn every_dispatch_mode_runs_workflows(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    tasker.register_templates(fixtures()).await.expect("register");
    for mode in ["polling", "event_driven", "hybrid"] {
        let mut config = tasker_core::WorkerConfig::new(vec!["engine_tests".into()]);
        config.dispatch_mode = mode.parse().expect("mode");
        config.poll_interval = Some(std::time::Duration::from_millis(20));
        if mode == "event_driven" && matches!(db, Db::Sqlite) {
            // SQLite has no cross-process notification: the mode is refused, clearly.
            let err = tasker_core::Worker::start(&tasker, config).await.expect_err("refused");
            assert_eq!(err.code(), "invalid_argument");
            assert!(err.to_string().contains("event_driven"), "{err}");
            continue;
        }
        let worker = RunningWorker::start_with(&tasker, config, math_registry()).await;
        let id = create(&tasker, "engine_tests", "diamond", json!({"value": 9})).await;
        let d = wait(&tasker, id).await;
        assert_eq!(
            (d.task.state.as_str(), result_of(&d, "d")),
            ("complete", 50),
            "mode {mode}"
        );
        worker.stop().await;
    }
    assert!("sometimes".parse::<tasker_core::DispatchMode>().is_err());
    tasker.close().await;
    test_db.cleanup().await;
}

async fn versions_coexist_and_the_highest_is_the_default(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    let base = std::fs::read_to_string(fixtures().join("diamond.yaml")).expect("fixture");
    // 1.10.0 > 1.2.0 > 1.0.0 by semver (not by string order); each multiplies `d` differently.
    for (version, mul) in [("1.2.0", 2), ("1.10.0", 10), ("1.0.0", 1)] {
        let yaml = base.replace("version: 1.0.0", &format!("version: {version}")).replace(
            "handler: { callable: math }",
            &format!("handler: {{ callable: math, initialization: {{ mul: {mul} }} }}"),
        );
        let loaded = tasker_core::template::parse_str(&yaml, None, "test").expect("template");
        tasker.register_template(&loaded).await.expect("register");
    }
    let worker = RunningWorker::start(&tasker, &["engine_tests"], 4, math_registry()).await;
    let latest = create(&tasker, "engine_tests", "diamond", json!({"value": 1})).await;
    let d = wait(&tasker, latest).await;
    assert_eq!(d.task.version, "1.10.0");
    assert_eq!(result_of(&d, "d"), 100); // a = 2, b = 4, c = 6, d = 10 * (4 + 6)
    let pinned = tasker
        .create_task(tasker_core::TaskRequest {
            namespace: "engine_tests".into(),
            name: "diamond".into(),
            version: Some("1.2.0".into()),
            context: json!({"value": 1}),
            ..Default::default()
        })
        .await
        .expect("create pinned")
        .task
        .task_uuid;
    let d = wait(&tasker, pinned).await;
    assert_eq!((d.task.version.as_str(), result_of(&d, "d")), ("1.2.0", 20));
    assert_eq!(tasker.list_templates().await.expect("list").len(), 3);
    worker.stop().await;
    tasker.close().await;
    test_db.cleanup().await;
}

/// Creation caches which version a name without a version resolves to. A higher version that
/// another engine (another process) registers afterwards is used by this engine's very next
/// creation: the insert checks that its version is still the newest, and resolves again if not.
async fn a_version_registered_by_another_process_is_the_new_default(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    let other = test_db.connect().await;
    let base = std::fs::read_to_string(fixtures().join("diamond.yaml")).expect("fixture");
    let version = |v: &str| {
        tasker_core::template::parse_str(&base.replace("version: 1.0.0", &format!("version: {v}")), None, "test")
            .expect("template")
    };
    tasker
        .register_template(&version("1.0.0"))
        .await
        .expect("register 1.0.0");
    let first = create(&tasker, "engine_tests", "diamond", json!({"value": 1})).await;
    let cached = create(&tasker, "engine_tests", "diamond", json!({"value": 1})).await;
    other
        .register_template(&version("2.0.0"))
        .await
        .expect("register 2.0.0 elsewhere");
    let after = create(&tasker, "engine_tests", "diamond", json!({"value": 1})).await;
    let again = create(&tasker, "engine_tests", "diamond", json!({"value": 1})).await;
    // An older version registered later changes nothing.
    other
        .register_template(&version("1.5.0"))
        .await
        .expect("register 1.5.0 elsewhere");
    let still = create(&tasker, "engine_tests", "diamond", json!({"value": 1})).await;
    let mut versions = Vec::new();
    for task in [first, cached, after, again, still] {
        versions.push(tasker.get_task(task).await.expect("task").task.version);
    }
    assert_eq!(versions, ["1.0.0", "1.0.0", "2.0.0", "2.0.0", "2.0.0"]);
    other.close().await;
    tasker.close().await;
    test_db.cleanup().await;
}

/// Ready steps of higher-priority tasks are claimed first on their queue (then oldest first).
/// Three tasks of priority 0, 5 and -3 and a second one of 5 wait for a worker with one slot.
async fn higher_priority_tasks_run_first(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    let yaml = "name: single\nnamespace_name: priorities\nversion: 1.0.0\n\
                steps:\n  - name: only\n    handler: { callable: record }\n";
    let loaded = tasker_core::template::parse_str(yaml, None, "test").expect("template parses");
    tasker.register_template(&loaded).await.expect("register");
    for (label, priority) in [("normal", 0), ("urgent", 5), ("later", -3), ("urgent too", 5)] {
        tasker
            .create_task(tasker_core::TaskRequest {
                namespace: "priorities".into(),
                name: "single".into(),
                context: json!({ "label": label }),
                priority,
                ..Default::default()
            })
            .await
            .expect("create");
    }
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut registry = tasker_core::handler::HandlerRegistry::new();
    let seen = order.clone();
    registry.register_fn("record", move |step| {
        let seen = seen.clone();
        async move {
            let label = step.task_context["label"].as_str().unwrap_or_default().to_owned();
            seen.lock().expect("order").push(label);
            Ok(json!({}))
        }
    });
    let worker = RunningWorker::start(&tasker, &["priorities"], 1, registry).await;
    for _ in 0..500 {
        if order.lock().expect("order").len() == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    worker.stop().await;
    assert_eq!(
        *order.lock().expect("order"),
        ["urgent", "urgent too", "normal", "later"]
    );
    test_db.cleanup().await;
}
