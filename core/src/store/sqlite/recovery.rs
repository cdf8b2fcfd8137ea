//! SQLite statements of the dead-letter queue, the staleness detector and the worker registry
//! (issue 10). None is on the hot path: they run when a task gets stuck, when an operator acts,
//! and once per orchestrator pass. Each is one statement, its parameters numbered without gaps.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use super::{from_ms, ms, opt_from_ms, parse_json, parse_state, to_json, uuid_list, Hex, SqliteStore, SqliteTx};
use crate::error::{Result, TaskerError};
use crate::store::records::*;

/// A 16-byte uuid BLOB as its usual text.
macro_rules! uuid_text {
    ($col:literal) => {
        concat!(
            "lower(substr(hex(",
            $col,
            "), 1, 8) || '-' || substr(hex(",
            $col,
            "), 9, 4) || '-' || \
             substr(hex(",
            $col,
            "), 13, 4) || '-' || substr(hex(",
            $col,
            "), 17, 4) || '-' || \
             substr(hex(",
            $col,
            "), 21))"
        )
    };
}

/// Milliseconds since the epoch as RFC 3339.
macro_rules! time_text {
    ($col:literal) => {
        concat!("strftime('%Y-%m-%dT%H:%M:%fZ', ", $col, " / 1000.0, 'unixepoch')")
    };
}

/// `?1`: the entries (JSON rows: id, task, reason or null, task state, notes), `?2`: now.
const INSERT_ENTRIES: &str = concat!(
    "INSERT INTO tasker_dlq_entries (entry_uuid, task_uuid, reason, task_state, snapshot, status, notes, \
        created_at, updated_at) \
     SELECT unhex(e.v ->> 0), t.task_uuid, \
        COALESCE(e.v ->> 2, CASE WHEN EXISTS (SELECT 1 FROM tasker_steps s WHERE s.task_uuid = t.task_uuid \
            AND s.state = 'error' AND json_extract(s.last_error, '$.retryable') = 0) \
          THEN 'permanent_failure' ELSE 'max_retries_exceeded' END), \
        e.v ->> 3, \
        json_object( \
          'task', json_object('task_uuid', ",
    uuid_text!("t.task_uuid"),
    ", 'state', t.state, 'context', json(t.context), \
            'priority', t.priority, 'correlation_id', ",
    uuid_text!("t.correlation_id"),
    ", 'initiator', t.initiator, \
            'total_steps', t.total_steps, 'completed_steps', t.completed_steps, 'failed_steps', t.failed_steps, \
            'created_at', ",
    time_text!("t.created_at"),
    ", 'updated_at', ",
    time_text!("t.updated_at"),
    "), \
          'template', json_object('namespace', t.namespace_name, 'name', t.name, 'version', t.version), \
          'steps', (SELECT json_group_array(json(x)) FROM (SELECT json_object('name', s.name, 'state', s.state, \
              'attempts', s.attempts, 'max_attempts', s.max_attempts, 'last_error', json(s.last_error), \
              'created_by', s.created_by) AS x \
            FROM tasker_steps s WHERE s.task_uuid = t.task_uuid ORDER BY s.position, s.name))), \
        'pending', e.v ->> 4, ?2, ?2 \
     FROM (SELECT jsonb(value) AS v FROM json_each(?1)) e \
     JOIN tasker_tasks t ON t.task_uuid = unhex(e.v ->> 1) \
     WHERE NOT EXISTS (SELECT 1 FROM tasker_dlq_entries d WHERE d.task_uuid = t.task_uuid \
        AND d.status IN ('pending', 'investigating')) RETURNING entry_uuid, task_uuid, reason"
);

/// `?1`: tasks, `?2`: status, `?3`: the note (JSON), `?4`: resolver, `?5`: now.
const CLOSE_ENTRIES: &str = "UPDATE tasker_dlq_entries SET status = ?2, notes = json_insert(notes, '$[#]', json(?3)), \
        resolved_by = ?4, resolved_at = ?5, updated_at = ?5 \
     WHERE task_uuid IN (SELECT unhex(value) FROM json_each(?1)) AND status IN ('pending', 'investigating') \
     RETURNING 1";

/// `?1`: tasks, `?2`: the note (JSON), `?3`: now.
const NOTE_RESOLUTION: &str = "UPDATE tasker_dlq_entries SET notes = json_insert(notes, '$[#]', json(?2)), \
        resolution = ?2, updated_at = ?3 \
     WHERE task_uuid IN (SELECT unhex(value) FROM json_each(?1)) AND status IN ('pending', 'investigating') \
     RETURNING 1";

const ENTRY_COLUMNS: &str = "d.*, t.priority AS task_priority";

/// `?1` status, `?2` reason, `?3` task, `?4` open only, `?5` limit, `?6` offset.
const LIST_ENTRIES: &str = "SELECT d.*, t.priority AS task_priority FROM tasker_dlq_entries d \
     JOIN tasker_tasks t ON t.task_uuid = d.task_uuid \
     WHERE (?1 IS NULL OR d.status = ?1) AND (?2 IS NULL OR d.reason = ?2) AND (?3 IS NULL OR d.task_uuid = ?3) \
       AND (NOT ?4 OR d.status IN ('pending', 'investigating')) \
     ORDER BY d.created_at DESC, d.entry_uuid DESC LIMIT ?5 OFFSET ?6";

/// `?1` entry, `?2` status or null, `?3` note (JSON), `?4` whether it closes, `?5` by, `?6` now.
const UPDATE_ENTRY: &str = "UPDATE tasker_dlq_entries SET status = COALESCE(?2, status), \
        notes = json_insert(notes, '$[#]', json(?3)), \
        resolved_by = CASE WHEN ?4 THEN ?5 ELSE resolved_by END, \
        resolved_at = CASE WHEN ?4 THEN ?6 ELSE resolved_at END, updated_at = ?6 \
     WHERE entry_uuid = ?1 RETURNING 1";

/// `?1` workers's row values.
const REGISTER_WORKER: &str = "INSERT INTO tasker_workers (registration_uuid, worker_id, host, pid, language, queues, \
        concurrency, in_flight, started_at, last_heartbeat_at, stopped_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
     ON CONFLICT (registration_uuid) DO UPDATE SET last_heartbeat_at = excluded.last_heartbeat_at, \
        in_flight = excluded.in_flight, stopped_at = excluded.stopped_at";

/// A heartbeat that was under way when the worker stopped must not undo the stop.
const HEARTBEAT: &str = "UPDATE tasker_workers SET last_heartbeat_at = ?3, in_flight = ?2, \
        stopped_at = CASE WHEN ?4 THEN ?3 ELSE stopped_at END \
     WHERE registration_uuid = ?1 AND (?4 OR stopped_at IS NULL)";

type WriteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn note_json<T: serde::Serialize + ?Sized>(note: &T) -> Result<String> {
    serde_json::to_string(note).map_err(|e| TaskerError::InvalidArgument(format!("DLQ note: {e}")))
}

fn entry_from_row(row: &SqliteRow) -> Result<DlqEntry> {
    let notes: Value = parse_json(row.try_get("notes")?, "DLQ notes")?;
    Ok(DlqEntry {
        entry_uuid: row.try_get("entry_uuid")?,
        task_uuid: row.try_get("task_uuid")?,
        reason: row.try_get("reason")?,
        task_state: row.try_get("task_state")?,
        snapshot: parse_json(row.try_get("snapshot")?, "DLQ snapshot")?,
        status: row.try_get("status")?,
        notes: serde_json::from_value(notes)
            .map_err(|e| TaskerError::Corrupt(format!("DLQ entry notes cannot be read: {e}")))?,
        resolved_by: row.try_get("resolved_by")?,
        resolved_at: opt_from_ms(row.try_get("resolved_at")?),
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
        task_priority: row.try_get("task_priority")?,
    })
}

impl SqliteTx {
    pub(super) async fn insert_dlq_rows(
        &mut self,
        entries: &[NewDlqEntry],
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertedDlqEntry>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<_> = entries
            .iter()
            .map(|e| {
                Ok((
                    Hex(e.entry_uuid),
                    Hex(e.task_uuid),
                    e.reason.map(DlqReason::as_str),
                    e.task_state.as_str(),
                    note_json(&e.note.iter().collect::<Vec<_>>())?,
                ))
            })
            .collect::<Result<_>>()?;
        // Rows are counted from RETURNING: a command that carries BEGIN reports a stale count.
        let sql = self.sql(INSERT_ENTRIES);
        let done = sqlx::query(&sql)
            .bind(to_json(&rows)?)
            .bind(ms(now))
            .fetch_all(self.conn()?)
            .await?;
        done.iter()
            .map(|r| {
                Ok(InsertedDlqEntry {
                    entry_uuid: r.try_get("entry_uuid")?,
                    task_uuid: r.try_get("task_uuid")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    pub(super) async fn close_dlq_rows(
        &mut self,
        task_uuids: &[Uuid],
        status: DlqStatus,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        if task_uuids.is_empty() {
            return Ok(0);
        }
        let sql = self.sql(CLOSE_ENTRIES);
        let done = sqlx::query(&sql)
            .bind(uuid_list(task_uuids)?)
            .bind(status.as_str())
            .bind(note_json(note)?)
            .bind(&note.by)
            .bind(ms(now))
            .fetch_all(self.conn()?)
            .await?;
        Ok(done.len())
    }
}

impl SqliteTx {
    pub(super) async fn note_dlq_resolution_rows(
        &mut self,
        task_uuids: &[Uuid],
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        if task_uuids.is_empty() {
            return Ok(0);
        }
        let sql = self.sql(NOTE_RESOLUTION);
        let done = sqlx::query(&sql)
            .bind(uuid_list(task_uuids)?)
            .bind(note_json(note)?)
            .bind(ms(now))
            .fetch_all(self.conn()?)
            .await?;
        Ok(done.len())
    }
}

impl SqliteStore {
    pub(super) async fn list_dlq_rows(&self, f: &DlqFilter) -> Result<Vec<DlqEntry>> {
        let rows = self
            .read(
                sqlx::query(LIST_ENTRIES)
                    .bind(f.status.map(DlqStatus::as_str))
                    .bind(f.reason.map(DlqReason::as_str))
                    .bind(f.task_uuid)
                    .bind(f.open_only)
                    .bind(f.limit.unwrap_or(100))
                    .bind(f.offset.unwrap_or(0)),
            )
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    pub(super) async fn dlq_row(&self, entry_uuid: Uuid) -> Result<Option<DlqEntry>> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM tasker_dlq_entries d JOIN tasker_tasks t ON t.task_uuid = d.task_uuid \
             WHERE d.entry_uuid = ?1"
        );
        let rows = self.read(sqlx::query(&sql).bind(entry_uuid)).await?;
        rows.first().map(entry_from_row).transpose()
    }

    pub(super) async fn update_dlq_row(
        &self,
        entry_uuid: Uuid,
        status: Option<DlqStatus>,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<Option<DlqEntry>> {
        let closes = status.is_some_and(|s| !s.is_open());
        let mut tx = self.transaction().await?;
        let sql = tx.sql(UPDATE_ENTRY);
        let updated = sqlx::query(&sql)
            .bind(entry_uuid)
            .bind(status.map(DlqStatus::as_str))
            .bind(note_json(note)?)
            .bind(closes)
            .bind(&note.by)
            .bind(ms(now))
            .fetch_optional(tx.conn()?)
            .await;
        let updated = match updated {
            Ok(u) => u,
            Err(e) => {
                tx.end("ROLLBACK").await?;
                return Err(e.into());
            }
        };
        tx.end("COMMIT").await?;
        if updated.is_none() {
            return Ok(None);
        }
        self.dlq_row(entry_uuid).await
    }

    pub(super) async fn dlq_count_rows(&self) -> Result<Vec<DlqCount>> {
        let rows = self
            .read(sqlx::query(
                "SELECT reason, status, count(*) AS n FROM tasker_dlq_entries GROUP BY reason, status \
                 ORDER BY reason, status",
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DlqCount {
                    reason: r.try_get("reason")?,
                    status: r.try_get("status")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    pub(super) async fn open_task_rows(
        &self,
        template_ids: &[i64],
        idle_before: DateTime<Utc>,
        created_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OpenTask>> {
        let rows = self
            .read(
                sqlx::query(
                    "SELECT task_uuid, state, template_id, priority, updated_at, created_at FROM tasker_tasks \
                     WHERE state IN ('pending', 'initializing', 'enqueuing_steps', 'steps_in_process', \
                         'evaluating_results', 'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures') \
                       AND template_id IN (SELECT value FROM json_each(?1)) AND (updated_at < ?2 OR created_at < ?3) \
                     ORDER BY updated_at LIMIT ?4",
                )
                .bind(to_json(template_ids)?)
                .bind(ms(idle_before))
                .bind(ms(created_before))
                .bind(limit),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OpenTask {
                    task_uuid: r.try_get("task_uuid")?,
                    state: parse_state(r.try_get::<&str, _>("state")?, "task")?,
                    template_id: r.try_get("template_id")?,
                    priority: r.try_get("priority")?,
                    updated_at: from_ms(r.try_get("updated_at")?),
                    created_at: from_ms(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    pub(super) async fn waiting_task_rows(
        &self,
        queue: &str,
        enqueued_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Uuid>> {
        let now = ms(Utc::now());
        let rows = self
            .read(
                sqlx::query(
                    "SELECT DISTINCT json_extract(message, '$.task_uuid') AS task FROM tasker_queue_messages \
                     WHERE queue = ?1 AND vt <= ?2 AND enqueued_at < ?3 LIMIT ?4",
                )
                .bind(queue)
                .bind(now)
                .bind(ms(enqueued_before))
                .bind(limit),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<Option<String>, _>("task").ok().flatten())
            .filter_map(|s| Uuid::parse_str(&s).ok())
            .collect())
    }

    /// Runs one write `statement` in a transaction of its own, its parameters bound by `bind`.
    async fn write_one<F>(&self, statement: &'static str, bind: F) -> Result<()>
    where
        F: for<'q> FnOnce(WriteQuery<'q>) -> WriteQuery<'q>,
    {
        let mut tx = self.transaction().await?;
        let sql = tx.sql(statement);
        let result = bind(sqlx::query(&sql)).execute(tx.conn()?).await;
        match result {
            Ok(_) => tx.end("COMMIT").await,
            Err(e) => {
                tx.end("ROLLBACK").await?;
                Err(e.into())
            }
        }
    }

    pub(super) async fn register_worker_row(&self, w: &WorkerRecord) -> Result<()> {
        let queues = to_json(&w.queues)?;
        self.write_one(REGISTER_WORKER, |q| {
            q.bind(w.registration_uuid)
                .bind(w.worker_id.clone())
                .bind(w.host.clone())
                .bind(w.pid)
                .bind(w.language.clone())
                .bind(queues)
                .bind(w.concurrency)
                .bind(w.in_flight)
                .bind(ms(w.started_at))
                .bind(ms(w.last_heartbeat_at))
                .bind(w.stopped_at.map(ms))
        })
        .await
    }

    pub(super) async fn heartbeat_row(
        &self,
        registration_uuid: Uuid,
        in_flight: i32,
        stopped: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.write_one(HEARTBEAT, |q| {
            q.bind(registration_uuid).bind(in_flight).bind(ms(now)).bind(stopped)
        })
        .await
    }

    pub(super) async fn worker_rows(&self, seen_since: DateTime<Utc>) -> Result<Vec<WorkerRecord>> {
        let rows = self
            .read(
                sqlx::query(
                    "SELECT * FROM tasker_workers WHERE last_heartbeat_at >= ?1 OR stopped_at >= ?1 \
                     ORDER BY started_at DESC, registration_uuid",
                )
                .bind(ms(seen_since)),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRecord {
                    registration_uuid: r.try_get("registration_uuid")?,
                    worker_id: r.try_get("worker_id")?,
                    host: r.try_get("host")?,
                    pid: r.try_get("pid")?,
                    language: r.try_get("language")?,
                    queues: serde_json::from_value(parse_json(r.try_get("queues")?, "worker queues")?)
                        .map_err(|e| TaskerError::Corrupt(format!("worker queues cannot be read: {e}")))?,
                    concurrency: r.try_get("concurrency")?,
                    in_flight: r.try_get("in_flight")?,
                    started_at: from_ms(r.try_get("started_at")?),
                    last_heartbeat_at: from_ms(r.try_get("last_heartbeat_at")?),
                    stopped_at: opt_from_ms(r.try_get("stopped_at")?),
                })
            })
            .collect()
    }
}
