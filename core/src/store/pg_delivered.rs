//! Claiming the PGMQ rows a broker delivered (`messaging.backend = "rabbitmq"`, see
//! [`crate::messaging`]): the same update as a claim's read, by message id instead of by scan,
//! and only where the row was not read since the delivery was published (its `read_ct` is the
//! one the relay's read gave it). A stale or duplicate delivery claims nothing.

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;

use super::records::QueueMessage;
use crate::error::Result;

/// The statement, with every value inlined (integers only), so that it can go out with `BEGIN`
/// in one round trip.
///
/// Unlike a scanning claim this one *waits* for a row another transaction holds: a delivery can
/// arrive before the relay's transaction that published it commits (it commits after the
/// broker's confirm), and skipping the row then would drop a live delivery. The wait is safe:
/// the relay never waits while it holds rows (its read skips locked ones; it only waits for the
/// broker, bounded), deletes and visibility changes skip locked rows, and claims lock in
/// `msg_id` order; a deadlock between claims of one queue's duplicates across two queues is
/// detected by the server and the claim runs again. Rows are locked by id alone and their
/// `read_ct` compared after the lock: a locked row's newest version is what `FOR UPDATE`
/// returns under READ COMMITTED, whereas a condition on `read_ct` in the locking scan would be
/// tested on the version before the relay's commit and skip the row without waiting.
pub(super) fn read_delivered_sql(table: &str, order_key_of_q: &str, lease_ms: i64, delivered: &[(i64, i32)]) -> String {
    let ids: Vec<String> = delivered.iter().map(|(id, _)| id.to_string()).collect();
    let reads: Vec<String> = delivered.iter().map(|(_, r)| r.to_string()).collect();
    format!(
        "WITH d(msg_id, read_ct) AS (SELECT * FROM unnest('{{{ids}}}'::bigint[], '{{{reads}}}'::int[])), \
           picked AS (SELECT q.msg_id, q.read_ct FROM pgmq.{table} q JOIN d ON q.msg_id = d.msg_id \
             ORDER BY q.msg_id FOR UPDATE OF q) \
         UPDATE pgmq.{table} q SET vt = clock_timestamp() + {lease_ms} ::float8 * interval '1 millisecond', \
           read_ct = q.read_ct + 1 \
         FROM picked JOIN d ON d.msg_id = picked.msg_id \
         WHERE q.msg_id = picked.msg_id AND picked.read_ct = d.read_ct \
         RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.message, {order_key_of_q} AS order_key",
        ids = ids.join(","),
        reads = reads.join(","),
    )
}

/// The rows a claim's read returned (this statement's or the scanning read's), as messages in
/// claim order: priority, then age (RETURNING has no order of its own).
pub(super) fn claimed_messages(queue: &str, rows: &[PgRow]) -> Result<Vec<QueueMessage>> {
    let mut messages = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>("order_key")?,
                QueueMessage {
                    queue: queue.to_owned(),
                    msg_id: r.try_get("msg_id")?,
                    read_ct: r.try_get("read_ct")?,
                    enqueued_at: r.try_get("enqueued_at")?,
                    payload: r.try_get::<Json<Value>, _>("message")?.0,
                },
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    messages.sort_by_key(|(key, m)| (*key, m.msg_id));
    Ok(messages.into_iter().map(|(_, m)| m).collect())
}
