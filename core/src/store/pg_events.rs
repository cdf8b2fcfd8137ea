//! PostgreSQL statements of the durable event log (see `store/events.rs` for the model and
//! `migrations/postgres/0006_events.sql` for why a sequencer stamps positions).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

use super::events::*;
use super::postgres::PostgresStore;
use crate::error::{Result, TaskerError};

/// The advisory lock a sequencer run holds (transaction-scoped: any process may run the next).
const SEQUENCER_LOCK: i64 = 0x7461_736b_6576_0001;

/// Writes `events` in the caller's transaction.
pub(super) async fn insert(conn: &mut PgConnection, events: &[NewEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let payloads: Vec<Json<&Value>> = events.iter().map(|e| Json(&e.payload)).collect();
    sqlx::query(
        "INSERT INTO tasker_events (event_id, name, task_uuid, step_uuid, partition, payload, occurred_at) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::smallint[], $6::jsonb[], \
           $7::timestamptz[])",
    )
    .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.task_uuid).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.step_uuid).collect::<Vec<_>>())
    .bind(events.iter().map(NewEvent::partition).collect::<Vec<_>>())
    .bind(payloads)
    .bind(events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

fn event_from_row(row: &PgRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        partition: row.try_get("partition")?,
        position: row.try_get("position")?,
        event_id: row.try_get("event_id")?,
        name: row.try_get("name")?,
        task_uuid: row.try_get("task_uuid")?,
        step_uuid: row.try_get("step_uuid")?,
        payload: row.try_get::<Json<Value>, _>("payload")?.0,
        occurred_at: row.try_get("occurred_at")?,
        namespace: row.try_get("namespace_name")?,
        task_name: row.try_get("task_name")?,
        version: row.try_get("version")?,
        correlation_id: row.try_get("correlation_id")?,
    })
}

fn patterns_from(value: Value) -> Result<Vec<String>> {
    serde_json::from_value(value).map_err(|e| TaskerError::Corrupt(format!("event group patterns: {e}")))
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn sequence_events(&self, limit: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(SEQUENCER_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(0);
        }
        // A statement of its own after the lock: its snapshot sees every earlier run's work.
        // Committed rows of one task form a prefix of its events in `id` order (see the
        // migration), so stamping in `id` order keeps every task's order.
        let done = sqlx::query(
            "WITH todo AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM \
                 (SELECT id FROM tasker_events WHERE position IS NULL ORDER BY id LIMIT $1) x), \
               base AS (UPDATE tasker_event_sequencer SET last_position = last_position + (SELECT count(*) FROM todo) \
                 WHERE id = 1 RETURNING last_position - (SELECT count(*) FROM todo) AS b) \
             UPDATE tasker_events e SET position = base.b + todo.n FROM todo, base WHERE e.id = todo.id",
        )
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(done)
    }

    async fn read_events(&self, partition: i16, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT e.partition, e.position, e.event_id, e.name, e.task_uuid, e.step_uuid, e.payload, e.occurred_at, \
               t.namespace_name, t.name AS task_name, t.version, t.correlation_id \
             FROM tasker_events e LEFT JOIN tasker_tasks t ON t.task_uuid = e.task_uuid \
             WHERE e.partition = $1 AND e.position > $2 ORDER BY e.position LIMIT $3",
        )
        .bind(partition)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn join_event_group(
        &self,
        fence: Fence<'_>,
        patterns: &[String],
        start_after: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let created = sqlx::query(
            "INSERT INTO tasker_event_groups (group_name, patterns, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (group_name) DO NOTHING",
        )
        .bind(fence.group)
        .bind(Json(patterns))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if created == 1 {
            // The end of the log: positions are global, so one number is every partition's end.
            // Events not sequenced yet get positions above it and are the group's.
            sqlx::query(
                "INSERT INTO tasker_event_cursors (group_name, partition, position, updated_at) \
                 SELECT $1, p, COALESCE($2, (SELECT last_position FROM tasker_event_sequencer)), $3 \
                 FROM generate_series(0, $4 - 1) AS p",
            )
            .bind(fence.group)
            .bind(start_after)
            .bind(now)
            .bind(i32::from(EVENT_PARTITIONS))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO tasker_event_members (group_name, member_id, heartbeat_at) VALUES ($1, $2, $3) \
             ON CONFLICT (group_name, member_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
        )
        .bind(fence.group)
        .bind(fence.member)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn event_member_heartbeat(
        &self,
        fence: Fence<'_>,
        now: DateTime<Utc>,
        live_since: DateTime<Utc>,
    ) -> Result<i64> {
        let live: i64 = sqlx::query_scalar(
            "WITH hb AS (INSERT INTO tasker_event_members (group_name, member_id, heartbeat_at) VALUES ($1, $2, $3) \
               ON CONFLICT (group_name, member_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at RETURNING 1) \
             SELECT 1 + count(*) FROM tasker_event_members WHERE group_name = $1 AND member_id <> $2 \
               AND heartbeat_at >= $4",
        )
        .bind(fence.group)
        .bind(fence.member)
        .bind(now)
        .bind(live_since)
        .fetch_one(&self.pool)
        .await?;
        Ok(live)
    }

    async fn claim_event_partitions(
        &self,
        fence: Fence<'_>,
        max: i64,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventCursor>> {
        let rows = sqlx::query(
            "UPDATE tasker_event_cursors c SET owner = $2, lease_expires_at = $4, updated_at = $5 \
             WHERE (c.group_name, c.partition) IN (SELECT group_name, partition FROM tasker_event_cursors \
               WHERE group_name = $1 AND (owner IS NULL OR lease_expires_at < $5) \
               ORDER BY partition LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING c.partition, c.position",
        )
        .bind(fence.group)
        .bind(fence.member)
        .bind(max)
        .bind(lease_until)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventCursor {
                    partition: r.try_get("partition")?,
                    position: r.try_get("position")?,
                })
            })
            .collect()
    }

    async fn renew_event_partitions(
        &self,
        fence: Fence<'_>,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<i16>> {
        Ok(sqlx::query_scalar(
            "UPDATE tasker_event_cursors SET lease_expires_at = $3, updated_at = $4 \
             WHERE group_name = $1 AND owner = $2 RETURNING partition",
        )
        .bind(fence.group)
        .bind(fence.member)
        .bind(lease_until)
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn commit_event_positions(
        &self,
        fence: Fence<'_>,
        positions: &[EventCursor],
        now: DateTime<Utc>,
    ) -> Result<Vec<i16>> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "UPDATE tasker_event_cursors c SET position = GREATEST(c.position, v.position), updated_at = $5 \
             FROM unnest($3::smallint[], $4::bigint[]) AS v(partition, position) \
             WHERE c.group_name = $1 AND c.owner = $2 AND c.partition = v.partition RETURNING c.partition",
        )
        .bind(fence.group)
        .bind(fence.member)
        .bind(positions.iter().map(|p| p.partition).collect::<Vec<_>>())
        .bind(positions.iter().map(|p| p.position).collect::<Vec<_>>())
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn release_event_partitions(&self, fence: Fence<'_>, partitions: &[i16], now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE tasker_event_cursors SET owner = NULL, lease_expires_at = NULL, updated_at = $4 \
             WHERE group_name = $1 AND owner = $2 AND partition = ANY($3)",
        )
        .bind(fence.group)
        .bind(fence.member)
        .bind(partitions)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn leave_event_group(&self, fence: Fence<'_>, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "WITH released AS (UPDATE tasker_event_cursors SET owner = NULL, lease_expires_at = NULL, updated_at = $3 \
               WHERE group_name = $1 AND owner = $2 RETURNING 1) \
             DELETE FROM tasker_event_members WHERE group_name = $1 AND member_id = $2",
        )
        .bind(fence.group)
        .bind(fence.member)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dead_letter_event(
        &self,
        fence: Fence<'_>,
        at: EventCursor,
        event: &StoredEvent,
        envelope: &Value,
        error: &str,
        attempts: i32,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "WITH moved AS (UPDATE tasker_event_cursors SET position = GREATEST(position, $4), updated_at = $10 \
               WHERE group_name = $1 AND owner = $2 AND partition = $3 RETURNING 1) \
             INSERT INTO tasker_event_dead_letters (group_name, event_id, name, task_uuid, event, error, attempts, dead_at) \
             SELECT $1, $5, $6, $7, $8, $9, $11, $10 FROM moved",
        )
        .bind(fence.group)
        .bind(fence.member)
        .bind(at.partition)
        .bind(at.position)
        .bind(event.event_id)
        .bind(&event.name)
        .bind(event.task_uuid)
        .bind(Json(envelope))
        .bind(error)
        .bind(now)
        .bind(attempts)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    async fn event_dead_letters(&self, group: Option<&str>, limit: i64) -> Result<Vec<EventDeadLetter>> {
        let rows = sqlx::query(
            "SELECT id, group_name, event_id, name, task_uuid, event, error, attempts, dead_at \
             FROM tasker_event_dead_letters WHERE ($1::text IS NULL OR group_name = $1) ORDER BY id LIMIT $2",
        )
        .bind(group)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventDeadLetter {
                    id: r.try_get("id")?,
                    group: r.try_get("group_name")?,
                    event_id: r.try_get("event_id")?,
                    name: r.try_get("name")?,
                    task_uuid: r.try_get("task_uuid")?,
                    event: r.try_get::<Json<Value>, _>("event")?.0,
                    error: r.try_get("error")?,
                    attempts: r.try_get("attempts")?,
                    dead_at: r.try_get("dead_at")?,
                })
            })
            .collect()
    }

    async fn event_groups(&self, live_since: DateTime<Utc>) -> Result<Vec<EventGroupStatus>> {
        let rows = sqlx::query(
            "SELECT g.group_name, g.patterns, g.created_at, \
               (SELECT count(*) FROM tasker_event_members m WHERE m.group_name = g.group_name AND m.heartbeat_at >= $1) AS live, \
               (SELECT count(*) FROM tasker_event_cursors c WHERE c.group_name = g.group_name AND c.lease_expires_at >= now()) AS leased, \
               (SELECT count(*) FROM tasker_event_cursors c JOIN tasker_events e \
                  ON e.partition = c.partition AND e.position > c.position WHERE c.group_name = g.group_name) AS lag, \
               (SELECT min(e.occurred_at) FROM tasker_event_cursors c JOIN tasker_events e \
                  ON e.partition = c.partition AND e.position > c.position WHERE c.group_name = g.group_name) AS oldest, \
               (SELECT count(*) FROM tasker_event_dead_letters d WHERE d.group_name = g.group_name) AS dead \
             FROM tasker_event_groups g ORDER BY g.group_name",
        )
        .bind(live_since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventGroupStatus {
                    group: r.try_get("group_name")?,
                    patterns: patterns_from(r.try_get::<Json<Value>, _>("patterns")?.0)?,
                    live_members: r.try_get("live")?,
                    leased_partitions: r.try_get("leased")?,
                    lag: r.try_get("lag")?,
                    oldest_pending_at: r.try_get("oldest")?,
                    dead_letters: r.try_get("dead")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn delete_event_group(&self, group: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tasker_event_groups WHERE group_name = $1")
            .bind(group)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(done == 1)
    }

    async fn has_event_groups(&self) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tasker_event_groups)")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM tasker_events WHERE id IN (SELECT e.id FROM tasker_events e \
               WHERE e.occurred_at < $1 AND e.position IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tasker_event_cursors c \
                 WHERE c.partition = e.partition AND c.position < e.position) \
               ORDER BY e.id LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
