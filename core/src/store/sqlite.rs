//! SQLite store: the embedded default. One file in WAL mode, safe for several processes on one
//! machine.
//!
//! Writes go through one writer connection and start with `BEGIN IMMEDIATE`: SQLite allows one
//! writer at a time anyway, and taking the write lock up front means a transaction never fails
//! half-way when it upgrades from read to write (other processes wait on `busy_timeout`).
//! Reads use four read-only connections and never block writers (WAL). The store holds these
//! connections itself (see [`SqliteStore`]); the WAL is checkpointed in the background.
//!
//! Every statement is a round trip to the thread that owns the connection (sqlx runs each SQLite
//! connection on its own thread), and those hand-offs, not SQLite, are most of the cost of a
//! step. So each primitive is one statement for the whole batch, whatever its size: the batch
//! travels as one JSON array parameter read with `json_each` (a batch of arrays is first turned
//! into JSONB element by element, in a materialized CTE, so that reading an element's fields
//! with `->>` does not parse its text again for each field). Uuids travel as 32 hex digits and
//! become their 16-byte BLOB again with `unhex()`; JSON that is stored (results, errors,
//! metadata, message bodies) travels as a JSON *string*, so it is stored byte for byte as serde
//! wrote it. A primitive made of several statements sends them in one query string, which the
//! SQLite driver runs as one command (`?N` parameters are shared by all of them), and a
//! transaction's BEGIN goes out with its first command. sqlx deprecates several statements in one
//! `query()` (it still runs them in 0.8; see `tests::commands`): a future sqlx would need another
//! way to send them together.

mod events;
mod overview;
mod recovery;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Serialize, Serializer};
use serde_json::Value;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row, Sqlite};
use tokio::sync::{broadcast, Mutex, OwnedMutexGuard};
use uuid::Uuid;

use super::events::{EventStore, NewEvent};
use super::records::*;
use super::{order_key, Backend, MessageQueue, RemoteSignal, Store, StoreTx, TERMINAL_TASK_STATES};
use crate::error::{sqlx_is_race, sqlx_is_transient, Result, TaskerError};
use crate::state::{NamedState, StepState};

/// A SQLite-backed [`Store`].
///
/// It holds its connections itself rather than in a sqlx pool: a pool pings a connection each
/// time it is given back, one more round trip to its thread per transaction and per read. One
/// writer connection (SQLite has one writer at a time anyway), taken for a transaction's whole
/// life; a few read-only connections for reads, which never block the writer (WAL).
pub struct SqliteStore {
    writer_options: SqliteConnectOptions,
    reader_options: SqliteConnectOptions,
    writer: Arc<Mutex<Slot>>,
    readers: Vec<Arc<Mutex<Slot>>>,
    next_reader: AtomicUsize,
    closed: Arc<AtomicBool>,
    checkpointer: tokio::task::JoinHandle<()>,
    writer_wait: Duration,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.checkpointer.abort();
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("file", &self.writer_options.get_filename())
            .field("readers", &self.readers.len())
            .finish_non_exhaustive()
    }
}

/// How the SQLite store connects (the `[database]` keys `sqlite_*`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SqliteSettings {
    /// Read-only connections (reads run beside the one writer under WAL).
    pub readers: usize,
    /// How long a transaction of this process waits for the writer connection before giving up
    /// (a transient error).
    pub writer_wait: Duration,
    /// SQLite's `busy_timeout`: how long a statement waits for another process's write lock.
    pub busy_timeout: Duration,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        Self {
            readers: 4,
            writer_wait: Duration::from_secs(60),
            busy_timeout: Duration::from_secs(30),
        }
    }
}

/// How often the WAL is checkpointed in the background (see `checkpoint_in_background`).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// The writer's own automatic checkpoint, only a safety net (the background checkpointer keeps
/// the WAL far smaller): run inside a COMMIT, a checkpoint stalls the transaction committing.
const WAL_AUTOCHECKPOINT_PAGES: &str = "10000";

/// The writer's page cache, in KiB (SQLite's default is 2,000): the pages a transaction touches
/// stay cached as the history grows.
const WRITER_CACHE_KIB: &str = "-16384";

/// Copies the WAL into the database file every `CHECKPOINT_EVERY` on a connection of its own
/// (PASSIVE: never waits for, nor blocks, readers or the writer), so that checkpoints, and the
/// fsync they end with, do not run inside a transaction's COMMIT. Stops when the store closes.
fn checkpoint_in_background(options: SqliteConnectOptions, closed: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conn: Option<SqliteConnection> = None;
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if closed.load(Ordering::Acquire) {
                break;
            }
            if conn.is_none() {
                conn = options.connect().await.ok();
            }
            let Some(c) = conn.as_mut() else { continue };
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut *c).await {
                tracing::debug!(error = %e, "background WAL checkpoint failed; the writer's own checkpoint remains");
                conn = None;
            }
        }
        if let Some(c) = conn {
            let _ = c.close().await;
        }
    })
}

/// The statement that opens a write transaction. It takes SQLite's write lock up front, so a
/// transaction never fails half-way when it upgrades from read to write (other processes wait on
/// `busy_timeout`). It goes out with the transaction's first statement, in the same command.
/// (Commands are always fetched whole: `fetch_one`/`fetch_optional` stop the command at its first
/// row, leaving the statements after it unrun.)
const BEGIN: &str = "BEGIN IMMEDIATE;\n";

/// One connection, opened on first use and opened again after its thread went away.
#[derive(Default)]
struct Slot {
    conn: Option<SqliteConnection>,
    /// A transaction may be open on it: BEGIN went out and no COMMIT or ROLLBACK came back.
    open_tx: bool,
}

impl Slot {
    /// The connection, open, outside any transaction.
    async fn ready(&mut self, options: &SqliteConnectOptions, closed: &AtomicBool) -> Result<&mut SqliteConnection> {
        if closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed.into());
        }
        if self.open_tx {
            // Abandoned without its rollback having run (no runtime to run it on): roll back
            // now, or start over with a new connection (closing one rolls back).
            self.open_tx = false;
            if let Some(conn) = self.conn.as_mut() {
                match sqlx::query("ROLLBACK").execute(&mut *conn).await {
                    Ok(_) => {}
                    Err(e) if no_transaction(&e) => {}
                    Err(_) => self.conn = None,
                }
            }
        }
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => options.connect().await?,
        };
        Ok(self.conn.insert(conn))
    }

    /// Notes a failed command: a connection whose thread is gone is opened again next time.
    fn failed(&mut self, e: &sqlx::Error) {
        if matches!(e, sqlx::Error::WorkerCrashed | sqlx::Error::Io(_)) {
            self.conn = None;
            self.open_tx = false;
        }
    }
}

/// "cannot rollback - no transaction is active".
fn no_transaction(e: &sqlx::Error) -> bool {
    e.to_string().contains("no transaction is active")
}

/// A queue operation's error: kept as a database error when running it again may succeed (so
/// the engine retries it), named after the queue otherwise.
fn queue_error(e: sqlx::Error, what: impl FnOnce() -> String) -> TaskerError {
    if sqlx_is_transient(&e) || sqlx_is_race(&e) {
        TaskerError::Database(e)
    } else {
        TaskerError::Queue(format!("{}: {e}", what()))
    }
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
    pub async fn connect(options: SqliteConnectOptions, settings: &SqliteSettings) -> Result<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(settings.busy_timeout)
            .foreign_keys(true);
        let lock = StartupLock::acquire(options.get_filename()).await?;
        let mut conn = options
            .clone()
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .pragma("cache_size", WRITER_CACHE_KIB)
            .connect()
            .await?;
        // `run_direct` on a connection keeps this future `Send` (`run(&pool)` is not), so
        // `Tasker::connect_with` can be spawned; see `assert_connect_is_send`.
        sqlx::migrate!("./migrations/sqlite")
            .run_direct(&mut conn)
            .await
            .map_err(|e| TaskerError::Migration(e.to_string()))?;
        drop(lock);
        let reader_options = options.clone().read_only(true);
        let checkpoint_options = options.clone();
        let options = options
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .pragma("cache_size", WRITER_CACHE_KIB);
        // The first reader is opened now, as the pool did: a file that cannot be read fails here.
        let mut first_reader = Some(reader_options.connect().await?);
        let closed = Arc::new(AtomicBool::new(false));
        let readers = (0..settings.readers.max(1))
            .map(|_| {
                Arc::new(Mutex::new(Slot {
                    conn: first_reader.take(),
                    open_tx: false,
                }))
            })
            .collect();
        Ok(Self {
            writer_options: options,
            reader_options,
            writer: Arc::new(Mutex::new(Slot {
                conn: Some(conn),
                open_tx: false,
            })),
            readers,
            next_reader: AtomicUsize::new(0),
            checkpointer: checkpoint_in_background(checkpoint_options, closed.clone()),
            closed,
            writer_wait: settings.writer_wait,
        })
    }

    /// Opens a database from a `sqlite:` URL or a plain path.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url).map_err(|e| TaskerError::DatabaseUrl(e.to_string()))?;
        Self::connect(options, &SqliteSettings::default()).await
    }
}

impl SqliteStore {
    /// A write transaction: the writer connection, kept until the transaction ends. Its BEGIN
    /// goes out with its first statement.
    async fn transaction(&self) -> Result<SqliteTx> {
        let mut slot = tokio::time::timeout(self.writer_wait, self.writer.clone().lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        slot.ready(&self.writer_options, &self.closed).await?;
        Ok(SqliteTx {
            slot: Some(slot),
            begun: false,
        })
    }

    /// Runs a read on one of the read-only connections (a free one if there is one).
    async fn read<'q>(&self, query: Query<'q, Sqlite, SqliteArguments<'q>>) -> Result<Vec<SqliteRow>> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let free = (0..self.readers.len()).find_map(|i| {
            self.readers[(start + i) % self.readers.len()]
                .clone()
                .try_lock_owned()
                .ok()
        });
        let mut slot = match free {
            Some(slot) => slot,
            None => self.readers[start % self.readers.len()].clone().lock_owned().await,
        };
        let conn = slot.ready(&self.reader_options, &self.closed).await?;
        match query.fetch_all(conn).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                slot.failed(&e);
                Err(e.into())
            }
        }
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

macro_rules! step_lock_columns {
    () => {
        "s.step_uuid, s.task_uuid, s.name, s.queue, s.state, s.attempts, s.max_attempts, \
         s.free_attempts, s.lost_leases, t.state AS task_state, t.template_id, t.priority AS task_priority"
    };
}

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

macro_rules! task_columns {
    () => {
        "task_uuid, namespace_name, name, version, state, context, initiator, source_system, reason, \
         tags, priority, correlation_id, idempotency_key, total_steps, completed_steps, active_steps, \
         failed_steps, created_at, updated_at, completed_at, trace_parent"
    };
}

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
        trace_parent: row.try_get("trace_parent")?,
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

// ---------------------------------------------------------------------------------------------
// Statements. Each one's plan is checked by `tests` (EXPLAIN QUERY PLAN): none scans a table
// that grows with the history, and the claim reads in order through an index.
//
// A command of several statements takes one parameter per batch. Its statements share their
// `?N` parameters, and each must use a gap-free set `?1..?k`: the driver binds a number a
// statement skips as if it were a positional `?`, which shifts the parameters of the statements
// after it. So a statement mentions the lower numbers it does not use in a clause that is always
// true, `(?2 IS NULL OR 1)` (checked by a test). Rows of different statements are told apart by
// a leading `part` column.
//
// `json_each` hands out an element that is itself an array as JSON text, and each `->>` on that
// text parses it again; so a batch whose rows have several fields is first read into a
// materialized CTE of JSONB elements (`rows_cte!`), from which each field is a cheap lookup.

/// `$name AS MATERIALIZED (k, v)`: the elements of the JSON array `$source` as (position, JSONB).
macro_rules! rows_cte {
    ($name:literal, $source:literal) => {
        concat!(
            $name,
            " AS MATERIALIZED (SELECT key AS k, jsonb(value) AS v FROM ",
            $source,
            ")"
        )
    };
}

/// Whether any of the queues (`?1`, a JSON array of names) has a visible message at `?2`:
/// walks the claim index past the leased messages (as many as are in flight).
const HAS_VISIBLE: &str = "SELECT EXISTS (SELECT 1 FROM tasker_queue_messages \
     WHERE queue IN (SELECT value FROM json_each(?1)) AND vt <= ?2)";

/// Claims up to `?4` visible messages of queue `?3` at `?1`, hidden until `?2`: lowest order
/// key first, then msg_id, walking `tasker_queue_messages_claim` (which holds vt, so leased
/// messages are skipped inside the index and the visible backlog is never sorted).
const READ_MESSAGES: &str = "UPDATE tasker_queue_messages SET vt = ?2, read_ct = read_ct + 1 \
     WHERE msg_id IN (SELECT msg_id FROM tasker_queue_messages INDEXED BY tasker_queue_messages_claim \
                      WHERE queue = ?3 AND vt <= ?1 ORDER BY order_key, msg_id LIMIT ?4) \
     RETURNING msg_id, read_ct, enqueued_at, order_key, message";

/// Messages from `$source`, `[[queue, vt, order_key, body text, enqueued_at], …]` (see
/// `message_rows`), where `$filter` holds, then `$returning` (a RETURNING clause or nothing).
/// Inserted in array order, so their msg_ids grow in array order.
macro_rules! send_messages_sql {
    ($source:literal, $returning:literal, $($filter:tt)+) => {
        concat!(
            "WITH ",
            rows_cte!("mr", $source),
            " INSERT INTO tasker_queue_messages (queue, vt, read_ct, enqueued_at, order_key, message) \
             SELECT v ->> 0, v ->> 1, 0, v ->> 4, v ->> 2, v ->> 3 FROM mr WHERE ",
            $($filter)+,
            " ORDER BY k",
            $returning
        )
    };
}
const SEND_MESSAGES: &str = send_messages_sql!("json_each(?1)", " RETURNING msg_id", "1");

/// Messages of `$source`, `[[msg_id, queue], …]`.
macro_rules! delete_messages_sql {
    ($source:literal, $mention:literal) => {
        concat!(
            "DELETE FROM tasker_queue_messages WHERE msg_id IN \
             (SELECT m.msg_id FROM ",
            $source,
            " j CROSS JOIN tasker_queue_messages m WHERE m.msg_id = j.value ->> 0 AND m.queue = j.value ->> 1",
            $mention,
            ")"
        )
    };
}
const DELETE_MESSAGES: &str = delete_messages_sql!("json_each(?1)", "");

/// `?1`: `[[msg_id, queue], …]`, `?2`: the new vt.
const SET_VISIBILITY: &str = "UPDATE tasker_queue_messages SET vt = ?2 WHERE msg_id IN \
     (SELECT m.msg_id FROM json_each(?1) j CROSS JOIN tasker_queue_messages m \
      WHERE m.msg_id = j.value ->> 0 AND m.queue = j.value ->> 1)";

/// `?1`: step uuids. One row per input uuid that exists, in input order.
const LOCK_STEPS: &str = concat!(
    "SELECT ",
    step_lock_columns!(),
    " FROM json_each(?1) j CROSS JOIN tasker_steps s CROSS JOIN tasker_tasks t \
     WHERE s.step_uuid = unhex(j.value) AND t.task_uuid = s.task_uuid ORDER BY j.key"
);

/// The compare-and-swap of step rows, from `$source` (one array per change, see
/// `step_change_rows`) at `?2`. Returns `$returning` of the steps that changed.
macro_rules! change_steps_sql {
    ($source:literal, $returning:literal) => {
        concat!(
            "WITH ",
            rows_cte!("cr", $source),
            " UPDATE tasker_steps SET state = c.ns, attempts = c.na, \
                results = COALESCE(c.rs, results), last_error = COALESCE(c.le, last_error), \
                next_retry_at = c.nr, deadline_at = c.dl, updated_at = ?2, \
                first_attempted_at = CASE WHEN c.st THEN COALESCE(first_attempted_at, ?2) ELSE first_attempted_at END, \
                last_attempted_at = CASE WHEN c.st THEN ?2 ELSE last_attempted_at END, \
                completed_at = CASE WHEN c.fi THEN ?2 ELSE completed_at END, \
                free_attempts = free_attempts + c.fd, lost_leases = lost_leases + c.ld \
             FROM (SELECT unhex(v ->> 0) AS id, v ->> 1 AS es, v ->> 2 AS ea, v ->> 3 AS ns, v ->> 4 AS na, \
                          v ->> 5 AS rs, v ->> 6 AS le, v ->> 7 AS nr, v ->> 8 AS dl, v ->> 9 AS st, \
                          v ->> 10 AS fi, v ->> 11 AS fd, v ->> 12 AS ld FROM cr) AS c \
             WHERE tasker_steps.step_uuid = c.id AND tasker_steps.state = c.es AND tasker_steps.attempts = c.ea \
             RETURNING ",
            $returning
        )
    };
}
/// `?1`: the changes, `?2`: now.
const CHANGE_STEPS: &str = change_steps_sql!("json_each(?1)", "step_uuid");

/// Audit rows from `$source` (one array per row, `[entity, task, from, to, event, metadata
/// text, at, most_recent]`, see `transition_rows`) where `$filter` holds, each entity's previous
/// most recent row cleared first.
macro_rules! clear_transitions_sql {
    ($table:literal, $key:literal, $source:literal, $($filter:tt)+) => {
        concat!(
            "UPDATE ",
            $table,
            " SET most_recent = 0 WHERE most_recent AND ",
            $key,
            " IN (SELECT unhex(value ->> 0) FROM ",
            $source,
            " WHERE ",
            $($filter)+,
            ")"
        )
    };
}
/// The inserts read the rows from a CTE `tr` (`rows_cte!`) that the statement declares.
macro_rules! insert_step_transitions_sql {
    ($($filter:tt)+) => {
        concat!(
            " INSERT INTO tasker_step_transitions \
                (step_uuid, task_uuid, from_state, to_state, event, metadata, most_recent, created_at) \
             SELECT unhex(v ->> 0), unhex(v ->> 1), v ->> 2, v ->> 3, v ->> 4, v ->> 5, v ->> 7, v ->> 6 \
             FROM tr WHERE ",
            $($filter)+,
            " ORDER BY k"
        )
    };
}
macro_rules! insert_task_transitions_sql {
    ($($filter:tt)+) => {
        concat!(
            " INSERT INTO tasker_task_transitions \
                (task_uuid, from_state, to_state, event, metadata, most_recent, created_at) \
             SELECT unhex(v ->> 0), v ->> 2, v ->> 3, v ->> 4, v ->> 5, v ->> 7, v ->> 6 FROM tr WHERE ",
            $($filter)+,
            " ORDER BY k"
        )
    };
}
/// `?1`: the rows.
const CLEAR_STEP_TRANSITIONS: &str =
    clear_transitions_sql!("tasker_step_transitions", "step_uuid", "json_each(?1)", "1");
const INSERT_STEP_TRANSITIONS: &str = concat!(
    "WITH ",
    rows_cte!("tr", "json_each(?1)"),
    insert_step_transitions_sql!("1")
);
const CLEAR_TASK_TRANSITIONS: &str =
    clear_transitions_sql!("tasker_task_transitions", "task_uuid", "json_each(?1)", "1");
const INSERT_TASK_TRANSITIONS: &str = concat!(
    "WITH ",
    rows_cte!("tr", "json_each(?1)"),
    insert_task_transitions_sql!("1")
);
static INSERT_STEP_TRANSITIONS_BATCH: LazyLock<String> =
    LazyLock::new(|| [CLEAR_STEP_TRANSITIONS, INSERT_STEP_TRANSITIONS].join(";\n"));
static INSERT_TASK_TRANSITIONS_BATCH: LazyLock<String> =
    LazyLock::new(|| [CLEAR_TASK_TRANSITIONS, INSERT_TASK_TRANSITIONS].join(";\n"));

/// The steps of the changes `?1` whose compare-and-swap will apply (each step at most once in
/// the changes). Audit rows are written for them before the compare-and-swap runs: under the
/// write lock nothing changes between the statements, so "will apply" is "applied".
macro_rules! applying_steps {
    () => {
        concat!(
            rows_cte!("cr", "json_each(?1)"),
            ", applying AS (SELECT cr.v ->> 0 AS id FROM cr CROSS JOIN tasker_steps s \
                 WHERE s.step_uuid = unhex(cr.v ->> 0) AND s.state = cr.v ->> 1 AND s.attempts = cr.v ->> 2)"
        )
    };
}
/// `change_steps_audited`'s first statements. `?1`: the changes, `?3`: the audit rows.
const CLEAR_STEP_TRANSITIONS_APPLYING: &str = concat!(
    "WITH ",
    applying_steps!(),
    " ",
    clear_transitions_sql!(
        "tasker_step_transitions",
        "step_uuid",
        "json_each(?3)",
        "value ->> 0 IN applying AND (?2 IS NULL OR 1)"
    )
);
const INSERT_STEP_TRANSITIONS_APPLYING: &str = concat!(
    "WITH ",
    applying_steps!(),
    ", ",
    rows_cte!("tr", "json_each(?3)"),
    insert_step_transitions_sql!("v ->> 0 IN applying AND (?2 IS NULL OR 1)")
);
/// `change_steps_audited` in one command. `?1`: the changes, `?2`: now, `?3`: the audit rows.
static CHANGE_STEPS_AUDITED: LazyLock<String> = LazyLock::new(|| {
    [
        CLEAR_STEP_TRANSITIONS_APPLYING,
        INSERT_STEP_TRANSITIONS_APPLYING,
        CHANGE_STEPS,
    ]
    .join(";\n")
});

/// `?1`: task, `?2`: now, `?3`: JSON array of the states to cancel. Returns every step of the
/// task with its state before the update.
const OPEN_STEPS: &str = "SELECT step_uuid, name, state FROM tasker_steps WHERE task_uuid = ?1";
const CANCEL_STEPS: &str = "UPDATE tasker_steps SET state = 'cancelled', updated_at = ?2, completed_at = ?2, \
        next_retry_at = NULL, deadline_at = NULL \
     WHERE task_uuid = ?1 AND state IN (SELECT value FROM json_each(?3))";
static CANCEL_OPEN_STEPS: LazyLock<String> = LazyLock::new(|| [OPEN_STEPS, CANCEL_STEPS].join(";\n"));

/// The children of the parent uuids in `$source` (a parent listed twice counts twice): each
/// child's counter goes down by its number of listed parents.
macro_rules! release_children_sql {
    ($source:literal, $part:literal, $mention:literal) => {
        concat!(
            "UPDATE tasker_steps SET pending_parents = pending_parents - r.n \
             FROM (SELECT e.to_step AS child, count(*) AS n FROM ",
            $source,
            " j CROSS JOIN tasker_step_edges e WHERE e.from_step = unhex(j.value)",
            $mention,
            " GROUP BY e.to_step) AS r \
             WHERE tasker_steps.step_uuid = r.child \
             RETURNING ",
            $part,
            "step_uuid, name, task_uuid, queue, max_attempts, pending_parents, state"
        )
    };
}
const RELEASE_CHILDREN: &str = release_children_sql!("json_each(?1)", "", "");

/// Counter deltas from `$source`, `[[task, completed, active, failed], …]` (each task at most
/// once), at `?2`.
macro_rules! apply_task_deltas_sql {
    ($source:literal, $part:literal, $mention:literal) => {
        concat!(
            "UPDATE tasker_tasks SET completed_steps = completed_steps + d.c, \
                active_steps = active_steps + d.a, failed_steps = failed_steps + d.f, updated_at = ?2 \
             FROM (SELECT unhex(value ->> 0) AS id, value ->> 1 AS c, value ->> 2 AS a, value ->> 3 AS f FROM ",
            $source,
            ") AS d \
             WHERE tasker_tasks.task_uuid = d.id",
            $mention,
            " RETURNING ",
            $part,
            "task_uuid, state, total_steps, completed_steps, active_steps, failed_steps"
        )
    };
}
const APPLY_TASK_DELTAS: &str = apply_task_deltas_sql!("json_each(?1)", "", "");
const APPLY_TASK_DELTA: &str = "UPDATE tasker_tasks SET completed_steps = completed_steps + ?1, \
        active_steps = active_steps + ?2, failed_steps = failed_steps + ?3, updated_at = ?4 WHERE task_uuid = ?5 \
     RETURNING task_uuid, state, total_steps, completed_steps, active_steps, failed_steps";

/// The compare-and-swap of task states from `$source`, `[[task, expected, new, terminal], …]`
/// (each task at most once), at `?2`.
macro_rules! change_tasks_sql {
    ($source:literal) => {
        concat!(
            "UPDATE tasker_tasks SET state = c.ns, updated_at = ?2, \
                completed_at = CASE WHEN c.fi THEN ?2 ELSE completed_at END \
             FROM (SELECT unhex(value ->> 0) AS id, value ->> 1 AS es, value ->> 2 AS ns, value ->> 3 AS fi FROM ",
            $source,
            ") AS c \
             WHERE tasker_tasks.task_uuid = c.id AND tasker_tasks.state = c.es \
             RETURNING task_uuid"
        )
    };
}
const CHANGE_TASKS: &str = change_tasks_sql!("json_each(?1)");
const CHANGE_TASK: &str = "UPDATE tasker_tasks SET state = ?1, updated_at = ?2, \
        completed_at = CASE WHEN ?3 THEN ?2 ELSE completed_at END \
     WHERE task_uuid = ?4 AND state = ?5";

/// `change_tasks_audited` in one command, as `CHANGE_STEPS_AUDITED` for steps. `?1`: the
/// changes, `?2`: now, `?3`: the audit rows.
macro_rules! applying_tasks {
    () => {
        "applying AS (SELECT c.value ->> 0 AS id FROM json_each(?1) c CROSS JOIN tasker_tasks t \
             WHERE t.task_uuid = unhex(c.value ->> 0) AND t.state = c.value ->> 1)"
    };
}
const CLEAR_TASK_TRANSITIONS_APPLYING: &str = concat!(
    "WITH ",
    applying_tasks!(),
    " ",
    clear_transitions_sql!(
        "tasker_task_transitions",
        "task_uuid",
        "json_each(?3)",
        "value ->> 0 IN applying AND (?2 IS NULL OR 1)"
    )
);
const INSERT_TASK_TRANSITIONS_APPLYING: &str = concat!(
    "WITH ",
    applying_tasks!(),
    ", ",
    rows_cte!("tr", "json_each(?3)"),
    insert_task_transitions_sql!("v ->> 0 IN applying AND (?2 IS NULL OR 1)")
);
/// A task that completes closes its open dead-letter entry, crediting the operator whose
/// action re-opened it (`resolution`), if any. Before the change itself (`applying` reads the
/// expected states).
const CLOSE_DLQ_OF_COMPLETING: &str = concat!(
    "WITH ",
    applying_tasks!(),
    " UPDATE tasker_dlq_entries SET status = 'manually_resolved', \
        resolved_by = COALESCE(json_extract(resolution, '$.by'), 'tasker'), resolved_at = ?2, updated_at = ?2, \
        notes = json_insert(notes, '$[#]', json_object('by', COALESCE(json_extract(resolution, '$.by'), 'tasker'), \
          'text', 'the task completed', 'status', 'manually_resolved', \
          'at', strftime('%Y-%m-%dT%H:%M:%fZ', ?2 / 1000.0, 'unixepoch'))) \
     WHERE status IN ('pending', 'investigating') \
       AND task_uuid IN (SELECT unhex(c.value ->> 0) FROM json_each(?1) c \
         WHERE c.value ->> 0 IN applying AND c.value ->> 2 = 'complete') AND (?3 IS NULL OR 1)"
);
static CHANGE_TASKS_AUDITED: LazyLock<String> = LazyLock::new(|| {
    [
        CLEAR_TASK_TRANSITIONS_APPLYING,
        INSERT_TASK_TRANSITIONS_APPLYING,
        CLOSE_DLQ_OF_COMPLETING,
        CHANGE_TASKS,
    ]
    .join(";\n")
});

/// Applying outcomes, first writes (`apply_outcome_writes`): the audited step changes, the
/// message deletes and the release of children, in one command. `?1`: the changes, `?2`: now,
/// `?3`: the audit rows, `?4`: the messages to delete, `?5`: the released parents.
static OUTCOME_WRITES: LazyLock<String> = LazyLock::new(|| {
    [
        CLEAR_STEP_TRANSITIONS_APPLYING,
        INSERT_STEP_TRANSITIONS_APPLYING,
        change_steps_sql!("json_each(?1)", "'changed' AS part, step_uuid"),
        delete_messages_sql!("json_each(?4)", " AND (?1 IS NULL OR ?2 IS NULL OR ?3 IS NULL OR 1)"),
        release_children_sql!(
            "json_each(?5)",
            "'ready' AS part, ",
            " AND (?1 IS NULL OR ?2 IS NULL OR ?3 IS NULL OR ?4 IS NULL OR 1)"
        ),
    ]
    .join(";\n")
});

/// The task inputs of the task uuids in `$source`: one row per uuid that exists, in input order.
macro_rules! task_inputs_sql {
    ($part:literal, $source:literal, $mention:literal) => {
        concat!(
            "SELECT ",
            $part,
            "t.task_uuid, t.context, t.correlation_id, t.template_id FROM ",
            $source,
            " j CROSS JOIN tasker_tasks t WHERE t.task_uuid = unhex(j.value)",
            $mention,
            " ORDER BY j.key"
        )
    };
}
/// The parents' results of the step uuids in `$source`: by input step, then in edge order.
macro_rules! dependency_results_sql {
    ($part:literal, $source:literal, $mention:literal) => {
        concat!(
            "SELECT ",
            $part,
            "e.to_step, p.name, p.results FROM ",
            $source,
            " j CROSS JOIN tasker_step_edges e CROSS JOIN tasker_steps p \
             WHERE e.to_step = unhex(j.value) AND p.step_uuid = e.from_step",
            $mention,
            " ORDER BY j.key, e.rowid"
        )
    };
}
/// `?1`: task uuids.
const TASK_INPUTS: &str = task_inputs_sql!("", "json_each(?1)", "");
/// `?1`: step uuids.
const DEPENDENCY_RESULTS: &str = dependency_results_sql!("", "json_each(?1)", "");
/// Both, in one command. `?1`: task uuids, `?2`: step uuids.
const CLAIM_TASK_INPUTS: &str = task_inputs_sql!("'input' AS part, ", "json_each(?1)", "");
const CLAIM_DEPENDENCY_RESULTS: &str =
    dependency_results_sql!("'dependency' AS part, ", "json_each(?2)", " AND (?1 IS NULL OR 1)");
static CLAIM_INPUTS: LazyLock<String> = LazyLock::new(|| [CLAIM_TASK_INPUTS, CLAIM_DEPENDENCY_RESULTS].join(";\n"));

/// Applying outcomes, second writes (`apply_followup_writes`): the released children's audited
/// changes, the messages, the task counters, then the claim inputs, in one command. `?1`: the
/// changes, `?2`: now, `?3`: the audit rows, `?4`: the messages, `?5`: the counter deltas, `?6`:
/// the input tasks, `?7`: the input steps.
static FOLLOWUP_WRITES: LazyLock<String> = LazyLock::new(|| {
    [
        CLEAR_STEP_TRANSITIONS_APPLYING,
        INSERT_STEP_TRANSITIONS_APPLYING,
        change_steps_sql!("json_each(?1)", "'changed' AS part, step_uuid"),
        send_messages_sql!(
            "json_each(?4)",
            " RETURNING 'sent' AS part, msg_id",
            "(?1 IS NULL OR ?2 IS NULL OR ?3 IS NULL OR 1)"
        ),
        apply_task_deltas_sql!(
            "json_each(?5)",
            "'counters' AS part, ",
            " AND (?1 IS NULL OR ?3 IS NULL OR ?4 IS NULL OR 1)"
        ),
        task_inputs_sql!(
            "'input' AS part, ",
            "json_each(?6)",
            " AND (?1 IS NULL OR ?2 IS NULL OR ?3 IS NULL OR ?4 IS NULL OR ?5 IS NULL OR 1)"
        ),
        dependency_results_sql!(
            "'dependency' AS part, ",
            "json_each(?7)",
            " AND (?1 IS NULL OR ?2 IS NULL OR ?3 IS NULL OR ?4 IS NULL OR ?5 IS NULL OR ?6 IS NULL OR 1)"
        ),
    ]
    .join(";\n")
});

/// Creating a task (`create_task_rows`) in one command: the task row unless a task with the same
/// identity hash (`?1`) exists, then (only if this task's row went in) its steps, edges, audit
/// rows and messages; ends with the uuid of the task holding the identity. `?2`: the task's
/// uuid, `?3`: its creation time, `?4`: the steps, `?5`: the edges, `?6`: the task's audit rows,
/// `?7`: the steps' audit rows, `?8`: the messages, `?9..?23`: the task's other columns, `?24`:
/// `NewTask::newest_template_id` (the row goes in only while no template of the name has a
/// larger id).
const INSERT_TASK_ROW: &str = "INSERT INTO tasker_tasks (identity_hash, task_uuid, created_at, updated_at, \
        total_steps, template_id, namespace_name, name, version, state, context, initiator, source_system, \
        reason, tags, priority, correlation_id, idempotency_key, active_steps, trace_parent) \
     SELECT ?1, ?2, ?3, ?3, json_array_length(?4), ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, \
            ?21, ?22, ?23 \
     WHERE (?5 IS NULL OR ?6 IS NULL OR ?7 IS NULL OR ?8 IS NULL OR 1) \
       AND (?24 IS NULL OR NOT EXISTS (SELECT 1 FROM tasker_templates \
              WHERE namespace_name = ?10 AND name = ?11 AND id > ?24)) \
     ON CONFLICT (identity_hash) DO NOTHING";
macro_rules! created {
    () => {
        "EXISTS (SELECT 1 FROM tasker_tasks WHERE task_uuid = ?2 AND identity_hash = ?1 AND created_at = ?3)"
    };
}
const INSERT_TASK_STEPS: &str = concat!(
    "WITH ",
    rows_cte!("sr", "json_each(?4)"),
    " INSERT INTO tasker_steps (step_uuid, task_uuid, name, position, queue, state, \
        max_attempts, retryable, pending_parents, created_at, updated_at) \
     SELECT unhex(v ->> 0), ?2, v ->> 1, v ->> 2, v ->> 3, v ->> 4, v ->> 5, v ->> 6, v ->> 7, ?3, ?3 \
     FROM sr WHERE ",
    created!(),
    " ORDER BY k"
);
const INSERT_TASK_EDGES: &str = concat!(
    "INSERT INTO tasker_step_edges (task_uuid, from_step, to_step) \
     SELECT ?2, unhex(value ->> 0), unhex(value ->> 1) FROM json_each(?5) WHERE ",
    created!(),
    " AND (?4 IS NULL OR 1) ORDER BY key"
);
const TASK_BY_IDENTITY: &str = "SELECT task_uuid FROM tasker_tasks WHERE identity_hash = ?1";
static CREATE_TASK: LazyLock<String> = LazyLock::new(|| {
    [
        INSERT_TASK_ROW,
        INSERT_TASK_STEPS,
        INSERT_TASK_EDGES,
        clear_transitions_sql!(
            "tasker_task_transitions",
            "task_uuid",
            "json_each(?6)",
            created!(),
            " AND (?4 IS NULL OR ?5 IS NULL OR 1)"
        ),
        concat!(
            "WITH ",
            rows_cte!("tr", "json_each(?6)"),
            insert_task_transitions_sql!(created!(), " AND (?4 IS NULL OR ?5 IS NULL OR 1)")
        ),
        clear_transitions_sql!(
            "tasker_step_transitions",
            "step_uuid",
            "json_each(?7)",
            created!(),
            " AND (?4 IS NULL OR ?5 IS NULL OR ?6 IS NULL OR 1)"
        ),
        concat!(
            "WITH ",
            rows_cte!("tr", "json_each(?7)"),
            insert_step_transitions_sql!(created!(), " AND (?4 IS NULL OR ?5 IS NULL OR ?6 IS NULL OR 1)")
        ),
        send_messages_sql!(
            "json_each(?8)",
            "",
            created!(),
            " AND (?4 IS NULL OR ?5 IS NULL OR ?6 IS NULL OR ?7 IS NULL OR 1)"
        ),
        TASK_BY_IDENTITY,
    ]
    .join(";\n")
});

/// `create_task` as one command: the transaction's BEGIN, `CREATE_TASK`, and its COMMIT.
static CREATE_TASK_COMMITTED: LazyLock<String> = LazyLock::new(|| format!("{BEGIN}{};\nCOMMIT", *CREATE_TASK));

/// `task_steps`: `?1` the task.
const TASK_STEPS: &str =
    "SELECT step_uuid, name, state, pending_parents, results FROM tasker_steps WHERE task_uuid = ?1";

/// `insert_steps`: `?1` the task, `?2` the steps (JSON rows), `?3` now, `?4` the edges.
static INSERT_STEPS: LazyLock<String> = LazyLock::new(|| {
    [
        concat!(
            "WITH ",
            rows_cte!("sr", "json_each(?2)"),
            " INSERT INTO tasker_steps (step_uuid, task_uuid, name, position, queue, state, max_attempts, \
                retryable, pending_parents, inputs, created_by, created_at, updated_at) \
             SELECT unhex(v ->> 0), ?1, v ->> 1, v ->> 2, v ->> 3, v ->> 4, v ->> 5, v ->> 6, v ->> 7, \
                v ->> 8, v ->> 9, ?3, ?3 FROM sr ORDER BY k"
        ),
        "INSERT INTO tasker_step_edges (task_uuid, from_step, to_step) \
         SELECT ?1, unhex(value ->> 0), unhex(value ->> 1) FROM json_each(?4) \
         WHERE (?2 IS NULL OR ?3 IS NULL OR 1) ORDER BY key",
        "UPDATE tasker_tasks SET total_steps = total_steps + json_array_length(?2), updated_at = ?3 \
         WHERE task_uuid = ?1",
    ]
    .join(";\n")
});

/// `running_steps`: `?1` the tasks.
const RUNNING_STEPS: &str = "SELECT task_uuid, count(*) AS n FROM tasker_steps \
     WHERE task_uuid IN (SELECT unhex(value) FROM json_each(?1)) \
       AND state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration') GROUP BY task_uuid";

/// `step_extras`: `?1` the steps.
const STEP_EXTRAS: &str = "SELECT step_uuid, inputs, checkpoint FROM tasker_steps \
     WHERE step_uuid IN (SELECT unhex(value) FROM json_each(?1))";

/// `save_checkpoint`: `?1` the step, `?2` the attempt, `?3` the checkpoint, `?4` now.
const SAVE_CHECKPOINT: &str = "UPDATE tasker_steps SET checkpoint = ?3, updated_at = ?4 \
     WHERE step_uuid = ?1 AND state = 'in_progress' AND attempts = ?2 RETURNING 1";

/// `?1`: namespace, `?2`: now, `?3`: name, `?4`: version, `?5`: definition, `?6`: content hash,
/// `?7`: source path. Ends with the stored version.
static REGISTER_TEMPLATE: LazyLock<String> = LazyLock::new(|| {
    [
        "INSERT INTO tasker_namespaces (name, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        "INSERT INTO tasker_templates (namespace_name, name, version, definition, content_hash, source_path, \
            created_at) VALUES (?1, ?3, ?4, ?5, ?6, ?7, ?2) ON CONFLICT (namespace_name, name, version) DO NOTHING",
        "SELECT * FROM tasker_templates WHERE namespace_name = ?1 AND name = ?3 AND version = ?4 \
         AND (?2 IS NULL OR 1)",
    ]
    .join(";\n")
});

const TASK_SUMMARY: &str = concat!("SELECT ", task_columns!(), " FROM tasker_tasks WHERE task_uuid = ?1");

/// Everything `task_detail` reads, in one command.
const DETAIL_TASK: &str = concat!(
    "SELECT 'task' AS part, ",
    task_columns!(),
    " FROM tasker_tasks WHERE task_uuid = ?1"
);
const DETAIL_STEPS: &str = "SELECT 'step' AS part, * FROM tasker_steps WHERE task_uuid = ?1 ORDER BY position, name";
/// Through the task's steps (indexed by task), not `tasker_step_edges.task_uuid` (not indexed).
const DETAIL_EDGES: &str = "SELECT 'edge' AS part, e.to_step, p.name \
     FROM tasker_steps p CROSS JOIN tasker_step_edges e \
     WHERE p.task_uuid = ?1 AND e.from_step = p.step_uuid ORDER BY p.position";
const DETAIL_TASK_TRANSITIONS: &str =
    "SELECT 'task_transition' AS part, * FROM tasker_task_transitions WHERE task_uuid = ?1 ORDER BY id";
const DETAIL_STEP_TRANSITIONS: &str =
    "SELECT 'step_transition' AS part, * FROM tasker_step_transitions WHERE task_uuid = ?1 ORDER BY id";
static TASK_DETAIL: LazyLock<String> = LazyLock::new(|| {
    [
        DETAIL_TASK,
        DETAIL_STEPS,
        DETAIL_EDGES,
        DETAIL_TASK_TRANSITIONS,
        DETAIL_STEP_TRANSITIONS,
    ]
    .join(";\n")
});

/// `list_tasks` with exactly the filters given (an `(?1 IS NULL OR …)` filter cannot use an
/// index), newest first, through the index of its namespace and/or state ending in (created_at,
/// task_uuid), named so that statistics (ANALYZE) cannot trade it for a sort; a name is filtered
/// within that index (0004).
#[cfg(test)]
fn list_tasks_sql(namespace: bool, name: bool, state: bool) -> String {
    list_tasks_sql_with(&TaskFilter {
        namespace: namespace.then(String::new),
        name: name.then(String::new),
        state: state.then_some(crate::state::TaskState::Pending),
        ..TaskFilter::default()
    })
}

/// The statement of [`Store::list_tasks`] for `filter`: only the conditions it sets (parameters
/// ?1 namespace, ?2 name, ?3 state, ?4 tag, ?5 created after, ?6 created before, ?7/?8 the
/// keyset cursor, ?9 the limit, ?10 the idempotency key). The tag, time and cursor conditions narrow the same index walk.
///
/// With a tag (and no idempotency key, which names a task or two), the walk is over the tag's
/// rows of `tasker_task_tags` (0010), newest first, each joined to its task by primary key and
/// filtered there: a page reads its 50 rows (plus those the other filters reject) however rare
/// the tag, where filtering the JSON arrays while walking every task read all of them for a tag
/// no task carries. `CROSS JOIN` fixes that order (SQLite never reorders it).
fn list_tasks_sql_with(filter: &TaskFilter) -> String {
    let (namespace, state) = (filter.namespace.is_some(), filter.state.is_some());
    let by_tag = filter.tag.is_some() && filter.idempotency_key.is_none();
    let index = match (namespace, state) {
        // An idempotency key names a task or two: find them by key, then sort those (0008).
        _ if filter.idempotency_key.is_some() => "tasker_tasks_by_idempotency_key",
        (false, false) => "tasker_tasks_by_created",
        (true, false) => "tasker_tasks_by_namespace",
        (false, true) => "tasker_tasks_by_state",
        (true, true) => "tasker_tasks_by_namespace_state",
    };
    // The columns that order the walk: the tag rows' copy of (created_at, task_uuid), or the task's.
    let order = if by_tag { "g." } else { "" };
    let mut conditions = Vec::new();
    if by_tag {
        conditions.push("g.tag = ?4".to_owned());
    }
    if namespace {
        conditions.push("t.namespace_name = ?1".to_owned());
    }
    if filter.name.is_some() {
        conditions.push("t.name = ?2".to_owned());
    }
    if state {
        conditions.push("t.state = ?3".to_owned());
    }
    if filter.tag.is_some() && !by_tag {
        conditions.push("EXISTS (SELECT 1 FROM json_each(t.tags) WHERE json_each.value = ?4)".to_owned());
    }
    if filter.created_after.is_some() {
        conditions.push(format!("{order}created_at >= ?5"));
    }
    if filter.created_before.is_some() {
        conditions.push(format!("{order}created_at < ?6"));
    }
    if filter.after.is_some() {
        conditions.push(format!("({order}created_at, {order}task_uuid) < (?7, ?8)"));
    }
    // ?10 always appears, so that the statement has ten parameters whether or not it is set.
    conditions.push(if filter.idempotency_key.is_some() {
        "t.idempotency_key = ?10".to_owned()
    } else {
        "?10 IS NULL".to_owned()
    });
    let from = if by_tag {
        "tasker_task_tags AS g CROSS JOIN tasker_tasks AS t ON t.task_uuid = g.task_uuid".to_owned()
    } else {
        format!("tasker_tasks AS t INDEXED BY {index}")
    };
    format!(
        "SELECT {} FROM {from} WHERE {} ORDER BY {order}created_at DESC, {order}task_uuid DESC LIMIT ?9",
        TASK_COLUMNS_OF_T.as_str(),
        conditions.join(" AND ")
    )
}

/// [`task_columns!`] of the task aliased `t` (the tag walk joins a table with the same names).
static TASK_COLUMNS_OF_T: LazyLock<String> = LazyLock::new(|| {
    task_columns!()
        .split(',')
        .map(|c| format!("t.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
});

const DUE_RETRIES: &str = concat!(
    "SELECT ",
    step_lock_columns!(),
    " FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
     WHERE s.state = 'waiting_for_retry' AND s.next_retry_at <= ?1 ORDER BY s.next_retry_at LIMIT ?2"
);

const OVERDUE_ATTEMPTS: &str = concat!(
    "SELECT ",
    step_lock_columns!(),
    " FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
     WHERE s.state = 'in_progress' AND s.deadline_at IS NOT NULL AND s.deadline_at <= ?1 \
     ORDER BY s.deadline_at LIMIT ?2"
);

/// The earliest retry and deadline of a live task: walks the two partial indexes in order and
/// stops at the first step whose task is not finished (steps under a finished task never count
/// as due; they are repaired when met).
static NEXT_TIMER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT (SELECT s.next_retry_at FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
                 WHERE s.state = 'waiting_for_retry' AND s.next_retry_at IS NOT NULL \
                   AND t.state NOT IN {TERMINAL_TASK_STATES} ORDER BY s.next_retry_at LIMIT 1), \
                (SELECT s.deadline_at FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
                 WHERE s.state = 'in_progress' AND s.deadline_at IS NOT NULL \
                   AND t.state NOT IN {TERMINAL_TASK_STATES} ORDER BY s.deadline_at LIMIT 1)"
    )
});

// ---------------------------------------------------------------------------------------------
// Batch parameters.

/// A uuid as 32 hex digits (`unhex()` in SQL turns it back into the stored 16-byte BLOB).
#[derive(Clone, Copy)]
struct Hex(Uuid);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0.simple())
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| TaskerError::InvalidArgument(format!("encoding a batch for SQLite: {e}")))
}

fn uuid_list(ids: &[Uuid]) -> Result<String> {
    to_json(&ids.iter().map(|id| Hex(*id)).collect::<Vec<_>>())
}

fn message_refs(messages: &[MessageRef]) -> Result<String> {
    to_json(
        &messages
            .iter()
            .map(|m| (m.msg_id, m.queue.as_str()))
            .collect::<Vec<_>>(),
    )
}

/// Whether no uuid appears twice. Batches with repeats run row by row: a set-based statement
/// would apply one of the repeats, where the row-by-row semantics chain them.
fn distinct(ids: impl ExactSizeIterator<Item = Uuid>) -> bool {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.into_iter().all(|id| seen.insert(id))
}

/// The uuids of `input` that are in `changed`, in input order.
fn in_input_order(input: impl Iterator<Item = Uuid>, changed: Vec<Uuid>) -> Vec<Uuid> {
    let changed: HashSet<Uuid> = changed.into_iter().collect();
    input.filter(|id| changed.contains(id)).collect()
}

/// The rows of `CHANGE_STEPS`' `?1`.
fn step_change_rows(changes: &[StepChange]) -> Result<String> {
    let rows: Vec<_> = changes
        .iter()
        .map(|c| {
            (
                Hex(c.step_uuid),
                c.expected_state.as_str(),
                c.expected_attempts,
                c.new_state.as_str(),
                c.new_attempts,
                c.results.as_ref().map(json_text),
                c.last_error.as_ref().map(json_text),
                c.next_retry_at.map(ms),
                c.deadline_at.map(ms),
                c.attempt_started,
                c.finished,
                c.free_attempts_delta,
                c.lost_leases_delta,
            )
        })
        .collect();
    to_json(&rows)
}

/// The rows of the transition statements' parameter. The last row of each entity becomes its
/// most recent one, as if the rows were appended one at a time.
fn transition_rows(rows: &[TransitionRecord]) -> Result<String> {
    let last: HashMap<Uuid, usize> = rows.iter().enumerate().map(|(i, r)| (r.entity_uuid, i)).collect();
    let rows: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                Hex(r.entity_uuid),
                Hex(r.task_uuid),
                r.from_state,
                r.to_state,
                r.event,
                json_text(&r.metadata),
                ms(r.at),
                last.get(&r.entity_uuid) == Some(&i),
            )
        })
        .collect();
    to_json(&rows)
}

/// The rows of the message inserts: `[queue, vt, order_key, body, enqueued_at]`, all sent now
/// (the claim order key is computed from the same instant as `enqueued_at`).
fn message_rows(messages: &[OutgoingMessage]) -> Result<String> {
    let now = ms(Utc::now());
    let rows = messages
        .iter()
        .map(|m| {
            let body = serde_json::to_string(&m.body).map_err(|e| TaskerError::Queue(e.to_string()))?;
            let hidden = m
                .hidden_for
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
                .unwrap_or(0);
            Ok((
                m.queue.as_str(),
                now.saturating_add(hidden),
                order_key(now, m.priority),
                body,
                now,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    to_json(&rows)
}

/// The references of sent messages, in input order, from the msg_ids the insert returned.
fn sent_refs(messages: &[OutgoingMessage], mut ids: Vec<i64>) -> Result<Vec<MessageRef>> {
    // Rows are inserted in input order, so their msg_ids grow in input order.
    ids.sort_unstable();
    if ids.len() != messages.len() {
        return Err(TaskerError::Corrupt(format!(
            "sent {} messages, the queue table took {}",
            messages.len(),
            ids.len()
        )));
    }
    Ok(messages
        .iter()
        .zip(ids)
        .map(|(m, msg_id)| MessageRef {
            queue: m.queue.clone(),
            msg_id,
        })
        .collect())
}

fn task_change_rows(changes: &[TaskChange]) -> Result<String> {
    let rows: Vec<_> = changes
        .iter()
        .map(|c| {
            (
                Hex(c.task_uuid),
                c.expected.as_str(),
                c.new.as_str(),
                c.new.is_terminal(),
            )
        })
        .collect();
    to_json(&rows)
}

fn ready_child_from_row(r: &SqliteRow) -> Result<Option<ReadyChild>> {
    let pending: i32 = r.try_get("pending_parents")?;
    let state: &str = r.try_get("state")?;
    if pending != 0 || state != StepState::Pending.as_str() {
        return Ok(None);
    }
    Ok(Some(ReadyChild {
        step_uuid: r.try_get("step_uuid")?,
        name: r.try_get("name")?,
        task_uuid: r.try_get("task_uuid")?,
        queue: r.try_get("queue")?,
        max_attempts: r.try_get("max_attempts")?,
    }))
}

/// Counters in the order of the deltas (each task at most once).
fn counters_in_input_order(deltas: &[TaskDelta], counters: Vec<TaskCounters>) -> Vec<TaskCounters> {
    let mut by_task: HashMap<Uuid, TaskCounters> = counters.into_iter().map(|c| (c.task_uuid, c)).collect();
    deltas.iter().filter_map(|d| by_task.remove(&d.task_uuid)).collect()
}

fn queue_names(messages: &[OutgoingMessage]) -> String {
    let mut names: Vec<&str> = messages.iter().map(|m| m.queue.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.len() {
        1 => format!("queue {}", quoted[0]),
        _ => format!("queues {}", quoted.join(", ")),
    }
}

fn task_input_from_row(r: &SqliteRow) -> Result<TaskInput> {
    Ok(TaskInput {
        task_uuid: r.try_get("task_uuid")?,
        // Row by row: one undecodable context fails its own steps, not the claim.
        context: serde_json::from_str(r.try_get("context")?)
            .map_err(|e| format!("task context cannot be decoded: {e}")),
        correlation_id: r.try_get("correlation_id")?,
        template_id: r.try_get("template_id")?,
    })
}

fn dependency_result_from_row(r: &SqliteRow) -> Result<DependencyResult> {
    let results = match r.try_get::<Option<&str>, _>("results")? {
        None => Ok(Value::Null),
        Some(text) => serde_json::from_str(text).map_err(|e| format!("dependency result cannot be decoded: {e}")),
    };
    Ok((r.try_get("to_step")?, r.try_get("name")?, results))
}

fn counters_from_row(r: &SqliteRow) -> Result<TaskCounters> {
    Ok(TaskCounters {
        task_uuid: r.try_get("task_uuid")?,
        state: parse_state(r.try_get::<&str, _>("state")?, "task")?,
        total: r.try_get("total_steps")?,
        completed: r.try_get("completed_steps")?,
        active: r.try_get("active_steps")?,
        failed: r.try_get("failed_steps")?,
    })
}

fn step_from_row(row: &SqliteRow, dependencies: Vec<String>) -> Result<StepSummary> {
    Ok(StepSummary {
        step_uuid: row.try_get("step_uuid")?,
        name: row.try_get("name")?,
        queue: row.try_get("queue")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        free_attempts: row.try_get("free_attempts")?,
        retryable: row.try_get("retryable")?,
        results: opt_json(row, "results")?,
        last_error: opt_json(row, "last_error")?,
        next_retry_at: opt_from_ms(row.try_get("next_retry_at")?),
        created_at: from_ms(row.try_get("created_at")?),
        first_attempted_at: opt_from_ms(row.try_get("first_attempted_at")?),
        last_attempted_at: opt_from_ms(row.try_get("last_attempted_at")?),
        completed_at: opt_from_ms(row.try_get("completed_at")?),
        dependencies,
        created_by: row.try_get("created_by")?,
        batch: opt_json(row, "inputs")?.and_then(|mut i| i.get_mut("batch").map(Value::take)),
        checkpoint: opt_json(row, "checkpoint")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        Ok(Box::new(self.transaction().await?))
    }

    async fn ensure_queue(&self, _queue: &str) -> Result<()> {
        // Queues are rows of one table; nothing to create.
        Ok(())
    }

    async fn has_visible_messages(&self, queues: &[String]) -> Result<bool> {
        if queues.is_empty() {
            return Ok(false);
        }
        let rows = self
            .read(sqlx::query(HAS_VISIBLE).bind(to_json(queues)?).bind(ms(Utc::now())))
            .await?;
        Ok(rows
            .first()
            .map(|r| r.try_get::<bool, _>(0))
            .transpose()?
            .unwrap_or(false))
    }

    async fn register_templates(&self, templates: &[NewTemplate]) -> Result<Vec<TemplateRow>> {
        let now = ms(Utc::now());
        let mut tx = self.transaction().await?;
        let mut stored_rows = Vec::with_capacity(templates.len());
        for t in templates {
            // The transaction begins lazily: the first statement carries the BEGIN.
            let sql = tx.sql(&REGISTER_TEMPLATE);
            let rows = sqlx::query(&sql)
                .bind(&t.namespace)
                .bind(now)
                .bind(&t.name)
                .bind(&t.version)
                .bind(json_text(&t.definition))
                .bind(&t.content_hash)
                .bind(&t.source_path)
                .fetch_all(tx.conn()?)
                .await?;
            let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
            let stored = template_from_row(row)?;
            if stored.content_hash != t.content_hash {
                // Nothing of this registration is kept, including templates stored before this one.
                Box::new(tx).rollback().await?;
                return Err(TaskerError::TemplateConflict {
                    namespace: t.namespace.clone(),
                    name: t.name.clone(),
                    version: t.version.clone(),
                    path: t.source_path.clone(),
                    registered_from: stored.source_path.clone(),
                });
            }
            stored_rows.push(stored);
        }
        Box::new(tx).commit().await?;
        Ok(stored_rows)
    }

    async fn create_task(
        &self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        // BEGIN, every row and COMMIT in one command. A task whose identity exists writes
        // nothing, so committing that transaction is the same as rolling it back.
        let mut tx = self.transaction().await?;
        let command = tx.whole(&CREATE_TASK_COMMITTED);
        let inserted = tx
            .create_rows(command, task, task_transitions, step_transitions, messages)
            .await?;
        tx.committed();
        Ok(inserted)
    }

    async fn template_by_id(&self, id: i64) -> Result<Option<TemplateRow>> {
        let rows = self
            .read(sqlx::query("SELECT * FROM tasker_templates WHERE id = ?1").bind(id))
            .await?;
        rows.first().map(template_from_row).transpose()
    }

    async fn template_versions(&self, namespace: &str, name: &str) -> Result<Vec<TemplateRow>> {
        let rows = self
            .read(
                sqlx::query("SELECT * FROM tasker_templates WHERE namespace_name = ?1 AND name = ?2")
                    .bind(namespace)
                    .bind(name),
            )
            .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn list_templates(&self) -> Result<Vec<TemplateRow>> {
        let rows = self
            .read(sqlx::query(
                "SELECT * FROM tasker_templates ORDER BY namespace_name, name, id DESC",
            ))
            .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn task_detail(&self, task_uuid: Uuid) -> Result<Option<TaskDetail>> {
        // One command for the five reads (one round trip instead of five).
        let rows = self.read(sqlx::query(&TASK_DETAIL).bind(task_uuid)).await?;
        let mut task = None;
        let mut step_rows = Vec::new();
        let mut dependencies: HashMap<Uuid, Vec<String>> = HashMap::new();
        let mut task_transitions = Vec::new();
        let mut step_transition_rows = Vec::new();
        for row in &rows {
            match row.try_get::<&str, _>("part")? {
                "task" => task = Some(task_from_row(row)?),
                "step" => step_rows.push(row),
                "edge" => dependencies
                    .entry(row.try_get("to_step")?)
                    .or_default()
                    .push(row.try_get("name")?),
                "task_transition" => task_transitions.push(transition_from_row(row, None)?),
                _ => step_transition_rows.push(row),
            }
        }
        let Some(task) = task else {
            return Ok(None);
        };
        let mut steps = Vec::with_capacity(step_rows.len());
        for row in step_rows {
            let step_uuid: Uuid = row.try_get("step_uuid")?;
            steps.push(step_from_row(row, dependencies.remove(&step_uuid).unwrap_or_default())?);
        }
        let names: HashMap<Uuid, &str> = steps.iter().map(|s| (s.step_uuid, s.name.as_str())).collect();
        let step_transitions = step_transition_rows
            .into_iter()
            .map(|r| {
                let uuid: Uuid = r.try_get("step_uuid")?;
                transition_from_row(r, names.get(&uuid).map(|n| (*n).to_owned()))
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
        let rows = self.read(sqlx::query(TASK_SUMMARY).bind(task_uuid)).await?;
        rows.first().map(task_from_row).transpose()
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>> {
        let sql = list_tasks_sql_with(filter);
        let rows = self
            .read(
                sqlx::query(&sql)
                    .bind(&filter.namespace)
                    .bind(&filter.name)
                    .bind(filter.state.map(|s| s.as_str()))
                    .bind(&filter.tag)
                    .bind(filter.created_after.map(ms))
                    .bind(filter.created_before.map(ms))
                    .bind(filter.after.map(|(at, _)| ms(at)))
                    .bind(filter.after.map(|(_, uuid)| uuid))
                    .bind(filter.limit.unwrap_or(100))
                    .bind(&filter.idempotency_key),
            )
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn due_retries(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>> {
        let rows = self.read(sqlx::query(DUE_RETRIES).bind(ms(now)).bind(limit)).await?;
        rows.iter().map(step_lock_from_row).collect()
    }

    async fn overdue_attempts(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>> {
        let rows = self
            .read(sqlx::query(OVERDUE_ATTEMPTS).bind(ms(now)).bind(limit))
            .await?;
        rows.iter().map(step_lock_from_row).collect()
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>> {
        let rows = self.read(sqlx::query(&NEXT_TIMER)).await?;
        let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
        let (retry, deadline): (Option<i64>, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        Ok(match (retry, deadline) {
            (Some(a), Some(b)) => Some(from_ms(a.min(b))),
            (a, b) => a.or(b).map(from_ms),
        })
    }

    async fn list_dlq(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>> {
        self.list_dlq_rows(filter).await
    }

    async fn dlq_entry(&self, entry_uuid: Uuid) -> Result<Option<DlqEntry>> {
        self.dlq_row(entry_uuid).await
    }

    async fn update_dlq_entry(
        &self,
        entry_uuid: Uuid,
        status: Option<DlqStatus>,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<Option<DlqEntry>> {
        self.update_dlq_row(entry_uuid, status, note, now).await
    }

    async fn dlq_counts(&self) -> Result<Vec<DlqCount>> {
        self.dlq_count_rows().await
    }

    async fn open_tasks(
        &self,
        template_ids: &[i64],
        idle_before: DateTime<Utc>,
        created_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OpenTask>> {
        self.open_task_rows(template_ids, idle_before, created_before, limit)
            .await
    }

    async fn waiting_tasks(&self, queue: &str, enqueued_before: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>> {
        self.waiting_task_rows(queue, enqueued_before, limit).await
    }

    async fn register_worker(&self, worker: &WorkerRecord) -> Result<()> {
        self.register_worker_row(worker).await
    }

    async fn heartbeat_worker(
        &self,
        registration_uuid: Uuid,
        in_flight: i32,
        stopped: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.heartbeat_row(registration_uuid, in_flight, stopped, now).await
    }

    async fn list_workers(&self, seen_since: DateTime<Utc>) -> Result<Vec<WorkerRecord>> {
        self.worker_rows(seen_since).await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        let now = ms(Utc::now());
        let rows = self
            .read(
                sqlx::query(
                    "SELECT queue, sum(vt <= ?1) AS visible, sum(vt > ?1) AS hidden, \
                     min(CASE WHEN vt <= ?1 THEN enqueued_at END) AS oldest \
                     FROM tasker_queue_messages GROUP BY queue ORDER BY queue",
                )
                .bind(now),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(QueueStats {
                    queue: r.try_get("queue")?,
                    visible: r.try_get("visible")?,
                    hidden: r.try_get("hidden")?,
                    oldest_visible_at: opt_from_ms(r.try_get("oldest")?),
                })
            })
            .collect()
    }

    fn connection_stats(&self) -> (u32, u32) {
        let slots = std::iter::once(&self.writer).chain(&self.readers);
        let used = slots.clone().filter(|s| s.try_lock().is_err()).count();
        let total = slots.count();
        let used = u32::try_from(used).unwrap_or(0);
        (u32::try_from(total).unwrap_or(0).saturating_sub(used), used)
    }

    async fn ping(&self) -> Result<()> {
        self.read(sqlx::query("SELECT 1")).await.map(|_| ())
    }

    async fn compact_task_counts(&self, before: DateTime<Utc>) -> Result<()> {
        self.fold_task_counts(before).await
    }

    async fn overview(&self, window: &OverviewWindow) -> Result<Overview> {
        let mut overview = self.overview_rows(window).await?;
        overview.queues = self.queue_stats().await?.into_iter().map(QueueDepth::from).collect();
        Ok(overview)
    }

    async fn commit_count(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    fn subscribe_remote(&self) -> Option<broadcast::Receiver<RemoteSignal>> {
        None
    }

    fn events(&self) -> &dyn EventStore {
        self
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.checkpointer.abort();
        for slot in std::iter::once(&self.writer).chain(&self.readers) {
            // Waits for the transaction or read in progress.
            let conn = slot.lock().await.conn.take();
            if let Some(conn) = conn {
                let _ = conn.close().await;
            }
        }
    }
}

struct SqliteTx {
    /// The writer connection, until the transaction ends.
    slot: Option<OwnedMutexGuard<Slot>>,
    /// BEGIN went out.
    begun: bool,
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        if !slot.open_tx {
            return;
        }
        // Abandoned: roll back now, not at the next transaction, so that other processes do not
        // wait for the write lock meanwhile. The connection stays taken until it is done.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(conn) = slot.conn.as_mut() {
                    match sqlx::query("ROLLBACK").execute(conn).await {
                        Ok(_) => slot.open_tx = false,
                        // BEGIN itself had failed (or the command had committed).
                        Err(e) if no_transaction(&e) => slot.open_tx = false,
                        Err(e) => slot.failed(&e),
                    }
                }
            });
        }
    }
}

impl SqliteTx {
    /// The command to send for `statement`: the transaction's first one carries its BEGIN.
    fn sql(&mut self, statement: &'static str) -> Cow<'static, str> {
        if self.begun {
            return Cow::Borrowed(statement);
        }
        self.begun = true;
        if let Some(slot) = self.slot.as_mut() {
            slot.open_tx = true;
        }
        Cow::Owned(format!("{BEGIN}{statement}"))
    }

    /// A command that carries the transaction's BEGIN itself.
    fn whole(&mut self, command: &'static str) -> Cow<'static, str> {
        self.begun = true;
        if let Some(slot) = self.slot.as_mut() {
            slot.open_tx = true;
        }
        Cow::Borrowed(command)
    }

    fn conn(&mut self) -> Result<&mut SqliteConnection> {
        self.slot
            .as_mut()
            .and_then(|s| s.conn.as_mut())
            .ok_or_else(|| sqlx::Error::PoolClosed.into())
    }

    /// Ends the transaction with `statement` (COMMIT or ROLLBACK); nothing to send if it never
    /// began.
    async fn end(mut self, statement: &'static str) -> Result<()> {
        if !self.begun {
            return Ok(());
        }
        let result = sqlx::query(statement).execute(self.conn()?).await;
        let slot = self.slot.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        match result {
            Ok(_) => {
                slot.open_tx = false;
                Ok(())
            }
            Err(e) => {
                slot.failed(&e);
                Err(e.into())
            }
        }
    }

    /// `CREATE_TASK` (as `command`, which may carry BEGIN and COMMIT).
    async fn create_rows(
        &mut self,
        command: Cow<'static, str>,
        t: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        let tags = serde_json::to_string(&t.tags).map_err(|e| TaskerError::InvalidArgument(e.to_string()))?;
        let steps: Vec<_> = t
            .steps
            .iter()
            .map(|s| {
                (
                    Hex(s.step_uuid),
                    s.name.as_str(),
                    s.position,
                    s.queue.as_str(),
                    s.state.as_str(),
                    s.max_attempts,
                    s.retryable,
                    s.pending_parents,
                )
            })
            .collect();
        let edges: Vec<_> = t.edges.iter().map(|(from, to)| (Hex(*from), Hex(*to))).collect();
        // Everything in one command; only the identity's holder comes back.
        let holders: Vec<Uuid> = sqlx::query_scalar(&command)
            .bind(&t.identity_hash)
            .bind(t.task_uuid)
            .bind(ms(t.created_at))
            .bind(to_json(&steps)?)
            .bind(to_json(&edges)?)
            .bind(transition_rows(task_transitions)?)
            .bind(transition_rows(step_transitions)?)
            .bind(message_rows(messages)?)
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
            .bind(&t.idempotency_key)
            .bind(t.active_steps)
            .bind(&t.trace_parent)
            .bind(t.newest_template_id)
            // All of it: a fetch that stops at the first row would leave the rest unrun.
            .fetch_all(self.conn()?)
            .await?;
        let Some(&holder) = holders.first() else {
            // No row went in and no task holds the identity: the template was superseded.
            return if t.newest_template_id.is_some() {
                Ok(InsertedTask::TemplateSuperseded)
            } else {
                Err(sqlx::Error::RowNotFound.into())
            };
        };
        Ok(if holder == t.task_uuid {
            InsertedTask::Created
        } else {
            InsertedTask::Existing(holder)
        })
    }

    /// After a command that ended with its own COMMIT.
    fn committed(&mut self) {
        self.begun = false;
        if let Some(slot) = self.slot.as_mut() {
            slot.open_tx = false;
        }
    }

    /// The compare-and-swap one row at a time: for batches naming a step twice.
    async fn change_steps_one_by_one(&mut self, changes: &[StepChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        let now = ms(now);
        let mut applied = Vec::with_capacity(changes.len());
        for c in changes {
            let sql = self.sql("UPDATE tasker_steps SET state = ?1, attempts = ?2, \
                    results = COALESCE(?3, results), last_error = COALESCE(?4, last_error), \
                    next_retry_at = ?5, deadline_at = ?6, updated_at = ?7, \
                    first_attempted_at = CASE WHEN ?8 THEN COALESCE(first_attempted_at, ?7) ELSE first_attempted_at END, \
                    last_attempted_at = CASE WHEN ?8 THEN ?7 ELSE last_attempted_at END, \
                    completed_at = CASE WHEN ?9 THEN ?7 ELSE completed_at END, \
                    free_attempts = free_attempts + ?13, lost_leases = lost_leases + ?14 \
                 WHERE step_uuid = ?10 AND state = ?11 AND attempts = ?12",);
            let result = sqlx::query(&sql)
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
                .execute(self.conn()?)
                .await?;
            if result.rows_affected() == 1 {
                applied.push(c.step_uuid);
            }
        }
        Ok(applied)
    }
}

#[async_trait]
impl MessageQueue for SqliteTx {
    async fn read_messages(&mut self, queue: &str, lease: Duration, max: i64) -> Result<Vec<QueueMessage>> {
        let now = ms(Utc::now());
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let sql = self.sql(READ_MESSAGES);
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(now.saturating_add(lease_ms))
            .bind(queue)
            .bind(max)
            .fetch_all(self.conn()?)
            .await
            .map_err(|e| queue_error(e, || format!("reading queue '{queue}'")))?;
        let mut messages = rows
            .iter()
            .map(|r| {
                let key: i64 = r.try_get("order_key")?;
                let message = QueueMessage {
                    queue: queue.to_owned(),
                    msg_id: r.try_get("msg_id")?,
                    read_ct: r.try_get("read_ct")?,
                    enqueued_at: from_ms(r.try_get("enqueued_at")?),
                    payload: parse_json(r.try_get("message")?, "queue message")?,
                };
                Ok((key, message))
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING comes in no particular order: hand them out in claim order.
        messages.sort_unstable_by_key(|(key, m)| (*key, m.msg_id));
        Ok(messages.into_iter().map(|(_, m)| m).collect())
    }

    async fn send_messages(&mut self, messages: &[OutgoingMessage]) -> Result<Vec<MessageRef>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql(SEND_MESSAGES);
        let ids: Vec<i64> = sqlx::query_scalar(&sql)
            .bind(message_rows(messages)?)
            .fetch_all(self.conn()?)
            .await
            .map_err(|e| queue_error(e, || format!("sending to {}", queue_names(messages))))?;
        sent_refs(messages, ids)
    }

    async fn delete_messages(&mut self, messages: &[MessageRef]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let sql = self.sql(DELETE_MESSAGES);
        sqlx::query(&sql)
            .bind(message_refs(messages)?)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    async fn set_message_visibility(&mut self, messages: &[MessageRef], after: Duration) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let at = ms(Utc::now()) + i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 2);
        let sql = self.sql(SET_VISIBILITY);
        sqlx::query(&sql)
            .bind(message_refs(messages)?)
            .bind(at)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl StoreTx for SqliteTx {
    async fn lock_steps(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepLock>> {
        // BEGIN IMMEDIATE already holds the database's write lock: reads here are stable.
        if step_uuids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql(LOCK_STEPS);
        let rows = sqlx::query(&sql)
            .bind(uuid_list(step_uuids)?)
            .fetch_all(self.conn()?)
            .await?;
        rows.iter().map(step_lock_from_row).collect()
    }

    async fn change_steps(&mut self, changes: &[StepChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        if !distinct(changes.iter().map(|c| c.step_uuid)) {
            return self.change_steps_one_by_one(changes, now).await;
        }
        let sql = self.sql(CHANGE_STEPS);
        let changed: Vec<Uuid> = sqlx::query_scalar(&sql)
            .bind(step_change_rows(changes)?)
            .bind(ms(now))
            .fetch_all(self.conn()?)
            .await?;
        Ok(in_input_order(changes.iter().map(|c| c.step_uuid), changed))
    }

    async fn change_steps_audited(
        &mut self,
        changes: &[StepChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        if transitions.is_empty() {
            return self.change_steps(changes, now).await;
        }
        if !distinct(changes.iter().map(|c| c.step_uuid)) {
            let applied = self.change_steps_one_by_one(changes, now).await?;
            let kept: Vec<TransitionRecord> = transitions
                .iter()
                .filter(|t| applied.contains(&t.entity_uuid))
                .cloned()
                .collect();
            self.insert_step_transitions(&kept).await?;
            return Ok(applied);
        }
        let sql = self.sql(&CHANGE_STEPS_AUDITED);
        let changed: Vec<Uuid> = sqlx::query_scalar(&sql)
            .bind(step_change_rows(changes)?)
            .bind(ms(now))
            .bind(transition_rows(transitions)?)
            .fetch_all(self.conn()?)
            .await?;
        Ok(in_input_order(changes.iter().map(|c| c.step_uuid), changed))
    }

    async fn cancel_open_steps(
        &mut self,
        task_uuid: Uuid,
        from: &[StepState],
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, String, StepState)>> {
        let from_names: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let sql = self.sql(&CANCEL_OPEN_STEPS);
        let rows = sqlx::query(&sql)
            .bind(task_uuid)
            .bind(ms(now))
            .bind(to_json(&from_names)?)
            .fetch_all(self.conn()?)
            .await?;
        let mut cancelled = Vec::new();
        for r in &rows {
            let state: StepState = parse_state(r.try_get::<&str, _>("state")?, "step")?;
            if from.contains(&state) {
                cancelled.push((r.try_get("step_uuid")?, r.try_get("name")?, state));
            }
        }
        Ok(cancelled)
    }

    async fn release_children(&mut self, parents: &[Uuid]) -> Result<Vec<ReadyChild>> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        if !distinct(parents.iter().copied()) {
            // Row by row: a child is ready when one release brings it to zero.
            let mut ready = Vec::new();
            for parent in parents {
                let sql = self.sql(RELEASE_CHILDREN);
                let rows = sqlx::query(&sql)
                    .bind(uuid_list(std::slice::from_ref(parent))?)
                    .fetch_all(self.conn()?)
                    .await?;
                let mut released = Vec::new();
                for r in &rows {
                    released.extend(ready_child_from_row(r)?);
                }
                released.sort_unstable_by_key(|c| c.step_uuid);
                ready.extend(released);
            }
            return Ok(ready);
        }
        let sql = self.sql(RELEASE_CHILDREN);
        let rows = sqlx::query(&sql)
            .bind(uuid_list(parents)?)
            .fetch_all(self.conn()?)
            .await?;
        let mut ready = Vec::new();
        for r in &rows {
            ready.extend(ready_child_from_row(r)?);
        }
        // Step uuids are time-ordered: children of older tasks first.
        ready.sort_unstable_by_key(|c| c.step_uuid);
        Ok(ready)
    }

    async fn apply_task_deltas(&mut self, deltas: &[TaskDelta], now: DateTime<Utc>) -> Result<Vec<TaskCounters>> {
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        if !distinct(deltas.iter().map(|d| d.task_uuid)) {
            let mut out = Vec::with_capacity(deltas.len());
            for d in deltas {
                let sql = self.sql(APPLY_TASK_DELTA);
                let row = sqlx::query(&sql)
                    .bind(d.completed)
                    .bind(d.active)
                    .bind(d.failed)
                    .bind(ms(now))
                    .bind(d.task_uuid)
                    .fetch_all(self.conn()?)
                    .await?;
                if let Some(r) = row.first() {
                    out.push(counters_from_row(r)?);
                }
            }
            return Ok(out);
        }
        let rows: Vec<_> = deltas
            .iter()
            .map(|d| (Hex(d.task_uuid), d.completed, d.active, d.failed))
            .collect();
        let sql = self.sql(APPLY_TASK_DELTAS);
        let rows = sqlx::query(&sql)
            .bind(to_json(&rows)?)
            .bind(ms(now))
            .fetch_all(self.conn()?)
            .await?;
        let counters = rows.iter().map(counters_from_row).collect::<Result<Vec<_>>>()?;
        Ok(counters_in_input_order(deltas, counters))
    }

    async fn change_tasks(&mut self, changes: &[TaskChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        if !distinct(changes.iter().map(|c| c.task_uuid)) {
            let mut applied = Vec::new();
            for c in changes {
                let sql = self.sql(CHANGE_TASK);
                let result = sqlx::query(&sql)
                    .bind(c.new.as_str())
                    .bind(ms(now))
                    .bind(c.new.is_terminal())
                    .bind(c.task_uuid)
                    .bind(c.expected.as_str())
                    .execute(self.conn()?)
                    .await?;
                if result.rows_affected() == 1 {
                    applied.push(c.task_uuid);
                }
            }
            return Ok(applied);
        }
        let rows: Vec<_> = changes
            .iter()
            .map(|c| {
                (
                    Hex(c.task_uuid),
                    c.expected.as_str(),
                    c.new.as_str(),
                    c.new.is_terminal(),
                )
            })
            .collect();
        let sql = self.sql(CHANGE_TASKS);
        let changed: Vec<Uuid> = sqlx::query_scalar(&sql)
            .bind(to_json(&rows)?)
            .bind(ms(now))
            .fetch_all(self.conn()?)
            .await?;
        Ok(in_input_order(changes.iter().map(|c| c.task_uuid), changed))
    }

    async fn change_tasks_audited(
        &mut self,
        changes: &[TaskChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>> {
        // No cross-process notification on SQLite: a finished task needs no announcement here.
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        if transitions.is_empty() || !distinct(changes.iter().map(|c| c.task_uuid)) {
            let applied = self.change_tasks(changes, now).await?;
            let kept: Vec<TransitionRecord> = transitions
                .iter()
                .filter(|t| applied.contains(&t.entity_uuid))
                .cloned()
                .collect();
            self.insert_task_transitions(&kept).await?;
            return Ok(applied);
        }
        let sql = self.sql(&CHANGE_TASKS_AUDITED);
        let changed: Vec<Uuid> = sqlx::query_scalar(&sql)
            .bind(task_change_rows(changes)?)
            .bind(ms(now))
            .bind(transition_rows(transitions)?)
            .fetch_all(self.conn()?)
            .await?;
        Ok(in_input_order(changes.iter().map(|c| c.task_uuid), changed))
    }

    async fn insert_step_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = self.sql(&INSERT_STEP_TRANSITIONS_BATCH);
        sqlx::query(&sql)
            .bind(transition_rows(rows)?)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    async fn insert_task_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = self.sql(&INSERT_TASK_TRANSITIONS_BATCH);
        sqlx::query(&sql)
            .bind(transition_rows(rows)?)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    async fn insert_task(&mut self, t: &NewTask) -> Result<InsertedTask> {
        self.create_task_rows(t, &[], &[], &[]).await
    }

    async fn create_task_rows(
        &mut self,
        t: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        let sql = self.sql(&CREATE_TASK);
        self.create_rows(sql, t, task_transitions, step_transitions, messages)
            .await
    }

    async fn task_inputs(&mut self, task_uuids: &[Uuid]) -> Result<Vec<TaskInput>> {
        if task_uuids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql(TASK_INPUTS);
        let rows = sqlx::query(&sql)
            .bind(uuid_list(task_uuids)?)
            .fetch_all(self.conn()?)
            .await?;
        rows.iter().map(task_input_from_row).collect()
    }

    async fn dependency_results(&mut self, step_uuids: &[Uuid]) -> Result<Vec<DependencyResult>> {
        if step_uuids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql(DEPENDENCY_RESULTS);
        let rows = sqlx::query(&sql)
            .bind(uuid_list(step_uuids)?)
            .fetch_all(self.conn()?)
            .await?;
        rows.iter().map(dependency_result_from_row).collect()
    }

    async fn claim_inputs(
        &mut self,
        task_uuids: &[Uuid],
        step_uuids: &[Uuid],
    ) -> Result<(Vec<TaskInput>, Vec<DependencyResult>)> {
        if step_uuids.is_empty() {
            return Ok((self.task_inputs(task_uuids).await?, Vec::new()));
        }
        let sql = self.sql(&CLAIM_INPUTS);
        let rows = sqlx::query(&sql)
            .bind(uuid_list(task_uuids)?)
            .bind(uuid_list(step_uuids)?)
            .fetch_all(self.conn()?)
            .await?;
        let mut inputs = Vec::new();
        let mut dependencies = Vec::new();
        for r in &rows {
            if r.try_get::<&str, _>("part")? == "input" {
                inputs.push(task_input_from_row(r)?);
            } else {
                dependencies.push(dependency_result_from_row(r)?);
            }
        }
        Ok((inputs, dependencies))
    }

    async fn apply_outcome_writes(
        &mut self,
        w: OutcomeWrites<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Uuid>, Vec<ReadyChild>)> {
        if w.changes.is_empty() && w.delete.is_empty() && w.released_parents.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        if !distinct(w.changes.iter().map(|c| c.step_uuid)) || !distinct(w.released_parents.iter().copied()) {
            let applied = self.change_steps_audited(w.changes, w.transitions, now).await?;
            self.delete_messages(w.delete).await?;
            let ready = self.release_children(w.released_parents).await?;
            return Ok((applied, ready));
        }
        let sql = self.sql(&OUTCOME_WRITES);
        let rows = sqlx::query(&sql)
            .bind(step_change_rows(w.changes)?)
            .bind(ms(now))
            .bind(transition_rows(w.transitions)?)
            .bind(message_refs(w.delete)?)
            .bind(uuid_list(w.released_parents)?)
            .fetch_all(self.conn()?)
            .await?;
        let mut changed = Vec::new();
        let mut ready = Vec::new();
        for r in &rows {
            if r.try_get::<&str, _>("part")? == "changed" {
                changed.push(r.try_get("step_uuid")?);
            } else {
                ready.extend(ready_child_from_row(r)?);
            }
        }
        ready.sort_unstable_by_key(|c| c.step_uuid);
        Ok((in_input_order(w.changes.iter().map(|c| c.step_uuid), changed), ready))
    }

    async fn apply_followup_writes(&mut self, w: FollowupWrites<'_>, now: DateTime<Utc>) -> Result<Followup> {
        // As the trait's sequence, which reads no claim inputs without input tasks.
        let (input_tasks, input_steps) = match w.input_tasks.is_empty() {
            true => (&[][..], &[][..]),
            false => (w.input_tasks, w.input_steps),
        };
        if w.changes.is_empty() && w.send.is_empty() && w.deltas.is_empty() && input_tasks.is_empty() {
            return Ok(Followup::default());
        }
        if !distinct(w.changes.iter().map(|c| c.step_uuid)) || !distinct(w.deltas.iter().map(|d| d.task_uuid)) {
            let applied = self.change_steps_audited(w.changes, w.transitions, now).await?;
            let sent = self.send_messages(w.send).await?;
            let counters = self.apply_task_deltas(w.deltas, now).await?;
            let (inputs, dependency_results) = match input_tasks.is_empty() {
                true => (Vec::new(), Vec::new()),
                false => self.claim_inputs(input_tasks, input_steps).await?,
            };
            return Ok(Followup {
                applied,
                sent,
                counters,
                inputs,
                dependency_results,
            });
        }
        let deltas: Vec<_> = w
            .deltas
            .iter()
            .map(|d| (Hex(d.task_uuid), d.completed, d.active, d.failed))
            .collect();
        let sql = self.sql(&FOLLOWUP_WRITES);
        let rows = sqlx::query(&sql)
            .bind(step_change_rows(w.changes)?)
            .bind(ms(now))
            .bind(transition_rows(w.transitions)?)
            .bind(message_rows(w.send)?)
            .bind(to_json(&deltas)?)
            .bind(uuid_list(input_tasks)?)
            .bind(uuid_list(input_steps)?)
            .fetch_all(self.conn()?)
            .await?;
        let mut changed = Vec::new();
        let mut sent = Vec::new();
        let mut counters = Vec::new();
        let mut inputs = Vec::new();
        let mut dependency_results = Vec::new();
        for r in &rows {
            match r.try_get::<&str, _>("part")? {
                "changed" => changed.push(r.try_get("step_uuid")?),
                "sent" => sent.push(r.try_get("msg_id")?),
                "counters" => counters.push(counters_from_row(r)?),
                "input" => inputs.push(task_input_from_row(r)?),
                _ => dependency_results.push(dependency_result_from_row(r)?),
            }
        }
        Ok(Followup {
            applied: in_input_order(w.changes.iter().map(|c| c.step_uuid), changed),
            sent: sent_refs(w.send, sent)?,
            counters: counters_in_input_order(w.deltas, counters),
            inputs,
            dependency_results,
        })
    }

    async fn task_steps(&mut self, task_uuid: Uuid) -> Result<Vec<ExistingStep>> {
        let sql = self.sql(TASK_STEPS);
        let rows = sqlx::query(&sql).bind(task_uuid).fetch_all(self.conn()?).await?;
        rows.iter()
            .map(|r| {
                Ok(ExistingStep {
                    step_uuid: r.try_get("step_uuid")?,
                    name: r.try_get("name")?,
                    state: parse_state(r.try_get::<&str, _>("state")?, "step")?,
                    pending_parents: r.try_get("pending_parents")?,
                    // An unreadable result reads as none (a decision that chose nothing).
                    results: r
                        .try_get::<Option<&str>, _>("results")?
                        .and_then(|t| serde_json::from_str(t).ok()),
                })
            })
            .collect()
    }

    async fn insert_steps(
        &mut self,
        task_uuid: Uuid,
        steps: &[CreatedStep],
        edges: &[(Uuid, Uuid)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = steps
            .iter()
            .map(|c| {
                let s = &c.step;
                (
                    Hex(s.step_uuid),
                    s.name.as_str(),
                    s.position,
                    s.queue.as_str(),
                    s.state.as_str(),
                    s.max_attempts,
                    s.retryable,
                    s.pending_parents,
                    c.inputs.as_ref().map(json_text),
                    c.created_by.as_str(),
                )
            })
            .collect();
        let edges: Vec<_> = edges.iter().map(|(from, to)| (Hex(*from), Hex(*to))).collect();
        let sql = self.sql(&INSERT_STEPS);
        sqlx::query(&sql)
            .bind(task_uuid)
            .bind(to_json(&rows)?)
            .bind(ms(now))
            .bind(to_json(&edges)?)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    async fn step_extras(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepExtras>> {
        if step_uuids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql(STEP_EXTRAS);
        let rows = sqlx::query(&sql)
            .bind(uuid_list(step_uuids)?)
            .fetch_all(self.conn()?)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StepExtras {
                    step_uuid: r.try_get("step_uuid")?,
                    inputs: opt_json(r, "inputs")?,
                    checkpoint: opt_json(r, "checkpoint")?,
                })
            })
            .collect()
    }

    async fn save_checkpoint(
        &mut self,
        step_uuid: Uuid,
        attempt: i32,
        checkpoint: &Value,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let sql = self.sql(SAVE_CHECKPOINT);
        let stored = sqlx::query(&sql)
            .bind(step_uuid)
            .bind(attempt)
            .bind(json_text(checkpoint))
            .bind(ms(now))
            .fetch_optional(self.conn()?)
            .await?;
        Ok(stored.is_some())
    }

    async fn insert_events(&mut self, events: &[NewEvent]) -> Result<()> {
        self.insert_event_rows(events).await
    }

    async fn insert_dlq_entries(
        &mut self,
        entries: &[NewDlqEntry],
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertedDlqEntry>> {
        self.insert_dlq_rows(entries, now).await
    }

    async fn close_dlq_entries(
        &mut self,
        task_uuids: &[Uuid],
        status: DlqStatus,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        self.close_dlq_rows(task_uuids, status, note, now).await
    }

    async fn running_steps(&mut self, task_uuids: &[Uuid]) -> Result<Vec<(Uuid, i64)>> {
        if task_uuids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql(RUNNING_STEPS);
        let rows = sqlx::query(&sql)
            .bind(uuid_list(task_uuids)?)
            .fetch_all(self.conn()?)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("task_uuid")?, r.try_get("n")?)))
            .collect()
    }

    async fn note_dlq_resolution(&mut self, task_uuids: &[Uuid], note: &DlqNote, now: DateTime<Utc>) -> Result<usize> {
        self.note_dlq_resolution_rows(task_uuids, note, now).await
    }

    async fn notify_task_finished(&mut self, _task_uuid: Uuid) -> Result<()> {
        // No cross-process channel on SQLite; waiters in other processes poll.
        Ok(())
    }

    async fn notify_timers(&mut self) -> Result<()> {
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        (*self).end("COMMIT").await
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        (*self).end("ROLLBACK").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement the store runs, by name, one statement each.
    fn statements() -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = [
            ("has_visible_messages", HAS_VISIBLE),
            ("read_messages", READ_MESSAGES),
            ("send_messages", SEND_MESSAGES),
            ("delete_messages", DELETE_MESSAGES),
            ("set_message_visibility", SET_VISIBILITY),
            ("lock_steps", LOCK_STEPS),
            ("change_steps", CHANGE_STEPS),
            ("insert_step_transitions: clear", CLEAR_STEP_TRANSITIONS),
            ("insert_step_transitions: insert", INSERT_STEP_TRANSITIONS),
            ("insert_task_transitions: clear", CLEAR_TASK_TRANSITIONS),
            ("insert_task_transitions: insert", INSERT_TASK_TRANSITIONS),
            ("cancel_open_steps: select", OPEN_STEPS),
            ("cancel_open_steps: update", CANCEL_STEPS),
            ("release_children", RELEASE_CHILDREN),
            ("apply_task_deltas", APPLY_TASK_DELTAS),
            ("apply_task_deltas (one)", APPLY_TASK_DELTA),
            ("change_tasks", CHANGE_TASKS),
            ("change_tasks (one)", CHANGE_TASK),
            ("task_inputs", TASK_INPUTS),
            ("dependency_results", DEPENDENCY_RESULTS),
            ("task_summary", TASK_SUMMARY),
            ("due_retries", DUE_RETRIES),
            ("overdue_attempts", OVERDUE_ATTEMPTS),
            ("next_timer", NEXT_TIMER.as_str()),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_owned(), s.to_owned()))
        .collect();
        for (name, command) in commands() {
            for (i, statement) in command.split(";\n").enumerate() {
                all.push((format!("{name}, statement {i}"), statement.to_owned()));
            }
        }
        for bits in 0..8u8 {
            let (namespace, name, state) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
            all.push((
                format!("list_tasks (namespace {namespace}, name {name}, state {state})"),
                list_tasks_sql(namespace, name, state),
            ));
            // The same filters with a tag: the tag's rows, newest first, whatever else is set.
            all.push((
                format!("list_tasks by tag (namespace {namespace}, name {name}, state {state})"),
                list_tasks_sql_with(&TaskFilter {
                    namespace: namespace.then(String::new),
                    name: name.then(String::new),
                    state: state.then_some(crate::state::TaskState::Pending),
                    tag: Some(String::new()),
                    created_after: (bits & 1 != 0).then(Utc::now),
                    after: (bits & 2 != 0).then(|| (Utc::now(), Uuid::nil())),
                    ..TaskFilter::default()
                }),
            ));
        }
        all
    }

    /// The commands of several statements, as sent.
    fn commands() -> Vec<(&'static str, &'static str)> {
        vec![
            ("change_steps_audited", CHANGE_STEPS_AUDITED.as_str()),
            ("change_tasks_audited", CHANGE_TASKS_AUDITED.as_str()),
            ("insert_step_transitions", INSERT_STEP_TRANSITIONS_BATCH.as_str()),
            ("insert_task_transitions", INSERT_TASK_TRANSITIONS_BATCH.as_str()),
            ("cancel_open_steps", CANCEL_OPEN_STEPS.as_str()),
            ("create_task_rows", CREATE_TASK.as_str()),
            ("apply_outcome_writes", OUTCOME_WRITES.as_str()),
            ("apply_followup_writes", FOLLOWUP_WRITES.as_str()),
            ("claim_inputs", CLAIM_INPUTS.as_str()),
            ("task_detail", TASK_DETAIL.as_str()),
            ("insert_steps", INSERT_STEPS.as_str()),
        ]
    }

    #[test]
    fn each_statement_of_a_command_numbers_its_parameters_without_gaps() {
        for (name, command) in commands() {
            for (i, statement) in command.split(";\n").enumerate() {
                let mut used: Vec<usize> = statement
                    .split('?')
                    .skip(1)
                    .filter_map(|rest| {
                        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                        digits.parse().ok()
                    })
                    .collect();
                used.sort_unstable();
                used.dedup();
                let expected: Vec<usize> = (1..=used.len()).collect();
                assert_eq!(used, expected, "{name}, statement {i}: {statement}");
            }
        }
    }

    /// Plans are chosen without statistics (nothing runs ANALYZE), so they do not depend on the
    /// rows: an empty database shows the plan a full one gets.
    #[tokio::test]
    async fn no_statement_scans_history_and_the_claim_does_not_sort() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("plans.db").display()))
            .await
            .expect("open");
        let history = [
            "tasker_tasks",
            "tasker_steps",
            "tasker_step_edges",
            "tasker_task_transitions",
            "tasker_step_transitions",
            "tasker_queue_messages",
        ];
        let mut problems = Vec::new();
        for (name, sql) in statements() {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let rows = store
                .read(sqlx::query(&explain))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}\n{sql}"));
            let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>("detail")).collect();
            println!("{name}:\n  {}", plan.join("\n  "));
            for line in &plan {
                let scanned = line
                    .strip_prefix("SCAN ")
                    .map(|rest| rest.split(' ').next().unwrap_or_default().to_owned());
                let aliases = ["s", "t", "e", "p", "m"];
                if let Some(table) = scanned {
                    if history.contains(&table.as_str()) || aliases.contains(&table.as_str()) {
                        // Listing newest first without a namespace walks the creation-time index
                        // and stops at the limit (a name alone has no index of its own).
                        let listing = name.starts_with("list_tasks (namespace false, name")
                            && !name.contains("state true")
                            && line.contains("USING INDEX tasker_tasks_by_created");
                        // By name: the namespace's (or state's) newest-first index, names filtered.
                        // Inserting a task row plans the foreign-key scan of its children that
                        // resolves pending violations; it is skipped at run time when there are
                        // none (OP_FkIfZero), which is always here. VALUES plans it as well, but
                        // EXPLAIN QUERY PLAN only shows it for INSERT … SELECT.
                        let foreign_key_check =
                            name == "create_task_rows, statement 0" && line == "SCAN tasker_step_edges";
                        let allowed = listing || foreign_key_check;
                        if !allowed {
                            problems.push(format!("{name}: {line}"));
                        }
                    }
                }
            }
            if name == "read_messages" {
                if plan.iter().any(|l| l.contains("TEMP B-TREE")) {
                    problems.push(format!("{name} sorts: {plan:?}"));
                }
                if !plan.iter().any(|l| l.contains("tasker_queue_messages_claim")) {
                    problems.push(format!("{name} does not use the claim index: {plan:?}"));
                }
            }
            if name.starts_with("list_tasks") && plan.iter().any(|l| l.contains("TEMP B-TREE")) {
                problems.push(format!("{name} sorts: {plan:?}"));
            }
        }
        store.close().await;
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
