//! The API's request and response bodies, and their conversion from the engine's records.
//!
//! They mirror the core's records field by field rather than serialising those directly, for
//! two reasons: the OpenAPI document is generated from these types (the core stays free of
//! HTTP and schema dependencies), and redaction — a task's context and its steps' results are
//! withheld from a credential without `tasks:context_read` — happens in one place, here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasker_core::TemplateInfo;
use tasker_core::{DlqEntry, DlqStats, QueuedDlqEntry, StepDetail, TaskHealth, TaskSummary, Transition, WorkerInfo};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// `POST /v1/tasks`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateTaskBody {
    pub namespace: String,
    pub name: String,
    /// Highest registered version when absent.
    pub version: Option<String>,
    /// The task's input, checked against the template's `input_schema`.
    #[serde(default = "empty_object")]
    pub context: Value,
    pub initiator: Option<String>,
    pub source_system: Option<String>,
    pub reason: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub priority: i32,
    /// Creating again with the same key (for the same template) returns the first task (200).
    pub idempotency_key: Option<String>,
    /// A W3C `traceparent`: the task joins that trace. The request's `traceparent` header is
    /// used when the body has none.
    pub traceparent: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A task (its row).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskView {
    pub task_uuid: Uuid,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub state: String,
    /// `null` without `tasks:context_read`.
    pub context: Option<Value>,
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
    /// Present with `?include=steps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
    /// Present with `?include=transitions`: the task's own audit trail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Vec<TransitionView>>,
}

impl TaskView {
    pub fn new(t: TaskSummary, reads_context: bool) -> Self {
        Self {
            task_uuid: t.task_uuid,
            namespace: t.namespace,
            name: t.name,
            version: t.version,
            state: t.state,
            context: reads_context.then_some(t.context),
            initiator: t.initiator,
            source_system: t.source_system,
            reason: t.reason,
            tags: t.tags,
            priority: t.priority,
            correlation_id: t.correlation_id,
            idempotency_key: t.idempotency_key,
            total_steps: t.total_steps,
            completed_steps: t.completed_steps,
            active_steps: t.active_steps,
            failed_steps: t.failed_steps,
            created_at: t.created_at,
            updated_at: t.updated_at,
            completed_at: t.completed_at,
            steps: None,
            transitions: None,
        }
    }
}

/// A page of tasks.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<TaskView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A state transition from the audit trail.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransitionView {
    pub step_name: Option<String>,
    pub from_state: Option<String>,
    pub to_state: String,
    pub event: String,
    pub metadata: Value,
    pub most_recent: bool,
    pub created_at: DateTime<Utc>,
}

impl From<Transition> for TransitionView {
    fn from(t: Transition) -> Self {
        Self {
            step_name: t.step_name,
            from_state: t.from_state,
            to_state: t.to_state,
            event: t.event,
            metadata: t.metadata,
            most_recent: t.most_recent,
            created_at: t.created_at,
        }
    }
}

/// A workflow step with its attempts' errors.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepView {
    pub step_uuid: Uuid,
    pub name: String,
    pub queue: String,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub free_attempts: i32,
    pub retryable: bool,
    /// `null` without `tasks:context_read`.
    pub results: Option<Value>,
    pub last_error: Option<Value>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub first_attempted_at: Option<DateTime<Utc>>,
    pub last_attempted_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub dependencies: Vec<String>,
    pub created_by: Option<String>,
    pub batch: Option<Value>,
    /// `null` without `tasks:context_read`.
    pub checkpoint: Option<Value>,
    /// Every failed attempt's error, oldest first.
    pub errors: Vec<Value>,
    pub dependencies_satisfied: bool,
    pub retry_possible: bool,
    pub transitions: Vec<TransitionView>,
}

impl StepView {
    pub fn new(d: StepDetail, reads_context: bool) -> Self {
        let s = d.step;
        Self {
            step_uuid: s.step_uuid,
            name: s.name,
            queue: s.queue,
            state: s.state,
            attempts: s.attempts,
            max_attempts: s.max_attempts,
            free_attempts: s.free_attempts,
            retryable: s.retryable,
            results: if reads_context { s.results } else { None },
            last_error: s.last_error,
            next_retry_at: s.next_retry_at,
            created_at: s.created_at,
            first_attempted_at: s.first_attempted_at,
            last_attempted_at: s.last_attempted_at,
            completed_at: s.completed_at,
            dependencies: s.dependencies,
            created_by: s.created_by,
            batch: s.batch,
            checkpoint: if reads_context { s.checkpoint } else { None },
            errors: d.errors,
            dependencies_satisfied: d.dependencies_satisfied,
            retry_possible: d.retry_possible,
            transitions: d.transitions.into_iter().map(Into::into).collect(),
        }
    }
}

/// `PATCH /v1/tasks/{uuid}/workflow_steps/{step}`: an operator action.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct StepActionBody {
    pub action_type: StepActionType,
    /// Why; recorded in the audit trail with the credential's subject.
    pub reason: String,
    /// The step's result, for `complete_manually` (its dependents receive it).
    pub completion_data: Option<Value>,
}

/// What an operator does to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepActionType {
    ResetForRetry,
    ResolveManually,
    CompleteManually,
    Cancel,
}

/// `POST /v1/tasks/{uuid}/retry` (optional body).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct RetryBody {
    #[serde(default)]
    pub reason: Option<String>,
}

/// The task's DAG: nodes with their states and the edges between them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiagramView {
    pub task_uuid: Uuid,
    pub state: String,
    pub nodes: Vec<DiagramNode>,
    pub edges: Vec<DiagramEdge>,
    /// The same graph as Mermaid text.
    pub mermaid: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiagramNode {
    pub id: String,
    pub step_uuid: Uuid,
    pub name: String,
    pub state: String,
    pub attempts: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiagramEdge {
    pub from: String,
    pub to: String,
}

/// A registered template version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateSummaryView {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub step_count: usize,
    pub content_hash: String,
    pub source_path: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<TemplateInfo> for TemplateSummaryView {
    fn from(t: TemplateInfo) -> Self {
        Self {
            description: t.description,
            step_count: t.steps.len(),
            namespace: t.namespace,
            name: t.name,
            version: t.version,
            content_hash: t.content_hash,
            source_path: t.source_path,
            created_at: t.registered_at,
        }
    }
}

/// A template version in full.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateView {
    pub namespace: String,
    pub name: String,
    pub version: String,
    /// The template after the environment merge, as stored.
    pub definition: Value,
    /// The queues its steps are dispatched to.
    pub queues: Vec<String>,
}

/// What registering a template did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegisteredView {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub queues: Vec<String>,
    pub warnings: Vec<String>,
}

/// The outcome of `POST /v1/templates/validate`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ValidationView {
    pub valid: bool,
    /// `namespace/name@version` when it could be read.
    pub template: Option<String>,
    pub problems: Vec<Value>,
    pub warnings: Vec<Value>,
}

/// One note of a DLQ investigation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DlqNoteView {
    pub by: String,
    pub text: String,
    pub at: DateTime<Utc>,
    pub status: Option<String>,
}

/// A dead-letter queue entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DlqEntryView {
    pub entry_uuid: Uuid,
    pub task_uuid: Uuid,
    pub reason: String,
    pub task_state: String,
    /// The task, its steps and its template when it entered (contexts and results withheld
    /// without `tasks:context_read`).
    pub snapshot: Value,
    pub status: String,
    pub notes: Vec<DlqNoteView>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub task_priority: i32,
}

/// Removes every `context`, `results` and `checkpoint` member, at any depth.
fn redact_snapshot(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for key in ["context", "results", "checkpoint"] {
                if let Some(slot) = map.get_mut(key) {
                    *slot = Value::Null;
                }
            }
            map.values_mut().for_each(redact_snapshot);
        }
        Value::Array(items) => items.iter_mut().for_each(redact_snapshot),
        _ => {}
    }
}

impl DlqEntryView {
    pub fn new(e: DlqEntry, reads_context: bool) -> Self {
        let mut snapshot = e.snapshot;
        if !reads_context {
            redact_snapshot(&mut snapshot);
        }
        Self {
            entry_uuid: e.entry_uuid,
            task_uuid: e.task_uuid,
            reason: e.reason,
            task_state: e.task_state,
            snapshot,
            status: e.status,
            notes: e
                .notes
                .into_iter()
                .map(|n| DlqNoteView {
                    by: n.by,
                    text: n.text,
                    at: n.at,
                    status: n.status,
                })
                .collect(),
            resolved_by: e.resolved_by,
            resolved_at: e.resolved_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
            task_priority: e.task_priority,
        }
    }
}

/// An entry of the investigation queue with its urgency score (highest first).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueuedDlqView {
    pub score: f64,
    pub entry: DlqEntryView,
}

impl QueuedDlqView {
    pub fn new(q: QueuedDlqEntry, reads_context: bool) -> Self {
        Self {
            score: q.score,
            entry: DlqEntryView::new(q.entry, reads_context),
        }
    }
}

/// `PATCH /v1/dlq/entry/{uuid}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct DlqUpdateBody {
    /// The entry's new status, if it moves.
    pub status: Option<DlqStatusName>,
    /// The investigation note; recorded with the credential's subject.
    pub note: String,
}

/// Where an investigation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DlqStatusName {
    Pending,
    Investigating,
    ManuallyResolved,
    PermanentlyFailed,
    Cancelled,
}

impl DlqStatusName {
    pub fn core(self) -> tasker_core::DlqStatus {
        use tasker_core::DlqStatus as S;
        match self {
            DlqStatusName::Pending => S::Pending,
            DlqStatusName::Investigating => S::Investigating,
            DlqStatusName::ManuallyResolved => S::ManuallyResolved,
            DlqStatusName::PermanentlyFailed => S::PermanentlyFailed,
            DlqStatusName::Cancelled => S::Cancelled,
        }
    }
}

/// Why a task is in the DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DlqReasonName {
    MaxRetriesExceeded,
    PermanentFailure,
    StalenessTimeout,
    WorkerUnavailable,
    Manual,
}

impl DlqReasonName {
    pub fn core(self) -> tasker_core::DlqReason {
        use tasker_core::DlqReason as R;
        match self {
            DlqReasonName::MaxRetriesExceeded => R::MaxRetriesExceeded,
            DlqReasonName::PermanentFailure => R::PermanentFailure,
            DlqReasonName::StalenessTimeout => R::StalenessTimeout,
            DlqReasonName::WorkerUnavailable => R::WorkerUnavailable,
            DlqReasonName::Manual => R::Manual,
        }
    }
}

/// `GET /v1/dlq` filters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DlqQuery {
    pub status: Option<DlqStatusName>,
    pub reason: Option<DlqReasonName>,
    /// Only `pending` and `investigating` entries.
    #[serde(default)]
    pub open_only: bool,
    /// 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<i64>,
}

/// DLQ counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DlqStatsView {
    pub total: i64,
    pub open: i64,
    pub by_reason: std::collections::BTreeMap<String, i64>,
    pub by_status: std::collections::BTreeMap<String, i64>,
    pub counts: Vec<DlqCountView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DlqCountView {
    pub reason: String,
    pub status: String,
    pub count: i64,
}

impl From<DlqStats> for DlqStatsView {
    fn from(s: DlqStats) -> Self {
        Self {
            total: s.total,
            open: s.open,
            by_reason: s.by_reason,
            by_status: s.by_status,
            counts: s
                .counts
                .into_iter()
                .map(|c| DlqCountView {
                    reason: c.reason,
                    status: c.status,
                    count: c.count,
                })
                .collect(),
        }
    }
}

/// How close an unfinished task is to its staleness threshold.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskHealthView {
    pub task_uuid: Uuid,
    pub state: String,
    /// `healthy`, `warning` or `stale`.
    pub health: String,
    pub idle_ms: u64,
    pub threshold_ms: u64,
    pub age_ms: u64,
    pub max_duration_ms: u64,
}

impl From<TaskHealth> for TaskHealthView {
    fn from(h: TaskHealth) -> Self {
        let health = serde_json::to_value(h.health)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Self {
            task_uuid: h.task_uuid,
            state: h.state,
            health,
            idle_ms: h.idle_ms,
            threshold_ms: h.threshold_ms,
            age_ms: h.age_ms,
            max_duration_ms: h.max_duration_ms,
        }
    }
}

/// A worker process.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerView {
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
    /// Heartbeating and not stopped.
    pub live: bool,
}

impl From<WorkerInfo> for WorkerView {
    fn from(w: WorkerInfo) -> Self {
        let r = w.record;
        Self {
            registration_uuid: r.registration_uuid,
            worker_id: r.worker_id,
            host: r.host,
            pid: r.pid,
            language: r.language,
            queues: r.queues,
            concurrency: r.concurrency,
            in_flight: r.in_flight,
            started_at: r.started_at,
            last_heartbeat_at: r.last_heartbeat_at,
            stopped_at: r.stopped_at,
            live: w.live,
        }
    }
}

/// One event of the catalog.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventInfoView {
    pub name: String,
    pub category: String,
    pub description: String,
    pub payload_schema: Value,
    pub example: Value,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthView {
    pub status: String,
}

/// `GET /health/ready`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadyView {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Each check's outcome (`ok` or why not).
    pub checks: std::collections::BTreeMap<String, String>,
}

/// `GET /v1/auth/whoami`: the credential the request carried, and what it may do.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WhoamiView {
    /// The operator recorded for this credential's actions (`anonymous` when auth is off).
    pub subject: String,
    /// `anonymous`, `api_key` or `jwt`.
    pub method: String,
    /// The credential's permissions, wildcards expanded.
    pub permissions: Vec<String>,
    pub auth_enabled: bool,
}

/// `GET /v1/stats`: what the dashboard's overview shows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsView {
    pub generated_at: DateTime<Utc>,
    /// Every task, counted by its current state.
    pub tasks_by_state: std::collections::BTreeMap<String, i64>,
    /// The last hour in twelve 5-minute buckets, oldest first: tasks created in each, by the
    /// state they are in now.
    pub last_hour: Vec<StatsBucketView>,
    /// Tasks completed in the last hour.
    pub completed_last_hour: i64,
    /// Tasks completed per minute, over the last 5 minutes.
    pub completed_per_minute: f64,
    /// Queues with messages in them.
    pub queues: Vec<QueueStatsView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsBucketView {
    pub start: DateTime<Utc>,
    pub created: i64,
    pub complete: i64,
    pub error: i64,
    /// Created in this bucket and now cancelled or resolved manually.
    pub other_finished: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueStatsView {
    pub queue: String,
    /// Messages in the queue, claimed or not.
    pub depth: i64,
    /// Messages a worker could claim now.
    pub visible: i64,
    /// How long the oldest message has been in the queue (ms); `null` when empty.
    pub oldest_age_ms: Option<i64>,
}

impl StatsView {
    pub fn new(o: tasker_core::Overview, now: DateTime<Utc>) -> Self {
        const BUCKETS: i64 = 12;
        const BUCKET_MS: i64 = tasker_core::OverviewWindow::BUCKET_MS;
        // The window `Tasker::overview` read (buckets start on a whole minute).
        let since = tasker_core::OverviewWindow::last_hour(now).since;
        let mut last_hour: Vec<StatsBucketView> = (0..BUCKETS)
            .map(|i| StatsBucketView {
                start: since + chrono::Duration::milliseconds(i * BUCKET_MS),
                created: 0,
                complete: 0,
                error: 0,
                other_finished: 0,
            })
            .collect();
        for b in o.recent {
            // A task created in the instant between the two reads lands in the last bucket.
            let i = usize::try_from(b.bucket.clamp(0, BUCKETS - 1)).unwrap_or(0);
            let bucket = &mut last_hour[i];
            bucket.created += b.count;
            match b.state.as_str() {
                "complete" => bucket.complete += b.count,
                "error" => bucket.error += b.count,
                "cancelled" | "resolved_manually" => bucket.other_finished += b.count,
                _ => {}
            }
        }
        Self {
            generated_at: now,
            tasks_by_state: o.tasks_by_state.into_iter().map(|c| (c.state, c.count)).collect(),
            last_hour,
            completed_last_hour: o.completed_since,
            completed_per_minute: o.completed_recently as f64 / 5.0,
            queues: o
                .queues
                .into_iter()
                .map(|q| QueueStatsView {
                    oldest_age_ms: q.oldest_enqueued_at.map(|at| (now - at).num_milliseconds().max(0)),
                    queue: q.queue,
                    depth: q.depth,
                    visible: q.visible,
                })
                .collect(),
        }
    }
}
