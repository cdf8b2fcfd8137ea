//! SQLite statements of the durable event log (see `store/events.rs` for the model). SQLite has
//! one writer at a time, so an event's `id` is its position: commit order needs no sequencer.
//! Each statement's parameters are numbered without gaps.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, ms, opt_from_ms, parse_json, to_json, Hex, SqliteStore, SqliteTx};
use crate::error::{Result, TaskerError};
use crate::store::events::*;

const INSERT_EVENTS: &str =
    "INSERT INTO tasker_events (event_id, name, task_uuid, step_uuid, partition, payload, occurred_at) \
     SELECT unhex(e.value ->> 0), e.value ->> 1, unhex(e.value ->> 2), unhex(e.value ->> 3), e.value ->> 4, \
       e.value ->> 5, e.value ->> 6 \
     FROM json_each(?1) AS e ORDER BY e.key";

const READ_EVENTS: &str =
    "SELECT e.partition, e.id AS position, e.event_id, e.name, e.task_uuid, e.step_uuid, e.payload, \
       e.occurred_at, t.namespace_name, t.name AS task_name, t.version, t.correlation_id \
     FROM tasker_events e LEFT JOIN tasker_tasks t ON t.task_uuid = e.task_uuid \
     WHERE e.partition = ?1 AND e.id > ?2 ORDER BY e.id LIMIT ?3";

const CREATE_GROUP: &str = "INSERT INTO tasker_event_groups (group_name, patterns, created_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (group_name) DO NOTHING RETURNING 1";

const CREATE_CURSORS: &str = "WITH RECURSIVE p(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM p WHERE n + 1 < ?4) \
     INSERT INTO tasker_event_cursors (group_name, partition, position, updated_at) \
     SELECT ?1, n, COALESCE(?2, (SELECT max(id) FROM tasker_events), 0), ?3 FROM p";

const UPSERT_MEMBER: &str =
    "INSERT INTO tasker_event_members (group_name, member_id, heartbeat_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (group_name, member_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at";

const LIVE_MEMBERS: &str = "SELECT count(*) FROM tasker_event_members WHERE group_name = ?1 AND heartbeat_at >= ?2";

const CLAIM: &str = "UPDATE tasker_event_cursors SET owner = ?2, lease_expires_at = ?4, updated_at = ?5 \
     WHERE group_name = ?1 AND partition IN (SELECT partition FROM tasker_event_cursors \
       WHERE group_name = ?1 AND (owner IS NULL OR lease_expires_at < ?5) ORDER BY partition LIMIT ?3) \
     RETURNING partition, position";

const RENEW: &str = "UPDATE tasker_event_cursors SET lease_expires_at = ?3, updated_at = ?4 \
     WHERE group_name = ?1 AND owner = ?2 RETURNING partition";

const COMMIT_POSITIONS: &str =
    "UPDATE tasker_event_cursors AS c SET position = max(c.position, v.value ->> 1), updated_at = ?4 \
     FROM json_each(?3) AS v \
     WHERE c.group_name = ?1 AND c.owner = ?2 AND c.partition = v.value ->> 0 RETURNING partition";

const RELEASE: &str = "UPDATE tasker_event_cursors SET owner = NULL, lease_expires_at = NULL, updated_at = ?4 \
     WHERE group_name = ?1 AND owner = ?2 AND partition IN (SELECT value FROM json_each(?3)) RETURNING partition";

const RELEASE_ALL: &str = "UPDATE tasker_event_cursors SET owner = NULL, lease_expires_at = NULL, updated_at = ?3 \
     WHERE group_name = ?1 AND owner = ?2 RETURNING partition";

const FORGET_MEMBER: &str = "DELETE FROM tasker_event_members WHERE group_name = ?1 AND member_id = ?2";

const MOVE_PAST: &str = "UPDATE tasker_event_cursors SET position = max(position, ?4), updated_at = ?5 \
     WHERE group_name = ?1 AND owner = ?2 AND partition = ?3 RETURNING 1";

const INSERT_DEAD_LETTER: &str =
    "INSERT INTO tasker_event_dead_letters (group_name, event_id, name, task_uuid, event, error, \
       attempts, dead_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

const DEAD_LETTERS: &str = "SELECT id, group_name, event_id, name, task_uuid, event, error, attempts, dead_at \
     FROM tasker_event_dead_letters WHERE (?1 IS NULL OR group_name = ?1) ORDER BY id LIMIT ?2";

const GROUPS: &str = "SELECT g.group_name, g.patterns, g.created_at, \
       (SELECT count(*) FROM tasker_event_members m WHERE m.group_name = g.group_name AND m.heartbeat_at >= ?1) AS live, \
       (SELECT count(*) FROM tasker_event_cursors c WHERE c.group_name = g.group_name AND c.lease_expires_at >= ?2) AS leased, \
       (SELECT count(*) FROM tasker_event_cursors c JOIN tasker_events e \
          ON e.partition = c.partition AND e.id > c.position WHERE c.group_name = g.group_name) AS lag, \
       (SELECT min(e.occurred_at) FROM tasker_event_cursors c JOIN tasker_events e \
          ON e.partition = c.partition AND e.id > c.position WHERE c.group_name = g.group_name) AS oldest, \
       (SELECT count(*) FROM tasker_event_dead_letters d WHERE d.group_name = g.group_name) AS dead \
     FROM tasker_event_groups g ORDER BY g.group_name";

const PRUNE: &str = "DELETE FROM tasker_events WHERE id IN (SELECT e.id FROM tasker_events e \
       WHERE e.occurred_at < ?1 AND NOT EXISTS (SELECT 1 FROM tasker_event_cursors c \
         WHERE c.partition = e.partition AND c.position < e.id) \
       ORDER BY e.id LIMIT ?2) RETURNING 1";

/// A uuid as the hex text `unhex` reads back, or JSON null.
fn hex_or_null(id: Option<uuid::Uuid>) -> Option<Hex> {
    id.map(Hex)
}

impl SqliteTx {
    /// Writes `events` in this transaction.
    pub(super) async fn insert_event_rows(&mut self, events: &[NewEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                Ok((
                    Hex(e.event_id),
                    e.name.as_str(),
                    hex_or_null(e.task_uuid),
                    hex_or_null(e.step_uuid),
                    e.partition(),
                    to_json(&e.payload)?,
                    ms(e.occurred_at),
                ))
            })
            .collect::<Result<_>>()?;
        let sql = self.sql(INSERT_EVENTS);
        sqlx::query(&sql).bind(to_json(&rows)?).execute(self.conn()?).await?;
        Ok(())
    }
}

fn event_from_row(row: &SqliteRow) -> Result<StoredEvent> {
    let payload: String = row.try_get("payload")?;
    Ok(StoredEvent {
        partition: row.try_get("partition")?,
        position: row.try_get("position")?,
        event_id: row.try_get("event_id")?,
        name: row.try_get("name")?,
        task_uuid: row.try_get("task_uuid")?,
        step_uuid: row.try_get("step_uuid")?,
        payload: parse_json(&payload, "an event's payload")?,
        occurred_at: from_ms(row.try_get("occurred_at")?),
        namespace: row.try_get("namespace_name")?,
        task_name: row.try_get("task_name")?,
        version: row.try_get("version")?,
        correlation_id: row.try_get("correlation_id")?,
    })
}

/// A bound parameter of the simple write statements below.
enum Bind {
    Text(String),
    Int(i64),
}

fn bound(mut q: WriteQuery<'_>, binds: Vec<Bind>) -> WriteQuery<'_> {
    for b in binds {
        q = match b {
            Bind::Text(v) => q.bind(v),
            Bind::Int(v) => q.bind(v),
        };
    }
    q
}

type WriteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

impl SqliteStore {
    /// Runs `statements` (each with its binds) in one write transaction; returns the first
    /// column of each one's RETURNING rows (a command that carries BEGIN reports a stale row
    /// count, so rows are counted from RETURNING).
    async fn write_all(&self, statements: Vec<(&'static str, Vec<Bind>)>) -> Result<Vec<Vec<i64>>> {
        let mut tx = self.transaction().await?;
        let mut out = Vec::with_capacity(statements.len());
        for (statement, binds) in statements {
            let sql = tx.sql(statement);
            let conn = tx.conn()?;
            match bound(sqlx::query(&sql), binds).fetch_all(conn).await {
                Ok(rows) => out.push(
                    rows.iter()
                        .map(|r| r.try_get::<i64, _>(0).map_err(Into::into))
                        .collect::<Result<Vec<i64>>>()?,
                ),
                Err(e) => {
                    tx.end("ROLLBACK").await?;
                    return Err(e.into());
                }
            }
        }
        tx.end("COMMIT").await?;
        Ok(out)
    }

    /// Runs one write statement; returns the first column of its RETURNING rows.
    async fn write_returning(&self, statement: &'static str, binds: Vec<Bind>) -> Result<Vec<i64>> {
        Ok(self
            .write_all(vec![(statement, binds)])
            .await?
            .pop()
            .unwrap_or_default())
    }
}

fn text(s: &str) -> Bind {
    Bind::Text(s.to_owned())
}

fn partitions(rows: Vec<i64>) -> Result<Vec<i16>> {
    rows.into_iter()
        .map(|p| i16::try_from(p).map_err(|_| TaskerError::Corrupt(format!("event partition {p} out of range"))))
        .collect()
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn sequence_events(&self, _limit: i64) -> Result<u64> {
        Ok(0)
    }

    async fn read_events(&self, partition: i16, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows = self
            .read(sqlx::query(READ_EVENTS).bind(partition).bind(after).bind(limit))
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
        // One transaction: the cursors are made only by the join that made the group (the
        // CREATE_CURSORS insert would fail on the primary key otherwise, so it is skipped when
        // CREATE_GROUP returned nothing).
        let mut tx = self.transaction().await?;
        let result: Result<()> = async {
            let sql = tx.sql(CREATE_GROUP);
            let created = sqlx::query(&sql)
                .bind(fence.group)
                .bind(to_json(patterns)?)
                .bind(ms(now))
                .fetch_all(tx.conn()?)
                .await?;
            if !created.is_empty() {
                sqlx::query(CREATE_CURSORS)
                    .bind(fence.group)
                    .bind(start_after)
                    .bind(ms(now))
                    .bind(i64::from(EVENT_PARTITIONS))
                    .execute(tx.conn()?)
                    .await?;
            }
            sqlx::query(UPSERT_MEMBER)
                .bind(fence.group)
                .bind(fence.member)
                .bind(ms(now))
                .execute(tx.conn()?)
                .await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => tx.end("COMMIT").await,
            Err(e) => {
                tx.end("ROLLBACK").await?;
                Err(e)
            }
        }
    }

    async fn event_member_heartbeat(
        &self,
        fence: Fence<'_>,
        now: DateTime<Utc>,
        live_since: DateTime<Utc>,
    ) -> Result<i64> {
        self.write_all(vec![(
            UPSERT_MEMBER,
            vec![text(fence.group), text(fence.member), Bind::Int(ms(now))],
        )])
        .await?;
        let rows = self
            .read(sqlx::query(LIVE_MEMBERS).bind(fence.group).bind(ms(live_since)))
            .await?;
        let live: i64 = rows.first().map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
        Ok(live.max(1))
    }

    async fn claim_event_partitions(
        &self,
        fence: Fence<'_>,
        max: i64,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventCursor>> {
        let mut tx = self.transaction().await?;
        let sql = tx.sql(CLAIM);
        let result = sqlx::query(&sql)
            .bind(fence.group)
            .bind(fence.member)
            .bind(max)
            .bind(ms(lease_until))
            .bind(ms(now))
            .fetch_all(tx.conn()?)
            .await;
        match result {
            Ok(rows) => {
                tx.end("COMMIT").await?;
                rows.iter()
                    .map(|r| {
                        Ok(EventCursor {
                            partition: r.try_get("partition")?,
                            position: r.try_get("position")?,
                        })
                    })
                    .collect()
            }
            Err(e) => {
                tx.end("ROLLBACK").await?;
                Err(e.into())
            }
        }
    }

    async fn renew_event_partitions(
        &self,
        fence: Fence<'_>,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<i16>> {
        partitions(
            self.write_returning(
                RENEW,
                vec![
                    text(fence.group),
                    text(fence.member),
                    Bind::Int(ms(lease_until)),
                    Bind::Int(ms(now)),
                ],
            )
            .await?,
        )
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
        let values: Vec<(i16, i64)> = positions.iter().map(|p| (p.partition, p.position)).collect();
        partitions(
            self.write_returning(
                COMMIT_POSITIONS,
                vec![
                    text(fence.group),
                    text(fence.member),
                    Bind::Text(to_json(&values)?),
                    Bind::Int(ms(now)),
                ],
            )
            .await?,
        )
    }

    async fn release_event_partitions(&self, fence: Fence<'_>, parts: &[i16], now: DateTime<Utc>) -> Result<()> {
        if parts.is_empty() {
            return Ok(());
        }
        self.write_returning(
            RELEASE,
            vec![
                text(fence.group),
                text(fence.member),
                Bind::Text(to_json(parts)?),
                Bind::Int(ms(now)),
            ],
        )
        .await?;
        Ok(())
    }

    async fn leave_event_group(&self, fence: Fence<'_>, now: DateTime<Utc>) -> Result<()> {
        self.write_all(vec![
            (
                RELEASE_ALL,
                vec![text(fence.group), text(fence.member), Bind::Int(ms(now))],
            ),
            (FORGET_MEMBER, vec![text(fence.group), text(fence.member)]),
        ])
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
        let mut tx = self.transaction().await?;
        let result: Result<bool> = async {
            let sql = tx.sql(MOVE_PAST);
            let moved = sqlx::query(&sql)
                .bind(fence.group)
                .bind(fence.member)
                .bind(at.partition)
                .bind(at.position)
                .bind(ms(now))
                .fetch_all(tx.conn()?)
                .await?;
            if moved.is_empty() {
                return Ok(false);
            }
            sqlx::query(INSERT_DEAD_LETTER)
                .bind(fence.group)
                .bind(event.event_id)
                .bind(&event.name)
                .bind(event.task_uuid)
                .bind(to_json(envelope)?)
                .bind(error)
                .bind(attempts)
                .bind(ms(now))
                .execute(tx.conn()?)
                .await?;
            Ok(true)
        }
        .await;
        match result {
            Ok(done) => {
                tx.end("COMMIT").await?;
                Ok(done)
            }
            Err(e) => {
                tx.end("ROLLBACK").await?;
                Err(e)
            }
        }
    }

    async fn event_dead_letters(&self, group: Option<&str>, limit: i64) -> Result<Vec<EventDeadLetter>> {
        let rows = self.read(sqlx::query(DEAD_LETTERS).bind(group).bind(limit)).await?;
        rows.iter()
            .map(|r| {
                let event: String = r.try_get("event")?;
                Ok(EventDeadLetter {
                    id: r.try_get("id")?,
                    group: r.try_get("group_name")?,
                    event_id: r.try_get("event_id")?,
                    name: r.try_get("name")?,
                    task_uuid: r.try_get("task_uuid")?,
                    event: parse_json(&event, "a dead-lettered event")?,
                    error: r.try_get("error")?,
                    attempts: r.try_get("attempts")?,
                    dead_at: from_ms(r.try_get("dead_at")?),
                })
            })
            .collect()
    }

    async fn event_groups(&self, live_since: DateTime<Utc>) -> Result<Vec<EventGroupStatus>> {
        let rows = self
            .read(sqlx::query(GROUPS).bind(ms(live_since)).bind(ms(Utc::now())))
            .await?;
        rows.iter()
            .map(|r| {
                let patterns: String = r.try_get("patterns")?;
                Ok(EventGroupStatus {
                    group: r.try_get("group_name")?,
                    patterns: serde_json::from_value(parse_json(&patterns, "an event group's patterns")?)
                        .map_err(|e| TaskerError::Corrupt(format!("event group patterns: {e}")))?,
                    live_members: r.try_get("live")?,
                    leased_partitions: r.try_get("leased")?,
                    lag: r.try_get("lag")?,
                    oldest_pending_at: opt_from_ms(r.try_get("oldest")?),
                    dead_letters: r.try_get("dead")?,
                    created_at: from_ms(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    async fn delete_event_group(&self, group: &str) -> Result<bool> {
        let done = self
            .write_returning(
                "DELETE FROM tasker_event_groups WHERE group_name = ?1 RETURNING 1",
                vec![text(group)],
            )
            .await?;
        Ok(!done.is_empty())
    }

    async fn has_event_groups(&self) -> Result<bool> {
        let rows = self
            .read(sqlx::query("SELECT EXISTS (SELECT 1 FROM tasker_event_groups)"))
            .await?;
        Ok(rows
            .first()
            .map(|r| r.try_get::<bool, _>(0))
            .transpose()?
            .unwrap_or(false))
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        let done = self
            .write_returning(PRUNE, vec![Bind::Int(ms(before)), Bind::Int(limit)])
            .await?;
        Ok(done.len() as u64)
    }
}
