//! SQLite store: the embedded default. One file in WAL mode, safe for several processes on one
//! machine.
//!
//! Writes go through a single-connection pool and start with `BEGIN IMMEDIATE`: SQLite allows one
//! writer at a time anyway, and taking the write lock up front means a transaction never fails
//! half-way when it upgrades from read to write (other processes wait on `busy_timeout`).
//! Reads use a separate pool and never block writers (WAL).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::records::*;
use super::{Backend, MessageQueue, RemoteSignal, Store, StoreTx, TERMINAL_TASK_STATES};
use crate::error::{Result, TaskerError};
use crate::state::{NamedState, StepState};

/// A SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

fn opt_from_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.map(from_ms)
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| TaskerError::Corrupt(format!("{what} is not valid JSON: {e}")))
}

fn parse_state<S: NamedState>(name: &str, what: &str) -> Result<S> {
    S::parse(name).ok_or_else(|| TaskerError::Corrupt(format!("unknown {what} state '{name}'")))
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and runs migrations.
    ///
    /// Safe when many processes open a new file at once: creating the file, switching it to WAL
    /// and migrating happen under an exclusive lock on a sibling `<file>.lock` (an OS file lock,
    /// released when this returns or the process dies). The database file itself is never opened
    /// outside SQLite: closing a second descriptor would drop SQLite's own POSIX locks.
    pub async fn connect(options: SqliteConnectOptions) -> Result<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let lock = StartupLock::acquire(options.get_filename()).await?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone())
            .await?;
        // `run_direct` on a connection keeps this future `Send` (`run(&pool)` is not), so
        // `Tasker::connect_with` can be spawned; see `assert_connect_is_send`.
        let mut conn = writer.acquire().await?;
        sqlx::migrate!("./migrations/sqlite")
            .run_direct(&mut *conn)
            .await
            .map_err(|e| TaskerError::Migration(e.to_string()))?;
        drop(conn);
        drop(lock);
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }

    /// Opens a database from a `sqlite:` URL or a plain path.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url).map_err(|e| TaskerError::DatabaseUrl(e.to_string()))?;
        Self::connect(options).await
    }
}

/// An exclusive OS lock on `<database>.lock`, held while a process creates and migrates the
/// database.
struct StartupLock(#[allow(dead_code)] std::fs::File);

impl StartupLock {
    async fn acquire(database: &std::path::Path) -> Result<Self> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = std::path::PathBuf::from(name);
        let shown = path.display().to_string();
        let target = database.display().to_string();
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // Blocks until the process migrating now is done.
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(|e| TaskerError::Migration(format!("waiting for the start-up lock {shown}: {e}")))?;
        opened.map(StartupLock).map_err(|e| TaskerError::Connect {
            target,
            reason: format!("cannot create or lock {shown}: {e}"),
        })
    }
}

fn step_lock_from_row(row: &SqliteRow) -> Result<StepLock> {
    Ok(StepLock {
        step_uuid: row.try_get("step_uuid")?,
        task_uuid: row.try_get("task_uuid")?,
        name: row.try_get("name")?,
        queue: row.try_get("queue")?,
        state: parse_state(row.try_get::<&str, _>("state")?, "step")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        free_attempts: row.try_get("free_attempts")?,
        lost_leases: row.try_get("lost_leases")?,
        task_state: parse_state(row.try_get::<&str, _>("task_state")?, "task")?,
        template_id: row.try_get("template_id")?,
        task_priority: row.try_get("task_priority")?,
    })
}

const STEP_LOCK_COLUMNS: &str = "s.step_uuid, s.task_uuid, s.name, s.queue, s.state, s.attempts, \
     s.max_attempts, s.free_attempts, s.lost_leases, t.state AS task_state, t.template_id, \
     t.priority AS task_priority";

fn template_from_row(row: &SqliteRow) -> Result<TemplateRow> {
    Ok(TemplateRow {
        id: row.try_get("id")?,
        namespace: row.try_get("namespace_name")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        definition: parse_json(row.try_get("definition")?, "template definition")?,
        content_hash: row.try_get("content_hash")?,
        source_path: row.try_get("source_path")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}

const TASK_COLUMNS: &str = "task_uuid, namespace_name, name, version, state, context, initiator, \
     source_system, reason, tags, priority, correlation_id, idempotency_key, total_steps, \
     completed_steps, active_steps, failed_steps, created_at, updated_at, completed_at";

fn task_from_row(row: &SqliteRow) -> Result<TaskSummary> {
    let tags = parse_json(row.try_get("tags")?, "task tags")?;
    Ok(TaskSummary {
        task_uuid: row.try_get("task_uuid")?,
        namespace: row.try_get("namespace_name")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        state: row.try_get("state")?,
        context: parse_json(row.try_get("context")?, "task context")?,
        initiator: row.try_get("initiator")?,
        source_system: row.try_get("source_system")?,
        reason: row.try_get("reason")?,
        tags: serde_json::from_value(tags).map_err(|e| TaskerError::Corrupt(format!("task tags: {e}")))?,
        priority: row.try_get("priority")?,
        correlation_id: row.try_get("correlation_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        total_steps: row.try_get("total_steps")?,
        completed_steps: row.try_get("completed_steps")?,
        active_steps: row.try_get("active_steps")?,
        failed_steps: row.try_get("failed_steps")?,
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
        completed_at: opt_from_ms(row.try_get("completed_at")?),
    })
}

fn transition_from_row(row: &SqliteRow, step_name: Option<String>) -> Result<Transition> {
    Ok(Transition {
        step_name,
        from_state: row.try_get("from_state")?,
        to_state: row.try_get("to_state")?,
        event: row.try_get("event")?,
        metadata: parse_json(row.try_get("metadata")?, "transition metadata")?,
        most_recent: row.try_get("most_recent")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}

fn opt_json(row: &SqliteRow, column: &str) -> Result<Option<Value>> {
    row.try_get::<Option<&str>, _>(column)?
        .map(|t| parse_json(t, column))
        .transpose()
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteTx { tx }))
    }

    async fn ensure_queue(&self, _queue: &str) -> Result<()> {
        // Queues are rows of one table; nothing to create.
        Ok(())
    }

    async fn has_visible_messages(&self, queues: &[String]) -> Result<bool> {
        let now = ms(Utc::now());
        for q in queues {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT msg_id FROM tasker_queue_messages WHERE queue = ? AND vt <= ? LIMIT 1")
                    .bind(q)
                    .bind(now)
                    .fetch_optional(&self.reader)
                    .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn register_template(&self, t: &NewTemplate) -> Result<TemplateRow> {
        let now = ms(Utc::now());
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT INTO tasker_namespaces (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(&t.namespace)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO tasker_templates (namespace_name, name, version, definition, content_hash, source_path, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (namespace_name, name, version) DO NOTHING",
        )
        .bind(&t.namespace)
        .bind(&t.name)
        .bind(&t.version)
        .bind(json_text(&t.definition))
        .bind(&t.content_hash)
        .bind(&t.source_path)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT * FROM tasker_templates WHERE namespace_name = ? AND name = ? AND version = ?")
            .bind(&t.namespace)
            .bind(&t.name)
            .bind(&t.version)
            .fetch_one(&mut *tx)
            .await?;
        let stored = template_from_row(&row)?;
        if stored.content_hash != t.content_hash {
            return Err(TaskerError::TemplateConflict {
                namespace: t.namespace.clone(),
                name: t.name.clone(),
                version: t.version.clone(),
            });
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn template_by_id(&self, id: i64) -> Result<Option<TemplateRow>> {
        let row = sqlx::query("SELECT * FROM tasker_templates WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(template_from_row).transpose()
    }

    async fn template_versions(&self, namespace: &str, name: &str) -> Result<Vec<TemplateRow>> {
        let rows = sqlx::query("SELECT * FROM tasker_templates WHERE namespace_name = ? AND name = ?")
            .bind(namespace)
            .bind(name)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn list_templates(&self) -> Result<Vec<TemplateRow>> {
        let rows = sqlx::query("SELECT * FROM tasker_templates ORDER BY namespace_name, name, id DESC")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn task_detail(&self, task_uuid: Uuid) -> Result<Option<TaskDetail>> {
        let Some(task) = self.task_summary(task_uuid).await? else {
            return Ok(None);
        };
        let step_rows = sqlx::query("SELECT * FROM tasker_steps WHERE task_uuid = ? ORDER BY position")
            .bind(task_uuid)
            .fetch_all(&self.reader)
            .await?;
        let edges = sqlx::query(
            "SELECT e.to_step, p.name FROM tasker_step_edges e JOIN tasker_steps p ON p.step_uuid = e.from_step \
             WHERE e.task_uuid = ? ORDER BY p.position",
        )
        .bind(task_uuid)
        .fetch_all(&self.reader)
        .await?;
        let mut steps = Vec::with_capacity(step_rows.len());
        for row in &step_rows {
            let step_uuid: Uuid = row.try_get("step_uuid")?;
            let mut dependencies = Vec::new();
            for e in &edges {
                if e.try_get::<Uuid, _>("to_step")? == step_uuid {
                    dependencies.push(e.try_get("name")?);
                }
            }
            steps.push(StepSummary {
                step_uuid,
                name: row.try_get("name")?,
                queue: row.try_get("queue")?,
                state: row.try_get("state")?,
                attempts: row.try_get("attempts")?,
                max_attempts: row.try_get("max_attempts")?,
                retryable: row.try_get("retryable")?,
                results: opt_json(row, "results")?,
                last_error: opt_json(row, "last_error")?,
                next_retry_at: opt_from_ms(row.try_get("next_retry_at")?),
                created_at: from_ms(row.try_get("created_at")?),
                first_attempted_at: opt_from_ms(row.try_get("first_attempted_at")?),
                last_attempted_at: opt_from_ms(row.try_get("last_attempted_at")?),
                completed_at: opt_from_ms(row.try_get("completed_at")?),
                dependencies,
            });
        }
        let task_transitions = sqlx::query("SELECT * FROM tasker_task_transitions WHERE task_uuid = ? ORDER BY id")
            .bind(task_uuid)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|r| transition_from_row(r, None))
            .collect::<Result<Vec<_>>>()?;
        let step_transitions = sqlx::query("SELECT * FROM tasker_step_transitions WHERE task_uuid = ? ORDER BY id")
            .bind(task_uuid)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|r| {
                let uuid: Uuid = r.try_get("step_uuid")?;
                let name = steps.iter().find(|s| s.step_uuid == uuid).map(|s| s.name.clone());
                transition_from_row(r, name)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(TaskDetail {
            task,
            steps,
            task_transitions,
            step_transitions,
        }))
    }

    async fn task_summary(&self, task_uuid: Uuid) -> Result<Option<TaskSummary>> {
        let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasker_tasks WHERE task_uuid = ?"))
            .bind(task_uuid)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasker_tasks \
             WHERE (?1 IS NULL OR namespace_name = ?1) AND (?2 IS NULL OR name = ?2) AND (?3 IS NULL OR state = ?3) \
             ORDER BY created_at DESC, task_uuid DESC LIMIT ?4"
        ))
        .bind(&filter.namespace)
        .bind(&filter.name)
        .bind(filter.state.map(|s| s.as_str()))
        .bind(filter.limit.unwrap_or(100))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn due_retries(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>> {
        let rows = sqlx::query(&format!(
            "SELECT {STEP_LOCK_COLUMNS} FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
             WHERE s.state = 'waiting_for_retry' AND s.next_retry_at <= ? ORDER BY s.next_retry_at LIMIT ?"
        ))
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(step_lock_from_row).collect()
    }

    async fn overdue_attempts(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>> {
        let rows = sqlx::query(&format!(
            "SELECT {STEP_LOCK_COLUMNS} FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
             WHERE s.state = 'in_progress' AND s.deadline_at IS NOT NULL AND s.deadline_at <= ? \
             ORDER BY s.deadline_at LIMIT ?"
        ))
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(step_lock_from_row).collect()
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>> {
        // Steps under a terminal task never count as due (they are repaired when met).
        let (retry, deadline): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
            "SELECT (SELECT min(s.next_retry_at) FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
                     WHERE s.state = 'waiting_for_retry' AND t.state NOT IN {TERMINAL_TASK_STATES}), \
                    (SELECT min(s.deadline_at) FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
                     WHERE s.state = 'in_progress' AND s.deadline_at IS NOT NULL \
                       AND t.state NOT IN {TERMINAL_TASK_STATES})",
        ))
        .fetch_one(&self.reader)
        .await?;
        Ok(match (retry, deadline) {
            (Some(a), Some(b)) => Some(from_ms(a.min(b))),
            (a, b) => a.or(b).map(from_ms),
        })
    }

    async fn commit_count(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    fn subscribe_remote(&self) -> Option<broadcast::Receiver<RemoteSignal>> {
        None
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl MessageQueue for SqliteTx {
    async fn read_messages(&mut self, queue: &str, lease: Duration, max: i64) -> Result<Vec<QueueMessage>> {
        let now = ms(Utc::now());
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "UPDATE tasker_queue_messages SET vt = ?1 + ?2, read_ct = read_ct + 1 \
             WHERE msg_id IN (SELECT msg_id FROM tasker_queue_messages WHERE queue = ?3 AND vt <= ?1 \
                              ORDER BY msg_id LIMIT ?4) \
             RETURNING msg_id, read_ct, enqueued_at, message",
        )
        .bind(now)
        .bind(lease_ms)
        .bind(queue)
        .bind(max)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(|e| TaskerError::Queue(format!("reading queue '{queue}': {e}")))?;
        let mut messages = rows
            .iter()
            .map(|r| {
                Ok(QueueMessage {
                    queue: queue.to_owned(),
                    msg_id: r.try_get("msg_id")?,
                    read_ct: r.try_get("read_ct")?,
                    enqueued_at: from_ms(r.try_get("enqueued_at")?),
                    payload: parse_json(r.try_get("message")?, "queue message")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        messages.sort_by_key(|m| m.msg_id);
        Ok(messages)
    }

    async fn send_messages(&mut self, messages: &[OutgoingMessage]) -> Result<Vec<MessageRef>> {
        let now = ms(Utc::now());
        let mut refs = Vec::with_capacity(messages.len());
        for m in messages {
            let body = serde_json::to_string(&m.body).map_err(|e| TaskerError::Queue(e.to_string()))?;
            let hidden = m
                .hidden_for
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
                .unwrap_or(0);
            let msg_id: i64 = sqlx::query_scalar(
                "INSERT INTO tasker_queue_messages (queue, vt, read_ct, enqueued_at, message) VALUES (?, ?, 0, ?, ?) \
                 RETURNING msg_id",
            )
            .bind(&m.queue)
            .bind(now + hidden)
            .bind(now)
            .bind(body)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(|e| TaskerError::Queue(format!("sending to queue '{}': {e}", m.queue)))?;
            refs.push(MessageRef {
                queue: m.queue.clone(),
                msg_id,
            });
        }
        Ok(refs)
    }

    async fn delete_messages(&mut self, messages: &[MessageRef]) -> Result<()> {
        for m in messages {
            sqlx::query("DELETE FROM tasker_queue_messages WHERE msg_id = ? AND queue = ?")
                .bind(m.msg_id)
                .bind(&m.queue)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn set_message_visibility(&mut self, messages: &[MessageRef], after: Duration) -> Result<()> {
        let at = ms(Utc::now()) + i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 2);
        for m in messages {
            sqlx::query("UPDATE tasker_queue_messages SET vt = ? WHERE msg_id = ? AND queue = ?")
                .bind(at)
                .bind(m.msg_id)
                .bind(&m.queue)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl StoreTx for SqliteTx {
    async fn lock_steps(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepLock>> {
        // BEGIN IMMEDIATE already holds the database's write lock: reads here are stable.
        let mut out = Vec::with_capacity(step_uuids.len());
        for id in step_uuids {
            let row = sqlx::query(&format!(
                "SELECT {STEP_LOCK_COLUMNS} FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
                 WHERE s.step_uuid = ?"
            ))
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
            if let Some(row) = row {
                out.push(step_lock_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn change_steps(&mut self, changes: &[StepChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        let now = ms(now);
        let mut applied = Vec::with_capacity(changes.len());
        for c in changes {
            let result = sqlx::query(
                "UPDATE tasker_steps SET state = ?1, attempts = ?2, \
                    results = COALESCE(?3, results), last_error = COALESCE(?4, last_error), \
                    next_retry_at = ?5, deadline_at = ?6, updated_at = ?7, \
                    first_attempted_at = CASE WHEN ?8 THEN COALESCE(first_attempted_at, ?7) ELSE first_attempted_at END, \
                    last_attempted_at = CASE WHEN ?8 THEN ?7 ELSE last_attempted_at END, \
                    completed_at = CASE WHEN ?9 THEN ?7 ELSE completed_at END, \
                    free_attempts = free_attempts + ?13, lost_leases = lost_leases + ?14 \
                 WHERE step_uuid = ?10 AND state = ?11 AND attempts = ?12",
            )
            .bind(c.new_state.as_str())
            .bind(c.new_attempts)
            .bind(c.results.as_ref().map(json_text))
            .bind(c.last_error.as_ref().map(json_text))
            .bind(c.next_retry_at.map(ms))
            .bind(c.deadline_at.map(ms))
            .bind(now)
            .bind(c.attempt_started)
            .bind(c.finished)
            .bind(c.step_uuid)
            .bind(c.expected_state.as_str())
            .bind(c.expected_attempts)
            .bind(c.free_attempts_delta)
            .bind(c.lost_leases_delta)
            .execute(&mut *self.tx)
            .await?;
            if result.rows_affected() == 1 {
                applied.push(c.step_uuid);
            }
        }
        Ok(applied)
    }

    async fn cancel_open_steps(
        &mut self,
        task_uuid: Uuid,
        from: &[StepState],
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, StepState)>> {
        let rows = sqlx::query("SELECT step_uuid, state FROM tasker_steps WHERE task_uuid = ?")
            .bind(task_uuid)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut cancelled = Vec::new();
        for r in &rows {
            let state: StepState = parse_state(r.try_get::<&str, _>("state")?, "step")?;
            if !from.contains(&state) {
                continue;
            }
            let id: Uuid = r.try_get("step_uuid")?;
            sqlx::query(
                "UPDATE tasker_steps SET state = 'cancelled', updated_at = ?1, completed_at = ?1, \
                    next_retry_at = NULL, deadline_at = NULL WHERE step_uuid = ?2 AND state = ?3",
            )
            .bind(ms(now))
            .bind(id)
            .bind(state.as_str())
            .execute(&mut *self.tx)
            .await?;
            cancelled.push((id, state));
        }
        Ok(cancelled)
    }

    async fn release_children(&mut self, parents: &[Uuid]) -> Result<Vec<ReadyChild>> {
        let mut ready = Vec::new();
        for parent in parents {
            let rows = sqlx::query(
                "UPDATE tasker_steps SET pending_parents = pending_parents - 1 \
                 WHERE step_uuid IN (SELECT to_step FROM tasker_step_edges WHERE from_step = ?) \
                 RETURNING step_uuid, name, task_uuid, queue, max_attempts, pending_parents, state",
            )
            .bind(parent)
            .fetch_all(&mut *self.tx)
            .await?;
            for r in &rows {
                let pending: i32 = r.try_get("pending_parents")?;
                let state: &str = r.try_get("state")?;
                if pending == 0 && state == StepState::Pending.as_str() {
                    ready.push(ReadyChild {
                        step_uuid: r.try_get("step_uuid")?,
                        name: r.try_get("name")?,
                        task_uuid: r.try_get("task_uuid")?,
                        queue: r.try_get("queue")?,
                        max_attempts: r.try_get("max_attempts")?,
                    });
                }
            }
        }
        Ok(ready)
    }

    async fn apply_task_deltas(&mut self, deltas: &[TaskDelta], now: DateTime<Utc>) -> Result<Vec<TaskCounters>> {
        let mut out = Vec::with_capacity(deltas.len());
        for d in deltas {
            let row = sqlx::query(
                "UPDATE tasker_tasks SET completed_steps = completed_steps + ?1, active_steps = active_steps + ?2, \
                    failed_steps = failed_steps + ?3, updated_at = ?4 WHERE task_uuid = ?5 \
                 RETURNING task_uuid, state, total_steps, completed_steps, active_steps, failed_steps",
            )
            .bind(d.completed)
            .bind(d.active)
            .bind(d.failed)
            .bind(ms(now))
            .bind(d.task_uuid)
            .fetch_optional(&mut *self.tx)
            .await?;
            if let Some(r) = row {
                out.push(TaskCounters {
                    task_uuid: r.try_get("task_uuid")?,
                    state: parse_state(r.try_get::<&str, _>("state")?, "task")?,
                    total: r.try_get("total_steps")?,
                    completed: r.try_get("completed_steps")?,
                    active: r.try_get("active_steps")?,
                    failed: r.try_get("failed_steps")?,
                });
            }
        }
        Ok(out)
    }

    async fn change_tasks(&mut self, changes: &[TaskChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        let mut applied = Vec::new();
        for c in changes {
            let result = sqlx::query(
                "UPDATE tasker_tasks SET state = ?1, updated_at = ?2, \
                    completed_at = CASE WHEN ?3 THEN ?2 ELSE completed_at END \
                 WHERE task_uuid = ?4 AND state = ?5",
            )
            .bind(c.new.as_str())
            .bind(ms(now))
            .bind(c.new.is_terminal())
            .bind(c.task_uuid)
            .bind(c.expected.as_str())
            .execute(&mut *self.tx)
            .await?;
            if result.rows_affected() == 1 {
                applied.push(c.task_uuid);
            }
        }
        Ok(applied)
    }

    async fn insert_step_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()> {
        insert_transitions(&mut self.tx, "tasker_step_transitions", "step_uuid", rows).await
    }

    async fn insert_task_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()> {
        insert_transitions(&mut self.tx, "tasker_task_transitions", "task_uuid", rows).await
    }

    async fn insert_task(&mut self, t: &NewTask) -> Result<InsertedTask> {
        let now = ms(t.created_at);
        let tags = serde_json::to_string(&t.tags).map_err(|e| TaskerError::InvalidArgument(e.to_string()))?;
        let inserted = sqlx::query(
            "INSERT INTO tasker_tasks (task_uuid, template_id, namespace_name, name, version, state, context, \
                initiator, source_system, reason, tags, priority, correlation_id, identity_hash, idempotency_key, \
                total_steps, active_steps, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?18) \
             ON CONFLICT (identity_hash) DO NOTHING",
        )
        .bind(t.task_uuid)
        .bind(t.template_id)
        .bind(&t.namespace)
        .bind(&t.name)
        .bind(&t.version)
        .bind(t.state.as_str())
        .bind(json_text(&t.context))
        .bind(&t.initiator)
        .bind(&t.source_system)
        .bind(&t.reason)
        .bind(tags)
        .bind(t.priority)
        .bind(t.correlation_id)
        .bind(&t.identity_hash)
        .bind(&t.idempotency_key)
        .bind(i32::try_from(t.steps.len()).unwrap_or(i32::MAX))
        .bind(t.active_steps)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        if inserted.rows_affected() == 0 {
            let existing: Uuid = sqlx::query_scalar("SELECT task_uuid FROM tasker_tasks WHERE identity_hash = ?")
                .bind(&t.identity_hash)
                .fetch_one(&mut *self.tx)
                .await?;
            return Ok(InsertedTask::Existing(existing));
        }
        for s in &t.steps {
            sqlx::query(
                "INSERT INTO tasker_steps (step_uuid, task_uuid, name, position, queue, state, max_attempts, retryable, \
                    pending_parents, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            )
            .bind(s.step_uuid)
            .bind(t.task_uuid)
            .bind(&s.name)
            .bind(s.position)
            .bind(&s.queue)
            .bind(s.state.as_str())
            .bind(s.max_attempts)
            .bind(s.retryable)
            .bind(s.pending_parents)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        for (from, to) in &t.edges {
            sqlx::query("INSERT INTO tasker_step_edges (task_uuid, from_step, to_step) VALUES (?, ?, ?)")
                .bind(t.task_uuid)
                .bind(from)
                .bind(to)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(InsertedTask::Created)
    }

    async fn task_inputs(&mut self, task_uuids: &[Uuid]) -> Result<Vec<TaskInput>> {
        let mut out = Vec::with_capacity(task_uuids.len());
        for id in task_uuids {
            let row = sqlx::query(
                "SELECT task_uuid, context, correlation_id, template_id FROM tasker_tasks WHERE task_uuid = ?",
            )
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
            if let Some(r) = row {
                out.push(TaskInput {
                    task_uuid: r.try_get("task_uuid")?,
                    // Row by row: one undecodable context fails its own steps, not the claim.
                    context: serde_json::from_str(r.try_get("context")?)
                        .map_err(|e| format!("task context cannot be decoded: {e}")),
                    correlation_id: r.try_get("correlation_id")?,
                    template_id: r.try_get("template_id")?,
                });
            }
        }
        Ok(out)
    }

    async fn dependency_results(&mut self, step_uuids: &[Uuid]) -> Result<Vec<DependencyResult>> {
        let mut out = Vec::new();
        for id in step_uuids {
            let rows = sqlx::query(
                "SELECT p.name, p.results FROM tasker_step_edges e JOIN tasker_steps p ON p.step_uuid = e.from_step \
                 WHERE e.to_step = ?",
            )
            .bind(id)
            .fetch_all(&mut *self.tx)
            .await?;
            for r in &rows {
                let results = match r.try_get::<Option<&str>, _>("results")? {
                    None => Ok(Value::Null),
                    Some(text) => {
                        serde_json::from_str(text).map_err(|e| format!("dependency result cannot be decoded: {e}"))
                    }
                };
                out.push((*id, r.try_get("name")?, results));
            }
        }
        Ok(out)
    }

    async fn notify_task_finished(&mut self, _task_uuid: Uuid) -> Result<()> {
        // No cross-process channel on SQLite; waiters in other processes poll.
        Ok(())
    }

    async fn notify_timers(&mut self) -> Result<()> {
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

/// Appends audit rows to `table` (keyed by `key`), each becoming its entity's most recent one.
async fn insert_transitions(
    tx: &mut Transaction<'static, Sqlite>,
    table: &str,
    key: &str,
    rows: &[TransitionRecord],
) -> Result<()> {
    // Step rows also carry their task; task rows are keyed by it.
    let task_column = if key == "task_uuid" { "" } else { ", task_uuid" };
    let task_value = if key == "task_uuid" { "" } else { ", ?" };
    let clear = format!("UPDATE {table} SET most_recent = 0 WHERE {key} = ? AND most_recent");
    let insert = format!(
        "INSERT INTO {table} ({key}{task_column}, from_state, to_state, event, metadata, most_recent, created_at) \
         VALUES (?{task_value}, ?, ?, ?, ?, 1, ?)"
    );
    for r in rows {
        sqlx::query(&clear).bind(r.entity_uuid).execute(&mut **tx).await?;
        let mut q = sqlx::query(&insert).bind(r.entity_uuid);
        if key != "task_uuid" {
            q = q.bind(r.task_uuid);
        }
        q.bind(r.from_state)
            .bind(r.to_state)
            .bind(r.event)
            .bind(json_text(&r.metadata))
            .bind(ms(r.at))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
