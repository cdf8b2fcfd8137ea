//! Persistence: one [`Store`] abstraction, a SQLite and a PostgreSQL implementation.
//!
//! The split of responsibilities is deliberate: a backend only knows how to execute
//! *set-based primitives* inside a transaction ([`StoreTx`]): compare-and-swap state changes,
//! audit rows, counter updates, queue sends/reads. All decisions (which transition, retry or
//! fail, finalize the task) live once, in [`crate::engine`], so both backends behave the same by
//! construction and the same integration suite runs against both.

mod events;
mod guarded;
mod pg_connections;
mod pg_delivered;
mod pg_events;
mod pg_fused;
mod pg_notifier;
mod pg_prepared;
mod pg_recovery;
mod postgres;
mod rabbit;
mod records;
mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use events::*;
pub use guarded::GuardedStore;
pub use postgres::{PgSettings, PostgresStore};
pub use rabbit::RabbitStore;
pub use records::*;
pub use sqlite::{SqliteSettings, SqliteStore};

use crate::error::{Result, TaskerError};

/// A database backend.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> Backend;

    /// Starts a write transaction.
    async fn begin(&self) -> Result<Box<dyn StoreTx>>;

    /// Makes sure a queue exists (idempotent).
    async fn ensure_queue(&self, queue: &str) -> Result<()>;

    /// Whether any of `queues` may have a visible message. A cheap read-only check that lets
    /// idle workers skip the claim transaction; `true` when the backend cannot tell cheaply.
    async fn has_visible_messages(&self, queues: &[String]) -> Result<bool>;

    /// Stores template versions, all in one transaction: either every one is stored (or was
    /// already, with the same content) or none is. Returns each template's row, in order; a
    /// different content under an existing version, or two different contents under one version
    /// in `templates`, is [`crate::TaskerError::TemplateConflict`] and stores nothing.
    async fn register_templates(&self, templates: &[NewTemplate]) -> Result<Vec<TemplateRow>>;

    /// Stores one template version (see [`Store::register_templates`]).
    async fn register_template(&self, template: &NewTemplate) -> Result<TemplateRow> {
        let mut rows = self.register_templates(std::slice::from_ref(template)).await?;
        rows.pop()
            .ok_or_else(|| TaskerError::Corrupt("registering a template returned no row".into()))
    }

    /// Creates a task: [`StoreTx::create_task_rows`] in a transaction of its own, committed
    /// when the task was created. A backend that writes it all in one statement may run that
    /// statement on its own (a statement is atomic).
    async fn create_task(
        &self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        let mut tx = self.begin().await?;
        let inserted = tx
            .create_task_rows(task, task_transitions, step_transitions, messages)
            .await?;
        match inserted {
            InsertedTask::Created => tx.commit().await?,
            InsertedTask::Existing(_) | InsertedTask::TemplateSuperseded => tx.rollback().await?,
        }
        Ok(inserted)
    }

    /// [`Store::create_task`] that also writes durable `events`, in the same transaction.
    async fn create_task_with_events(
        &self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
        events: &[NewEvent],
    ) -> Result<InsertedTask> {
        if events.is_empty() {
            return self
                .create_task(task, task_transitions, step_transitions, messages)
                .await;
        }
        let mut tx = self.begin().await?;
        let inserted = tx
            .create_task_rows(task, task_transitions, step_transitions, messages)
            .await?;
        match inserted {
            InsertedTask::Created => {
                tx.insert_events(events).await?;
                tx.commit().await?
            }
            InsertedTask::Existing(_) | InsertedTask::TemplateSuperseded => tx.rollback().await?,
        }
        Ok(inserted)
    }

    /// A template by id.
    async fn template_by_id(&self, id: i64) -> Result<Option<TemplateRow>>;

    /// Every registered version of `namespace/name`, in no particular order.
    async fn template_versions(&self, namespace: &str, name: &str) -> Result<Vec<TemplateRow>>;

    /// All registered templates (latest first within a name).
    async fn list_templates(&self) -> Result<Vec<TemplateRow>>;

    /// A task, its steps (in template order) and transitions.
    async fn task_detail(&self, task_uuid: Uuid) -> Result<Option<TaskDetail>>;

    /// Only the task row (cheap; used when waiting for a terminal state).
    async fn task_summary(&self, task_uuid: Uuid) -> Result<Option<TaskSummary>>;

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>>;

    /// Steps waiting for a retry that is due at `now`, at most `limit`.
    async fn due_retries(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>>;

    /// Steps in progress whose attempt deadline passed before `now`, at most `limit`.
    async fn overdue_attempts(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>>;

    /// Earliest `next_retry_at` / `deadline_at` still pending, so the orchestrator can sleep
    /// exactly until the next thing is due.
    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>>;

    /// DLQ entries, newest first.
    async fn list_dlq(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>>;

    async fn dlq_entry(&self, entry_uuid: Uuid) -> Result<Option<DlqEntry>>;

    /// Appends `note` to an entry and, with `status`, moves it there (resolver and time are set
    /// when it closes). `None` when there is no such entry.
    async fn update_dlq_entry(
        &self,
        entry_uuid: Uuid,
        status: Option<DlqStatus>,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<Option<DlqEntry>>;

    /// Entries counted by reason and status.
    async fn dlq_counts(&self) -> Result<Vec<DlqCount>>;

    /// Unfinished tasks of the templates `template_ids` whose last progress is older than
    /// `idle_before` or that were created before `created_before`, longest idle first (an
    /// indexed read of the open states only: finished history is never scanned).
    async fn open_tasks(
        &self,
        template_ids: &[i64],
        idle_before: DateTime<Utc>,
        created_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OpenTask>>;

    /// Tasks with a message visible on `queue` since before `enqueued_before` (nobody claimed it).
    async fn waiting_tasks(&self, queue: &str, enqueued_before: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>>;

    /// Records a worker process (or replaces its record).
    async fn register_worker(&self, worker: &WorkerRecord) -> Result<()>;

    /// A live worker's heartbeat; `stopped` marks it gone.
    async fn heartbeat_worker(
        &self,
        registration_uuid: Uuid,
        in_flight: i32,
        stopped: bool,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Workers that heartbeated since `seen_since`, or stopped since then.
    async fn list_workers(&self, seen_since: DateTime<Utc>) -> Result<Vec<WorkerRecord>>;

    /// Task counts and queue depths for the dashboard's overview. Not on the hot path.
    async fn overview(&self, window: &OverviewWindow) -> Result<Overview>;

    /// Keeps the overview's task counts small: folds the counts of tasks created before
    /// `before` into one total per state (the chart reads only the last hour's minutes), and on
    /// PostgreSQL the deltas appended since the last fold. Maintenance, run by the orchestrator.
    async fn compact_task_counts(&self, before: DateTime<Utc>) -> Result<()>;

    /// Commits on the server since start-up, when the backend can tell (PostgreSQL's
    /// `pg_stat_database.xact_commit`); used by the benchmark.
    async fn commit_count(&self) -> Result<Option<i64>>;

    /// Every queue's message counts (read for the metrics gauges; counts each queue's rows).
    async fn queue_stats(&self) -> Result<Vec<QueueStats>>;

    /// (idle, in use) database connections of this store.
    fn connection_stats(&self) -> (u32, u32);

    /// Answers when the database does (health checks): one trivial statement.
    async fn ping(&self) -> Result<()>;

    /// Waits for a wake-up signal from another process (PostgreSQL LISTEN/NOTIFY). Backends
    /// without cross-process notification return `None` and callers poll.
    fn subscribe_remote(&self) -> Option<tokio::sync::broadcast::Receiver<RemoteSignal>>;

    /// The durable event log's statements (subscriber groups, sequencing, retention).
    fn events(&self) -> &dyn EventStore;

    /// Closes the pool.
    async fn close(&self);
}

/// The terminal task states as an SQL list, for queries that must ignore finished tasks (both
/// backends). Checked against [`crate::state::TaskState::is_terminal`] by a unit test.
pub(crate) const TERMINAL_TASK_STATES: &str = "('complete', 'error', 'cancelled', 'resolved_manually')";

/// How much a point of task priority is worth, in milliseconds of waiting: see [`order_key`].
pub const PRIORITY_WEIGHT_MS: i64 = 1_000;

/// Priorities beyond this (either sign) order like this: the largest head start a task can get
/// is a day.
pub const PRIORITY_LIMIT: i32 = 86_400;

/// The key visible messages are claimed in (lowest first), the same on every backend: the time
/// the message was sent, minus one [`PRIORITY_WEIGHT_MS`] per point of its task's priority.
///
/// So a higher priority is claimed first, and aging is built in: a message of priority `p` goes
/// before one of priority `q < p` unless that one has waited more than `(p - q)` seconds longer.
/// Low priorities are never starved: a key never changes, and new messages get larger ones.
pub fn order_key(sent_at_ms: i64, priority: i32) -> i64 {
    let boost = i64::from(priority.clamp(-PRIORITY_LIMIT, PRIORITY_LIMIT)) * PRIORITY_WEIGHT_MS;
    sent_at_ms.saturating_sub(boost)
}

/// The step a queue message's body names, parsed as the claim parses it: a body that is not a
/// [`StepMessage`] locks nothing and is dropped by the claim that reads it.
pub(crate) fn named_step(payload: &serde_json::Value) -> Option<Uuid> {
    StepMessage::from_payload(payload).ok().map(|m| m.step_uuid)
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A cross-process notification received through the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteSignal {
    /// Messages were sent to this queue.
    Queue(String),
    /// This task reached a terminal state.
    TaskFinished(Uuid),
    /// Retry/timeout timers changed.
    Timers,
    /// The listener reconnected; anything may have been missed.
    Reconnected,
}

/// Set-based primitives executed inside one transaction. Every state change is a
/// compare-and-swap: rows whose current state/attempts differ from the expected ones are left
/// alone and are missing from the returned list, so a late or concurrent writer loses cleanly.
/// Queue operations with visibility-timeout semantics, inside the current transaction: a read
/// message is hidden for its lease and reappears, with `read_ct` incremented, unless it is
/// deleted or its visibility is changed. PGMQ on PostgreSQL, a table on SQLite; the trait has
/// no PostgreSQL types, so a broker-backed queue (RabbitMQ) can implement it later.
#[async_trait]
pub trait MessageQueue: Send {
    /// Claims up to `max` messages from `queue`, hiding them for `lease`.
    async fn read_messages(&mut self, queue: &str, lease: Duration, max: i64) -> Result<Vec<QueueMessage>>;

    /// Claims the messages a broker delivered (`messaging.backend = "rabbitmq"`): each
    /// `(msg_id, read_ct)` names a message and how many times it had been read when it was
    /// published. Only messages still at that count are claimed (hidden for `lease`, `read_ct`
    /// incremented), so a stale or duplicate delivery claims nothing. Backends that cannot serve
    /// as a broker's outbox refuse.
    async fn read_delivered(
        &mut self,
        queue: &str,
        _lease: Duration,
        _delivered: &[(i64, i32)],
    ) -> Result<Vec<QueueMessage>> {
        Err(TaskerError::Queue(format!(
            "queue '{queue}': this database cannot be a message broker's outbox (messaging.backend = \"rabbitmq\" needs PostgreSQL)"
        )))
    }

    /// Sends one message per step and notifies listeners of each queue that got a visible
    /// message, at commit. Returns the messages' references in input order.
    async fn send_messages(&mut self, messages: &[OutgoingMessage]) -> Result<Vec<MessageRef>>;

    /// Deletes messages. Never waits: a message another transaction holds (a claim reading it)
    /// is left to that transaction, which finds its step changed and deletes it.
    async fn delete_messages(&mut self, messages: &[MessageRef]) -> Result<()>;

    /// Makes messages visible again `after` from now (lease extension or release), by the
    /// database's clock; `after == 0` wakes the queue's listeners at commit. Never waits for a
    /// message another transaction holds.
    async fn set_message_visibility(&mut self, messages: &[MessageRef], after: Duration) -> Result<()>;
}

#[async_trait]
pub trait StoreTx: MessageQueue {
    /// Current state of these steps and of their tasks, locking them until commit where the
    /// backend supports row locks: **the task rows first, then the step rows**, each in uuid
    /// order. That is the engine's one lock order; every transaction that changes a step takes
    /// its locks through here (or locks the task row first, as cancellation does), so no two
    /// transactions can wait on each other in a cycle. Queue messages are the one exception a
    /// claim must lock first (`read_messages`, `read_and_lock`); nothing that holds task or
    /// step locks ever waits for a message lock (`delete_messages` and
    /// `set_message_visibility` skip locked messages), which keeps that order deadlock-free.
    async fn lock_steps(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepLock>>;

    /// Compare-and-swap of step rows. Returns the uuids that changed.
    async fn change_steps(&mut self, changes: &[StepChange], now: DateTime<Utc>) -> Result<Vec<Uuid>>;

    /// [`StoreTx::change_steps`] plus the audit rows of the steps that changed (rows of other
    /// steps are dropped), as one unit. Backends may do it in one statement.
    async fn change_steps_audited(
        &mut self,
        changes: &[StepChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>> {
        let applied = self.change_steps(changes, now).await?;
        let kept: Vec<TransitionRecord> = transitions
            .iter()
            .filter(|t| applied.contains(&t.entity_uuid))
            .cloned()
            .collect();
        self.insert_step_transitions(&kept).await?;
        Ok(applied)
    }

    /// Cancels every step of the task in one of `from` states; returns (uuid, name, previous
    /// state) of each.
    async fn cancel_open_steps(
        &mut self,
        task_uuid: Uuid,
        from: &[crate::state::StepState],
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, String, crate::state::StepState)>>;

    /// Decrements the pending-parents counter of every child of `parents` and returns the
    /// children that reached zero while still `pending`.
    async fn release_children(&mut self, parents: &[Uuid]) -> Result<Vec<ReadyChild>>;

    /// Adds deltas to task counters; returns the counters after the update.
    async fn apply_task_deltas(&mut self, deltas: &[TaskDelta], now: DateTime<Utc>) -> Result<Vec<TaskCounters>>;

    /// Compare-and-swap of task states. Returns the uuids that changed.
    async fn change_tasks(&mut self, changes: &[TaskChange], now: DateTime<Utc>) -> Result<Vec<Uuid>>;

    /// [`StoreTx::change_tasks`] plus the audit rows of the tasks that changed (rows of other
    /// tasks are dropped) and [`StoreTx::notify_task_finished`] for each changed task that
    /// reached a terminal state. Backends may do it in one statement.
    async fn change_tasks_audited(
        &mut self,
        changes: &[TaskChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>> {
        let applied = self.change_tasks(changes, now).await?;
        let kept: Vec<TransitionRecord> = transitions
            .iter()
            .filter(|t| applied.contains(&t.entity_uuid))
            .cloned()
            .collect();
        self.insert_task_transitions(&kept).await?;
        for c in changes
            .iter()
            .filter(|c| c.new.is_terminal() && applied.contains(&c.task_uuid))
        {
            self.notify_task_finished(c.task_uuid).await?;
        }
        Ok(applied)
    }

    async fn insert_step_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()>;

    async fn insert_task_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()>;

    /// Inserts a task with its steps and edges unless a task with the same identity hash
    /// exists, in which case nothing is written and the existing task's uuid is returned (or
    /// unless its template was superseded: see [`NewTask::newest_template_id`]).
    async fn insert_task(&mut self, task: &NewTask) -> Result<InsertedTask>;

    /// Everything creating a task writes: the task with its steps and edges (as
    /// [`StoreTx::insert_task`]: nothing when a task with the same identity exists), then its
    /// audit rows and the root steps' messages. Backends may run it as one statement.
    async fn create_task_rows(
        &mut self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        let inserted = self.insert_task(task).await?;
        if inserted == InsertedTask::Created {
            self.insert_task_transitions(task_transitions).await?;
            self.insert_step_transitions(step_transitions).await?;
            self.send_messages(messages).await?;
        }
        Ok(inserted)
    }

    /// Task context, correlation id and template of each task.
    async fn task_inputs(&mut self, task_uuids: &[Uuid]) -> Result<Vec<TaskInput>>;

    /// Results of the direct dependencies of each step: (child, parent name, parent result, or
    /// why that stored result cannot be read back).
    async fn dependency_results(&mut self, step_uuids: &[Uuid]) -> Result<Vec<DependencyResult>>;

    /// A claim of one queue: [`MessageQueue::read_messages`], then [`StoreTx::lock_steps`] of
    /// the steps the messages name (a message whose body names no step locks nothing), in the
    /// documented order (messages, then tasks, then steps). Backends may do both in one
    /// statement. A claim of several queues reads them all before locking anything, so that
    /// its task locks are taken in one uuid-ordered pass.
    async fn read_and_lock(
        &mut self,
        queue: &str,
        lease: Duration,
        max: i64,
    ) -> Result<(Vec<QueueMessage>, Vec<StepLock>)> {
        let messages = self.read_messages(queue, lease, max).await?;
        if messages.is_empty() {
            return Ok((messages, Vec::new()));
        }
        let mut ids: Vec<Uuid> = messages.iter().filter_map(|m| named_step(&m.payload)).collect();
        ids.sort();
        ids.dedup();
        let locks = self.lock_steps(&ids).await?;
        Ok((messages, locks))
    }

    /// A claim's compare-and-swap with its audit rows ([`StoreTx::change_steps_audited`]) and
    /// the inputs of the steps it claims ([`StoreTx::claim_inputs`]), as one unit. Returns the
    /// uuids that changed and the inputs of every step asked for: the caller drops those of
    /// claims that lost their race (a claim changes no input, so reading them with the change
    /// reads the same). Backends may do it in one statement.
    async fn change_steps_with_inputs(
        &mut self,
        changes: &[StepChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
        task_uuids: &[Uuid],
        step_uuids: &[Uuid],
    ) -> Result<(Vec<Uuid>, Vec<TaskInput>, Vec<DependencyResult>)> {
        let applied = self.change_steps_audited(changes, transitions, now).await?;
        if applied.is_empty() || task_uuids.is_empty() {
            return Ok((applied, Vec::new(), Vec::new()));
        }
        let (inputs, deps) = self.claim_inputs(task_uuids, step_uuids).await?;
        Ok((applied, inputs, deps))
    }

    /// [`StoreTx::task_inputs`] of `task_uuids` and [`StoreTx::dependency_results`] of
    /// `step_uuids`, which a claim needs together. Backends may read both in one statement.
    async fn claim_inputs(
        &mut self,
        task_uuids: &[Uuid],
        step_uuids: &[Uuid],
    ) -> Result<(Vec<TaskInput>, Vec<DependencyResult>)> {
        let inputs = self.task_inputs(task_uuids).await?;
        let deps = if step_uuids.is_empty() {
            Vec::new()
        } else {
            self.dependency_results(step_uuids).await?
        };
        Ok((inputs, deps))
    }

    /// Applies outcomes' first writes, in this order: the step changes with their audit rows
    /// (as [`StoreTx::change_steps_audited`]), the message deletes, and the release of the
    /// children of `released_parents` (as [`StoreTx::release_children`]). Returns the steps
    /// whose change applied and the children that became ready. Backends may run it as one
    /// statement: the engine has decided everything in it beforehand.
    async fn apply_outcome_writes(
        &mut self,
        w: OutcomeWrites<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Uuid>, Vec<ReadyChild>)> {
        let applied = self.change_steps_audited(w.changes, w.transitions, now).await?;
        self.delete_messages(w.delete).await?;
        let ready = self.release_children(w.released_parents).await?;
        Ok((applied, ready))
    }

    /// Applies outcomes' second writes (the released children's changes with audit rows, the
    /// messages, the task counters), then reads the claim inputs of `input_tasks` and
    /// `input_steps`. Backends may run it as one statement.
    async fn apply_followup_writes(&mut self, w: FollowupWrites<'_>, now: DateTime<Utc>) -> Result<Followup> {
        let applied = self.change_steps_audited(w.changes, w.transitions, now).await?;
        let sent = self.send_messages(w.send).await?;
        let counters = self.apply_task_deltas(w.deltas, now).await?;
        let (inputs, dependency_results) = if w.input_tasks.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            self.claim_inputs(w.input_tasks, w.input_steps).await?
        };
        Ok(Followup {
            applied,
            sent,
            counters,
            inputs,
            dependency_results,
        })
    }

    /// Every step of a task with its state and stored result (cold path: read when a decision
    /// or batch expands the task, under the task's lock).
    async fn task_steps(&mut self, task_uuid: Uuid) -> Result<Vec<ExistingStep>>;

    /// Inserts steps created at run time with their edges (parent, child) and adds them to the
    /// task's `total_steps`.
    async fn insert_steps(
        &mut self,
        task_uuid: Uuid,
        steps: &[CreatedStep],
        edges: &[(Uuid, Uuid)],
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Inputs and last checkpoint of each step (rows only for steps that exist).
    async fn step_extras(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepExtras>>;

    /// Stores `checkpoint` as the step's last checkpoint if the step is still `in_progress` at
    /// `attempt` (a compare-and-swap, like a completion). Returns whether it was stored.
    async fn save_checkpoint(
        &mut self,
        step_uuid: Uuid,
        attempt: i32,
        checkpoint: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Writes DLQ entries (with the snapshot of each task's rows as they are now), skipping
    /// tasks that already have an open entry. Returns how many were written.
    /// Writes durable events in this transaction: they commit with the state change that caused
    /// them, or not at all. The caller holds the row lock of every task they belong to (see
    /// `store/events.rs` for why ordering depends on it).
    async fn insert_events(&mut self, events: &[NewEvent]) -> Result<()>;

    async fn insert_dlq_entries(
        &mut self,
        entries: &[NewDlqEntry],
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertedDlqEntry>>;

    /// Closes the open DLQ entries of `task_uuids` with `status` and `note`. Returns how many.
    async fn close_dlq_entries(
        &mut self,
        task_uuids: &[Uuid],
        status: DlqStatus,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<usize>;

    /// How many steps of each task are running or about to (`enqueued`, `in_progress`,
    /// `enqueued_for_orchestration`); tasks with none are left out.
    async fn running_steps(&mut self, task_uuids: &[Uuid]) -> Result<Vec<(Uuid, i64)>>;

    /// Appends `note` to the open DLQ entries of `task_uuids` and records it as their resolution:
    /// the entry closes, credited to `note.by`, when the task completes.
    async fn note_dlq_resolution(&mut self, task_uuids: &[Uuid], note: &DlqNote, now: DateTime<Utc>) -> Result<usize>;

    /// Signals that a task finished, delivered to other processes at commit.
    async fn notify_task_finished(&mut self, task_uuid: Uuid) -> Result<()>;

    /// Signals that retry/timeout timers changed, delivered at commit.
    async fn notify_timers(&mut self) -> Result<()>;

    async fn commit(self: Box<Self>) -> Result<()>;

    /// Abandons the transaction now. (Dropping it also rolls back, but later: until then its
    /// row locks hide claimed messages from `SKIP LOCKED` readers.)
    async fn rollback(self: Box<Self>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use crate::state::{NamedState, TaskState};

    #[test]
    fn the_sql_list_of_terminal_states_matches_the_state_table() {
        let terminal: Vec<String> = TaskState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert_eq!(super::TERMINAL_TASK_STATES, format!("({})", terminal.join(", ")));
    }

    #[test]
    fn a_point_of_priority_is_worth_a_second_of_waiting_up_to_a_day() {
        use super::order_key;
        assert!(order_key(10_000, 1) < order_key(10_000, 0));
        assert_eq!(order_key(10_000, 1), order_key(9_000, 0));
        assert!(order_key(0, -5) > order_key(0, 5));
        assert_eq!(order_key(0, i32::MAX), order_key(0, super::PRIORITY_LIMIT));
        assert_eq!(order_key(i64::MIN, 1), i64::MIN);
    }
}
