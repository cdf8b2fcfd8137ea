//! Decision points, deferred convergence, batches and checkpoints, on both backends.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{LazyLock, Mutex};

use common::*;
use serde_json::{json, Value};
use tasker_core::engine::StepTypeLimits;
use tasker_core::handler::HandlerRegistry;
use tasker_core::outcome::{batch_cursors, step_results};
use tasker_core::{StepFailure, StepSummary, TaskDetail, Tasker, TaskerError, TaskerOptions};
use uuid::Uuid;

on_both_backends!(
    approval_routing_creates_exactly_the_chosen_branches,
    no_branches_still_runs_the_convergence,
    a_decision_without_an_outcome_creates_every_branch,
    a_bad_step_name_fails_the_decision_and_creates_nothing,
    nested_decisions_create_what_each_level_chose,
    decisions_nested_past_the_limit_fail,
    batches_split_the_items_and_converge_on_the_total,
    no_batches_runs_one_no_op_worker,
    a_thousand_workers_from_one_batchable_step,
    invalid_batch_outcomes_fail_the_batchable_step,
    a_retried_worker_resumes_from_its_checkpoint,
    checkpoints_are_fenced_by_attempt,
    cancelling_a_task_cancels_its_created_steps,
    operators_recover_created_steps_like_static_ones,
);

const NS: &str = "step_type_tests";

fn fixtures_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/step_types")
}

/// Items processed by batch workers, by task: the checkpoint test's ledger.
static LEDGER: LazyLock<Mutex<HashMap<Uuid, Vec<u64>>>> = LazyLock::new(Default::default);

fn names(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let set: BTreeSet<String> = values.into_iter().collect();
    set.into_iter().collect()
}

fn registry() -> HandlerRegistry {
    let mut r = HandlerRegistry::new();
    r.register_fn("validate", |e| async move {
        Ok(json!({"amount": e.task_context["amount"]}))
    });
    r.register_fn("route", |e| async move {
        let amount = e.dependency_results["validate_request"]["amount"].as_i64().unwrap_or(0);
        Ok(match e.task_context["route"].as_str() {
            Some("none") => step_results::no_branches(json!({"amount": amount})),
            Some("plain") => json!({"amount": amount}),
            Some("bad") => step_results::decision(&["auto_approve", "nope"], Value::Null),
            _ if amount < 1_000 => step_results::decision(&["auto_approve"], json!({"tier": "small"})),
            _ if amount < 5_000 => step_results::decision(&["manager_approval"], json!({"tier": "medium"})),
            _ => step_results::decision(&["manager_approval", "finance_review"], json!({"tier": "large"})),
        })
    });
    r.register_fn("approve", |e| async move { Ok(json!({"approved": e.step_name})) });
    r.register_fn("finalize", |e| async move {
        Ok(json!({"received": names(e.dependency_results.keys().cloned())}))
    });
    r.register_fn("choose", |e| async move {
        let from = e.config()["from"].as_str().unwrap_or_default().to_owned();
        let chosen: Vec<String> = e.task_context[&from]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        Ok(if chosen.is_empty() {
            step_results::no_branches(Value::Null)
        } else {
            step_results::decision(&chosen, Value::Null)
        })
    });
    r.register_fn("analyze", |e| async move {
        let total = e.task_context["total"].as_u64().unwrap_or(0);
        let size = e.task_context["batch_size"].as_u64().unwrap_or(1000);
        if total == 0 {
            return Ok(step_results::no_batches(json!({"total": 0})));
        }
        let cursors = batch_cursors(total, size).map_err(|err| StepFailure::permanent("bad_input", err.to_string()))?;
        let mut result = step_results::batches("process_batch", &cursors, json!({"total": total}));
        match e.task_context["bad"].as_str() {
            Some("count") => result["batch_processing_outcome"]["worker_count"] = json!(cursors.len() + 1),
            Some("worker") => result["batch_processing_outcome"]["worker_template_name"] = json!("analyze"),
            _ => {}
        }
        Ok(result)
    });
    r.register_fn("process_batch", |e| async move {
        let batch = e
            .batch
            .clone()
            .ok_or_else(|| StepFailure::permanent("bad_input", "no batch"))?;
        if batch["is_no_op"] == json!(true) {
            return Ok(json!({"count": 0, "sum": 0, "no_op": true}));
        }
        if e.task_context["broken_batch"] == batch["batch_id"] {
            return Err(StepFailure::permanent("Broken", "this batch's input is bad"));
        }
        if let Some(ms) = e.task_context["slow_ms"].as_u64() {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        let end = batch["end_cursor"].as_u64().unwrap_or(0);
        let interval = batch["batch_config"]["checkpoint_interval"].as_u64().unwrap_or(100);
        // Resume where the last attempt's checkpoint says.
        let (mut next, mut count, mut sum) = match &e.checkpoint {
            Some(c) => (
                c["cursor"].as_u64().unwrap_or(0),
                c["items_done"].as_u64().unwrap_or(0),
                c["accumulated"]["sum"].as_u64().unwrap_or(0),
            ),
            None => (batch["start_cursor"].as_u64().unwrap_or(0), 0, 0),
        };
        let fail_once = e.task_context["fail_once"] == json!(true) && e.attempt == 1;
        let stop_at = if fail_once {
            next + (end - next) / 2 / interval * interval
        } else {
            end
        };
        while next < stop_at {
            let upto = (next + interval).min(stop_at);
            let items: Vec<u64> = (next..upto).collect();
            count += items.len() as u64;
            sum += items.iter().sum::<u64>();
            LEDGER.lock().unwrap().entry(e.task_uuid).or_default().extend(items);
            next = upto;
            e.checkpoint(json!(next), count, json!({"sum": sum}))
                .await
                .map_err(|err| StepFailure::retryable("checkpoint_failed", err.to_string()))?;
        }
        if fail_once {
            return Err(StepFailure::retryable(
                "flaky",
                "failing after a checkpoint, on purpose",
            ));
        }
        Ok(json!({"count": count, "sum": sum}))
    });
    r.register_fn("aggregate", |e| async move {
        let count: u64 = e
            .dependency_results
            .values()
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum();
        let sum: u64 = e
            .dependency_results
            .values()
            .map(|r| r["sum"].as_u64().unwrap_or(0))
            .sum();
        Ok(json!({"count": count, "sum": sum, "workers": e.dependency_results.len()}))
    });
    r
}

async fn setup(db: Db, limits: Option<StepTypeLimits>) -> (TestDb, Tasker, RunningWorker) {
    let test_db = TestDb::new(db).await;
    let tasker = match limits {
        None => test_db.connect().await,
        Some(step_type_limits) => Tasker::connect_with(TaskerOptions {
            database_url: Some(test_db.url.clone()),
            step_type_limits,
            ..TaskerOptions::default()
        })
        .await
        .expect("connect"),
    };
    tasker
        .register_templates(fixtures_dir())
        .await
        .expect("register fixtures");
    let worker = RunningWorker::start(&tasker, &[NS], 4, registry()).await;
    (test_db, tasker, worker)
}

async fn run(tasker: &Tasker, name: &str, context: Value) -> TaskDetail {
    let task = create(tasker, NS, name, context).await;
    wait(tasker, task).await
}

fn step_names(d: &TaskDetail) -> Vec<String> {
    names(d.steps.iter().map(|s| s.name.clone()))
}

fn step<'d>(d: &'d TaskDetail, name: &str) -> &'d StepSummary {
    d.step(name)
        .unwrap_or_else(|| panic!("no step {name} in {:?}", step_names(d)))
}

fn received(d: &TaskDetail, name: &str) -> Vec<String> {
    let r = step(d, name).results.clone().unwrap_or_default();
    serde_json::from_value(r["received"].clone()).unwrap_or_default()
}

fn strings(v: &[&str]) -> Vec<String> {
    names(v.iter().map(|s| s.to_string()))
}

async fn approval_routing_creates_exactly_the_chosen_branches(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    for (amount, branches) in [
        (500, vec!["auto_approve"]),
        (2_500, vec!["manager_approval"]),
        (10_000, vec!["finance_review", "manager_approval"]),
    ] {
        let d = run(&tasker, "approval_routing", json!({"amount": amount})).await;
        assert_eq!(d.task.state, "complete", "amount {amount}: {d:#?}");
        let mut expected = vec!["finalize_approval", "routing_decision", "validate_request"];
        expected.extend(&branches);
        assert_eq!(step_names(&d), strings(&expected), "amount {amount}");
        assert_eq!(received(&d, "finalize_approval"), strings(&branches), "amount {amount}");
        for b in &branches {
            assert_eq!(step(&d, b).created_by.as_deref(), Some("routing_decision"));
            assert_eq!(step(&d, b).dependencies, vec!["routing_decision".to_string()]);
        }
        assert_eq!(
            step(&d, "finalize_approval").created_by.as_deref(),
            Some("routing_decision")
        );
        assert_eq!(step(&d, "validate_request").created_by, None);
        assert_eq!(d.task.total_steps as usize, expected.len());
        assert_eq!(d.task.completed_steps, d.task.total_steps);
        // The decision's other keys are kept.
        let decision = step(&d, "routing_decision").results.clone().unwrap_or_default();
        assert!(decision["tier"].is_string(), "{decision}");
    }
    worker.stop().await;
    test_db.cleanup().await;
}

async fn no_branches_still_runs_the_convergence(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    let d = run(&tasker, "approval_routing", json!({"amount": 1, "route": "none"})).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    assert_eq!(
        step_names(&d),
        strings(&["finalize_approval", "routing_decision", "validate_request"])
    );
    assert!(received(&d, "finalize_approval").is_empty());
    assert!(step(&d, "finalize_approval").dependencies.is_empty());
    worker.stop().await;
    test_db.cleanup().await;
}

async fn a_decision_without_an_outcome_creates_every_branch(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    let d = run(&tasker, "approval_routing", json!({"amount": 1, "route": "plain"})).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    let branches = ["auto_approve", "finance_review", "manager_approval"];
    assert_eq!(received(&d, "finalize_approval"), strings(&branches));
    assert_eq!(d.task.total_steps, 6);
    worker.stop().await;
    test_db.cleanup().await;
}

async fn a_bad_step_name_fails_the_decision_and_creates_nothing(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    let d = run(&tasker, "approval_routing", json!({"amount": 1, "route": "bad"})).await;
    assert_eq!(d.task.state, "error", "{d:#?}");
    assert_eq!(step_names(&d), strings(&["routing_decision", "validate_request"]));
    let decision = step(&d, "routing_decision");
    assert_eq!(decision.state, "error");
    assert_eq!(decision.attempts, 1, "an invalid decision is not retried");
    let error = decision.last_error.clone().unwrap_or_default();
    assert_eq!(error["error_type"], "invalid_decision");
    let message = error["message"].as_str().unwrap_or_default();
    for part in ["\"nope\"", "auto_approve", "manager_approval", "finance_review"] {
        assert!(message.contains(part), "{message}");
    }
    worker.stop().await;
    test_db.cleanup().await;
}

async fn nested_decisions_create_what_each_level_chose(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    // Both outer branches; the inner decision picks leaf_b.
    let d = run(
        &tasker,
        "nested_decisions",
        json!({"outer": ["inner_decision", "side"], "inner": ["leaf_b"]}),
    )
    .await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    assert_eq!(
        step_names(&d),
        strings(&[
            "after_side",
            "final",
            "inner_decision",
            "inner_join",
            "leaf_b",
            "outer",
            "side"
        ])
    );
    assert_eq!(received(&d, "inner_join"), strings(&["leaf_b"]));
    assert_eq!(received(&d, "final"), strings(&["after_side", "inner_join"]));
    assert_eq!(step(&d, "leaf_b").created_by.as_deref(), Some("inner_decision"));
    assert_eq!(step(&d, "after_side").created_by.as_deref(), Some("outer"));

    // Only `side`: nothing below the inner decision exists, `final` converges on after_side.
    let d = run(&tasker, "nested_decisions", json!({"outer": ["side"]})).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    assert_eq!(step_names(&d), strings(&["after_side", "final", "outer", "side"]));
    assert_eq!(received(&d, "final"), strings(&["after_side"]));

    // The inner decision takes no branch: its convergence still runs, with nothing.
    let d = run(
        &tasker,
        "nested_decisions",
        json!({"outer": ["inner_decision"], "inner": []}),
    )
    .await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    assert_eq!(
        step_names(&d),
        strings(&["final", "inner_decision", "inner_join", "outer"])
    );
    assert!(received(&d, "inner_join").is_empty());
    assert_eq!(received(&d, "final"), strings(&["inner_join"]));
    worker.stop().await;
    test_db.cleanup().await;
}

async fn decisions_nested_past_the_limit_fail(db: Db) {
    let limits = StepTypeLimits {
        max_decision_depth: 1,
        ..StepTypeLimits::default()
    };
    let (test_db, tasker, worker) = setup(db, Some(limits)).await;
    let d = run(
        &tasker,
        "nested_decisions",
        json!({"outer": ["inner_decision"], "inner": ["leaf_a"]}),
    )
    .await;
    assert_eq!(d.task.state, "error", "{d:#?}");
    let error = step(&d, "inner_decision").last_error.clone().unwrap_or_default();
    assert_eq!(error["error_type"], "invalid_decision");
    assert!(
        error["message"].as_str().unwrap_or_default().contains("limit is 1"),
        "{error}"
    );
    assert!(d.step("leaf_a").is_none());
    worker.stop().await;
    test_db.cleanup().await;
}

async fn batches_split_the_items_and_converge_on_the_total(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    let d = run(&tasker, "batch_totals", json!({"total": 2_500, "batch_size": 1_000})).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    assert_eq!(
        step_names(&d),
        strings(&[
            "aggregate",
            "analyze",
            "process_batch_001",
            "process_batch_002",
            "process_batch_003"
        ])
    );
    let aggregate = step(&d, "aggregate").results.clone().unwrap_or_default();
    assert_eq!(aggregate["count"], 2_500);
    assert_eq!(aggregate["sum"], (0..2_500u64).sum::<u64>());
    assert_eq!(aggregate["workers"], 3);
    let last = step(&d, "process_batch_003");
    assert_eq!(last.created_by.as_deref(), Some("analyze"));
    let batch = last.batch.clone().unwrap_or_default();
    assert_eq!(batch["batch_id"], "003");
    assert_eq!(batch["start_cursor"], 2_000);
    assert_eq!(batch["end_cursor"], 2_500);
    assert_eq!(batch["batch_size"], 500);
    assert_eq!(batch["is_no_op"], false);
    assert_eq!(batch["batch_config"]["checkpoint_interval"], 100);
    assert_eq!(d.task.total_steps, 5);
    // The batchable step's result keeps its outcome but not the cursors (each instance has its
    // own), so the instances reading it as a dependency do not each read every cursor.
    let analyze = step(&d, "analyze").results.clone().unwrap_or_default();
    assert_eq!(analyze["total"], 2_500);
    assert_eq!(analyze["batch_processing_outcome"]["worker_count"], 3);
    assert!(
        analyze["batch_processing_outcome"].get("cursor_configs").is_none(),
        "{analyze}"
    );
    worker.stop().await;
    test_db.cleanup().await;
}

async fn no_batches_runs_one_no_op_worker(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    let d = run(&tasker, "batch_totals", json!({"total": 0})).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    assert_eq!(step_names(&d), strings(&["aggregate", "analyze", "process_batch_000"]));
    let placeholder = step(&d, "process_batch_000");
    assert_eq!(
        placeholder.batch.as_ref().map(|b| b["is_no_op"].clone()),
        Some(json!(true))
    );
    assert_eq!(
        placeholder.results.as_ref().map(|r| r["no_op"].clone()),
        Some(json!(true))
    );
    let aggregate = step(&d, "aggregate").results.clone().unwrap_or_default();
    assert_eq!(
        (aggregate["count"].clone(), aggregate["workers"].clone()),
        (json!(0), json!(1))
    );
    worker.stop().await;
    test_db.cleanup().await;
}

async fn a_thousand_workers_from_one_batchable_step(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    let d = run(&tasker, "batch_totals", json!({"total": 1_000, "batch_size": 1})).await;
    assert_eq!(d.task.state, "complete", "{}", d.task.state);
    assert_eq!(d.steps.len(), 1_002);
    assert_eq!(d.task.total_steps, 1_002);
    assert!(d.step("process_batch_0001").is_some() && d.step("process_batch_1000").is_some());
    let aggregate = step(&d, "aggregate").results.clone().unwrap_or_default();
    assert_eq!(aggregate["workers"], 1_000);
    assert_eq!(aggregate["count"], 1_000);
    assert_eq!(aggregate["sum"], (0..1_000u64).sum::<u64>());
    worker.stop().await;
    test_db.cleanup().await;
}

async fn invalid_batch_outcomes_fail_the_batchable_step(db: Db) {
    let limits = StepTypeLimits {
        max_batch_workers: 5,
        ..StepTypeLimits::default()
    };
    let (test_db, tasker, worker) = setup(db, Some(limits)).await;
    for (context, expect) in [
        (json!({"total": 30, "batch_size": 10, "bad": "count"}), "worker_count 4"),
        (
            json!({"total": 30, "batch_size": 10, "bad": "worker"}),
            "'analyze' is not a batch_worker",
        ),
        (
            json!({"total": 60, "batch_size": 10}),
            "asked for 6 workers; the limit is 5",
        ),
    ] {
        let d = run(&tasker, "batch_totals", context.clone()).await;
        assert_eq!(d.task.state, "error", "{context}: {d:#?}");
        assert_eq!(step_names(&d), strings(&["analyze"]), "{context}");
        let error = step(&d, "analyze").last_error.clone().unwrap_or_default();
        assert_eq!(error["error_type"], "invalid_batch_outcome", "{context}");
        assert!(
            error["message"].as_str().unwrap_or_default().contains(expect),
            "{context}: {error}"
        );
    }
    worker.stop().await;
    test_db.cleanup().await;
}

async fn a_retried_worker_resumes_from_its_checkpoint(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    let task = create(
        &tasker,
        NS,
        "batch_totals",
        json!({"total": 2_500, "batch_size": 1_000, "fail_once": true}),
    )
    .await;
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    let aggregate = step(&d, "aggregate").results.clone().unwrap_or_default();
    assert_eq!(aggregate["count"], 2_500);
    assert_eq!(aggregate["sum"], (0..2_500u64).sum::<u64>());
    for name in ["process_batch_001", "process_batch_002", "process_batch_003"] {
        let s = step(&d, name);
        assert_eq!(s.attempts, 2, "{name} failed once and resumed");
        let checkpoint = s.checkpoint.clone().unwrap_or_default();
        assert_eq!(checkpoint["attempt"], 2, "{name}: {checkpoint}");
        assert_eq!(
            checkpoint["cursor"],
            s.batch.as_ref().map_or(json!(null), |b| b["end_cursor"].clone())
        );
    }
    // Every item exactly once, across both attempts of every worker.
    let mut items = LEDGER.lock().unwrap().remove(&task).unwrap_or_default();
    items.sort_unstable();
    assert_eq!(items, (0..2_500u64).collect::<Vec<_>>());
    worker.stop().await;
    test_db.cleanup().await;
}

async fn checkpoints_are_fenced_by_attempt(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    let d = run(&tasker, "batch_totals", json!({"total": 10, "batch_size": 10})).await;
    let done = step(&d, "process_batch_001");
    // The step is complete: no attempt holds it any more.
    let err = tasker
        .save_checkpoint(done.step_uuid, done.attempts, json!({"cursor": 5}))
        .await
        .expect_err("fenced");
    assert!(matches!(err, TaskerError::Fenced(_)), "{err}");
    assert_eq!(err.code(), "fenced");
    // Bad shapes are refused before any write, naming the field.
    for (bad, expect) in [
        (json!({"items_done": 3}), "'cursor' is required"),
        (json!({"cursor": 1, "items_done": -1}), "'items_done'"),
        (json!({"cursor": 1, "extra": true}), "unknown field 'extra'"),
        (json!([1]), "expected an object"),
    ] {
        let err = tasker
            .save_checkpoint(done.step_uuid, done.attempts, bad.clone())
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, TaskerError::InvalidArgument(m) if m.contains(expect)),
            "{bad}: {err}"
        );
    }
    let after = tasker.get_task(d.task.task_uuid).await.expect("task");
    assert_eq!(
        step(&after, "process_batch_001").checkpoint,
        done.checkpoint,
        "nothing was overwritten"
    );
    worker.stop().await;
    test_db.cleanup().await;
}

async fn cancelling_a_task_cancels_its_created_steps(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    // 20 slow instances on 4 slots: most are still enqueued when the task is cancelled.
    let task = create(
        &tasker,
        NS,
        "batch_totals",
        json!({"total": 20, "batch_size": 1, "slow_ms": 300}),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tasker.get_task(task).await.expect("task").steps.len() < 22 {
        assert!(std::time::Instant::now() < deadline, "the instances were never created");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tasker.cancel_task(task).await.expect("cancel");
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "cancelled");
    // Give the running instances time to return: their results are discarded.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let d = tasker.get_task(task).await.expect("task");
    let cancelled = d.steps.iter().filter(|s| s.state == "cancelled").count();
    assert!(cancelled >= 15, "{cancelled} of 22 cancelled");
    for s in &d.steps {
        assert!(
            matches!(s.state.as_str(), "cancelled" | "complete"),
            "{} is {}",
            s.name,
            s.state
        );
    }
    assert_eq!(step(&d, "aggregate").state, "cancelled");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn operators_recover_created_steps_like_static_ones(db: Db) {
    let (test_db, tasker, worker) = setup(db, None).await;
    let task = create(
        &tasker,
        NS,
        "batch_totals",
        json!({"total": 30, "batch_size": 10, "broken_batch": "002"}),
    )
    .await;
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "error", "{d:#?}");
    assert_eq!(step(&d, "process_batch_002").state, "error");
    assert_eq!(step(&d, "aggregate").state, "pending");
    let dlq = tasker
        .list_dlq(&tasker_core::DlqFilter {
            task_uuid: Some(task),
            ..Default::default()
        })
        .await
        .expect("dlq");
    assert_eq!(dlq.len(), 1);
    // The operator supplies the broken batch's result; the convergence adds it up.
    tasker
        .complete_step_manually(
            task,
            "process_batch_002",
            json!({"count": 10, "sum": (10..20u64).sum::<u64>()}),
            Value::Null,
            "ops",
            "recomputed by hand",
        )
        .await
        .expect("complete by hand");
    let d = wait(&tasker, task).await;
    assert_eq!(d.task.state, "complete", "{d:#?}");
    let aggregate = step(&d, "aggregate").results.clone().unwrap_or_default();
    assert_eq!(aggregate["sum"], (0..30u64).sum::<u64>());
    let entry = tasker.get_dlq_entry(dlq[0].entry_uuid).await.expect("entry");
    assert_eq!(
        (entry.status.as_str(), entry.resolved_by.as_deref()),
        ("manually_resolved", Some("ops"))
    );
    worker.stop().await;
    test_db.cleanup().await;
}

#[test]
fn templates_with_misshapen_step_types_are_refused_naming_step_and_field() {
    let template = |steps: &str| format!("name: t\nnamespace_name: ns\nversion: 1.0.0\nsteps:\n{steps}");
    let cases = [
        (
            "  - { name: a, handler: { callable: x } }\n  - { name: w, type: batch_worker, depends_on: [a], handler: { callable: x } }\n",
            ("w", "dependencies", "exactly one step, a batchable one"),
        ),
        (
            "  - { name: b, type: batchable, handler: { callable: x } }\n",
            ("b", "type", "needs a batch_worker step"),
        ),
        (
            "  - { name: b, type: batchable, handler: { callable: x } }\n  - { name: w, type: batch_worker, depends_on: [b], handler: { callable: x } }\n  - { name: s, depends_on: [w], handler: { callable: x } }\n",
            ("s", "dependencies", "only a deferred_convergence step may depend on the batch_worker 'w'"),
        ),
        (
            "  - { name: b, type: batchable, handler: { callable: x } }\n  - { name: w, type: batch_worker, depends_on: [b], handler: { callable: x } }\n  - { name: w_001, handler: { callable: x } }\n",
            ("w_001", "name", "instance of the batch_worker 'w'"),
        ),
    ];
    for (steps, (step, field, message)) in cases {
        let err = tasker_core::template::parse_str(&template(steps), None, "test").expect_err("refused");
        let TaskerError::Template(problems) = &err else {
            panic!("{err}")
        };
        assert!(
            problems.iter().any(|p| p.step.as_deref() == Some(step)
                && p.field.as_deref() == Some(field)
                && p.message.contains(message)),
            "{steps}: {problems:#?}"
        );
    }
    // A convergence on steps that always exist loads unchanged (Tasker's tree workflow does that).
    let plain = template(
        "  - { name: a, handler: { callable: x } }\n  - { name: c, type: deferred_convergence, depends_on: [a], handler: { callable: x } }\n",
    );
    let loaded = tasker_core::template::parse_str(&plain, None, "test").expect("loads");
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    // Tasker's older name for convergence loads.
    let ok = template(
        "  - { name: d, type: decision, handler: { callable: x } }\n  - { name: b1, depends_on: [d], handler: { callable: x } }\n  - { name: c, type: deferred, depends_on: [b1], handler: { callable: x } }\n",
    );
    let loaded = tasker_core::template::parse_str(&ok, None, "test").expect("loads");
    assert_eq!(
        loaded.template.steps[2].step_type,
        tasker_core::template::StepType::DeferredConvergence
    );
}

#[test]
fn the_cursor_builder_splits_items_into_batches() {
    let cursors = batch_cursors(2_500, 1_000).expect("cursors");
    let ids: Vec<&str> = cursors.iter().map(|c| c.batch_id.as_str()).collect();
    assert_eq!(ids, ["001", "002", "003"]);
    assert_eq!(
        cursors
            .iter()
            .map(|c| (c.start_cursor.clone(), c.end_cursor.clone(), c.batch_size))
            .collect::<Vec<_>>(),
        [
            (json!(0), json!(1000), 1000),
            (json!(1000), json!(2000), 1000),
            (json!(2000), json!(2500), 500)
        ]
    );
    assert!(batch_cursors(0, 10).expect("empty").is_empty());
    assert_eq!(batch_cursors(1_000, 1).expect("many")[999].batch_id, "1000");
    assert!(batch_cursors(10, 0).is_err());
    assert!(batch_cursors(u64::MAX, 1).is_err(), "refused, not built");
    let huge = batch_cursors(u64::MAX, u64::MAX - 1).expect("two batches");
    assert_eq!(huge[1].end_cursor, json!(u64::MAX));
}
