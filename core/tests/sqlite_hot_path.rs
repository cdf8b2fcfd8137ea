//! The store primitives keep their row-by-row meaning when a batch runs as one statement: which
//! rows change, what comes back and in which order, and which audit rows are written. Checked
//! on both backends where the contract says it; the repeats that SQLite runs row by row (a step
//! or task named twice in one batch) are checked on SQLite.

mod common;

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use common::*;
use serde_json::json;
use tasker_core::state::{StepState, TaskState};
use tasker_core::store::{
    InsertedTask, MessageRef, NewStep, NewTask, OutgoingMessage, StepChange, StepMessage, TaskChange, TaskDelta,
    TransitionRecord,
};
use tasker_core::{TaskDetail, TaskRequest, Tasker};
use uuid::Uuid;

on_both_backends!(
    audit_rows_follow_the_changes_that_applied,
    release_counts_each_listed_parent,
    messages_come_back_in_input_order_across_queues,
    task_batches_report_every_task_once,
    cancelling_reports_the_previous_states,
);

mod repeats_run_row_by_row {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::repeats_run_row_by_row(super::common::Db::Sqlite).await
    }
}

mod an_abandoned_transaction_is_rolled_back_and_frees_the_lock {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::an_abandoned_transaction_is_rolled_back_and_frees_the_lock(super::common::Db::Sqlite).await
    }
}

mod a_failed_creation_leaves_nothing_and_the_writer_usable {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_failed_creation_leaves_nothing_and_the_writer_usable(super::common::Db::Sqlite).await
    }
}

async fn diamond(tasker: &Tasker) -> TaskDetail {
    let created = tasker
        .create_task(TaskRequest {
            namespace: "engine_tests".into(),
            name: "diamond".into(),
            context: json!({ "value": 1, "n": Uuid::now_v7() }),
            ..Default::default()
        })
        .await
        .expect("create");
    tasker.get_task(created.task.task_uuid).await.expect("get")
}

fn step(detail: &TaskDetail, name: &str) -> Uuid {
    detail.step(name).expect(name).step_uuid
}

fn audit(entity: Uuid, task: Uuid, from: StepState, to: StepState, event: &'static str) -> TransitionRecord {
    TransitionRecord {
        entity_uuid: entity,
        task_uuid: task,
        from_state: Some(from.as_str()),
        to_state: to.as_str(),
        event,
        metadata: json!({ "by": "test" }),
        at: Utc::now(),
    }
}

async fn setup(db: Db) -> (TestDb, Tasker) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    tasker.register_templates(fixtures()).await.expect("register");
    (test_db, tasker)
}

/// Only the steps whose compare-and-swap applied get audit rows; of several rows for one step
/// the last is its most recent one.
async fn audit_rows_follow_the_changes_that_applied(db: Db) {
    let (test_db, tasker) = setup(db).await;
    let task = diamond(&tasker).await;
    let id = task.task.task_uuid;
    let (a, b) = (step(&task, "a"), step(&task, "b"));
    let store = tasker.store().clone();

    let mut tx = store.begin().await.expect("begin");
    let changes = [
        // Applies: a is enqueued with 0 attempts.
        StepChange::cas(a, (StepState::Enqueued, 0), (StepState::InProgress, 1)),
        // Does not: b is pending, not enqueued.
        StepChange::cas(b, (StepState::Enqueued, 0), (StepState::InProgress, 1)),
    ];
    let transitions = [
        audit(a, id, StepState::Enqueued, StepState::InProgress, "claim"),
        audit(b, id, StepState::Enqueued, StepState::InProgress, "claim"),
        audit(a, id, StepState::InProgress, StepState::InProgress, "note"),
    ];
    let applied = tx
        .change_steps_audited(&changes, &transitions, Utc::now())
        .await
        .expect("change");
    tx.commit().await.expect("commit");
    assert_eq!(applied, [a]);

    let detail = tasker.get_task(id).await.expect("get");
    assert_eq!(detail.step("a").expect("a").state, "in_progress");
    assert_eq!(detail.step("b").expect("b").state, "pending");
    let of = |name: &str| -> Vec<(String, bool)> {
        detail
            .step_transitions
            .iter()
            .filter(|t| t.step_name.as_deref() == Some(name))
            .map(|t| (t.event.clone(), t.most_recent))
            .collect()
    };
    assert_eq!(
        of("a"),
        [
            ("enqueue".to_owned(), false),
            ("claim".to_owned(), false),
            ("note".to_owned(), true)
        ]
    );
    assert!(of("b").is_empty(), "no audit row for a change that did not apply");

    tasker.close().await;
    test_db.cleanup().await;
}

/// A child is released once per listed parent, and is ready when its last parent is.
async fn release_counts_each_listed_parent(db: Db) {
    let (test_db, tasker) = setup(db).await;
    let first = diamond(&tasker).await;
    let second = diamond(&tasker).await;
    let store = tasker.store().clone();

    // a of both tasks: b and c of each become ready.
    let mut tx = store.begin().await.expect("begin");
    let ready = tx
        .release_children(&[step(&first, "a"), step(&second, "a")])
        .await
        .expect("release");
    tx.commit().await.expect("commit");
    let names: HashSet<(Uuid, String)> = ready.iter().map(|c| (c.task_uuid, c.name.clone())).collect();
    let expected: HashSet<(Uuid, String)> = [&first, &second]
        .iter()
        .flat_map(|t| [(t.task.task_uuid, "b".to_owned()), (t.task.task_uuid, "c".to_owned())])
        .collect();
    assert_eq!(names, expected);
    assert_eq!(ready.len(), 4);

    // d of the first task: b alone leaves it one parent short; b and c release it.
    let mut tx = store.begin().await.expect("begin");
    let none = tx.release_children(&[step(&first, "b")]).await.expect("release");
    tx.rollback().await.expect("rollback");
    assert!(none.is_empty(), "{none:?}");
    let mut tx = store.begin().await.expect("begin");
    let d = tx
        .release_children(&[step(&first, "b"), step(&first, "c")])
        .await
        .expect("release");
    tx.commit().await.expect("commit");
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].step_uuid, d[0].name.as_str()), (step(&first, "d"), "d"));

    tasker.close().await;
    test_db.cleanup().await;
}

/// References come back in input order, whatever queue each message went to.
async fn messages_come_back_in_input_order_across_queues(db: Db) {
    let (test_db, tasker) = setup(db).await;
    let store = tasker.store().clone();
    for q in ["q_one", "q_two"] {
        store.ensure_queue(q).await.expect("queue");
    }
    let message = |queue: &str, n: u128, priority: i32| OutgoingMessage {
        queue: queue.into(),
        body: StepMessage {
            step_uuid: Uuid::from_u128(n),
            task_uuid: Uuid::from_u128(n),
            attempt: 0,
        },
        hidden_for: None,
        priority,
    };
    let sent = [
        message("q_two", 1, 0),
        message("q_one", 2, 3),
        message("q_two", 3, -2),
        message("q_one", 4, 0),
    ];
    let mut tx = store.begin().await.expect("begin");
    let refs = tx.send_messages(&sent).await.expect("send");
    tx.commit().await.expect("commit");
    assert_eq!(refs.len(), sent.len());
    for (m, r) in sent.iter().zip(&refs) {
        assert_eq!(m.queue, r.queue);
    }

    let mut by_ref: HashMap<MessageRef, u128> = HashMap::new();
    let mut tx = store.begin().await.expect("begin");
    for q in ["q_one", "q_two"] {
        for m in tx
            .read_messages(q, std::time::Duration::from_secs(60), 10)
            .await
            .expect("read")
        {
            let body: StepMessage = serde_json::from_value(m.payload.clone()).expect("body");
            by_ref.insert(m.reference(), body.step_uuid.as_u128());
        }
    }
    // Deleting by reference removes exactly the named messages.
    tx.delete_messages(&refs[..2]).await.expect("delete");
    tx.commit().await.expect("commit");
    let numbers: Vec<u128> = refs.iter().map(|r| by_ref[r]).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);

    let mut tx = store.begin().await.expect("begin");
    tx.set_message_visibility(&refs[2..], std::time::Duration::ZERO)
        .await
        .expect("visible");
    let mut left = Vec::new();
    for q in ["q_one", "q_two"] {
        left.extend(
            tx.read_messages(q, std::time::Duration::from_secs(60), 10)
                .await
                .expect("read")
                .iter()
                .map(|m| m.reference()),
        );
    }
    tx.commit().await.expect("commit");
    let left: HashSet<MessageRef> = left.into_iter().collect();
    assert_eq!(left, refs[2..].iter().cloned().collect());

    tasker.close().await;
    test_db.cleanup().await;
}

/// Counter deltas and task compare-and-swaps of several tasks in one call: every task once, the
/// counters after the update, audit rows only for the tasks that changed.
async fn task_batches_report_every_task_once(db: Db) {
    let (test_db, tasker) = setup(db).await;
    let first = diamond(&tasker).await;
    let second = diamond(&tasker).await;
    let (one, two) = (first.task.task_uuid, second.task.task_uuid);
    let store = tasker.store().clone();

    let mut tx = store.begin().await.expect("begin");
    let counters = tx
        .apply_task_deltas(
            &[
                TaskDelta {
                    task_uuid: two,
                    completed: 1,
                    active: -1,
                    failed: 0,
                },
                TaskDelta {
                    task_uuid: one,
                    completed: 0,
                    active: 2,
                    failed: 1,
                },
            ],
            Utc::now(),
        )
        .await
        .expect("deltas");
    let by_task: HashMap<Uuid, (i32, i32, i32, i32)> = counters
        .iter()
        .map(|c| (c.task_uuid, (c.total, c.completed, c.active, c.failed)))
        .collect();
    assert_eq!(counters.len(), 2);
    assert_eq!(by_task[&two], (4, 1, 0, 0));
    assert_eq!(by_task[&one], (4, 0, 3, 1));

    let changes = [
        TaskChange {
            task_uuid: one,
            expected: TaskState::StepsInProcess,
            new: TaskState::Cancelled,
        },
        // Does not apply: the second task is not complete.
        TaskChange {
            task_uuid: two,
            expected: TaskState::Complete,
            new: TaskState::Cancelled,
        },
    ];
    let record = |task: Uuid| TransitionRecord {
        entity_uuid: task,
        task_uuid: task,
        from_state: Some("steps_in_process"),
        to_state: "cancelled",
        event: "cancel",
        metadata: json!({}),
        at: Utc::now(),
    };
    let applied = tx
        .change_tasks_audited(&changes, &[record(one), record(two)], Utc::now())
        .await
        .expect("change");
    tx.commit().await.expect("commit");
    assert_eq!(applied, [one]);
    let first = tasker.get_task(one).await.expect("get");
    let second = tasker.get_task(two).await.expect("get");
    assert_eq!(first.task.state, "cancelled");
    assert!(first.task.completed_at.is_some());
    assert_eq!(second.task.state, "steps_in_process");
    fn last(d: &TaskDetail) -> Vec<&str> {
        d.task_transitions
            .iter()
            .filter(|t| t.most_recent)
            .map(|t| t.event.as_str())
            .collect()
    }
    assert_eq!(last(&first), ["cancel"]);
    assert_ne!(last(&second), ["cancel"]);
    assert!(second.task_transitions.iter().all(|t| t.event != "cancel"));

    tasker.close().await;
    test_db.cleanup().await;
}

async fn cancelling_reports_the_previous_states(db: Db) {
    let (test_db, tasker) = setup(db).await;
    let task = diamond(&tasker).await;
    let store = tasker.store().clone();
    let mut tx = store.begin().await.expect("begin");
    let mut cancelled = tx
        .cancel_open_steps(
            task.task.task_uuid,
            &[StepState::Enqueued, StepState::Pending],
            Utc::now(),
        )
        .await
        .expect("cancel");
    tx.commit().await.expect("commit");
    cancelled.sort_by_key(|(id, _, _)| *id);
    let mut expected = vec![
        (step(&task, "a"), "a".to_owned(), StepState::Enqueued),
        (step(&task, "b"), "b".to_owned(), StepState::Pending),
        (step(&task, "c"), "c".to_owned(), StepState::Pending),
        (step(&task, "d"), "d".to_owned(), StepState::Pending),
    ];
    expected.sort_by_key(|(id, _, _)| *id);
    assert_eq!(cancelled, expected);
    let detail = tasker.get_task(task.task.task_uuid).await.expect("get");
    assert!(detail
        .steps
        .iter()
        .all(|s| s.state == "cancelled" && s.completed_at.is_some()));

    tasker.close().await;
    test_db.cleanup().await;
}

/// A batch naming a step or task twice behaves as if its rows ran one after the other, the way
/// the store ran every batch before it became one statement.
async fn repeats_run_row_by_row(db: Db) {
    let (test_db, tasker) = setup(db).await;
    let task = diamond(&tasker).await;
    let id = task.task.task_uuid;
    let a = step(&task, "a");
    let store = tasker.store().clone();

    let mut tx = store.begin().await.expect("begin");
    let locks = tx.lock_steps(&[a, Uuid::nil(), a]).await.expect("lock");
    assert_eq!(locks.iter().map(|l| l.step_uuid).collect::<Vec<_>>(), [a, a]);
    // The second change expects what the first one wrote.
    let changes = [
        StepChange::cas(a, (StepState::Enqueued, 0), (StepState::InProgress, 1)),
        StepChange::cas(a, (StepState::InProgress, 1), (StepState::Enqueued, 1)),
    ];
    let transitions = [
        audit(a, id, StepState::Enqueued, StepState::InProgress, "claim"),
        audit(a, id, StepState::InProgress, StepState::Enqueued, "release"),
    ];
    let applied = tx
        .change_steps_audited(&changes, &transitions, Utc::now())
        .await
        .expect("change");
    assert_eq!(applied, [a, a]);
    let now = tx.lock_steps(&[a]).await.expect("lock");
    assert_eq!((now[0].state, now[0].attempts), (StepState::Enqueued, 1));
    let delta = TaskDelta {
        task_uuid: id,
        completed: 1,
        active: 0,
        failed: 0,
    };
    let counters = tx
        .apply_task_deltas(&[delta.clone(), delta], Utc::now())
        .await
        .expect("deltas");
    assert_eq!(counters.iter().map(|c| c.completed).collect::<Vec<_>>(), [1, 2]);
    // b and c have a as their only parent: the first release makes them ready, the second
    // takes them below zero.
    let ready = tx.release_children(&[a, a]).await.expect("release");
    tx.rollback().await.expect("rollback");
    let mut names: Vec<&str> = ready.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["b", "c"]);

    tasker.close().await;
    test_db.cleanup().await;
}

/// The SQLite store sends BEGIN with a transaction's first statement and holds its one writer
/// connection itself: a transaction dropped without COMMIT or ROLLBACK must still be rolled
/// back, at once (other processes wait for the write lock meanwhile).
async fn an_abandoned_transaction_is_rolled_back_and_frees_the_lock(db: Db) {
    let (test_db, tasker) = setup(db).await;
    let store = tasker.store().clone();
    let message = OutgoingMessage {
        queue: "abandoned".into(),
        body: StepMessage {
            step_uuid: Uuid::from_u128(7),
            task_uuid: Uuid::from_u128(7),
            attempt: 0,
        },
        hidden_for: None,
        priority: 0,
    };
    let mut tx = store.begin().await.expect("begin");
    tx.send_messages(&[message]).await.expect("send");
    drop(tx);

    // Another process (a connection of its own) gets the write lock.
    let other = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            test_db
                .url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .expect("url")
                .busy_timeout(std::time::Duration::from_secs(5)),
        )
        .await
        .expect("other connection");
    let mut conn = other.acquire().await.expect("acquire");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .expect("write lock");
    sqlx::query("ROLLBACK").execute(&mut *conn).await.expect("rollback");
    drop(conn);
    other.close().await;

    // And the message was never sent.
    let mut tx = store.begin().await.expect("begin");
    let read = tx
        .read_messages("abandoned", std::time::Duration::from_secs(1), 10)
        .await
        .expect("read");
    tx.commit().await.expect("commit");
    assert!(read.is_empty(), "{read:?}");

    tasker.close().await;
    test_db.cleanup().await;
}

/// Creating a task is one command, BEGIN to COMMIT: when a statement in it fails, nothing of the
/// task stays, and the next transaction runs normally.
async fn a_failed_creation_leaves_nothing_and_the_writer_usable(db: Db) {
    let (test_db, tasker) = setup(db).await;
    let store = tasker.store().clone();
    let template = tasker
        .store()
        .template_versions("engine_tests", "diamond")
        .await
        .expect("template")
        .remove(0);
    let step = |name: &str, id: Uuid| NewStep {
        step_uuid: id,
        name: name.into(),
        position: 0,
        queue: "engine_tests".into(),
        state: StepState::Pending,
        max_attempts: 3,
        retryable: true,
        pending_parents: 0,
    };
    let task = |id: Uuid, steps: Vec<NewStep>| NewTask {
        trace_parent: None,
        newest_template_id: None,
        task_uuid: id,
        template_id: template.id,
        namespace: "engine_tests".into(),
        name: "diamond".into(),
        version: "1.0.0".into(),
        state: TaskState::StepsInProcess,
        context: json!({}),
        initiator: None,
        source_system: None,
        reason: None,
        tags: vec![],
        priority: 0,
        correlation_id: Uuid::now_v7(),
        identity_hash: id.to_string(),
        idempotency_key: None,
        steps,
        edges: vec![],
        active_steps: 0,
        created_at: Utc::now(),
    };
    // Two steps with one uuid: the task row goes in, the steps' insert fails.
    let (bad, twice) = (Uuid::now_v7(), Uuid::now_v7());
    let refused = store
        .create_task(&task(bad, vec![step("a", twice), step("b", twice)]), &[], &[], &[])
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(store.task_summary(bad).await.expect("read").is_none());

    let good = Uuid::now_v7();
    let created = store
        .create_task(&task(good, vec![step("a", Uuid::now_v7())]), &[], &[], &[])
        .await
        .expect("create");
    assert_eq!(created, InsertedTask::Created);
    assert!(store.task_summary(good).await.expect("read").is_some());
    // The same identity again: nothing written, the holder named.
    let again = store
        .create_task(&task(Uuid::now_v7(), vec![]), &[], &[], &[])
        .await
        .expect("create");
    assert_eq!(again, InsertedTask::Created, "a new identity (its uuid) is a new task");
    let mut same = task(Uuid::now_v7(), vec![]);
    same.identity_hash = good.to_string();
    let existing = store.create_task(&same, &[], &[], &[]).await.expect("create");
    assert_eq!(existing, InsertedTask::Existing(good));
    assert!(store.task_summary(same.task_uuid).await.expect("read").is_none());

    tasker.close().await;
    test_db.cleanup().await;
}
