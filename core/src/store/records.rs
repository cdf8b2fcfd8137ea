//! Plain data exchanged between the engine and the stores.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::state::{StepState, TaskState};

/// A template version as stored.
#[derive(Debug, Clone)]
pub struct TemplateRow {
    pub id: i64,
    pub namespace: String,
    pub name: String,
    pub version: String,
    /// The template after environment merge, as JSON.
    pub definition: Value,
    pub content_hash: String,
    pub source_path: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A template version to store.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub definition: Value,
    pub content_hash: String,
    pub source_path: Option<String>,
}

/// A queue message as read.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    pub queue: String,
    pub msg_id: i64,
    /// How many times it has been read, this read included.
    pub read_ct: i32,
    pub enqueued_at: DateTime<Utc>,
    pub payload: Value,
}

impl QueueMessage {
    pub fn reference(&self) -> MessageRef {
        MessageRef {
            queue: self.queue.clone(),
            msg_id: self.msg_id,
        }
    }
}

/// Identifies one message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageRef {
    pub queue: String,
    pub msg_id: i64,
}

/// The body of every step message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMessage {
    pub step_uuid: Uuid,
    pub task_uuid: Uuid,
    /// The step's attempt count when the message was sent. A message whose count no longer
    /// matches the step (a retry or release sent a newer one) is stale and is dropped.
    pub attempt: i32,
}

impl StepMessage {
    /// Reads a queue message's body: the one parse a claim and the stores' locking reads share.
    pub fn from_payload(payload: &Value) -> serde_json::Result<Self> {
        Self::deserialize(payload)
    }
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub queue: String,
    pub body: StepMessage,
    /// Sent invisible for this long: the step was claimed in the same transaction by this
    /// process (eager dispatch), and the message only serves crash recovery, like a lease.
    pub hidden_for: Option<std::time::Duration>,
    /// The task's priority: orders the message among visible ones (see [`super::order_key`]).
    pub priority: i32,
}

/// The current state of a step and its task.
#[derive(Debug, Clone)]
pub struct StepLock {
    pub step_uuid: Uuid,
    pub task_uuid: Uuid,
    pub name: String,
    pub queue: String,
    pub state: StepState,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Attempt numbers that do not count against `max_attempts` (released unstarted claims and
    /// lost leases: the engine's failures, not the handler's).
    pub free_attempts: i32,
    /// Attempts lost with their worker's lease (capped separately).
    pub lost_leases: i32,
    pub task_state: TaskState,
    pub template_id: i64,
    /// The task's priority, carried by every message sent for the step.
    pub task_priority: i32,
}

impl StepLock {
    /// Attempts that count against `max_attempts`.
    pub fn handler_attempts(&self) -> i32 {
        self.attempts.saturating_sub(self.free_attempts)
    }
}

/// A compare-and-swap of one step row.
#[derive(Debug, Clone)]
pub struct StepChange {
    pub step_uuid: Uuid,
    pub expected_state: StepState,
    pub expected_attempts: i32,
    pub new_state: StepState,
    pub new_attempts: i32,
    /// Stored when `Some`; the previous value is kept otherwise.
    pub results: Option<Value>,
    /// Stored when `Some`; the previous value is kept otherwise.
    pub last_error: Option<Value>,
    /// Always written (`None` clears it).
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Always written (`None` clears it).
    pub deadline_at: Option<DateTime<Utc>>,
    /// An attempt starts: stamps `last_attempted_at` (and `first_attempted_at` once).
    pub attempt_started: bool,
    /// The step reached a terminal state: stamps `completed_at`.
    pub finished: bool,
    /// Added to `free_attempts`.
    pub free_attempts_delta: i32,
    /// Added to `lost_leases`.
    pub lost_leases_delta: i32,
}

impl StepChange {
    /// A compare-and-swap from (`expected_state`, `expected_attempts`) to (`new_state`,
    /// `new_attempts`) that touches nothing else; set the other fields as needed.
    pub fn cas(
        step_uuid: Uuid,
        (expected_state, expected_attempts): (StepState, i32),
        (new_state, new_attempts): (StepState, i32),
    ) -> Self {
        Self {
            step_uuid,
            expected_state,
            expected_attempts,
            new_state,
            new_attempts,
            results: None,
            last_error: None,
            next_retry_at: None,
            deadline_at: None,
            attempt_started: false,
            finished: false,
            free_attempts_delta: 0,
            lost_leases_delta: 0,
        }
    }
}

/// The result of one dependency of a claimed step: (child step, parent name, parent result, or
/// why that stored result cannot be read back).
pub type DependencyResult = (Uuid, String, std::result::Result<Value, String>);

/// A child whose last pending dependency just completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyChild {
    pub step_uuid: Uuid,
    pub name: String,
    pub task_uuid: Uuid,
    pub queue: String,
    pub max_attempts: i32,
}

/// Increments to a task's step counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskDelta {
    pub task_uuid: Uuid,
    pub completed: i32,
    pub active: i32,
    pub failed: i32,
}

/// A task's counters after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCounters {
    pub task_uuid: Uuid,
    pub state: TaskState,
    pub total: i32,
    pub completed: i32,
    /// Steps enqueued, in progress or waiting for a retry.
    pub active: i32,
    pub failed: i32,
}

/// A compare-and-swap of one task row.
#[derive(Debug, Clone)]
pub struct TaskChange {
    pub task_uuid: Uuid,
    pub expected: TaskState,
    pub new: TaskState,
}

/// One audit row.
#[derive(Debug, Clone)]
pub struct TransitionRecord {
    /// The step's (or task's) uuid.
    pub entity_uuid: Uuid,
    pub task_uuid: Uuid,
    pub from_state: Option<&'static str>,
    pub to_state: &'static str,
    pub event: &'static str,
    pub metadata: Value,
    pub at: DateTime<Utc>,
}

/// A task to insert, with its steps and edges.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub task_uuid: Uuid,
    pub template_id: i64,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub state: TaskState,
    pub context: Value,
    pub initiator: Option<String>,
    pub source_system: Option<String>,
    pub reason: Option<String>,
    pub tags: Vec<String>,
    pub priority: i32,
    pub correlation_id: Uuid,
    pub identity_hash: String,
    pub idempotency_key: Option<String>,
    pub steps: Vec<NewStep>,
    /// (parent, child)
    pub edges: Vec<(Uuid, Uuid)>,
    /// Counters at creation.
    pub active_steps: i32,
    pub created_at: DateTime<Utc>,
    /// The caller's W3C `traceparent`, when the task was created inside a trace.
    pub trace_parent: Option<String>,
    /// When set, the task is stored only if no template of its namespace and name has a larger
    /// id ([`InsertedTask::TemplateSuperseded`] otherwise): its template was resolved as the
    /// highest version from a cache, and a newer version registered since must win.
    pub newest_template_id: Option<i64>,
}

impl NewTask {
    /// The row as inserted, what [`super::Store::task_summary`] would read back right after the
    /// insert: creation returns it without another round trip. `created_at` must already have
    /// the stores' precision (milliseconds), so that a later read gives the same value.
    pub fn summary(&self) -> TaskSummary {
        TaskSummary {
            task_uuid: self.task_uuid,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            state: self.state.as_str().to_owned(),
            context: self.context.clone(),
            initiator: self.initiator.clone(),
            source_system: self.source_system.clone(),
            reason: self.reason.clone(),
            tags: self.tags.clone(),
            priority: self.priority,
            correlation_id: self.correlation_id,
            idempotency_key: self.idempotency_key.clone(),
            total_steps: i32::try_from(self.steps.len()).unwrap_or(i32::MAX),
            completed_steps: 0,
            active_steps: self.active_steps,
            failed_steps: 0,
            created_at: self.created_at,
            updated_at: self.created_at,
            completed_at: None,
            trace_parent: self.trace_parent.clone(),
        }
    }
}

/// A step to insert.
#[derive(Debug, Clone)]
pub struct NewStep {
    pub step_uuid: Uuid,
    pub name: String,
    pub position: i32,
    pub queue: String,
    pub state: StepState,
    pub max_attempts: i32,
    pub retryable: bool,
    pub pending_parents: i32,
}

/// A step of a task, as deciding which steps to create needs it.
#[derive(Debug, Clone)]
pub struct ExistingStep {
    pub step_uuid: Uuid,
    pub name: String,
    pub state: StepState,
    /// Dependencies not yet satisfied.
    pub pending_parents: i32,
    /// The stored result (a decision's choice), `None` if absent or unreadable.
    pub results: Option<Value>,
}

/// A step created at run time by a decision or a batch (see [`super::StoreTx::insert_steps`]).
#[derive(Debug, Clone)]
pub struct CreatedStep {
    pub step: NewStep,
    /// Stored as the step's inputs (`{"batch": cursor}` for a batch worker instance).
    pub inputs: Option<Value>,
    /// Name of the step whose outcome created it.
    pub created_by: String,
}

/// What a claim of a step created by a batch, or retried, needs beyond the hot-path reads.
#[derive(Debug, Clone, Default)]
pub struct StepExtras {
    pub step_uuid: Uuid,
    pub inputs: Option<Value>,
    pub checkpoint: Option<Value>,
}

/// Outcome of [`super::StoreTx::insert_task`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertedTask {
    Created,
    /// A task with the same identity already exists.
    Existing(Uuid),
    /// Nothing was written: [`NewTask::newest_template_id`] is no longer the newest.
    TemplateSuperseded,
}

/// What a worker needs of a task to run one of its steps.
#[derive(Debug, Clone)]
pub struct TaskInput {
    pub task_uuid: Uuid,
    /// `Err` names why the stored context cannot be read back (its steps then fail, alone).
    pub context: std::result::Result<Value, String>,
    pub correlation_id: Uuid,
    pub template_id: i64,
}

/// A task row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub task_uuid: Uuid,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub state: String,
    pub context: Value,
    pub initiator: Option<String>,
    pub source_system: Option<String>,
    pub reason: Option<String>,
    pub tags: Vec<String>,
    pub priority: i32,
    pub correlation_id: Uuid,
    pub idempotency_key: Option<String>,
    pub total_steps: i32,
    pub completed_steps: i32,
    pub active_steps: i32,
    pub failed_steps: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The W3C `traceparent` the task was created with (its span's parent), if any.
    pub trace_parent: Option<String>,
}

impl TaskSummary {
    /// Parsed state. A value the tables do not know means a corrupt row.
    pub fn task_state(&self) -> Option<TaskState> {
        crate::state::NamedState::parse(&self.state)
    }

    /// Whether the task reached one of the four terminal states.
    pub fn is_terminal(&self) -> bool {
        self.task_state().is_some_and(TaskState::is_terminal)
    }
}

/// A step row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub step_uuid: Uuid,
    pub name: String,
    pub queue: String,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Attempt numbers that do not count against `max_attempts` (released claims, lost leases,
    /// and every attempt before an operator's reset).
    #[serde(default)]
    pub free_attempts: i32,
    pub retryable: bool,
    pub results: Option<Value>,
    pub last_error: Option<Value>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub first_attempted_at: Option<DateTime<Utc>>,
    pub last_attempted_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Names of the steps this one depends on.
    pub dependencies: Vec<String>,
    /// The decision or batchable step whose outcome created this step (`None` for the steps
    /// the task started with).
    #[serde(default)]
    pub created_by: Option<String>,
    /// A batch worker instance's cursor (see [`crate::worker::StepEvent::batch`]).
    #[serde(default)]
    pub batch: Option<Value>,
    /// The last checkpoint an attempt recorded (see [`crate::worker::StepEvent::checkpoint`]).
    #[serde(default)]
    pub checkpoint: Option<Value>,
}

/// A transition as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The step's name, or `None` for a task transition.
    pub step_name: Option<String>,
    pub from_state: Option<String>,
    pub to_state: String,
    pub event: String,
    pub metadata: Value,
    pub most_recent: bool,
    pub created_at: DateTime<Utc>,
}

/// A task with everything about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDetail {
    pub task: TaskSummary,
    pub steps: Vec<StepSummary>,
    pub task_transitions: Vec<Transition>,
    pub step_transitions: Vec<Transition>,
}

impl TaskDetail {
    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&StepSummary> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// Filter for listing tasks.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub state: Option<TaskState>,
    /// At most this many, newest first (default 100).
    pub limit: Option<i64>,
    /// Only tasks carrying this tag.
    pub tag: Option<String>,
    /// Only tasks created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only tasks created strictly before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Keyset pagination: only tasks after this `(created_at, task_uuid)` in the listing's
    /// newest-first order. Pages read this way neither repeat nor skip a task while new ones
    /// are created (those sort before the first page).
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Only tasks created with this idempotency key (of any template).
    pub idempotency_key: Option<String>,
}

/// What the dashboard's overview shows (`Tasker::overview`): task counts and the queues.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// Every task, counted by its state.
    pub tasks_by_state: Vec<StateCount>,
    /// Tasks created since `since`, counted by bucket (whole `bucket_ms` since `since`) and by
    /// the state they are in now.
    pub recent: Vec<BucketCount>,
    /// Tasks that finished as `complete` since `since`.
    pub completed_since: i64,
    /// Tasks that finished as `complete` since `recent_since`.
    pub completed_recently: i64,
    pub queues: Vec<QueueDepth>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    pub state: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketCount {
    pub bucket: i64,
    pub state: String,
    pub count: i64,
}

/// One queue's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    pub queue: String,
    /// Messages in the queue, claimed or not.
    pub depth: i64,
    /// Messages a worker could claim now.
    pub visible: i64,
    /// When the oldest message a worker could claim now was sent (how long work has waited).
    pub oldest_enqueued_at: Option<DateTime<Utc>>,
}

impl From<QueueStats> for QueueDepth {
    fn from(q: QueueStats) -> Self {
        Self {
            depth: q.visible + q.hidden,
            visible: q.visible,
            oldest_enqueued_at: q.oldest_visible_at,
            queue: q.queue,
        }
    }
}

/// The window of [`Overview`]: `since` (the chart's start), its bucket width, and
/// `recent_since` (the throughput's window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverviewWindow {
    pub now: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub bucket_ms: i64,
    pub recent_since: DateTime<Utc>,
}

impl OverviewWindow {
    /// Width of a bucket of the last hour's chart.
    pub const BUCKET_MS: i64 = 5 * 60 * 1000;
    /// How far back task counts stay per minute (the chart reads the last hour); older minutes
    /// are folded into one total per state.
    pub const KEPT_MS: i64 = 2 * 60 * 60 * 1000;

    /// The dashboard's window at `now`: the last hour in twelve 5-minute buckets, starting on
    /// a whole minute (the counts are kept per minute) so that the last bucket ends with the
    /// current minute, and the last 5 minutes for the throughput.
    pub fn last_hour(now: DateTime<Utc>) -> Self {
        let minute_ms = now.timestamp_millis().div_euclid(60_000) * 60_000;
        let since = DateTime::<Utc>::from_timestamp_millis(minute_ms)
            .unwrap_or(now)
            .checked_sub_signed(chrono::Duration::minutes(59))
            .unwrap_or(now);
        Self {
            now,
            since,
            bucket_ms: Self::BUCKET_MS,
            recent_since: now - chrono::Duration::minutes(5),
        }
    }
}

/// The first writes of applying a batch of outcomes (see [`super::StoreTx::apply_outcome_writes`]).
#[derive(Debug, Clone, Copy)]
pub struct OutcomeWrites<'a> {
    pub changes: &'a [StepChange],
    pub transitions: &'a [TransitionRecord],
    pub delete: &'a [MessageRef],
    /// Succeeded steps whose children's pending-parent counters go down.
    pub released_parents: &'a [Uuid],
}

/// The second writes of applying a batch of outcomes, and the reads of the steps it claims
/// (see [`super::StoreTx::apply_followup_writes`]).
#[derive(Debug, Clone, Copy)]
pub struct FollowupWrites<'a> {
    pub changes: &'a [StepChange],
    pub transitions: &'a [TransitionRecord],
    pub send: &'a [OutgoingMessage],
    pub deltas: &'a [TaskDelta],
    /// Tasks and steps whose claim inputs to read (see [`super::StoreTx::claim_inputs`]).
    pub input_tasks: &'a [Uuid],
    pub input_steps: &'a [Uuid],
}

/// What [`FollowupWrites`] did and read.
#[derive(Debug, Clone, Default)]
pub struct Followup {
    /// Steps whose change applied.
    pub applied: Vec<Uuid>,
    /// References of the sent messages, in input order.
    pub sent: Vec<MessageRef>,
    /// Task counters after the deltas.
    pub counters: Vec<TaskCounters>,
    pub inputs: Vec<TaskInput>,
    pub dependency_results: Vec<DependencyResult>,
}

/// Why a task is in the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DlqReason {
    /// A step failed with retryable errors until it ran out of attempts.
    MaxRetriesExceeded,
    /// A step failed with a permanent error.
    PermanentFailure,
    /// The task made no progress for longer than its lifecycle allows.
    StalenessTimeout,
    /// Its steps waited on a queue that no live worker serves.
    WorkerUnavailable,
    /// An operator put it there.
    Manual,
}

impl DlqReason {
    pub const ALL: &'static [DlqReason] = &[
        DlqReason::MaxRetriesExceeded,
        DlqReason::PermanentFailure,
        DlqReason::StalenessTimeout,
        DlqReason::WorkerUnavailable,
        DlqReason::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::MaxRetriesExceeded => "max_retries_exceeded",
            DlqReason::PermanentFailure => "permanent_failure",
            DlqReason::StalenessTimeout => "staleness_timeout",
            DlqReason::WorkerUnavailable => "worker_unavailable",
            DlqReason::Manual => "manual",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == name)
    }
}

/// Where an investigation of a DLQ entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DlqStatus {
    Pending,
    Investigating,
    ManuallyResolved,
    PermanentlyFailed,
    Cancelled,
}

impl DlqStatus {
    pub const ALL: &'static [DlqStatus] = &[
        DlqStatus::Pending,
        DlqStatus::Investigating,
        DlqStatus::ManuallyResolved,
        DlqStatus::PermanentlyFailed,
        DlqStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DlqStatus::Pending => "pending",
            DlqStatus::Investigating => "investigating",
            DlqStatus::ManuallyResolved => "manually_resolved",
            DlqStatus::PermanentlyFailed => "permanently_failed",
            DlqStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == name)
    }

    /// `pending` and `investigating`: a task has at most one open entry.
    pub fn is_open(self) -> bool {
        matches!(self, DlqStatus::Pending | DlqStatus::Investigating)
    }
}

/// A DLQ entry to write, in the transaction that makes its task stuck. The backend takes the
/// snapshot (task, steps, template identity) from the rows as they are then.
#[derive(Debug, Clone)]
pub struct NewDlqEntry {
    pub entry_uuid: Uuid,
    pub task_uuid: Uuid,
    /// `None`: `permanent_failure` if a failed step's last error is not retryable, else
    /// `max_retries_exceeded` (decided from the rows, by the backend).
    pub reason: Option<DlqReason>,
    pub task_state: TaskState,
    /// The first note (who put it there and why), if any.
    pub note: Option<DlqNote>,
}

/// One note of an investigation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqNote {
    pub by: String,
    pub text: String,
    pub at: DateTime<Utc>,
    /// The status the entry moved to with this note, if it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A dead-letter queue entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqEntry {
    pub entry_uuid: Uuid,
    pub task_uuid: Uuid,
    pub reason: String,
    /// The task's state when it entered.
    pub task_state: String,
    /// The task, its steps (state, attempts, last error) and its template, when it entered.
    pub snapshot: Value,
    pub status: String,
    pub notes: Vec<DlqNote>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The task's priority now (part of the investigation queue's score).
    pub task_priority: i32,
}

/// Filter for listing DLQ entries, newest first.
#[derive(Debug, Clone, Default)]
pub struct DlqFilter {
    pub status: Option<DlqStatus>,
    /// Only `pending` and `investigating` entries.
    pub open_only: bool,
    pub reason: Option<DlqReason>,
    pub task_uuid: Option<Uuid>,
    /// At most this many (default 100).
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Entries counted by reason and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqCount {
    pub reason: String,
    pub status: String,
    pub count: i64,
}

/// An unfinished task, as the staleness detector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTask {
    pub task_uuid: Uuid,
    pub state: TaskState,
    pub template_id: i64,
    pub priority: i32,
    /// Its last progress (any step or counter change).
    pub updated_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A dead-letter entry as written: what `dlq.entry_created` announces.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertedDlqEntry {
    pub entry_uuid: Uuid,
    pub task_uuid: Uuid,
    pub reason: String,
}

/// One queue's messages, for the depth and age gauges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStats {
    pub queue: String,
    /// Messages a claim could take now.
    pub visible: i64,
    /// Messages hidden by a lease (claimed and running) or a retry delay.
    pub hidden: i64,
    /// When the oldest visible message was enqueued.
    pub oldest_visible_at: Option<DateTime<Utc>>,
}

/// A worker process, as registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub registration_uuid: Uuid,
    pub worker_id: String,
    pub host: String,
    pub pid: i32,
    pub language: String,
    pub queues: Vec<String>,
    pub concurrency: i32,
    pub in_flight: i32,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}
