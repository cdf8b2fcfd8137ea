//! Events on both backends: the lifecycle events each path emits, in order; nothing for a
//! change that rolled back; subscriber groups that resume after a crash, share events among
//! members and get everything per group; domain events declared by templates; dead letters;
//! retention.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tasker_core::events::{Event, SubscriptionOptions};
use tasker_core::handler::HandlerRegistry;
use tasker_core::{StepFailure, Tasker, TaskerError};
use uuid::Uuid;

on_both_backends!(
    each_lifecycle_path_emits_the_catalogs_events_in_order,
    a_completion_whose_transaction_fails_emits_nothing,
    a_member_that_crashed_is_replaced_and_nothing_is_lost,
    a_restarted_member_resumes_where_its_group_left_off,
    two_groups_each_get_every_event,
    members_of_one_group_split_the_events,
    domain_events_are_published_when_their_condition_holds,
    bad_publications_fail_the_step,
    a_failing_subscriber_is_retried_then_its_event_is_dead_lettered,
    retention_prunes_only_what_every_group_acknowledged,
    a_rust_subscriber_runs_in_a_runner,
);

const NS: &str = "event_tests";

fn registry() -> HandlerRegistry {
    let mut r = HandlerRegistry::new();
    r.register_fn("work", |e| async move { Ok(json!({"value": e.step_name})) });
    r.register_fn("boom", |_| async move {
        Err::<serde_json::Value, _>(StepFailure::permanent("Boom", "it broke"))
    });
    r.register_fn("charge", |e| async move {
        match e.task_context["card"].as_str() {
            Some("declined") => {
                e.publish("payment.declined", json!({"reason": "insufficient funds"}));
                Err(StepFailure::permanent("CardDeclined", "card declined"))
            }
            Some("undeclared") => {
                e.publish("payment.refunded", json!({}));
                Ok(json!({}))
            }
            Some("bad_payload") => {
                e.publish("payment.charged", json!({"amount": "ten"}));
                Ok(json!({}))
            }
            _ => {
                e.publish("payment.charged", json!({"amount": 10.5}));
                Ok(json!({"charge_id": "ch-1"}))
            }
        }
    });
    r.register_fn("audit", |e| async move {
        e.publish("payment.audited", json!({"ok": true}));
        Ok(json!({"audited": true}))
    });
    r.register_fn("poison", |_| async move { Ok(json!({"poison": true})) });
    r
}

fn fixtures_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events")
}

async fn setup(db: Db) -> (TestDb, Tasker, RunningWorker) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    tasker
        .register_templates(fixtures_dir())
        .await
        .expect("register fixtures");
    let worker = RunningWorker::start(&tasker, &[NS], 4, registry()).await;
    (test_db, tasker, worker)
}

fn options(group: &str, patterns: &[&str]) -> SubscriptionOptions {
    let mut o = SubscriptionOptions::new(group, patterns.iter().map(|p| p.to_string()).collect());
    o.poll_interval = Duration::from_millis(20);
    o.lease = Duration::from_millis(1500);
    o.backoff = Duration::from_millis(10);
    o
}

/// Acks every delivery until `done` says the collected events are complete (or 20 s pass).
async fn collect(sub: &tasker_core::events::EventSubscription, mut done: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(&got) && tokio::time::Instant::now() < deadline {
        if let Some(d) = sub.poll_async(Duration::from_millis(200)).await.expect("poll") {
            sub.ack(d.delivery_id).expect("ack");
            got.push(d.event);
        }
    }
    got
}

fn of_task(events: &[Event], task: Uuid) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.task_uuid == Some(task))
        .map(|e| match e.step_uuid {
            Some(_) => format!("{}:{}", e.name, e.payload["step_name"].as_str().unwrap_or("?")),
            None => e.name.clone(),
        })
        .collect()
}

fn finished(task: Uuid, last: &'static str) -> impl FnMut(&[Event]) -> bool {
    move |got: &[Event]| got.iter().any(|e| e.task_uuid == Some(task) && e.name == last)
}

async fn each_lifecycle_path_emits_the_catalogs_events_in_order(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let sub = tasker
        .subscribe(options("audit", &["task.*", "step.*", "dlq.*"]))
        .await
        .expect("join");

    let task = create(&tasker, NS, "pair", json!({})).await;
    assert_eq!(wait(&tasker, task).await.task.state, "complete");
    let got = collect(&sub, finished(task, "task.completed")).await;
    assert_eq!(
        of_task(&got, task),
        [
            "task.created",
            "task.started",
            "step.enqueued:a",
            "step.started:a",
            "step.completed:a",
            "step.enqueued:b",
            "step.started:b",
            "step.completed:b",
            "task.completed",
        ]
    );
    let completed = got.iter().find(|e| e.name == "task.completed").expect("task.completed");
    assert_eq!(
        (
            completed.payload["namespace"].as_str(),
            completed.payload["name"].as_str()
        ),
        (Some(NS), Some("pair"))
    );
    assert_eq!(completed.payload["to_state"], "complete");
    assert_eq!(completed.payload["total_steps"], 2);
    let a_done = got
        .iter()
        .find(|e| e.name == "step.completed" && e.payload["step_name"] == "a");
    assert_eq!(a_done.map(|e| e.payload["result"].clone()), Some(json!({"value": "a"})));
    // Every payload satisfies its catalog schema; ids are v7 and unique; positions increase.
    for e in &got {
        let info = tasker_core::events::event_info(&e.name).expect("catalog event");
        let v = jsonschema::validator_for(&info.payload_schema).expect("schema");
        assert!(v.is_valid(&e.payload), "{}: {}", e.name, e.payload);
        assert_eq!(e.event_id.get_version_num(), 7);
        assert_eq!(e.delivery, "durable");
    }
    let ids: HashSet<Uuid> = got.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), got.len());

    // A permanent failure.
    let failed = create(&tasker, NS, "broken", json!({})).await;
    assert_eq!(wait(&tasker, failed).await.task.state, "error");
    let got = collect(&sub, finished(failed, "dlq.entry_created")).await;
    assert_eq!(
        of_task(&got, failed),
        [
            "task.created",
            "task.started",
            "step.enqueued:boom",
            "step.started:boom",
            "step.failed:boom",
            "task.failed",
            "dlq.entry_created",
        ]
    );
    let entry = got.iter().find(|e| e.name == "dlq.entry_created").expect("dlq event");
    assert_eq!(entry.payload["reason"], "permanent_failure");
    assert_eq!(entry.category, "dlq");
    let step_failed = got.iter().find(|e| e.name == "step.failed").expect("step.failed");
    assert_eq!(step_failed.payload["error"]["error_type"], "Boom");
    assert!(
        step_failed.payload["error"].get("metadata").is_none()
            && step_failed.payload["error"].get("backtrace").is_none()
    );

    // Operator paths: resolve the failed task by hand.
    tasker
        .resolve_task(failed, "alice", "handled elsewhere")
        .await
        .expect("resolve");
    let got = collect(&sub, finished(failed, "dlq.entry_resolved")).await;
    assert_eq!(of_task(&got, failed), ["task.resolved", "dlq.entry_resolved"]);
    let resolved = got.iter().find(|e| e.name == "dlq.entry_resolved").expect("resolved");
    assert_eq!(resolved.payload["status"], "manually_resolved");

    // Cancelling a task whose steps wait: no worker serves the queue now.
    let workers = tasker.subscribe(options("workers", &["worker.*"])).await.expect("join");
    worker.stop().await;
    let got = collect(&workers, |g: &[Event]| g.iter().any(|e| e.name == "worker.stopped")).await;
    let stopped = got.iter().find(|e| e.name == "worker.stopped").expect("worker.stopped");
    assert!(stopped.payload["worker_id"].is_string(), "{}", stopped.payload);
    workers.close().await.expect("close");
    let cancelled = create(&tasker, NS, "pair", json!({})).await;
    tasker.cancel_task(cancelled).await.expect("cancel");
    let got = collect(&sub, finished(cancelled, "step.cancelled")).await;
    let names = of_task(&got, cancelled);
    assert_eq!(
        names[..4],
        ["task.created", "task.started", "step.enqueued:a", "task.cancelled"]
    );
    let mut rest = names[4..].to_vec();
    rest.sort();
    // Both steps are cancelled; the collector may stop at the first.
    assert!(
        rest.first().is_some_and(|n| n.starts_with("step.cancelled:")),
        "{names:?}"
    );
    sub.close().await.expect("close");
    test_db.cleanup().await;
}

async fn a_completion_whose_transaction_fails_emits_nothing(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let sub = tasker.subscribe(options("audit", &["*"])).await.expect("join");
    // The database refuses any step result containing "poison": the completion's transaction
    // rolls back (the engine then fails the step in a transaction of its own).
    match db {
        Db::Sqlite => sqlite_exec(
            &test_db.url,
            "CREATE TRIGGER refuse_poison BEFORE UPDATE OF results ON tasker_steps \
             WHEN NEW.results LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poisoned result'); END",
        ),
        Db::Postgres | Db::PostgresRabbitmq => {
            pg_exec(
                &test_db.url,
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
                   IF NEW.results::text LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned result' USING ERRCODE = '22023'; END IF; \
                   RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .await;
            pg_exec(
                &test_db.url,
                "CREATE TRIGGER refuse_poison BEFORE UPDATE ON tasker_steps FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
            )
            .await;
        }
    }
    tasker
        .register_template(
            &tasker_core::template::parse_str(
                "name: poisoned\nnamespace_name: event_tests\nversion: 1.0.0\nsteps:\n  - { name: p, handler: { callable: poison }, retry: { max_attempts: 1 } }\n",
                None,
                "test",
            )
            .expect("template"),
        )
        .await
        .expect("register");
    let task = create(&tasker, NS, "poisoned", json!({})).await;
    let detail = wait(&tasker, task).await;
    assert_eq!(detail.task.state, "error", "{detail:#?}");
    let got = collect(&sub, finished(task, "task.failed")).await;
    let names = of_task(&got, task);
    assert!(!names.iter().any(|n| n.starts_with("step.completed")), "{names:?}");
    assert!(names.contains(&"step.failed:p".to_owned()), "{names:?}");
    // The refused attempt was isolated and failed as `outcome_rejected`, not retried.
    assert_eq!(
        names.iter().filter(|n| n.starts_with("step.started")).count(),
        1,
        "{names:?}"
    );
    let p = tasker.get_step(task, "p").await.expect("step");
    assert_eq!(
        p.step.last_error.as_ref().map(|e| e["error_type"].clone()),
        Some(json!("outcome_rejected"))
    );
    sub.close().await.expect("close");
    worker.stop().await;
    test_db.cleanup().await;
}

fn sqlite_exec(url: &str, sql: &str) {
    let path = url.trim_start_matches("sqlite://");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
            path,
            sql,
        ])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn pg_exec(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sql).execute(&mut conn).await.expect("exec");
}

/// Creates `n` pair tasks and waits for them.
async fn run_tasks(tasker: &Tasker, n: usize) -> Vec<Uuid> {
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tasks.push(create(tasker, NS, "pair", json!({})).await);
    }
    for &t in &tasks {
        assert_eq!(wait(tasker, t).await.task.state, "complete");
    }
    tasks
}

fn completed_all(tasks: &[Uuid]) -> impl FnMut(&[Event]) -> bool + '_ {
    move |got: &[Event]| {
        let done: HashSet<Uuid> = got
            .iter()
            .filter(|e| e.name == "task.completed")
            .filter_map(|e| e.task_uuid)
            .collect();
        tasks.iter().all(|t| done.contains(t))
    }
}

/// Per task, the names in delivery order, checked against the lifecycle's order.
fn assert_in_order_per_task(events: &[Event]) {
    let mut by_task: BTreeMap<Uuid, Vec<&Event>> = BTreeMap::new();
    for e in events {
        if let Some(t) = e.task_uuid {
            by_task.entry(t).or_default().push(e);
        }
    }
    for (task, list) in by_task {
        let positions: Vec<i64> = list.iter().filter_map(|e| e.position).collect();
        let mut sorted = positions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let mut seen = positions.clone();
        seen.dedup();
        assert_eq!(seen, sorted, "task {task}: positions out of order");
    }
}

async fn a_member_that_crashed_is_replaced_and_nothing_is_lost(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let first = tasker.subscribe(options("billing", &["*"])).await.expect("join");
    let tasks = run_tasks(&tasker, 8).await;
    // Handle a part, then die without recording anything.
    let mut handled: Vec<Event> = Vec::new();
    while handled.len() < 20 {
        if let Some(d) = first.poll_async(Duration::from_secs(5)).await.expect("poll") {
            first.ack(d.delivery_id).expect("ack");
            handled.push(d.event);
        }
    }
    first.abandon();
    // A new member takes over once the dead one's lease runs out, from the last recorded
    // position: at least once, so it may see some of what the first handled again.
    let second = tasker.subscribe(options("billing", &["*"])).await.expect("join");
    let rest = collect(&second, completed_all(&tasks)).await;
    let mut all: Vec<Event> = handled.clone();
    all.extend(rest.iter().cloned());
    let ids: HashSet<Uuid> = all.iter().map(|e| e.event_id).collect();
    // 9 lifecycle events per pair task.
    let expected = 9 * tasks.len();
    let mine: HashSet<Uuid> = all
        .iter()
        .filter(|e| e.task_uuid.is_some_and(|t| tasks.contains(&t)))
        .map(|e| e.event_id)
        .collect();
    assert_eq!(
        mine.len(),
        expected,
        "every event at least once ({} deliveries)",
        all.len()
    );
    assert!(ids.len() <= all.len());
    assert_in_order_per_task(&rest);
    second.close().await.expect("close");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn a_restarted_member_resumes_where_its_group_left_off(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let sub = tasker
        .subscribe(options("mailer", &["task.completed"]))
        .await
        .expect("join");
    let before = run_tasks(&tasker, 3).await;
    let got = collect(&sub, completed_all(&before)).await;
    assert_eq!(got.len(), 3, "only task.completed, once each");
    sub.close().await.expect("close");
    // While nobody listens, more work happens; the group keeps its place.
    let during = run_tasks(&tasker, 3).await;
    let sub = tasker
        .subscribe(options("mailer", &["task.completed"]))
        .await
        .expect("rejoin");
    let got = collect(&sub, completed_all(&during)).await;
    let tasks: Vec<Uuid> = got.iter().filter_map(|e| e.task_uuid).collect();
    assert_eq!(tasks.len(), 3, "exactly the new ones: {got:#?}");
    assert!(tasks.iter().all(|t| during.contains(t)));
    sub.close().await.expect("close");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn two_groups_each_get_every_event(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let a = tasker.subscribe(options("analytics", &["*"])).await.expect("join");
    let b = tasker.subscribe(options("search_index", &["*"])).await.expect("join");
    let tasks = run_tasks(&tasker, 5).await;
    let (got_a, got_b) = tokio::join!(collect(&a, completed_all(&tasks)), collect(&b, completed_all(&tasks)));
    let ids = |v: &[Event]| v.iter().map(|e| e.event_id).collect::<HashSet<_>>();
    assert_eq!(ids(&got_a).len(), 9 * tasks.len());
    assert_eq!(ids(&got_a), ids(&got_b));
    a.close().await.expect("close");
    b.close().await.expect("close");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn members_of_one_group_split_the_events(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let a = tasker.subscribe(options("shared", &["*"])).await.expect("join");
    let b = tasker.subscribe(options("shared", &["*"])).await.expect("join");
    // Let the group balance (a member re-checks its share every third of the lease).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let tasks = run_tasks(&tasker, 24).await;
    let expected = 9 * tasks.len();
    let seen = std::sync::Mutex::new(Vec::<(char, Event)>::new());
    async fn run(
        who: char,
        sub: &tasker_core::events::EventSubscription,
        seen: &std::sync::Mutex<Vec<(char, Event)>>,
        expected: usize,
    ) {
        let total = || seen.lock().map(|v| v.len()).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while total() < expected && tokio::time::Instant::now() < deadline {
            if let Some(d) = sub.poll_async(Duration::from_millis(100)).await.expect("poll") {
                sub.ack(d.delivery_id).expect("ack");
                seen.lock().expect("lock").push((who, d.event));
            }
        }
    }
    tokio::join!(run('a', &a, &seen, expected), run('b', &b, &seen, expected));
    let seen = seen.lock().expect("lock").clone();
    let mut by_id: HashMap<Uuid, Vec<char>> = HashMap::new();
    for (who, e) in &seen {
        by_id.entry(e.event_id).or_default().push(*who);
    }
    assert_eq!(by_id.len(), expected, "none lost");
    assert!(by_id.values().all(|w| w.len() == 1), "none handled twice");
    let from_a = seen.iter().filter(|(w, _)| *w == 'a').count();
    assert!(
        from_a > 0 && from_a < expected,
        "both members took part ({from_a} of {expected})"
    );
    let events: Vec<Event> = seen.into_iter().map(|(_, e)| e).collect();
    assert_in_order_per_task(&events);
    a.close().await.expect("close");
    b.close().await.expect("close");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn domain_events_are_published_when_their_condition_holds(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let sub = tasker.subscribe(options("ledger", &["payment.*"])).await.expect("join");
    let everything = tasker.subscribe(options("everything", &["*"])).await.expect("join");
    let fast = tasker.subscribe_fast(vec!["payment.*".into()]);

    let paid = create(&tasker, NS, "payments", json!({"card": "ok"})).await;
    assert_eq!(wait(&tasker, paid).await.task.state, "complete");
    let got = collect(&sub, |g: &[Event]| g.len() >= 2).await;
    let names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["payment.charged", "payment.audited"]);
    assert_eq!(got[0].payload, json!({"amount": 10.5}));
    assert_eq!(got[0].category, "domain");
    assert_eq!(got[0].task_uuid, Some(paid));
    assert_eq!(got[0].namespace.as_deref(), Some(NS));
    // A step's domain events follow its own completion, before the task's.
    let all = collect(&everything, finished(paid, "task.completed")).await;
    let order: Vec<String> = all
        .iter()
        .filter(|e| e.task_uuid == Some(paid))
        .map(|e| e.name.clone())
        .filter(|n| n.starts_with("payment.") || n == "step.completed" || n == "task.completed")
        .collect();
    assert_eq!(
        order,
        [
            "step.completed",
            "payment.charged",
            "step.completed",
            "payment.audited",
            "task.completed"
        ]
    );
    everything.close().await.expect("close");

    let declined = create(&tasker, NS, "payments", json!({"card": "declined"})).await;
    assert_eq!(wait(&tasker, declined).await.task.state, "error");
    // payment.declined is fast: broadcast in this process, not in the log.
    let mut fast_names = Vec::new();
    while let Some(e) = fast.next(Duration::from_secs(2)).await.expect("fast") {
        fast_names.push(e.name.clone());
        if e.name == "payment.declined" {
            assert_eq!(e.payload["reason"], "insufficient funds");
            assert_eq!(e.delivery, "fast");
            assert_eq!(e.namespace.as_deref(), Some(NS));
            break;
        }
    }
    assert!(fast_names.contains(&"payment.declined".to_owned()), "{fast_names:?}");
    // Anything else in the log for the declined task (nothing: its audit step never ran).
    let started = std::time::Instant::now();
    let more = collect(&sub, |_| started.elapsed() > Duration::from_millis(500)).await;
    assert!(
        !more.iter().any(|e| e.name == "payment.declined"),
        "fast events are not in the log: {more:?}"
    );
    sub.close().await.expect("close");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn bad_publications_fail_the_step(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    for (card, error_type, words) in [
        ("undeclared", "event_not_declared", "payment.refunded"),
        ("bad_payload", "event_payload_invalid", "amount"),
    ] {
        let task = create(&tasker, NS, "payments", json!({"card": card})).await;
        let detail = wait(&tasker, task).await;
        assert_eq!(detail.task.state, "error");
        let charge = tasker.get_step(task, "charge").await.expect("step");
        let error = charge.step.last_error.clone().unwrap_or(Value::Null);
        assert_eq!(error["error_type"], error_type, "{error}");
        assert!(error["message"].as_str().is_some_and(|m| m.contains(words)), "{error}");
    }
    // Registration refuses a step that publishes an undeclared event.
    let bad = tasker_core::template::parse_str(
        "name: sloppy\nnamespace_name: event_tests\nversion: 1.0.0\n\
         domain_events: [{name: order.placed}]\n\
         steps:\n  - name: s\n    handler: { callable: work }\n    publishes_events: [{name: order.shipped}]\n",
        None,
        "test",
    );
    let err = match bad {
        Err(e) => e,
        Ok(t) => tasker.register_template(&t).await.expect_err("refused"),
    };
    let TaskerError::Template(problems) = err else {
        panic!("{err}")
    };
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("order.shipped") && p.step.as_deref() == Some("s")),
        "{problems:?}"
    );
    worker.stop().await;
    test_db.cleanup().await;
}

async fn a_failing_subscriber_is_retried_then_its_event_is_dead_lettered(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let mut o = options("flaky_hook", &["task.*"]);
    o.max_attempts = 3;
    let sub = tasker.subscribe(o).await.expect("join");
    let tasks = run_tasks(&tasker, 2).await;
    let mut attempts: HashMap<Uuid, Vec<u32>> = HashMap::new();
    let mut acked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Every task.created fails; everything else succeeds.
    while acked.iter().filter(|e: &&Event| e.name == "task.completed").count() < 2
        && tokio::time::Instant::now() < deadline
    {
        if let Some(d) = sub.poll_async(Duration::from_millis(200)).await.expect("poll") {
            if d.event.name == "task.created" {
                attempts.entry(d.event.event_id).or_default().push(d.attempt);
                sub.fail(d.delivery_id, "webhook returned 500").expect("fail");
            } else {
                sub.ack(d.delivery_id).expect("ack");
                acked.push(d.event);
            }
        }
    }
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts.values().all(|a| a == &[1, 2, 3]), "{attempts:?}");
    sub.close().await.expect("close");
    let dead = tasker.event_dead_letters(Some("flaky_hook"), 10).await.expect("dead");
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert!(dead
        .iter()
        .all(|d| d.name == "task.created" && d.attempts == 3 && d.error == "webhook returned 500"));
    assert!(dead.iter().all(|d| d.task_uuid.is_some_and(|t| tasks.contains(&t))));
    let groups = tasker.event_groups().await.expect("groups");
    let g = groups.iter().find(|g| g.group == "flaky_hook").expect("group");
    assert_eq!((g.dead_letters, g.lag), (2, 0), "{g:?}");
    worker.stop().await;
    test_db.cleanup().await;
}

async fn retention_prunes_only_what_every_group_acknowledged(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = Tasker::connect_with(tasker_core::TaskerOptions {
        database_url: Some(test_db.url.clone()),
        events: tasker_core::events::EventOptions {
            retention: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("connect");
    tasker.register_templates(fixtures_dir()).await.expect("register");
    let worker = RunningWorker::start(&tasker, &[NS], 4, registry()).await;
    let fast_reader = tasker.subscribe(options("fast_reader", &["*"])).await.expect("join");
    let slow_reader = tasker.subscribe(options("slow_reader", &["*"])).await.expect("join");
    let tasks = run_tasks(&tasker, 2).await;
    let got = collect(&fast_reader, completed_all(&tasks)).await;
    assert_eq!(got.len(), 18);
    fast_reader.close().await.expect("close");
    // The slow group has read nothing: nothing may go.
    assert_eq!(tasker.prune_events().await.expect("prune"), 0);
    let lagging = tasker.event_groups().await.expect("groups");
    let slow = lagging.iter().find(|g| g.group == "slow_reader").expect("slow");
    assert_eq!(slow.lag, 18);
    assert!(slow.oldest_pending_at.is_some());
    let got = collect(&slow_reader, completed_all(&tasks)).await;
    assert_eq!(got.len(), 18);
    slow_reader.close().await.expect("close");
    assert_eq!(tasker.prune_events().await.expect("prune"), 18);
    worker.stop().await;
    test_db.cleanup().await;
}

/// Records what it handles; fails each `task.created` once.
struct Recorder {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, u32)>>>,
    failed_once: std::sync::Mutex<HashSet<Uuid>>,
}

#[async_trait::async_trait]
impl tasker_core::events::Subscriber for Recorder {
    fn group(&self) -> String {
        "recorder".into()
    }
    fn patterns(&self) -> Vec<String> {
        vec!["task.*".into()]
    }
    async fn handle(&self, event: &Event) -> Result<(), String> {
        if event.name == "task.created" && self.failed_once.lock().expect("lock").insert(event.event_id) {
            return Err("first try fails".into());
        }
        self.seen.lock().expect("lock").push((event.name.clone(), 0));
        Ok(())
    }
}

async fn a_rust_subscriber_runs_in_a_runner(db: Db) {
    let (test_db, tasker, worker) = setup(db).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = Recorder {
        seen: seen.clone(),
        failed_once: Default::default(),
    };
    let mut o = options("ignored", &["ignored"]);
    o.backoff = Duration::from_millis(10);
    let runner = tasker_core::events::SubscriberRunner::start(&tasker, recorder, Some(o))
        .await
        .expect("start");
    let task = create(&tasker, NS, "pair", json!({})).await;
    assert_eq!(wait(&tasker, task).await.task.state, "complete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("lock").len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runner.stop().await.expect("stop");
    let names: Vec<String> = seen.lock().expect("lock").iter().map(|(n, _)| n.clone()).collect();
    // task.created failed once and came back, before the task's later events (per-task order).
    assert_eq!(names, ["task.created", "task.started", "task.completed"]);
    let groups = tasker.event_groups().await.expect("groups");
    assert!(
        groups.iter().any(|g| g.group == "recorder" && g.patterns == ["task.*"]),
        "{groups:?}"
    );
    worker.stop().await;
    test_db.cleanup().await;
}
