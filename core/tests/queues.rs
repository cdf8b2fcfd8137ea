//! The queue's visibility-timeout semantics are the same on both backends: a read message is
//! hidden for its lease, reappears with `read_ct` incremented, and is gone once deleted.

mod common;

use std::time::Duration;

use common::*;
use tasker_core::store::{OutgoingMessage, StepMessage};

on_both_backends!(visibility_timeout_semantics);
on_both_backends!(higher_priority_is_read_first_and_waiting_earns_priority);

fn message(n: u128) -> OutgoingMessage {
    OutgoingMessage {
        queue: "qtest".into(),
        body: StepMessage {
            step_uuid: uuid::Uuid::from_u128(n),
            task_uuid: uuid::Uuid::from_u128(1000 + n),
            attempt: 0,
        },
        hidden_for: None,
        priority: 0,
    }
}

fn prioritised(n: u128, priority: i32) -> OutgoingMessage {
    OutgoingMessage { priority, ..message(n) }
}

fn step_numbers(read: &[tasker_core::store::QueueMessage]) -> Vec<u128> {
    read.iter()
        .map(|m| {
            serde_json::from_value::<StepMessage>(m.payload.clone())
                .expect("step message")
                .step_uuid
                .as_u128()
        })
        .collect()
}

/// Visible messages are read in `order_key` order: higher priority first, then oldest first;
/// a point of priority is worth a second of waiting, so an old low-priority message overtakes a
/// newer one whose priority is only a little higher.
async fn higher_priority_is_read_first_and_waiting_earns_priority(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    let store = tasker.store().clone();
    store.ensure_queue("qtest").await.expect("queue");

    let mut tx = store.begin().await.expect("begin");
    tx.send_messages(&[
        prioritised(1, 0),
        prioritised(2, 5),
        prioritised(3, -1),
        prioritised(4, 5),
        prioritised(5, 1),
    ])
    .await
    .expect("send");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    let first = tx
        .read_messages("qtest", Duration::from_secs(60), 2)
        .await
        .expect("read");
    let rest = tx
        .read_messages("qtest", Duration::from_secs(60), 10)
        .await
        .expect("read");
    tx.commit().await.expect("commit");
    assert_eq!(
        step_numbers(&first),
        [2, 4],
        "the two priority-5 messages, oldest first"
    );
    assert_eq!(step_numbers(&rest), [5, 1, 3]);

    // Waiting earns priority: a message sent 1.2 s before another one of priority 1 goes first.
    let mut tx = store.begin().await.expect("begin");
    tx.send_messages(&[prioritised(10, 0)]).await.expect("send");
    tx.commit().await.expect("commit");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut tx = store.begin().await.expect("begin");
    tx.send_messages(&[prioritised(11, 1), prioritised(12, 3)])
        .await
        .expect("send");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    let read = tx
        .read_messages("qtest", Duration::from_secs(60), 10)
        .await
        .expect("read");
    tx.commit().await.expect("commit");
    assert_eq!(step_numbers(&read), [12, 10, 11]);

    tasker.close().await;
    test_db.cleanup().await;
}

async fn visibility_timeout_semantics(db: Db) {
    let test_db = TestDb::new(db).await;
    let tasker = test_db.connect().await;
    let store = tasker.store().clone();
    store.ensure_queue("qtest").await.expect("queue");

    let mut tx = store.begin().await.expect("begin");
    let mut hidden = message(3);
    hidden.hidden_for = Some(Duration::from_secs(60));
    let refs = tx.send_messages(&[message(1), message(2), hidden]).await.expect("send");
    assert_eq!(refs.len(), 3);
    tx.commit().await.expect("commit");

    // Two visible messages, in order; the hidden one is not delivered.
    let mut tx = store.begin().await.expect("begin");
    let read = tx
        .read_messages("qtest", Duration::from_secs(1), 10)
        .await
        .expect("read");
    tx.commit().await.expect("commit");
    assert_eq!(read.len(), 2);
    assert_eq!(
        read[0].payload["step_uuid"],
        serde_json::json!(uuid::Uuid::from_u128(1))
    );
    assert!(read.iter().all(|m| m.read_ct == 1));
    assert!(read[0].msg_id < read[1].msg_id);

    // While leased, nothing is visible.
    let mut tx = store.begin().await.expect("begin");
    assert!(tx
        .read_messages("qtest", Duration::from_secs(1), 10)
        .await
        .expect("read")
        .is_empty());
    // Delete one; make the other visible again at once.
    tx.delete_messages(&[read[0].reference()]).await.expect("delete");
    tx.set_message_visibility(&[read[1].reference()], Duration::ZERO)
        .await
        .expect("vt");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let again = tx
        .read_messages("qtest", Duration::from_secs(1), 10)
        .await
        .expect("read");
    tx.commit().await.expect("commit");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].msg_id, again[0].read_ct), (read[1].msg_id, 2));

    // An expired lease makes the message visible again by itself.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut tx = store.begin().await.expect("begin");
    let expired = tx
        .read_messages("qtest", Duration::from_secs(5), 10)
        .await
        .expect("read");
    tx.commit().await.expect("commit");
    assert_eq!(
        expired.iter().map(|m| (m.msg_id, m.read_ct)).collect::<Vec<_>>(),
        [(read[1].msg_id, 3)]
    );

    // A rolled-back read leaves the message as it was.
    let mut tx = store.begin().await.expect("begin");
    tx.set_message_visibility(&[expired[0].reference()], Duration::ZERO)
        .await
        .expect("vt");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.read_messages("qtest", Duration::from_secs(5), 10)
            .await
            .expect("read")
            .len(),
        1
    );
    tx.rollback().await.expect("rollback");
    let mut tx = store.begin().await.expect("begin");
    let after_rollback = tx
        .read_messages("qtest", Duration::from_secs(5), 10)
        .await
        .expect("read");
    tx.commit().await.expect("commit");
    assert_eq!(after_rollback.len(), 1);
    assert_eq!(after_rollback[0].read_ct, 4);

    tasker.close().await;
    test_db.cleanup().await;
}

/// On PostgreSQL a claim of one queue reads its messages and locks their steps in one
/// statement. A body that cannot be parsed, or names no step, must neither fail that statement
/// nor lock anything (else one bad row would block its queue for good); a step named in another
/// spelling of its uuid is still found; and a step named by two messages is claimed once.
#[tokio::test]
async fn hostile_message_bodies_never_fail_a_claim() {
    let test_db = TestDb::new(Db::Postgres).await;
    let tasker = test_db.connect().await;
    tasker.register_templates(fixtures()).await.expect("register");
    let task = create(&tasker, "engine_tests", "diamond", serde_json::json!({ "value": 1 })).await;
    let detail = tasker.get_task(task).await.expect("detail");
    let root = detail
        .steps
        .iter()
        .find(|s| s.name == "a")
        .expect("root step")
        .step_uuid;
    let pool = sqlx::PgPool::connect(&test_db.url).await.expect("connect");
    let bodies = [
        serde_json::json!([1, 2]),
        serde_json::json!("text"),
        serde_json::json!(42),
        serde_json::json!({}),
        serde_json::json!({ "step_uuid": 7 }),
        serde_json::json!({ "step_uuid": "not-a-uuid" }),
        serde_json::json!({ "step_uuid": "-".repeat(36) }),
        serde_json::json!({ "step_uuid": format!("urn:uuid:{}", uuid::Uuid::now_v7()), "task_uuid": task, "attempt": 0 }),
        serde_json::json!({ "step_uuid": format!("{{{}}}", root.to_string().to_uppercase()), "task_uuid": task, "attempt": 0 }),
    ];
    for body in &bodies {
        sqlx::query("INSERT INTO pgmq.q_engine_tests (vt, message) VALUES (clock_timestamp(), $1)")
            .bind(body)
            .execute(&pool)
            .await
            .expect("insert a raw message");
    }

    let mut tx = tasker.store().begin().await.expect("begin");
    let (read, locks) = tx
        .read_and_lock("engine_tests", Duration::from_secs(30), 20)
        .await
        .expect("a claim's read never fails on a message body");
    tx.rollback().await.expect("rollback");
    assert_eq!(
        read.len(),
        bodies.len() + 1,
        "every message is read, the engine's own included"
    );
    assert_eq!(
        locks.iter().map(|l| l.step_uuid).collect::<Vec<_>>(),
        [root],
        "only the real step is locked, once"
    );

    let claimed = tasker
        .claim(&["engine_tests".to_owned()], 20, Duration::from_secs(30), 0)
        .await
        .expect("claim");
    assert_eq!(claimed.iter().map(|c| c.step_uuid).collect::<Vec<_>>(), [root]);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pgmq.q_engine_tests")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        left, 1,
        "the claimed step's message stays (leased); every other one is dropped"
    );

    pool.close().await;
    tasker.close().await;
    test_db.cleanup().await;
}
