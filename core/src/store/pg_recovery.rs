//! PostgreSQL statements of the dead-letter queue, the staleness detector and the worker
//! registry (issue 10). None is on the hot path: they run when a task gets stuck, when an
//! operator acts, and once per orchestrator pass.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::postgres::{parse_state, queue_table};
use super::records::*;
use crate::error::{Result, TaskerError};

/// The open DLQ statuses, as an SQL list.
const OPEN: &str = "('pending', 'investigating')";

/// The snapshot of task `t`: the task, its template identity and its steps.
const SNAPSHOT: &str = "jsonb_build_object( \
    'task', jsonb_build_object('task_uuid', t.task_uuid, 'state', t.state, 'context', t.context, \
        'priority', t.priority, 'correlation_id', t.correlation_id, 'initiator', t.initiator, \
        'total_steps', t.total_steps, 'completed_steps', t.completed_steps, \
        'failed_steps', t.failed_steps, 'created_at', t.created_at, 'updated_at', t.updated_at), \
    'template', jsonb_build_object('namespace', t.namespace_name, 'name', t.name, 'version', t.version), \
    'steps', COALESCE((SELECT jsonb_agg(jsonb_build_object('name', s.name, 'state', s.state, \
        'attempts', s.attempts, 'max_attempts', s.max_attempts, 'last_error', s.last_error, \
        'created_by', s.created_by) ORDER BY s.position, s.name) \
      FROM tasker_steps s WHERE s.task_uuid = t.task_uuid), '[]'::jsonb))";

/// `permanent_failure` when a failed step of task `t` last failed with a permanent error.
const DERIVED_REASON: &str = "CASE WHEN EXISTS (SELECT 1 FROM tasker_steps s WHERE s.task_uuid = t.task_uuid \
      AND s.state = 'error' AND s.last_error ->> 'retryable' = 'false') \
    THEN 'permanent_failure' ELSE 'max_retries_exceeded' END";

const ENTRY_COLUMNS: &str = "d.entry_uuid, d.task_uuid, d.reason, d.task_state, d.snapshot, d.status, d.notes, \
    d.resolved_by, d.resolved_at, d.created_at, d.updated_at, t.priority AS task_priority";

fn notes_json(notes: &[&DlqNote]) -> Result<String> {
    serde_json::to_string(notes).map_err(|e| TaskerError::InvalidArgument(format!("DLQ note: {e}")))
}

fn entry_from_row(row: &PgRow) -> Result<DlqEntry> {
    let notes: Json<Value> = row.try_get("notes")?;
    Ok(DlqEntry {
        entry_uuid: row.try_get("entry_uuid")?,
        task_uuid: row.try_get("task_uuid")?,
        reason: row.try_get("reason")?,
        task_state: row.try_get("task_state")?,
        snapshot: row.try_get::<Json<Value>, _>("snapshot")?.0,
        status: row.try_get("status")?,
        notes: serde_json::from_value(notes.0)
            .map_err(|e| TaskerError::Corrupt(format!("DLQ entry notes cannot be read: {e}")))?,
        resolved_by: row.try_get("resolved_by")?,
        resolved_at: row.try_get("resolved_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        task_priority: row.try_get("task_priority")?,
    })
}

pub(super) async fn insert_entries(
    conn: &mut PgConnection,
    entries: &[NewDlqEntry],
    now: DateTime<Utc>,
) -> Result<Vec<InsertedDlqEntry>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let notes: Vec<String> = entries
        .iter()
        .map(|e| notes_json(&e.note.iter().collect::<Vec<_>>()))
        .collect::<Result<_>>()?;
    let done = sqlx::query(&format!(
        "INSERT INTO tasker_dlq_entries (entry_uuid, task_uuid, reason, task_state, snapshot, status, notes, \
            created_at, updated_at) \
         SELECT v.id, t.task_uuid, COALESCE(v.reason, {DERIVED_REASON}), v.task_state, {SNAPSHOT}, 'pending', \
            v.notes::jsonb, $6, $6 \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[]) AS v(id, task, reason, task_state, notes) \
         JOIN tasker_tasks t ON t.task_uuid = v.task \
         WHERE NOT EXISTS (SELECT 1 FROM tasker_dlq_entries d WHERE d.task_uuid = v.task AND d.status IN {OPEN}) \
         RETURNING entry_uuid, task_uuid, reason"
    ))
    .bind(entries.iter().map(|e| e.entry_uuid).collect::<Vec<Uuid>>())
    .bind(entries.iter().map(|e| e.task_uuid).collect::<Vec<Uuid>>())
    .bind(
        entries
            .iter()
            .map(|e| e.reason.map(|r| r.as_str().to_owned()))
            .collect::<Vec<Option<String>>>(),
    )
    .bind(
        entries
            .iter()
            .map(|e| e.task_state.as_str().to_owned())
            .collect::<Vec<String>>(),
    )
    .bind(notes)
    .bind(now)
    .fetch_all(conn)
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

pub(super) async fn close_entries(
    conn: &mut PgConnection,
    task_uuids: &[Uuid],
    status: DlqStatus,
    note: &DlqNote,
    now: DateTime<Utc>,
) -> Result<usize> {
    if task_uuids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(&format!(
        "UPDATE tasker_dlq_entries SET status = $2, notes = notes || $3::jsonb, resolved_by = $4, \
            resolved_at = $5, updated_at = $5 \
         WHERE task_uuid = ANY($1) AND status IN {OPEN}"
    ))
    .bind(task_uuids)
    .bind(status.as_str())
    .bind(notes_json(&[note])?)
    .bind(&note.by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
}

pub(super) async fn note_resolution(
    conn: &mut PgConnection,
    task_uuids: &[Uuid],
    note: &DlqNote,
    now: DateTime<Utc>,
) -> Result<usize> {
    if task_uuids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(&format!(
        "UPDATE tasker_dlq_entries SET notes = notes || $2::jsonb, resolution = $3::jsonb, updated_at = $4 \
         WHERE task_uuid = ANY($1) AND status IN {OPEN}"
    ))
    .bind(task_uuids)
    .bind(notes_json(&[note])?)
    .bind(serde_json::to_string(note).map_err(|e| TaskerError::InvalidArgument(format!("DLQ note: {e}")))?)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
}

pub(super) async fn list(pool: &PgPool, f: &DlqFilter) -> Result<Vec<DlqEntry>> {
    let rows = sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS} FROM tasker_dlq_entries d JOIN tasker_tasks t ON t.task_uuid = d.task_uuid \
         WHERE ($1::text IS NULL OR d.status = $1) AND ($2::text IS NULL OR d.reason = $2) \
           AND ($3::uuid IS NULL OR d.task_uuid = $3) AND (NOT $4 OR d.status IN {OPEN}) \
         ORDER BY d.created_at DESC, d.entry_uuid DESC LIMIT $5 OFFSET $6"
    ))
    .bind(f.status.map(DlqStatus::as_str))
    .bind(f.reason.map(DlqReason::as_str))
    .bind(f.task_uuid)
    .bind(f.open_only)
    .bind(f.limit.unwrap_or(100))
    .bind(f.offset.unwrap_or(0))
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry_from_row).collect()
}

pub(super) async fn entry(pool: &PgPool, entry_uuid: Uuid) -> Result<Option<DlqEntry>> {
    let row = sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS} FROM tasker_dlq_entries d JOIN tasker_tasks t ON t.task_uuid = d.task_uuid \
         WHERE d.entry_uuid = $1"
    ))
    .bind(entry_uuid)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(entry_from_row).transpose()
}

pub(super) async fn update(
    pool: &PgPool,
    entry_uuid: Uuid,
    status: Option<DlqStatus>,
    note: &DlqNote,
    now: DateTime<Utc>,
) -> Result<Option<DlqEntry>> {
    let closes = status.is_some_and(|s| !s.is_open());
    let updated = sqlx::query(
        "UPDATE tasker_dlq_entries SET status = COALESCE($2, status), notes = notes || $3::jsonb, \
            resolved_by = CASE WHEN $4 THEN $5 ELSE resolved_by END, \
            resolved_at = CASE WHEN $4 THEN $6 ELSE resolved_at END, updated_at = $6 \
         WHERE entry_uuid = $1",
    )
    .bind(entry_uuid)
    .bind(status.map(DlqStatus::as_str))
    .bind(notes_json(&[note])?)
    .bind(closes)
    .bind(&note.by)
    .bind(now)
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    entry(pool, entry_uuid).await
}

pub(super) async fn counts(pool: &PgPool) -> Result<Vec<DlqCount>> {
    let rows = sqlx::query(
        "SELECT reason, status, count(*) AS n FROM tasker_dlq_entries GROUP BY reason, status ORDER BY reason, status",
    )
    .fetch_all(pool)
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

pub(super) async fn open_tasks(
    pool: &PgPool,
    template_ids: &[i64],
    idle_before: DateTime<Utc>,
    created_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<OpenTask>> {
    // Through `tasker_tasks_by_state`, one range per open state.
    let rows = sqlx::query(
        "SELECT task_uuid, state, template_id, priority, updated_at, created_at FROM tasker_tasks \
         WHERE state IN ('pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results', \
             'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures') \
           AND template_id = ANY($1) AND (updated_at < $2 OR created_at < $3) ORDER BY updated_at LIMIT $4",
    )
    .bind(template_ids)
    .bind(idle_before)
    .bind(created_before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OpenTask {
                task_uuid: r.try_get("task_uuid")?,
                state: parse_state(r.try_get::<&str, _>("state")?, "task")?,
                template_id: r.try_get("template_id")?,
                priority: r.try_get("priority")?,
                updated_at: r.try_get("updated_at")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

pub(super) async fn waiting_tasks(
    pool: &PgPool,
    queue: &str,
    enqueued_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>> {
    let table = queue_table(queue)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'pgmq' AND tablename = $1)")
            .bind(&table)
            .fetch_one(pool)
            .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let ids: Vec<Option<String>> = sqlx::query_scalar(&format!(
        "SELECT DISTINCT message ->> 'task_uuid' FROM pgmq.{table} \
         WHERE vt <= clock_timestamp() AND enqueued_at < $1 LIMIT $2"
    ))
    .bind(enqueued_before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(ids.iter().flatten().filter_map(|s| Uuid::parse_str(s).ok()).collect())
}

pub(super) async fn register_worker(pool: &PgPool, w: &WorkerRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO tasker_workers (registration_uuid, worker_id, host, pid, language, queues, concurrency, \
            in_flight, started_at, last_heartbeat_at, stopped_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (registration_uuid) DO UPDATE SET last_heartbeat_at = EXCLUDED.last_heartbeat_at, \
            in_flight = EXCLUDED.in_flight, stopped_at = EXCLUDED.stopped_at",
    )
    .bind(w.registration_uuid)
    .bind(&w.worker_id)
    .bind(&w.host)
    .bind(w.pid)
    .bind(&w.language)
    .bind(Json(&w.queues))
    .bind(w.concurrency)
    .bind(w.in_flight)
    .bind(w.started_at)
    .bind(w.last_heartbeat_at)
    .bind(w.stopped_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn heartbeat(
    pool: &PgPool,
    registration_uuid: Uuid,
    in_flight: i32,
    stopped: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        // A heartbeat that was under way when the worker stopped must not undo the stop.
        "UPDATE tasker_workers SET last_heartbeat_at = $3, in_flight = $2, \
            stopped_at = CASE WHEN $4 THEN $3 ELSE stopped_at END \
         WHERE registration_uuid = $1 AND ($4 OR stopped_at IS NULL)",
    )
    .bind(registration_uuid)
    .bind(in_flight)
    .bind(now)
    .bind(stopped)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn list_workers(pool: &PgPool, seen_since: DateTime<Utc>) -> Result<Vec<WorkerRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM tasker_workers WHERE last_heartbeat_at >= $1 OR stopped_at >= $1 \
         ORDER BY started_at DESC, registration_uuid",
    )
    .bind(seen_since)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(WorkerRecord {
                registration_uuid: r.try_get("registration_uuid")?,
                worker_id: r.try_get("worker_id")?,
                host: r.try_get("host")?,
                pid: r.try_get("pid")?,
                language: r.try_get("language")?,
                queues: r.try_get::<Json<Vec<String>>, _>("queues")?.0,
                concurrency: r.try_get("concurrency")?,
                in_flight: r.try_get("in_flight")?,
                started_at: r.try_get("started_at")?,
                last_heartbeat_at: r.try_get("last_heartbeat_at")?,
                stopped_at: r.try_get("stopped_at")?,
            })
        })
        .collect()
}

/// The dashboard's overview: task counts by state and recent tasks by time bucket (sums of
/// `tasker_task_counts`, 0009, folded first so that they are a few hundred rows), throughput
/// (through `tasker_tasks_by_completed`) and each PGMQ queue's depth. Off the hot path.
pub(super) async fn overview(pool: &PgPool, w: &OverviewWindow) -> Result<Overview> {
    compact_task_counts(pool, w.now - chrono::Duration::milliseconds(OverviewWindow::KEPT_MS)).await?;
    let tasks_by_state = sqlx::query(
        "SELECT state, SUM(n)::bigint FROM tasker_task_counts GROUP BY state HAVING SUM(n) <> 0 ORDER BY state",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(StateCount {
            state: r.try_get(0)?,
            count: r.try_get(1)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    // $1 since (ms since the epoch, a whole minute), $2 the bucket width (ms).
    let recent = sqlx::query(
        "SELECT (minute * 60000 - $1) / $2 AS bucket, state, SUM(n)::bigint \
         FROM tasker_task_counts WHERE minute >= $1 / 60000 GROUP BY 1, 2 HAVING SUM(n) <> 0 ORDER BY 1, 2",
    )
    .bind(w.since.timestamp_millis())
    .bind(w.bucket_ms.max(1))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(BucketCount {
            bucket: r.try_get(0)?,
            state: r.try_get(1)?,
            count: r.try_get(2)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let completed = sqlx::query(
        "SELECT COUNT(*) FILTER (WHERE state = 'complete'), \
                COUNT(*) FILTER (WHERE state = 'complete' AND completed_at >= $2) \
         FROM tasker_tasks WHERE completed_at >= $1",
    )
    .bind(w.since)
    .bind(w.recent_since)
    .fetch_one(pool)
    .await?;
    Ok(Overview {
        tasks_by_state,
        recent,
        completed_since: completed.try_get(0)?,
        completed_recently: completed.try_get(1)?,
        // Filled by the caller from `Store::queue_stats`.
        queues: Vec::new(),
    })
}

/// The advisory lock that lets one process at a time fold `tasker_task_counts`.
const FOLD_LOCK: i64 = 0x7461_736b_6572_0014;

/// Folds the deltas of `tasker_task_counts` into one row per (minute, state), and minutes
/// before `before` into minute 0, in one statement: the rows it deletes are exactly the rows it
/// sums back, so a concurrent reader sees the same totals before and after. Triggers keep
/// appending deltas meanwhile (rows this statement's snapshot does not see, left for the next
/// fold). It takes a try-advisory lock for the statement and does nothing when another process
/// holds it: two folds would only wait on each other's rows. Returns the rows it folded.
pub(super) async fn compact_task_counts(pool: &PgPool, before: DateTime<Utc>) -> Result<u64> {
    let minute = before.timestamp().div_euclid(60);
    let row = sqlx::query(
        "WITH lock AS (SELECT pg_try_advisory_xact_lock($1) AS got), \
              moved AS (DELETE FROM tasker_task_counts WHERE (SELECT got FROM lock) RETURNING minute, state, n), \
              folded AS (INSERT INTO tasker_task_counts (minute, state, n) \
                SELECT CASE WHEN minute < $2 THEN 0 ELSE minute END, state, SUM(n) FROM moved \
                GROUP BY 1, 2 HAVING SUM(n) <> 0) \
         SELECT COUNT(*) FROM moved",
    )
    .bind(FOLD_LOCK)
    .bind(minute)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
}
