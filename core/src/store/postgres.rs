//! PostgreSQL store: tables of `migrations/postgres`, queues in PGMQ, wake-ups through
//! LISTEN/NOTIFY.
//!
//! Every primitive is one statement over arrays (`unnest`), so a batch of N steps costs the same
//! number of round trips as one step.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Executor, PgConnection, PgPool, Postgres, QueryBuilder, Row};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::events::{EventStore, NewEvent};
use super::pg_connections::{HotPool, Leased};
use super::pg_events;
use super::pg_fused::{self, TransitionArrays};
use super::pg_notifier::{Notifier, Wake};
use super::pg_prepared::{self, Names, Prepared};
use super::pg_recovery;
use super::records::*;
use super::{Backend, MessageQueue, RemoteSignal, Store, StoreTx, TERMINAL_TASK_STATES};
use crate::error::{Result, TaskerError};
use crate::state::{NamedState, StepState};

/// NOTIFY channels. Payloads: queue name / task uuid / empty.
pub(super) const QUEUE_CHANNEL: &str = "tasker_queue";

/// A queue notification's payload: the queue, and the store that sent it, so that a process
/// does not wake its own workers twice (they heard of their own messages directly).
pub(super) fn queue_payload(queue: &str, origin: &str) -> String {
    format!("{queue}@{origin}")
}

/// A queue notification of another store: its queue. (A payload without an origin is an
/// older version's: it is taken as another store's.)
fn foreign_queue<'a>(payload: &'a str, origin: &str) -> Option<&'a str> {
    match payload.split_once('@') {
        Some((_, from)) if from == origin => None,
        Some((queue, _)) => Some(queue),
        None => Some(payload),
    }
}
const TASK_CHANNEL: &str = "tasker_task_finished";
const TIMER_CHANNEL: &str = "tasker_timers";

/// Serialises schema and PGMQ installation across processes starting at once. Always taken
/// as a *transaction*-scoped lock: a session lock on a pooled connection would outlive a future
/// dropped between lock and unlock.
const MIGRATION_LOCK_KEY: i64 = 0x7461_736b_6572; // "tasker"

/// Fewest pool connections that work: LISTEN holds one, and the migration lock's transaction
/// holds one while PGMQ is installed on another.
const MIN_CONNECTIONS: u32 = 2;

/// How the PostgreSQL store connects (the `[database]` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    pub max_connections: u32,
    /// LISTEN/NOTIFY wake-ups (holds one connection).
    pub listen: bool,
    /// How long a call waits for a pooled connection (the pool is full, or the server is away
    /// and reconnecting fails) before it fails with a pool timeout.
    pub acquire_timeout: Duration,
    /// Session settings of every engine connection. The engine's statements take
    /// milliseconds; a statement or lock wait this long means something is stuck, and failing
    /// it (the engine retries) beats holding row locks indefinitely.
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub idle_in_transaction_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            listen: true,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// How long start-up waits for another process's migration (overrides `lock_timeout` there).
const MIGRATION_LOCK_WAIT: &str = "300s";

/// A PostgreSQL-backed [`Store`].
#[derive(Debug)]
pub struct PostgresStore {
    pub(super) pool: PgPool,
    /// The same pool, with recently used connections kept unchecked for the hot path.
    hot: std::sync::Arc<HotPool>,
    signals: broadcast::Sender<RemoteSignal>,
    known_queues: Mutex<HashSet<String>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Names this store in its queue notifications (see [`queue_payload`]).
    origin: std::sync::Arc<str>,
    /// Sends the wake-ups of committed transactions.
    notifier: Notifier,
    /// Statements run by name (see `pg_prepared`).
    names: Arc<Names>,
}

impl PostgresStore {
    /// Connects, installs PGMQ (SQL-only, from the `pgmq` crate's embedded scripts) unless the
    /// extension is present, runs migrations and starts the LISTEN task.
    pub async fn connect(options: PgConnectOptions, settings: &PgSettings) -> Result<Self> {
        let PgSettings {
            max_connections,
            listen,
            acquire_timeout,
            ..
        } = *settings;
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        if max_connections < MIN_CONNECTIONS {
            return Err(TaskerError::InvalidArgument(format!(
                "max_connections must be at least {MIN_CONNECTIONS} on PostgreSQL, got {max_connections}: \
                 one connection is held by LISTEN and start-up installs PGMQ beside the migration lock"
            )));
        }
        // A stalled process (or a hung statement) must not hold locks, or hide claimed messages
        // from recovery, forever.
        let options = options.options([
            ("statement_timeout", ms(settings.statement_timeout)),
            ("lock_timeout", ms(settings.lock_timeout)),
            (
                "idle_in_transaction_session_timeout",
                ms(settings.idle_in_transaction_timeout),
            ),
        ]);
        // One plain connection first: an unreachable or misconfigured server then fails at once
        // with its real reason, instead of a pool timeout after acquire_timeout.
        let probe = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options).await?;
        sqlx::Connection::close(probe).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            // Best effort: before the first migration the tables are missing, and those
            // connections prepare when they first need to (see `pg_prepared`).
            .after_connect(|conn, _| {
                Box::pin(async move {
                    let _ = pg_prepared::prepare_all(conn, &fixed_statements()).await;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        migrate(&pool).await?;
        let (signals, _) = broadcast::channel(1024);
        let origin: std::sync::Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
        let listener = if listen {
            Some(spawn_listener(pool.clone(), signals.clone(), origin.clone()).await?)
        } else {
            None
        };
        let hot = HotPool::new(pool.clone(), max_connections);
        Ok(Self {
            notifier: Notifier::spawn(hot.clone()),
            hot,
            pool,
            signals,
            known_queues: Mutex::new(HashSet::new()),
            listener: Mutex::new(listener),
            origin,
            names: Arc::default(),
        })
    }

    /// The underlying pool (tests and the benchmark read statistics with it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn migrate(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{MIGRATION_LOCK_WAIT}'"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("SET LOCAL statement_timeout = '{MIGRATION_LOCK_WAIT}'"))
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    let extension: Option<String> = sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'pgmq'")
        .fetch_optional(&mut *tx)
        .await?;
    if extension.is_none() {
        // On another connection (the crate takes a pool); serialised by the lock held here.
        pgmq::install::install_sql_from_embedded(pool)
            .await
            .map_err(|e| TaskerError::Migration(format!("installing PGMQ: {e}")))?;
    }
    // sqlx's own (session-scoped) migration lock is off: ours covers it.
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    migrator.set_locking(false);
    migrator
        .run_direct(&mut *tx)
        .await
        .map_err(|e| TaskerError::Migration(e.to_string()))?;
    tx.commit().await?;
    Ok(())
}

async fn spawn_listener(
    pool: PgPool,
    signals: broadcast::Sender<RemoteSignal>,
    origin: std::sync::Arc<str>,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut listener = PgListener::connect_with(&pool).await?;
    listener
        .listen_all([QUEUE_CHANNEL, TASK_CHANNEL, TIMER_CHANNEL])
        .await?;
    Ok(tokio::spawn(async move {
        loop {
            // `try_recv` returns Ok(None) when the connection dropped; the next call reconnects
            // and re-listens. Anything sent meanwhile was missed, so say so.
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    let signal = match n.channel() {
                        QUEUE_CHANNEL => match foreign_queue(n.payload(), &origin) {
                            Some(queue) => RemoteSignal::Queue(queue.to_owned()),
                            None => continue,
                        },
                        TASK_CHANNEL => match Uuid::parse_str(n.payload()) {
                            Ok(id) => RemoteSignal::TaskFinished(id),
                            Err(_) => continue,
                        },
                        _ => RemoteSignal::Timers,
                    };
                    let _ = signals.send(signal);
                }
                Ok(None) => {
                    let _ = signals.send(RemoteSignal::Reconnected);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                    let _ = signals.send(RemoteSignal::Reconnected);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }))
}

pub(super) fn parse_state<S: NamedState>(name: &str, what: &str) -> Result<S> {
    S::parse(name).ok_or_else(|| TaskerError::Corrupt(format!("unknown {what} state '{name}'")))
}

fn step_lock_from_row(row: &sqlx::postgres::PgRow) -> Result<StepLock> {
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

fn template_from_row(row: &sqlx::postgres::PgRow) -> Result<TemplateRow> {
    Ok(TemplateRow {
        id: row.try_get("id")?,
        namespace: row.try_get("namespace_name")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        definition: row.try_get::<Json<Value>, _>("definition")?.0,
        content_hash: row.try_get("content_hash")?,
        source_path: row.try_get("source_path")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The statement of [`Store::list_tasks`] for `filter`. A filter that is set is a condition the
/// planner can use an index for (0007: one per filter the dashboard offers, each ending in
/// `(created_at, task_uuid)`); one that is not is `$n IS NULL`, a constant, so that every
/// parameter ($1 namespace, $2 name, $3 state, $4 limit, $5 tag, $6/$7 created after/before,
/// $8/$9 the keyset cursor, $10 the idempotency key) is always there to bind.
///
/// With a tag (and no idempotency key, which names a task or two), the walk is over the tag's
/// rows of `tasker_task_tags` (0009) newest first, each joined to its task by primary key and
/// filtered there, so a page stops after its rows however rare the tag.
fn list_tasks_sql(filter: &TaskFilter) -> String {
    let by_tag = filter.tag.is_some() && filter.idempotency_key.is_none();
    // The columns that order the walk: the tag rows' copy of (created_at, task_uuid), or the task's.
    let o = if by_tag { "g" } else { "t" };
    let either = |set: bool, condition: String, unset: &'static str| if set { condition } else { unset.to_owned() };
    let conditions = [
        either(
            filter.namespace.is_some(),
            "t.namespace_name = $1".into(),
            "$1::text IS NULL",
        ),
        either(filter.name.is_some(), "t.name = $2".into(), "$2::text IS NULL"),
        either(filter.state.is_some(), "t.state = $3".into(), "$3::text IS NULL"),
        either(
            filter.tag.is_some(),
            if by_tag {
                "g.tag = $5".into()
            } else {
                "t.tags ? $5".into()
            },
            "$5::text IS NULL",
        ),
        either(
            filter.created_after.is_some(),
            format!("{o}.created_at >= $6"),
            "$6::timestamptz IS NULL",
        ),
        either(
            filter.created_before.is_some(),
            format!("{o}.created_at < $7"),
            "$7::timestamptz IS NULL",
        ),
        either(
            filter.after.is_some(),
            format!("({o}.created_at, {o}.task_uuid) < ($8, $9::uuid)"),
            "$8::timestamptz IS NULL AND $9::uuid IS NULL",
        ),
        either(
            filter.idempotency_key.is_some(),
            "t.idempotency_key = $10".into(),
            "$10::text IS NULL",
        ),
    ];
    let from = if by_tag {
        "tasker_task_tags g JOIN tasker_tasks t ON t.task_uuid = g.task_uuid"
    } else {
        "tasker_tasks t"
    };
    format!(
        "SELECT {} FROM {from} WHERE {} ORDER BY {o}.created_at DESC, {o}.task_uuid DESC LIMIT $4",
        TASK_COLUMNS_OF_T.as_str(),
        conditions.join(" AND ")
    )
}

/// [`TASK_COLUMNS`] of the task aliased `t` (the tag walk joins a table with the same names).
static TASK_COLUMNS_OF_T: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    TASK_COLUMNS
        .split(',')
        .map(|c| format!("t.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
});

const TASK_COLUMNS: &str = "task_uuid, namespace_name, name, version, state, context, initiator, \
     source_system, reason, tags, priority, correlation_id, idempotency_key, total_steps, \
     completed_steps, active_steps, failed_steps, created_at, updated_at, completed_at, trace_parent";

fn task_from_row(row: &sqlx::postgres::PgRow) -> Result<TaskSummary> {
    Ok(TaskSummary {
        task_uuid: row.try_get("task_uuid")?,
        namespace: row.try_get("namespace_name")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        state: row.try_get("state")?,
        context: row.try_get::<Json<Value>, _>("context")?.0,
        initiator: row.try_get("initiator")?,
        source_system: row.try_get("source_system")?,
        reason: row.try_get("reason")?,
        tags: row.try_get::<Json<Vec<String>>, _>("tags")?.0,
        priority: row.try_get("priority")?,
        correlation_id: row.try_get("correlation_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        total_steps: row.try_get("total_steps")?,
        completed_steps: row.try_get("completed_steps")?,
        active_steps: row.try_get("active_steps")?,
        failed_steps: row.try_get("failed_steps")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        completed_at: row.try_get("completed_at")?,
        trace_parent: row.try_get("trace_parent")?,
    })
}

fn transition_from_row(row: &sqlx::postgres::PgRow, step_name: Option<String>) -> Result<Transition> {
    Ok(Transition {
        step_name,
        from_state: row.try_get("from_state")?,
        to_state: row.try_get("to_state")?,
        event: row.try_get("event")?,
        metadata: row.try_get::<Json<Value>, _>("metadata")?.0,
        most_recent: row.try_get("most_recent")?,
        created_at: row.try_get("created_at")?,
    })
}

/// A queue statement's error. Transient ones (connection lost, server restarting, a lost race)
/// keep their database error so that callers hold and retry the work; others name the queue.
fn queue_error(e: sqlx::Error, doing: String) -> TaskerError {
    if crate::error::sqlx_is_transient(&e) {
        TaskerError::Database(e)
    } else {
        TaskerError::Queue(format!("{doing}: {e}"))
    }
}

/// Parses stored JSON text, as an error message naming `what` when it cannot be read back.
pub(super) fn decode_json(text: &str, what: &str) -> std::result::Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what} cannot be decoded: {e}"))
}

/// `step_uuids` as an SQL array literal, for statements sent with the simple protocol (a uuid's
/// text is hex digits and dashes only, so nothing needs quoting).
fn uuid_array_literal(step_uuids: &[Uuid]) -> String {
    let items: Vec<String> = step_uuids.iter().map(Uuid::to_string).collect();
    format!("'{{{}}}'::uuid[]", items.join(","))
}

/// A duration as whole milliseconds for SQL interval arithmetic (saturating).
pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// PGMQ's table for `queue`. Queue names are validated (lowercase letters, digits, `_`), which
/// makes them safe identifiers; anything else is refused rather than quoted.
pub(super) fn queue_table(queue: &str) -> Result<String> {
    if crate::template::is_valid_queue_name(queue) {
        Ok(format!("q_{queue}"))
    } else {
        Err(TaskerError::Queue(format!("invalid queue name '{queue}'")))
    }
}

/// The claim order of a queue's messages (see [`super::order_key`]), stored in each body by
/// `send_messages`. Messages sent before priorities existed have none and go first.
const ORDER_KEY: &str = "COALESCE((message->>'order')::bigint, 0)";
pub(super) const ORDER_KEY_OF_Q: &str = "COALESCE((q.message->>'order')::bigint, 0)";

/// The CTEs of a claim's read of `table`: `picked` and `msgs`, whose rows are the messages read
/// (`msg_id, read_ct, enqueued_at, message, order_key`). PGMQ's own `read` takes the oldest
/// messages; this takes them in `order_key` order (priority, then age), through the index
/// `ensure_queue` creates, with the same semantics: SKIP LOCKED, a lease by the server's clock,
/// `read_ct` counted. `lease` (milliseconds) and `max` are SQL expressions.
fn read_ctes(table: &str, lease: &str, max: &str) -> String {
    format!(
        "picked AS ( \
           SELECT msg_id FROM pgmq.{table} WHERE vt <= clock_timestamp() \
           ORDER BY {ORDER_KEY}, msg_id LIMIT {max} FOR UPDATE SKIP LOCKED), \
         msgs AS (UPDATE pgmq.{table} q SET vt = clock_timestamp() + {lease} ::float8 * interval '1 millisecond', \
           read_ct = q.read_ct + 1 \
           FROM picked WHERE q.msg_id = picked.msg_id \
           RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.message, {ORDER_KEY_OF_Q} AS order_key)"
    )
}

/// The step a message read by [`read_ctes`] names, as `uuid` (NULL when it names none). It
/// accepts every spelling the engine's own parsing does (hyphens, braces, `urn:uuid:`, any
/// case) and never fails the statement: a body that does not name a step locks nothing.
const NAMED_STEP: &str = "CASE WHEN regexp_replace(lower(message->>'step_uuid'), '^urn:uuid:|[{}-]', '', 'g') \
     ~ '^[0-9a-f]{32}$' THEN regexp_replace(lower(message->>'step_uuid'), '^urn:uuid:|[{}-]', '', 'g')::uuid END";

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        Ok(Box::new(PgTx {
            conn: self.hot.lease().await?,
            origin: self.origin.clone(),
            begun: false,
            names: self.names.clone(),
            notifier: self.notifier.clone(),
            wakes: Vec::new(),
        }))
    }

    async fn ensure_queue(&self, queue: &str) -> Result<()> {
        if self.known_queues.lock().map(|q| q.contains(queue)).unwrap_or(false) {
            return Ok(());
        }
        // pgmq.create and CREATE INDEX take DDL locks; skip both when queue and index exist.
        let table = queue_table(queue)?;
        let index = format!("{table}_tasker_order");
        let ready: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = $1) \
                AND EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'pgmq' AND indexname = $2)",
        )
        .bind(queue)
        .bind(&index)
        .fetch_one(&self.pool)
        .await?;
        if !ready {
            let mut tx = self.pool.begin().await?;
            sqlx::query(&format!("SET LOCAL lock_timeout = '{MIGRATION_LOCK_WAIT}'"))
                .execute(&mut *tx)
                .await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
            sqlx::query("SELECT pgmq.create($1)")
                .bind(queue)
                .execute(&mut *tx)
                .await
                .map_err(|e| queue_error(e, format!("creating queue '{queue}'")))?;
            // The claim order's index (see `read_messages`).
            sqlx::query(&format!(
                "CREATE INDEX IF NOT EXISTS {index} ON pgmq.{table} ({ORDER_KEY}, msg_id)"
            ))
            .execute(&mut *tx)
            .await
            .map_err(|e| queue_error(e, format!("indexing queue '{queue}'")))?;
            tx.commit().await?;
        }
        if let Ok(mut known) = self.known_queues.lock() {
            known.insert(queue.to_owned());
        }
        Ok(())
    }

    async fn has_visible_messages(&self, _queues: &[String]) -> Result<bool> {
        // pgmq.read on an empty queue is already a cheap index probe and takes no global lock.
        Ok(true)
    }

    async fn register_templates(&self, templates: &[NewTemplate]) -> Result<Vec<TemplateRow>> {
        // One transaction for all: a conflict in any template rolls back the others (dropping
        // `tx` without commit rolls back).
        let mut tx = self.pool.begin().await?;
        let mut stored_rows = Vec::with_capacity(templates.len());
        for t in templates {
            sqlx::query("INSERT INTO tasker_namespaces (name) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(&t.namespace)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO tasker_templates (namespace_name, name, version, definition, content_hash, source_path) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (namespace_name, name, version) DO NOTHING",
            )
            .bind(&t.namespace)
            .bind(&t.name)
            .bind(&t.version)
            .bind(Json(&t.definition))
            .bind(&t.content_hash)
            .bind(&t.source_path)
            .execute(&mut *tx)
            .await?;
            let row =
                sqlx::query("SELECT * FROM tasker_templates WHERE namespace_name = $1 AND name = $2 AND version = $3")
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
                    path: t.source_path.clone(),
                    registered_from: stored.source_path.clone(),
                });
            }
            stored_rows.push(stored);
        }
        tx.commit().await?;
        Ok(stored_rows)
    }

    async fn create_task(
        &self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        // One statement, so no transaction around it: two round trips fewer. Not run again on
        // failure: a lost connection leaves unknown whether it committed.
        let mut conn = self.hot.lease().await?;
        let inserted = create_task_on(&mut conn, task, task_transitions, step_transitions, messages).await?;
        conn.release();
        if inserted == InsertedTask::Created {
            self.notifier.send(visible_queue_wakes(messages, &self.origin));
        }
        Ok(inserted)
    }

    async fn template_by_id(&self, id: i64) -> Result<Option<TemplateRow>> {
        let row = sqlx::query("SELECT * FROM tasker_templates WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(template_from_row).transpose()
    }

    async fn template_versions(&self, namespace: &str, name: &str) -> Result<Vec<TemplateRow>> {
        let rows = sqlx::query("SELECT * FROM tasker_templates WHERE namespace_name = $1 AND name = $2")
            .bind(namespace)
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn list_templates(&self) -> Result<Vec<TemplateRow>> {
        let rows = sqlx::query("SELECT * FROM tasker_templates ORDER BY namespace_name, name, id DESC")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn task_detail(&self, task_uuid: Uuid) -> Result<Option<TaskDetail>> {
        let names = self.names.clone();
        self.hot
            .read(move |conn| {
                let names = names.clone();
                Box::pin(async move { detail_on(conn, task_uuid, &names).await })
            })
            .await
    }

    async fn task_summary(&self, task_uuid: Uuid) -> Result<Option<TaskSummary>> {
        self.hot.read(|conn| Box::pin(summary_on(conn, task_uuid))).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>> {
        let rows = sqlx::query(&list_tasks_sql(filter))
            .bind(&filter.namespace)
            .bind(&filter.name)
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.limit.unwrap_or(100))
            .bind(&filter.tag)
            .bind(filter.created_after)
            .bind(filter.created_before)
            .bind(filter.after.map(|(at, _)| at))
            .bind(filter.after.map(|(_, uuid)| uuid))
            .bind(&filter.idempotency_key)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn due_retries(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>> {
        let rows = sqlx::query(&format!(
            "SELECT {STEP_LOCK_COLUMNS} FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
             WHERE s.state = 'waiting_for_retry' AND s.next_retry_at <= $1 ORDER BY s.next_retry_at LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(step_lock_from_row).collect()
    }

    async fn overdue_attempts(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>> {
        let rows = sqlx::query(&format!(
            "SELECT {STEP_LOCK_COLUMNS} FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
             WHERE s.state = 'in_progress' AND s.deadline_at IS NOT NULL AND s.deadline_at <= $1 \
             ORDER BY s.deadline_at LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(step_lock_from_row).collect()
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>> {
        // Steps under a terminal task are repaired (cancelled) by the next pass that meets them;
        // they must never make the orchestrator think something is due.
        let next: Option<DateTime<Utc>> = sqlx::query_scalar(&format!(
            "SELECT LEAST( \
               (SELECT min(s.next_retry_at) FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
                WHERE s.state = 'waiting_for_retry' AND t.state NOT IN {TERMINAL_TASK_STATES}), \
               (SELECT min(s.deadline_at) FROM tasker_steps s JOIN tasker_tasks t ON t.task_uuid = s.task_uuid \
                WHERE s.state = 'in_progress' AND s.deadline_at IS NOT NULL AND t.state NOT IN {TERMINAL_TASK_STATES}))",
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(next)
    }

    async fn list_dlq(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>> {
        pg_recovery::list(&self.pool, filter).await
    }

    async fn dlq_entry(&self, entry_uuid: Uuid) -> Result<Option<DlqEntry>> {
        pg_recovery::entry(&self.pool, entry_uuid).await
    }

    async fn update_dlq_entry(
        &self,
        entry_uuid: Uuid,
        status: Option<DlqStatus>,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<Option<DlqEntry>> {
        pg_recovery::update(&self.pool, entry_uuid, status, note, now).await
    }

    async fn dlq_counts(&self) -> Result<Vec<DlqCount>> {
        pg_recovery::counts(&self.pool).await
    }

    async fn open_tasks(
        &self,
        template_ids: &[i64],
        idle_before: DateTime<Utc>,
        created_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OpenTask>> {
        pg_recovery::open_tasks(&self.pool, template_ids, idle_before, created_before, limit).await
    }

    async fn waiting_tasks(&self, queue: &str, enqueued_before: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>> {
        pg_recovery::waiting_tasks(&self.pool, queue, enqueued_before, limit).await
    }

    async fn register_worker(&self, worker: &WorkerRecord) -> Result<()> {
        pg_recovery::register_worker(&self.pool, worker).await
    }

    async fn heartbeat_worker(
        &self,
        registration_uuid: Uuid,
        in_flight: i32,
        stopped: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        pg_recovery::heartbeat(&self.pool, registration_uuid, in_flight, stopped, now).await
    }

    async fn list_workers(&self, seen_since: DateTime<Utc>) -> Result<Vec<WorkerRecord>> {
        pg_recovery::list_workers(&self.pool, seen_since).await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        let queues: Vec<String> = sqlx::query_scalar("SELECT queue_name FROM pgmq.meta ORDER BY queue_name")
            .fetch_all(&self.pool)
            .await?;
        // Names that are not valid identifiers were not made by us: skip them.
        let parts: Vec<String> = queues
            .iter()
            .filter_map(|q| queue_table(q).ok().map(|t| (q, t)))
            .map(|(q, table)| {
                format!(
                    "SELECT '{q}'::text AS queue, count(*) FILTER (WHERE vt <= now()) AS visible, \
                     count(*) FILTER (WHERE vt > now()) AS hidden, \
                     min(enqueued_at) FILTER (WHERE vt <= now()) AS oldest FROM pgmq.{table}"
                )
            })
            .collect();
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&parts.join(" UNION ALL ")).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(QueueStats {
                    queue: r.try_get("queue")?,
                    visible: r.try_get("visible")?,
                    hidden: r.try_get("hidden")?,
                    oldest_visible_at: r.try_get("oldest")?,
                })
            })
            .collect()
    }

    fn connection_stats(&self) -> (u32, u32) {
        let kept = u32::try_from(self.hot.kept()).unwrap_or(0);
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(0) + kept;
        (idle, self.pool.size().saturating_sub(idle))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn compact_task_counts(&self, before: DateTime<Utc>) -> Result<()> {
        pg_recovery::compact_task_counts(&self.pool, before).await.map(drop)
    }

    async fn overview(&self, window: &OverviewWindow) -> Result<Overview> {
        let mut overview = pg_recovery::overview(&self.pool, window).await?;
        overview.queues = self.queue_stats().await?.into_iter().map(QueueDepth::from).collect();
        Ok(overview)
    }

    async fn commit_count(&self) -> Result<Option<i64>> {
        let n: i64 = sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(n))
    }

    fn subscribe_remote(&self) -> Option<broadcast::Receiver<RemoteSignal>> {
        Some(self.signals.subscribe())
    }

    fn events(&self) -> &dyn EventStore {
        self
    }

    async fn close(&self) {
        if let Ok(mut l) = self.listener.lock() {
            if let Some(handle) = l.take() {
                handle.abort();
            }
        }
        self.hot.close_idle();
        self.pool.close().await;
    }
}

/// A task in full, in two statements: the task row joined with its steps, then both audit
/// tables at once.
async fn detail_on(conn: &mut PgConnection, task_uuid: Uuid, names: &Names) -> Result<Option<TaskDetail>> {
    // The task with its steps, and its audit trail: two statements in one round trip (the
    // simple protocol takes several; its one value, a uuid, is a literal). Audit rows are the
    // ones with a `src` column.
    let task = format!("'{task_uuid}'::uuid");
    let batch = |by_name: bool| {
        if by_name {
            format!("{}; {}", DETAIL_STEPS.execute(&[&task]), DETAIL_AUDIT.execute(&[&task]))
        } else {
            format!("{}; {}", DETAIL_STEPS.inline(&[&task]), DETAIL_AUDIT.inline(&[&task]))
        }
    };
    let mut misses = 0;
    let all = loop {
        let by_name = names.enabled();
        match conn.fetch_all(batch(by_name).as_str()).await.map_err(TaskerError::from) {
            Err(e) if by_name && pg_prepared::is_missing(&e) => {
                names.recover(conn, &[&DETAIL_STEPS, &DETAIL_AUDIT], misses).await;
                misses += 1;
            }
            done => break done?,
        }
    };
    let (audit, rows): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.try_column("src").is_ok());
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let task = task_from_row(first)?;
    let mut names = BTreeMap::new();
    let mut steps = Vec::with_capacity(rows.len());
    for row in &rows {
        // A task without steps comes back as one row with NULL step columns.
        let Some(step_uuid) = row.try_get::<Option<Uuid>, _>("s_step_uuid")? else {
            continue;
        };
        let step = StepSummary {
            step_uuid,
            name: row.try_get("s_name")?,
            queue: row.try_get("s_queue")?,
            state: row.try_get("s_state")?,
            attempts: row.try_get("s_attempts")?,
            max_attempts: row.try_get("s_max_attempts")?,
            free_attempts: row.try_get("s_free_attempts")?,
            retryable: row.try_get("s_retryable")?,
            results: row.try_get::<Option<Json<Value>>, _>("s_results")?.map(|j| j.0),
            last_error: row.try_get::<Option<Json<Value>>, _>("s_last_error")?.map(|j| j.0),
            next_retry_at: row.try_get("s_next_retry_at")?,
            created_at: row.try_get("s_created_at")?,
            first_attempted_at: row.try_get("s_first_attempted_at")?,
            last_attempted_at: row.try_get("s_last_attempted_at")?,
            completed_at: row.try_get("s_completed_at")?,
            dependencies: row.try_get("s_deps")?,
            created_by: row.try_get("s_created_by")?,
            batch: row
                .try_get::<Option<Json<Value>>, _>("s_inputs")?
                .and_then(|mut j| j.0.get_mut("batch").map(Value::take)),
            checkpoint: row.try_get::<Option<Json<Value>>, _>("s_checkpoint")?.map(|j| j.0),
        };
        names.insert(step.step_uuid, step.name.clone());
        steps.push(step);
    }
    let mut task_transitions = Vec::new();
    let mut step_transitions = Vec::new();
    for r in &audit {
        match r.try_get::<Option<Uuid>, _>("step_uuid")? {
            None => task_transitions.push(transition_from_row(r, None)?),
            Some(step) => step_transitions.push(transition_from_row(r, names.get(&step).cloned())?),
        }
    }
    Ok(Some(TaskDetail {
        task,
        steps,
        task_transitions,
        step_transitions,
    }))
}

async fn summary_on(conn: &mut PgConnection, task_uuid: Uuid) -> Result<Option<TaskSummary>> {
    let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasker_tasks WHERE task_uuid = $1"))
        .bind(task_uuid)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(task_from_row).transpose()
}

/// Creates a task in one statement (see `pg_fused::create_task_statement`) on `conn`.
async fn create_task_on(
    conn: &mut PgConnection,
    task: &NewTask,
    task_transitions: &[TransitionRecord],
    step_transitions: &[TransitionRecord],
    messages: &[OutgoingMessage],
) -> Result<InsertedTask> {
    let groups = pg_fused::send_groups(messages)?;
    let mut qb = pg_fused::create_task_statement(task, task_transitions, step_transitions, messages, &groups);
    let rows = qb.build().fetch_all(&mut *conn).await?;
    let created = rows
        .iter()
        .map(|r| r.try_get::<&str, _>("kind"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if created.contains(&"created") {
        let sent = created.iter().filter(|k| **k == "sent").count();
        if sent != messages.len() {
            return Err(TaskerError::Queue(format!(
                "the queues stored {sent} of {} messages",
                messages.len()
            )));
        }
        return Ok(InsertedTask::Created);
    }
    // Its identity exists, or its template was superseded. Read in a statement of its own: a
    // task committed while this one waited on the conflict is not in the snapshot the
    // statement above ran on.
    let existing: Option<Uuid> = sqlx::query_scalar("SELECT task_uuid FROM tasker_tasks WHERE identity_hash = $1")
        .bind(&task.identity_hash)
        .fetch_optional(&mut *conn)
        .await?;
    match existing {
        Some(existing) => Ok(InsertedTask::Existing(existing)),
        None if task.newest_template_id.is_some() => Ok(InsertedTask::TemplateSuperseded),
        None => Err(TaskerError::Corrupt(format!(
            "task {} was neither stored nor found by its identity",
            task.task_uuid
        ))),
    }
}

/// The wake-ups for the queues of `messages` that are visible at once.
fn visible_queue_wakes(messages: &[OutgoingMessage], origin: &str) -> Vec<Wake> {
    let queues: std::collections::BTreeSet<&str> = messages
        .iter()
        .filter(|m| m.hidden_for.is_none())
        .map(|m| m.queue.as_str())
        .collect();
    queues
        .into_iter()
        .map(|q| (QUEUE_CHANNEL, queue_payload(q, origin)))
        .collect()
}

/// Pushes the read of a claim's inputs: task rows (tagged 't': context, correlation id,
/// template) of `task_uuids` and the dependency results (tagged 'd') of `step_uuids`.
fn push_claim_inputs<'a>(qb: &mut QueryBuilder<'a, Postgres>, task_uuids: &'a [Uuid], step_uuids: &'a [Uuid]) {
    qb.push(
        "SELECT 't' AS kind, task_uuid AS id, NULL::text AS name, context::text AS body, correlation_id, \
                template_id FROM tasker_tasks WHERE task_uuid = ANY(",
    );
    qb.push_bind(task_uuids);
    qb.push(
        ") UNION ALL \
         SELECT 'd', e.to_step, p.name, p.results::text, NULL::uuid, NULL::bigint FROM tasker_step_edges e \
         JOIN tasker_steps p ON p.step_uuid = e.from_step WHERE e.to_step = ANY(",
    );
    qb.push_bind(step_uuids);
    qb.push(")");
}

/// The inputs among rows tagged by [`push_claim_inputs`] (rows of other kinds are skipped).
fn claim_input_rows(rows: &[sqlx::postgres::PgRow]) -> Result<(Vec<TaskInput>, Vec<DependencyResult>)> {
    let mut inputs = Vec::new();
    let mut deps = Vec::new();
    for r in rows {
        let body: Option<&str> = r.try_get("body")?;
        match r.try_get::<&str, _>("kind")? {
            "t" => inputs.push(TaskInput {
                task_uuid: r.try_get("id")?,
                // Decoded row by row: one undecodable context fails its own steps only.
                context: decode_json(body.unwrap_or("null"), "task context"),
                correlation_id: r.try_get("correlation_id")?,
                template_id: r.try_get("template_id")?,
            }),
            "d" => deps.push((
                r.try_get("id")?,
                r.try_get("name")?,
                body.map_or(Ok(Value::Null), |text| decode_json(text, "dependency result")),
            )),
            _ => {}
        }
    }
    Ok((inputs, deps))
}

/// The locking CTEs of `lock_steps`: `t`, the tasks of the steps whose `step_uuid` satisfies
/// `steps` (an SQL condition such as `= ANY($1)`), and `s`, those steps with their tasks' state,
/// as [`STEP_LOCK_COLUMNS`]. The documented lock order: the task rows first (in uuid order),
/// then their steps (in uuid order). `FOR NO KEY UPDATE` is what the counter updates take
/// anyway, and it does not block foreign-key checks. Both locking scans return the newest
/// committed row versions (READ COMMITTED re-reads a row it had to wait for), so the task state
/// read here is the one that holds until commit.
fn lock_ctes(steps: &str) -> String {
    format!(
        "t AS MATERIALIZED ( \
           SELECT task_uuid, state, template_id, priority FROM tasker_tasks \
           WHERE task_uuid IN (SELECT task_uuid FROM tasker_steps WHERE step_uuid {steps}) \
           ORDER BY task_uuid FOR NO KEY UPDATE), \
         s AS MATERIALIZED ( \
           SELECT {STEP_LOCK_COLUMNS} FROM tasker_steps s JOIN t ON t.task_uuid = s.task_uuid \
           WHERE s.step_uuid {steps} AND (SELECT count(*) FROM t) > 0 \
           ORDER BY s.step_uuid FOR UPDATE OF s)"
    )
}

/// A task's row joined with its steps (`$1`: the task's uuid); a task without steps is one row
/// with NULL step columns.
fn detail_steps_sql() -> String {
    let task_columns: String = TASK_COLUMNS
        .split(", ")
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {task_columns}, s.step_uuid AS s_step_uuid, s.name AS s_name, s.queue AS s_queue, \
            s.state AS s_state, s.attempts AS s_attempts, s.max_attempts AS s_max_attempts, \
            s.retryable AS s_retryable, s.results AS s_results, s.last_error AS s_last_error, \
            s.next_retry_at AS s_next_retry_at, s.created_at AS s_created_at, \
            s.first_attempted_at AS s_first_attempted_at, s.last_attempted_at AS s_last_attempted_at, \
            s.completed_at AS s_completed_at, s.created_by AS s_created_by, s.inputs AS s_inputs, \
            s.free_attempts AS s_free_attempts, \
            s.checkpoint AS s_checkpoint, \
            COALESCE((SELECT array_agg(p.name ORDER BY p.position) FROM tasker_step_edges e \
              JOIN tasker_steps p ON p.step_uuid = e.from_step WHERE e.to_step = s.step_uuid), '{{}}') AS s_deps \
         FROM tasker_tasks t LEFT JOIN tasker_steps s ON s.task_uuid = t.task_uuid \
         WHERE t.task_uuid = $1 ORDER BY s.position, s.name"
    )
}

/// A task's audit trail, both tables at once (`$1`: the task's uuid); its rows have `src`.
fn detail_audit_sql() -> String {
    "SELECT NULL::uuid AS step_uuid, from_state, to_state, event, metadata, most_recent, created_at, id, 0 AS src \
     FROM tasker_task_transitions WHERE task_uuid = $1 \
     UNION ALL \
     SELECT step_uuid, from_state, to_state, event, metadata, most_recent, created_at, id, 1 \
     FROM tasker_step_transitions WHERE task_uuid = $1 ORDER BY src, id"
        .to_owned()
}

static LOCK_STEPS: LazyLock<Prepared> = LazyLock::new(|| {
    let sql = format!("WITH {} SELECT * FROM s ORDER BY step_uuid", lock_ctes("= ANY($1)"));
    Prepared::new("uuid[]", sql)
});
static DETAIL_STEPS: LazyLock<Prepared> = LazyLock::new(|| Prepared::new("uuid", detail_steps_sql()));
static DETAIL_AUDIT: LazyLock<Prepared> = LazyLock::new(|| Prepared::new("uuid", detail_audit_sql()));

/// The statements every connection prepares when it opens (see `pg_prepared`); a claim's reads
/// depend on the queue and are prepared where first needed (`PgTx::claim_read`).
fn fixed_statements() -> [&'static Prepared; 3] {
    [&LOCK_STEPS, &DETAIL_STEPS, &DETAIL_AUDIT]
}

/// A transaction on a leased connection, rolled back if dropped. It begins lazily: the first
/// statement sends `BEGIN` with it (in one round trip where it can: [`PgTx::first_statement`]),
/// and one that ran nothing ends without a round trip.
struct PgTx {
    conn: Leased,
    origin: std::sync::Arc<str>,
    begun: bool,
    /// The store's statements run by name (see `pg_prepared`).
    names: Arc<Names>,
    notifier: Notifier,
    /// What to announce once this commits (see `pg_notifier`).
    wakes: Vec<Wake>,
}

#[async_trait]
impl MessageQueue for PgTx {
    async fn read_messages(&mut self, queue: &str, lease: Duration, max: i64) -> Result<Vec<QueueMessage>> {
        let table = queue_table(queue)?;
        let sql = |lease: &str, max: &str| format!("WITH {} SELECT * FROM msgs", read_ctes(&table, lease, max));
        let rows = self.claim_read("read", queue, lease, max, sql).await?;
        super::pg_delivered::claimed_messages(queue, &rows)
    }

    async fn read_delivered(
        &mut self,
        queue: &str,
        lease: Duration,
        delivered: &[(i64, i32)],
    ) -> Result<Vec<QueueMessage>> {
        if delivered.is_empty() {
            return Ok(Vec::new());
        }
        let sql =
            super::pg_delivered::read_delivered_sql(&queue_table(queue)?, ORDER_KEY_OF_Q, millis(lease), delivered);
        let rows = self.first_statement(sql).await.map_err(|e| match e {
            TaskerError::Database(e) => queue_error(e, format!("claiming deliveries of queue '{queue}'")),
            other => other,
        })?;
        super::pg_delivered::claimed_messages(queue, &rows)
    }

    async fn send_messages(&mut self, messages: &[OutgoingMessage]) -> Result<Vec<MessageRef>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        // One statement for all (queue, visibility) groups; references come back in input
        // order. Visible messages wake their queue's listeners once this commits.
        let groups = pg_fused::send_groups(messages)?;
        let mut qb = pg_fused::send_statement(messages, &groups);
        let rows = qb
            .build()
            .fetch_all(self.tx().await?)
            .await
            .map_err(|e| queue_error(e, "sending messages".into()))?;
        self.wake_visible(&groups);
        pg_fused::sent_rows(&rows, &groups, messages.len())
    }

    async fn delete_messages(&mut self, messages: &[MessageRef]) -> Result<()> {
        let mut by_queue: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for m in messages {
            by_queue.entry(m.queue.as_str()).or_default().push(m.msg_id);
        }
        for (queue, ids) in by_queue {
            // SKIP LOCKED: a message locked by someone else is being read by a claim (its lease
            // expired). Waiting for it here, while holding task and step locks, would invert the
            // claim's message → task → step order; the claim will see the step's new state
            // and delete the message itself.
            sqlx::query(&format!(
                "DELETE FROM pgmq.{table} WHERE msg_id IN \
                   (SELECT msg_id FROM pgmq.{table} WHERE msg_id = ANY($1) FOR UPDATE SKIP LOCKED)",
                table = queue_table(queue)?
            ))
            .bind(&ids)
            .execute(self.tx().await?)
            .await
            .map_err(|e| queue_error(e, format!("deleting from queue '{queue}'")))?;
        }
        Ok(())
    }

    async fn set_message_visibility(&mut self, messages: &[MessageRef], after: Duration) -> Result<()> {
        let mut by_queue: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for m in messages {
            by_queue.entry(m.queue.as_str()).or_default().push(m.msg_id);
        }
        for (queue, ids) in by_queue {
            // Server clock, as in `send_messages`; SKIP LOCKED as in `delete_messages`. A message
            // made visible now wakes the queue's listeners at commit (lease released or given up).
            sqlx::query(&format!(
                "UPDATE pgmq.{table} SET vt = clock_timestamp() + $2 ::float8 * interval '1 millisecond' \
                 WHERE msg_id IN (SELECT msg_id FROM pgmq.{table} WHERE msg_id = ANY($1) FOR UPDATE SKIP LOCKED)",
                table = queue_table(queue)?
            ))
            .bind(&ids)
            .bind(millis(after))
            .execute(self.tx().await?)
            .await
            .map_err(|e| queue_error(e, format!("setting visibility in queue '{queue}'")))?;
            if after.is_zero() {
                // Released or given up: visible now, so the queue's listeners are woken.
                self.wake_queue(queue);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StoreTx for PgTx {
    async fn lock_steps(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepLock>> {
        // In the documented lock order: see `lock_ctes`.
        // Usually a transaction's first statement: then it goes with BEGIN, by name.
        let rows = if self.begun {
            sqlx::query(LOCK_STEPS.sql())
                .bind(step_uuids)
                .fetch_all(self.tx().await?)
                .await?
        } else {
            self.first_prepared(&LOCK_STEPS, &[&uuid_array_literal(step_uuids)])
                .await?
        };
        rows.iter().map(step_lock_from_row).collect()
    }

    async fn read_and_lock(
        &mut self,
        queue: &str,
        lease: Duration,
        max: i64,
    ) -> Result<(Vec<QueueMessage>, Vec<StepLock>)> {
        // `read_messages` and `lock_steps` in one statement, locking in the same order: the
        // messages (`picked`), then their tasks and steps (`lock_ctes`). Each message row
        // carries the lock of the step it names, if there is one.
        let table = queue_table(queue)?;
        let sql = |lease: &str, max: &str| {
            format!(
                "WITH {reads}, \
                 named AS (SELECT msg_id, {NAMED_STEP} AS step FROM msgs), {locks} \
                 SELECT msgs.*, s.* FROM msgs JOIN named USING (msg_id) LEFT JOIN s ON s.step_uuid = named.step",
                reads = read_ctes(&table, lease, max),
                locks = lock_ctes("IN (SELECT step FROM named)")
            )
        };
        let rows = self.claim_read("read_and_lock", queue, lease, max, sql).await?;
        let messages = super::pg_delivered::claimed_messages(queue, &rows)?;
        let mut locks: BTreeMap<Uuid, StepLock> = BTreeMap::new();
        for r in &rows {
            if let Some(step) = r.try_get::<Option<Uuid>, _>("step_uuid")? {
                if let std::collections::btree_map::Entry::Vacant(e) = locks.entry(step) {
                    e.insert(step_lock_from_row(r)?);
                }
            }
        }
        Ok((messages, locks.into_values().collect()))
    }

    async fn change_steps(&mut self, changes: &[StepChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        self.change_steps_audited(changes, &[], now).await
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
        let mut qb = QueryBuilder::new("WITH ");
        pg_fused::push_step_changes(&mut qb, changes, transitions, now);
        qb.push(" SELECT step_uuid FROM upd WHERE (SELECT count(*) FROM ins) >= 0");
        let applied = qb.build_query_scalar().fetch_all(self.tx().await?).await?;
        Ok(applied)
    }

    async fn apply_outcome_writes(
        &mut self,
        w: OutcomeWrites<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Uuid>, Vec<ReadyChild>)> {
        let mut qb = pg_fused::outcome_statement(w, now)?;
        let rows = qb.build().fetch_all(self.tx().await?).await?;
        pg_fused::outcome_rows(&rows)
    }

    async fn apply_followup_writes(&mut self, w: FollowupWrites<'_>, now: DateTime<Utc>) -> Result<Followup> {
        let groups = pg_fused::send_groups(w.send)?;
        let mut qb = pg_fused::followup_statement(w, now, &groups)?;
        let rows = qb.build().fetch_all(self.tx().await?).await?;
        self.wake_visible(&groups);
        pg_fused::followup_rows(&rows, w, &groups)
    }

    async fn cancel_open_steps(
        &mut self,
        task_uuid: Uuid,
        from: &[StepState],
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, String, StepState)>> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let rows = sqlx::query(
            "WITH old AS (SELECT step_uuid, state FROM tasker_steps WHERE task_uuid = $1 AND state = ANY($2) FOR UPDATE) \
             UPDATE tasker_steps s SET state = 'cancelled', updated_at = $3, completed_at = $3, \
                next_retry_at = NULL, deadline_at = NULL \
             FROM old WHERE s.step_uuid = old.step_uuid RETURNING s.step_uuid, s.name, old.state AS old_state",
        )
        .bind(task_uuid)
        .bind(&from)
        .bind(now)
        .fetch_all(self.tx().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("step_uuid")?,
                    r.try_get("name")?,
                    parse_state(r.try_get::<&str, _>("old_state")?, "step")?,
                ))
            })
            .collect()
    }

    async fn release_children(&mut self, parents: &[Uuid]) -> Result<Vec<ReadyChild>> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "UPDATE tasker_steps c SET pending_parents = c.pending_parents - x.n \
             FROM (SELECT to_step, count(*)::int AS n FROM tasker_step_edges WHERE from_step = ANY($1) GROUP BY to_step) x \
             WHERE c.step_uuid = x.to_step \
             RETURNING c.step_uuid, c.name, c.task_uuid, c.queue, c.max_attempts, c.pending_parents, c.state",
        )
        .bind(parents)
        .fetch_all(self.tx().await?)
        .await?;
        let mut ready = Vec::new();
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
        Ok(ready)
    }

    async fn apply_task_deltas(&mut self, deltas: &[TaskDelta], now: DateTime<Utc>) -> Result<Vec<TaskCounters>> {
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        let mut sorted: Vec<&TaskDelta> = deltas.iter().collect();
        // A fixed lock order keeps concurrent batches touching the same tasks deadlock-free.
        sorted.sort_by_key(|d| d.task_uuid);
        let ids: Vec<Uuid> = sorted.iter().map(|d| d.task_uuid).collect();
        let completed: Vec<i32> = sorted.iter().map(|d| d.completed).collect();
        let active: Vec<i32> = sorted.iter().map(|d| d.active).collect();
        let failed: Vec<i32> = sorted.iter().map(|d| d.failed).collect();
        let rows = sqlx::query(
            "UPDATE tasker_tasks t SET completed_steps = t.completed_steps + v.completed, \
                active_steps = t.active_steps + v.active, failed_steps = t.failed_steps + v.failed, updated_at = $5 \
             FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[]) AS v(id, completed, active, failed) \
             WHERE t.task_uuid = v.id \
             RETURNING t.task_uuid, t.state, t.total_steps, t.completed_steps, t.active_steps, t.failed_steps",
        )
        .bind(&ids)
        .bind(&completed)
        .bind(&active)
        .bind(&failed)
        .bind(now)
        .fetch_all(self.tx().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TaskCounters {
                    task_uuid: r.try_get("task_uuid")?,
                    state: parse_state(r.try_get::<&str, _>("state")?, "task")?,
                    total: r.try_get("total_steps")?,
                    completed: r.try_get("completed_steps")?,
                    active: r.try_get("active_steps")?,
                    failed: r.try_get("failed_steps")?,
                })
            })
            .collect()
    }

    async fn change_tasks(&mut self, changes: &[TaskChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = changes.iter().map(|c| c.task_uuid).collect();
        let expected: Vec<&str> = changes.iter().map(|c| c.expected.as_str()).collect();
        let new: Vec<&str> = changes.iter().map(|c| c.new.as_str()).collect();
        let terminal: Vec<bool> = changes.iter().map(|c| c.new.is_terminal()).collect();
        let applied = sqlx::query_scalar(
            "UPDATE tasker_tasks t SET state = v.new_state, updated_at = $5, \
                completed_at = CASE WHEN v.terminal THEN $5 ELSE t.completed_at END \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bool[]) AS v(id, expected, new_state, terminal) \
             WHERE t.task_uuid = v.id AND t.state = v.expected RETURNING t.task_uuid",
        )
        .bind(&ids)
        .bind(&expected)
        .bind(&new)
        .bind(&terminal)
        .bind(now)
        .fetch_all(self.tx().await?)
        .await?;
        Ok(applied)
    }

    async fn change_tasks_audited(
        &mut self,
        changes: &[TaskChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = pg_fused::task_changes_statement(changes, transitions, now);
        let applied: Vec<Uuid> = qb.build_query_scalar().fetch_all(self.tx().await?).await?;
        for c in changes
            .iter()
            .filter(|c| c.new.is_terminal() && applied.contains(&c.task_uuid))
        {
            self.wakes.push((TASK_CHANNEL, c.task_uuid.to_string()));
        }
        Ok(applied)
    }

    async fn insert_step_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()> {
        insert_transitions(self.tx().await?, "tasker_step_transitions", "step_uuid", rows).await
    }

    async fn insert_task_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()> {
        insert_transitions(self.tx().await?, "tasker_task_transitions", "task_uuid", rows).await
    }

    async fn insert_task(&mut self, t: &NewTask) -> Result<InsertedTask> {
        // The creation statement with no audit rows and no messages.
        create_task_on(self.tx().await?, t, &[], &[], &[]).await
    }

    async fn create_task_rows(
        &mut self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        let inserted = create_task_on(self.tx().await?, task, task_transitions, step_transitions, messages).await?;
        if inserted == InsertedTask::Created {
            let wakes = visible_queue_wakes(messages, &self.origin);
            self.wakes.extend(wakes);
        }
        Ok(inserted)
    }

    async fn task_inputs(&mut self, task_uuids: &[Uuid]) -> Result<Vec<TaskInput>> {
        let rows = sqlx::query(
            "SELECT task_uuid, context::text AS context, correlation_id, template_id FROM tasker_tasks \
             WHERE task_uuid = ANY($1)",
        )
        .bind(task_uuids)
        .fetch_all(self.tx().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TaskInput {
                    task_uuid: r.try_get("task_uuid")?,
                    // Decoded here, row by row: one undecodable context fails its own steps, not
                    // the whole claim.
                    context: decode_json(r.try_get("context")?, "task context"),
                    correlation_id: r.try_get("correlation_id")?,
                    template_id: r.try_get("template_id")?,
                })
            })
            .collect()
    }

    async fn dependency_results(&mut self, step_uuids: &[Uuid]) -> Result<Vec<DependencyResult>> {
        let rows = sqlx::query(
            "SELECT e.to_step, p.name, p.results::text AS results FROM tasker_step_edges e \
             JOIN tasker_steps p ON p.step_uuid = e.from_step WHERE e.to_step = ANY($1)",
        )
        .bind(step_uuids)
        .fetch_all(self.tx().await?)
        .await?;
        rows.iter()
            .map(|r| {
                let results: Option<&str> = r.try_get("results")?;
                Ok((
                    r.try_get("to_step")?,
                    r.try_get("name")?,
                    results.map_or(Ok(Value::Null), |text| decode_json(text, "dependency result")),
                ))
            })
            .collect()
    }

    async fn claim_inputs(
        &mut self,
        task_uuids: &[Uuid],
        step_uuids: &[Uuid],
    ) -> Result<(Vec<TaskInput>, Vec<DependencyResult>)> {
        // One round trip for both reads.
        let mut qb = QueryBuilder::new("");
        push_claim_inputs(&mut qb, task_uuids, step_uuids);
        let rows = qb.build().fetch_all(self.tx().await?).await?;
        claim_input_rows(&rows)
    }

    async fn change_steps_with_inputs(
        &mut self,
        changes: &[StepChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
        task_uuids: &[Uuid],
        step_uuids: &[Uuid],
    ) -> Result<(Vec<Uuid>, Vec<TaskInput>, Vec<DependencyResult>)> {
        if changes.is_empty() {
            return Ok((Vec::new(), Vec::new(), Vec::new()));
        }
        // The claim's compare-and-swap and its inputs in one statement: the inputs are read
        // on the statement's snapshot, before `upd`, which changes no task context and no
        // dependency's result. Rows of the steps that changed are tagged 'c'.
        let mut qb = QueryBuilder::new("WITH ");
        pg_fused::push_step_changes(&mut qb, changes, transitions, now);
        qb.push(
            " SELECT 'c' AS kind, step_uuid AS id, NULL::text AS name, NULL::text AS body, \
               NULL::uuid AS correlation_id, NULL::bigint AS template_id \
             FROM upd WHERE (SELECT count(*) FROM ins) >= 0 UNION ALL ",
        );
        push_claim_inputs(&mut qb, task_uuids, step_uuids);
        let rows = qb.build().fetch_all(self.tx().await?).await?;
        let mut applied = Vec::new();
        for r in &rows {
            if r.try_get::<&str, _>("kind")? == "c" {
                applied.push(r.try_get("id")?);
            }
        }
        let (inputs, deps) = claim_input_rows(&rows)?;
        Ok((applied, inputs, deps))
    }

    async fn task_steps(&mut self, task_uuid: Uuid) -> Result<Vec<ExistingStep>> {
        let rows = sqlx::query(
            "SELECT step_uuid, name, state, pending_parents, results::text AS results FROM tasker_steps \
             WHERE task_uuid = $1",
        )
        .bind(task_uuid)
        .fetch_all(self.tx().await?)
        .await?;
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
                        .and_then(|t| decode_json(t, "step result").ok()),
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
        let column = |f: fn(&CreatedStep) -> String| steps.iter().map(f).collect::<Vec<String>>();
        sqlx::query(
            "WITH steps AS (INSERT INTO tasker_steps (step_uuid, task_uuid, name, position, queue, state, \
                max_attempts, retryable, pending_parents, inputs, created_by, created_at, updated_at) \
               SELECT v.id, $1, v.name, v.position, v.queue, v.state, v.max_attempts, v.retryable, v.pending, \
                 v.inputs::jsonb, v.created_by, $2, $2 \
               FROM unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[], $8::int[], $9::bool[], \
                 $10::int[], $11::text[], $12::text[]) \
                 AS v(id, name, position, queue, state, max_attempts, retryable, pending, inputs, created_by) \
               RETURNING 1), \
             edges AS (INSERT INTO tasker_step_edges (task_uuid, from_step, to_step) \
               SELECT $1, e.f, e.t FROM unnest($13::uuid[], $14::uuid[]) AS e(f, t) RETURNING 1) \
             UPDATE tasker_tasks SET total_steps = total_steps + (SELECT count(*) FROM steps), updated_at = $2 \
             WHERE task_uuid = $1 AND (SELECT count(*) FROM edges) >= 0",
        )
        .bind(task_uuid)
        .bind(now)
        .bind(steps.iter().map(|c| c.step.step_uuid).collect::<Vec<Uuid>>())
        .bind(column(|c| c.step.name.clone()))
        .bind(steps.iter().map(|c| c.step.position).collect::<Vec<i32>>())
        .bind(column(|c| c.step.queue.clone()))
        .bind(column(|c| c.step.state.as_str().to_owned()))
        .bind(steps.iter().map(|c| c.step.max_attempts).collect::<Vec<i32>>())
        .bind(steps.iter().map(|c| c.step.retryable).collect::<Vec<bool>>())
        .bind(steps.iter().map(|c| c.step.pending_parents).collect::<Vec<i32>>())
        .bind(
            steps
                .iter()
                .map(|c| c.inputs.as_ref().map(Value::to_string))
                .collect::<Vec<Option<String>>>(),
        )
        .bind(column(|c| c.created_by.clone()))
        .bind(edges.iter().map(|e| e.0).collect::<Vec<Uuid>>())
        .bind(edges.iter().map(|e| e.1).collect::<Vec<Uuid>>())
        .execute(self.tx().await?)
        .await?;
        Ok(())
    }

    async fn step_extras(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepExtras>> {
        if step_uuids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT step_uuid, inputs, checkpoint FROM tasker_steps WHERE step_uuid = ANY($1)")
            .bind(step_uuids)
            .fetch_all(self.tx().await?)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StepExtras {
                    step_uuid: r.try_get("step_uuid")?,
                    inputs: r.try_get::<Option<Json<Value>>, _>("inputs")?.map(|j| j.0),
                    checkpoint: r.try_get::<Option<Json<Value>>, _>("checkpoint")?.map(|j| j.0),
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
        let stored = sqlx::query(
            "UPDATE tasker_steps SET checkpoint = $3, updated_at = $4 \
             WHERE step_uuid = $1 AND state = 'in_progress' AND attempts = $2",
        )
        .bind(step_uuid)
        .bind(attempt)
        .bind(Json(checkpoint))
        .bind(now)
        .execute(self.tx().await?)
        .await?;
        Ok(stored.rows_affected() == 1)
    }

    async fn insert_events(&mut self, events: &[NewEvent]) -> Result<()> {
        pg_events::insert(self.tx().await?, events).await
    }

    async fn insert_dlq_entries(
        &mut self,
        entries: &[NewDlqEntry],
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertedDlqEntry>> {
        pg_recovery::insert_entries(self.tx().await?, entries, now).await
    }

    async fn close_dlq_entries(
        &mut self,
        task_uuids: &[Uuid],
        status: DlqStatus,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        pg_recovery::close_entries(self.tx().await?, task_uuids, status, note, now).await
    }

    async fn running_steps(&mut self, task_uuids: &[Uuid]) -> Result<Vec<(Uuid, i64)>> {
        if task_uuids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT task_uuid, count(*) AS n FROM tasker_steps WHERE task_uuid = ANY($1) \
               AND state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration') GROUP BY task_uuid",
        )
        .bind(task_uuids)
        .fetch_all(self.tx().await?)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("task_uuid")?, r.try_get("n")?)))
            .collect()
    }

    async fn note_dlq_resolution(&mut self, task_uuids: &[Uuid], note: &DlqNote, now: DateTime<Utc>) -> Result<usize> {
        pg_recovery::note_resolution(self.tx().await?, task_uuids, note, now).await
    }

    async fn notify_task_finished(&mut self, task_uuid: Uuid) -> Result<()> {
        self.wakes.push((TASK_CHANNEL, task_uuid.to_string()));
        Ok(())
    }

    async fn notify_timers(&mut self) -> Result<()> {
        self.wakes.push((TIMER_CHANNEL, String::new()));
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.end("COMMIT").await
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        self.end("ROLLBACK").await
    }
}

impl PgTx {
    fn wake_queue(&mut self, queue: &str) {
        self.wakes.push((QUEUE_CHANNEL, queue_payload(queue, &self.origin)));
    }

    /// Wakes the queues of groups that sent visible messages.
    fn wake_visible(&mut self, groups: &[pg_fused::SendGroup]) {
        for g in groups.iter().filter(|g| g.hidden_ms == 0) {
            self.wake_queue(&g.queue);
        }
    }

    /// Runs a claim's read of `queue`, `sql(lease, max)`: usually the transaction's first
    /// statement, which then goes with `BEGIN`, by name (one statement per `kind` and queue,
    /// `$1` the lease in milliseconds, `$2` how many messages at most).
    async fn claim_read(
        &mut self,
        kind: &'static str,
        queue: &str,
        lease: Duration,
        max: i64,
        sql: impl Fn(&str, &str) -> String,
    ) -> Result<Vec<sqlx::postgres::PgRow>> {
        let rows = if self.begun {
            sqlx::query(&sql("$1", "$2"))
                .bind(millis(lease))
                .bind(max)
                .fetch_all(self.tx().await?)
                .await
                .map_err(TaskerError::from)
        } else {
            let statement = self.names.for_queue(kind, queue, "int8, int8", || sql("$1", "$2"));
            self.first_prepared(&statement, &[&millis(lease).to_string(), &max.to_string()])
                .await
        };
        rows.map_err(|e| match e {
            TaskerError::Database(e) => queue_error(e, format!("reading queue '{queue}'")),
            other => other,
        })
    }

    /// The connection, with the transaction begun (`BEGIN` sent now if it was not yet).
    async fn tx(&mut self) -> Result<&mut PgConnection> {
        if !self.begun {
            self.begin_now();
            if let Err(e) = self.conn.execute("BEGIN").await {
                return Err(self.first_failed(e));
            }
        }
        Ok(&mut self.conn)
    }

    /// `BEGIN` and `sql` (a statement whose values are all inlined as literals) in one round
    /// trip when the transaction has not begun, else `sql` alone; returns `sql`'s rows.
    async fn first_statement(&mut self, sql: String) -> Result<Vec<sqlx::postgres::PgRow>> {
        // A query without arguments goes out with the simple protocol, which takes several
        // statements at once.
        if self.begun {
            return Ok(self.conn.fetch_all(sql.as_str()).await?);
        }
        self.begin_now();
        let batch = format!("BEGIN; {sql}");
        match self.conn.fetch_all(batch.as_str()).await {
            Ok(rows) => Ok(rows),
            Err(e) => Err(self.first_failed(e)),
        }
    }

    /// [`Self::first_statement`] of a statement prepared by name, `literals` its parameters. A
    /// connection that lacks it rolls the failed `BEGIN` back and runs it again, after
    /// [`Names::recover`].
    async fn first_prepared(&mut self, statement: &Prepared, literals: &[&str]) -> Result<Vec<sqlx::postgres::PgRow>> {
        let mut misses = 0;
        loop {
            let by_name = self.names.enabled();
            let sql = if by_name {
                statement.execute(literals)
            } else {
                statement.inline(literals)
            };
            match self.first_statement(sql).await {
                Err(e) if by_name && pg_prepared::is_missing(&e) => {}
                done => return done,
            }
            if let Err(e) = self.conn.execute("ROLLBACK").await {
                self.conn.mark_unknown();
                return Err(e.into());
            }
            self.conn.transaction_ended();
            self.begun = false;
            self.names.recover(&mut self.conn, &[statement], misses).await;
            misses += 1;
        }
    }

    /// From here on a drop rolls back, even if the first statement fails half-way.
    fn begin_now(&mut self) {
        self.conn.transaction_begun();
        self.begun = true;
    }

    /// The transaction's first statement failed. On a reused connection, a failure that means
    /// the server went away makes the other idle connections suspect too (the engine runs the
    /// transaction again, on a checked one).
    fn first_failed(&mut self, e: sqlx::Error) -> TaskerError {
        if self.conn.reused() && crate::error::sqlx_is_transient(&e) {
            self.conn.distrust_idle();
        }
        e.into()
    }

    async fn end(&mut self, statement: &str) -> Result<()> {
        if !self.begun {
            // Nothing ran: nothing to commit or roll back.
            self.conn.transaction_ended();
            return Ok(());
        }
        match self.conn.execute(statement).await {
            Ok(_) => {
                self.conn.transaction_ended();
                if statement == "COMMIT" {
                    self.notifier.send(std::mem::take(&mut self.wakes));
                }
                Ok(())
            }
            Err(e) => {
                self.conn.mark_unknown();
                Err(e.into())
            }
        }
    }
}

async fn insert_transitions(tx: &mut PgConnection, table: &str, key: &str, rows: &[TransitionRecord]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let a = TransitionArrays::new(rows);
    let mut entities = a.ids.clone();
    entities.sort();
    entities.dedup();
    let columns = if key == "task_uuid" {
        "task_uuid, from_state, to_state, event, metadata, most_recent, created_at"
    } else {
        "step_uuid, task_uuid, from_state, to_state, event, metadata, most_recent, created_at"
    };
    let select = if key == "task_uuid" {
        "id, from_state, to_state, event, metadata, recent, at"
    } else {
        "id, task, from_state, to_state, event, metadata, recent, at"
    };
    // One statement: clear the previous most-recent rows, then insert. The CTE runs first
    // because the INSERT depends on it (`WHERE (SELECT count(*) FROM cleared) >= 0`).
    sqlx::query(&format!(
        "WITH cleared AS (UPDATE {table} SET most_recent = false WHERE {key} = ANY($9) AND most_recent RETURNING 1) \
         INSERT INTO {table} ({columns}) SELECT {select} \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::bool[], $8::timestamptz[]) \
              WITH ORDINALITY AS v(id, task, from_state, to_state, event, metadata, recent, at, ord) \
         WHERE (SELECT count(*) FROM cleared) >= 0 ORDER BY ord"
    ))
    .bind(&a.ids)
    .bind(&a.tasks)
    .bind(&a.from)
    .bind(&a.to)
    .bind(&a.events)
    .bind(&a.metadata)
    .bind(&a.recent)
    .bind(&a.at)
    .bind(&entities)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{foreign_queue, queue_payload};

    #[test]
    fn a_store_ignores_its_own_queue_notifications_only() {
        let mine = queue_payload("orders", "a1");
        assert_eq!(foreign_queue(&mine, "a1"), None);
        assert_eq!(foreign_queue(&mine, "b2"), Some("orders"));
        // An older version's payload is the bare queue name.
        assert_eq!(foreign_queue("orders", "a1"), Some("orders"));
    }
}
