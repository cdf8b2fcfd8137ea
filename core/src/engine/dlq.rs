//! The dead-letter queue (an investigation record of tasks that need a human), the staleness
//! detector that puts stuck tasks there, and the registry of live workers.
//!
//! Entries are written in the transaction that makes a task stuck: the step's final failure
//! (`dispatch::finalize_tasks`), the staleness detector's decision, or an operator's. A task has
//! at most one open entry (`pending` or `investigating`); the others are history.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::dispatch::{retrying, Effects};
use super::{CompiledTemplate, Tasker};
use crate::error::{Result, TaskerError};
use crate::limits;
use crate::state::{TaskState, TaskTrigger};
use crate::store::*;

/// When a task counts as stuck, by what it is doing. A template's `lifecycle:` block overrides
/// them (`max_steps_in_process_minutes`, `max_waiting_for_dependencies_minutes`,
/// `max_waiting_for_retry_minutes`, `max_duration_minutes`; fractions allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalenessThresholds {
    /// No progress while its steps run (and any other unfinished state).
    pub steps_in_process: Duration,
    pub waiting_for_dependencies: Duration,
    pub waiting_for_retry: Duration,
    /// Since creation, whatever it is doing.
    pub max_duration: Duration,
}

impl Default for StalenessThresholds {
    fn default() -> Self {
        Self {
            steps_in_process: Duration::from_secs(60 * 60),
            waiting_for_dependencies: Duration::from_secs(60 * 60),
            waiting_for_retry: Duration::from_secs(60 * 60),
            max_duration: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl StalenessThresholds {
    /// These thresholds with a template's `lifecycle:` overrides. Values that are not positive
    /// numbers of minutes are ignored (registration keeps unknown fields as they are).
    pub fn for_template(&self, template: &CompiledTemplate) -> Self {
        let lifecycle = template.template.lifecycle.as_ref();
        let minutes = |key: &str, default: Duration| {
            lifecycle
                .and_then(|l| l.get(key))
                .and_then(Value::as_f64)
                .filter(|m| m.is_finite() && *m > 0.0 && *m < 1e9)
                .map_or(default, |m| Duration::from_secs_f64(m * 60.0))
        };
        Self {
            steps_in_process: minutes("max_steps_in_process_minutes", self.steps_in_process),
            waiting_for_dependencies: minutes("max_waiting_for_dependencies_minutes", self.waiting_for_dependencies),
            waiting_for_retry: minutes("max_waiting_for_retry_minutes", self.waiting_for_retry),
            max_duration: minutes("max_duration_minutes", self.max_duration),
        }
    }

    fn for_state(&self, state: TaskState) -> Duration {
        match state {
            TaskState::WaitingForDependencies => self.waiting_for_dependencies,
            TaskState::WaitingForRetry => self.waiting_for_retry,
            _ => self.steps_in_process,
        }
    }
}

/// How the engine watches for stuck work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOptions {
    pub staleness: StalenessThresholds,
    /// How often the orchestrator looks for stale tasks and unserved queues.
    pub detector_interval: Duration,
    /// A queue whose oldest visible message waited this long with no live worker serving it
    /// puts its tasks in the DLQ as `worker_unavailable`.
    pub worker_unavailable_after: Duration,
    /// How often workers heartbeat; one missing three in a row is no longer live.
    pub heartbeat_interval: Duration,
    /// Rows the orchestrator handles per statement (due retries, overdue attempts, timers); a
    /// full batch loops again at once.
    pub maintenance_batch: i64,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        Self {
            staleness: StalenessThresholds::default(),
            detector_interval: Duration::from_secs(30),
            worker_unavailable_after: Duration::from_secs(10 * 60),
            heartbeat_interval: Duration::from_secs(10),
            maintenance_batch: 500,
        }
    }
}

/// How close an unfinished task is to its staleness threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Under 80 % of its threshold.
    Healthy,
    /// 80 % or more.
    Warning,
    /// Past it: the detector puts it in the DLQ.
    Stale,
}

/// One unfinished task in the staleness report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskHealth {
    pub task_uuid: Uuid,
    pub state: String,
    pub health: Health,
    /// Time since its last progress.
    pub idle_ms: u64,
    /// The threshold for its state.
    pub threshold_ms: u64,
    /// Time since creation, and the task's limit.
    pub age_ms: u64,
    pub max_duration_ms: u64,
}

/// A DLQ entry in the investigation queue, with its priority score (highest first): the
/// reason's weight, plus a point per hour waited, plus the task's priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedDlqEntry {
    pub score: f64,
    #[serde(flatten)]
    pub entry: DlqEntry,
}

/// DLQ entries counted by reason and by status.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DlqStats {
    pub total: i64,
    pub open: i64,
    pub by_reason: BTreeMap<String, i64>,
    pub by_status: BTreeMap<String, i64>,
    pub counts: Vec<DlqCount>,
}

/// A worker process, with whether it is alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    #[serde(flatten)]
    pub record: WorkerRecord,
    /// Heartbeating and not stopped.
    pub live: bool,
}

fn reason_weight(reason: &str) -> f64 {
    match DlqReason::parse(reason) {
        Some(DlqReason::PermanentFailure) => 40.0,
        Some(DlqReason::MaxRetriesExceeded) => 30.0,
        Some(DlqReason::WorkerUnavailable) => 25.0,
        Some(DlqReason::StalenessTimeout) => 20.0,
        Some(DlqReason::Manual) | None => 10.0,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn since(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or(Duration::ZERO)
}

fn before(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Tasker {
    /// DLQ entries, newest first.
    pub async fn list_dlq(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>> {
        if let Some(limit) = filter.limit.filter(|l| *l < 1) {
            return Err(TaskerError::InvalidArgument(format!(
                "limit must be at least 1, got {limit}"
            )));
        }
        if let Some(offset) = filter.offset.filter(|o| *o < 0) {
            return Err(TaskerError::InvalidArgument(format!(
                "offset must not be negative, got {offset}"
            )));
        }
        self.store().list_dlq(filter).await
    }

    /// One DLQ entry.
    pub async fn get_dlq_entry(&self, entry_uuid: Uuid) -> Result<DlqEntry> {
        self.store()
            .dlq_entry(entry_uuid)
            .await?
            .ok_or(TaskerError::DlqEntryNotFound(entry_uuid))
    }

    /// One DLQ entry.
    #[deprecated(note = "use get_dlq_entry (the name every language uses); removed in the next release")]
    pub async fn dlq_entry(&self, entry_uuid: Uuid) -> Result<DlqEntry> {
        self.get_dlq_entry(entry_uuid).await
    }

    /// Records an investigation step: a note by `by`, and with `status`, the entry's new status
    /// (closing it with `manually_resolved`, `permanently_failed` or `cancelled`). Re-opening an
    /// entry while its task has another open one is refused.
    pub async fn update_dlq_entry(
        &self,
        entry_uuid: Uuid,
        status: Option<DlqStatus>,
        note: &str,
        by: &str,
    ) -> Result<DlqEntry> {
        let current = self.get_dlq_entry(entry_uuid).await?;
        if let Some(next) = status.filter(|s| s.is_open()) {
            let other_open = self
                .list_dlq(&DlqFilter {
                    task_uuid: Some(current.task_uuid),
                    open_only: true,
                    ..DlqFilter::default()
                })
                .await?
                .into_iter()
                .any(|e| e.entry_uuid != entry_uuid);
            if other_open {
                return Err(TaskerError::InvalidState(format!(
                    "task {} already has an open DLQ entry; close it before moving this one to {}",
                    current.task_uuid,
                    next.as_str()
                )));
            }
        }
        let note = DlqNote {
            by: limits::clean_text(by),
            text: limits::clean_text(note),
            at: Utc::now(),
            status: status.map(|s| s.as_str().to_owned()),
        };
        let updated = self
            .store()
            .update_dlq_entry(entry_uuid, status, &note, note.at)
            .await?
            .ok_or(TaskerError::DlqEntryNotFound(entry_uuid))?;
        if let Some(closed) = status.filter(|s| !s.is_open() && current.status != s.as_str()) {
            self.publish_after(
                "dlq.entry_resolved",
                Some(updated.task_uuid),
                json!({"entry_uuid": entry_uuid.to_string(), "status": closed.as_str(), "resolved_by": note.by}),
            )
            .await;
        }
        Ok(updated)
    }

    /// Puts a task in the DLQ by hand (reason `manual`); nothing happens to the task. Refused
    /// when it already has an open entry.
    pub async fn add_to_dlq(&self, task_uuid: Uuid, by: &str, note: &str) -> Result<DlqEntry> {
        let task = self.task_summary(task_uuid).await?;
        let state = task
            .task_state()
            .ok_or_else(|| TaskerError::Corrupt(format!("task {task_uuid} has unknown state '{}'", task.state)))?;
        let now = Utc::now();
        let entry_uuid = Uuid::now_v7();
        let mut tx = self.store().begin().await?;
        let written = tx
            .insert_dlq_entries(
                &[NewDlqEntry {
                    entry_uuid,
                    task_uuid,
                    reason: Some(DlqReason::Manual),
                    task_state: state,
                    note: Some(DlqNote {
                        by: limits::clean_text(by),
                        text: limits::clean_text(note),
                        at: now,
                        status: None,
                    }),
                }],
                now,
            )
            .await?;
        let refused = written.is_empty();
        // (The task row is not locked here: this entry's event may be sequenced a little out of
        // order with a change of the task committing at the same moment.)
        let effects = Effects {
            events: crate::events::dlq_entries_created(&written, state.as_str()),
            ..Effects::default()
        };
        self.commit_effects(tx, effects).await?;
        if refused {
            return Err(TaskerError::InvalidState(format!(
                "task {task_uuid} already has an open DLQ entry"
            )));
        }
        self.get_dlq_entry(entry_uuid).await
    }

    /// Counts by reason and status.
    pub async fn dlq_stats(&self) -> Result<DlqStats> {
        let counts = self.store().dlq_counts().await?;
        let mut stats = DlqStats::default();
        for c in &counts {
            stats.total += c.count;
            if DlqStatus::parse(&c.status).is_some_and(DlqStatus::is_open) {
                stats.open += c.count;
            }
            *stats.by_reason.entry(c.reason.clone()).or_default() += c.count;
            *stats.by_status.entry(c.status.clone()).or_default() += c.count;
        }
        stats.counts = counts;
        Ok(stats)
    }

    /// The open entries, most urgent first (see [`QueuedDlqEntry`]), at most `limit`.
    pub async fn dlq_queue(&self, limit: usize) -> Result<Vec<QueuedDlqEntry>> {
        const CANDIDATES: i64 = 10_000;
        let now = Utc::now();
        let open = self
            .list_dlq(&DlqFilter {
                open_only: true,
                limit: Some(CANDIDATES),
                ..DlqFilter::default()
            })
            .await?;
        let mut queued: Vec<QueuedDlqEntry> = open
            .into_iter()
            .map(|entry| {
                let hours = since(now, entry.created_at).as_secs_f64() / 3600.0;
                QueuedDlqEntry {
                    score: reason_weight(&entry.reason) + hours + f64::from(entry.task_priority),
                    entry,
                }
            })
            .collect();
        queued.sort_by(|a, b| b.score.total_cmp(&a.score));
        queued.truncate(limit);
        Ok(queued)
    }

    /// Every unfinished task whose idle time reached at least `min_ratio` of its threshold
    /// (0.0: all of them), most overdue first, at most `limit`. One indexed read of the
    /// unfinished tasks idle for long enough; finished history is never read.
    pub async fn staleness_report(&self, min_ratio: f64, limit: usize) -> Result<Vec<TaskHealth>> {
        let now = Utc::now();
        let defaults = self.inner.recovery.staleness;
        // NaN and negatives read as 0 (every task), more than 1 as 1.
        let ratio = if min_ratio.is_nan() {
            0.0
        } else {
            min_ratio.clamp(0.0, 1.0)
        };
        // One read per set of templates with the same thresholds, each with its own cut-offs:
        // a short-threshold template's stale tasks are never crowded out by older ones of
        // templates that allow more.
        let mut groups: BTreeMap<(Duration, Duration), Vec<i64>> = BTreeMap::new();
        for row in self.store().list_templates().await? {
            let thresholds = match self.template_by_id(row.id).await {
                Ok(t) => defaults.for_template(&t),
                Err(_) => defaults,
            };
            let idle = thresholds
                .steps_in_process
                .min(thresholds.waiting_for_dependencies)
                .min(thresholds.waiting_for_retry);
            groups.entry((idle, thresholds.max_duration)).or_default().push(row.id);
        }
        let per_read = i64::try_from(limit.max(1).saturating_mul(4)).unwrap_or(i64::MAX);
        let mut open = Vec::new();
        for ((idle, duration), ids) in groups {
            open.extend(
                self.store()
                    .open_tasks(
                        &ids,
                        before(now, idle.mul_f64(ratio)),
                        before(now, duration.mul_f64(ratio)),
                        per_read,
                    )
                    .await?,
            );
        }
        let mut report = Vec::new();
        for task in open {
            let thresholds = match self.template_by_id(task.template_id).await {
                Ok(t) => defaults.for_template(&t),
                Err(_) => defaults,
            };
            let idle = since(now, task.updated_at);
            let age = since(now, task.created_at);
            let threshold = thresholds.for_state(task.state);
            let ratio = (idle.as_secs_f64() / threshold.as_secs_f64().max(1e-9))
                .max(age.as_secs_f64() / thresholds.max_duration.as_secs_f64().max(1e-9));
            if ratio < min_ratio {
                continue;
            }
            let health = if ratio >= 1.0 {
                Health::Stale
            } else if ratio >= 0.8 {
                Health::Warning
            } else {
                Health::Healthy
            };
            report.push((
                ratio,
                TaskHealth {
                    task_uuid: task.task_uuid,
                    state: task.state.as_str().to_owned(),
                    health,
                    idle_ms: millis(idle),
                    threshold_ms: millis(threshold),
                    age_ms: millis(age),
                    max_duration_ms: millis(thresholds.max_duration),
                },
            ));
        }
        report.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(report.into_iter().take(limit).map(|(_, h)| h).collect())
    }

    /// The staleness detector: moves every stale task to `error` with a `staleness_timeout`
    /// DLQ entry, in one transaction per task. Returns how many. Run by the orchestrator loop.
    pub async fn detect_stale_tasks(&self) -> Result<usize> {
        let stale: Vec<TaskHealth> = self
            .staleness_report(1.0, 500)
            .await?
            .into_iter()
            .filter(|h| h.health == Health::Stale)
            .collect();
        let mut failed = 0;
        for h in stale {
            if retrying("staleness", || self.fail_stale_task(&h)).await? {
                failed += 1;
            }
        }
        Ok(failed)
    }

    async fn fail_stale_task(&self, h: &TaskHealth) -> Result<bool> {
        let Some(state) = crate::state::NamedState::parse(&h.state) else {
            return Ok(false);
        };
        let now = Utc::now();
        let metadata = json!({
            "reason": "staleness_timeout",
            "idle_ms": h.idle_ms,
            "threshold_ms": h.threshold_ms,
            "age_ms": h.age_ms,
        });
        let mut effects = Effects::default();
        let mut tx = self.store().begin().await?;
        let changed = self
            .walk_tasks(
                tx.as_mut(),
                &[h.task_uuid],
                state,
                error_triggers(state),
                metadata,
                now,
                &mut effects,
            )
            .await?;
        if changed.is_empty() {
            // It moved on meanwhile.
            tx.rollback().await?;
            return Ok(false);
        }
        let written = tx
            .insert_dlq_entries(
                &[NewDlqEntry {
                    entry_uuid: Uuid::now_v7(),
                    task_uuid: h.task_uuid,
                    reason: Some(DlqReason::StalenessTimeout),
                    task_state: TaskState::Error,
                    note: Some(DlqNote {
                        by: "tasker".into(),
                        text: format!(
                            "no progress for {} ms in {} (threshold {} ms), {} ms since creation (limit {} ms)",
                            h.idle_ms, h.state, h.threshold_ms, h.age_ms, h.max_duration_ms
                        ),
                        at: now,
                        status: None,
                    }),
                }],
                now,
            )
            .await?;
        effects
            .events
            .extend(crate::events::dlq_entries_created(&written, TaskState::Error.as_str()));
        effects.finished_tasks.push(h.task_uuid);
        self.commit_effects(tx, effects).await?;
        tracing::warn!(task = %h.task_uuid, state = %h.state, idle_ms = h.idle_ms, "stale task moved to error and the DLQ");
        Ok(true)
    }

    /// Workers seen within the last hour (live ones first), with whether each is alive.
    pub async fn list_workers(&self) -> Result<Vec<WorkerInfo>> {
        let now = Utc::now();
        let live_since = before(now, self.inner.recovery.heartbeat_interval * 3);
        let mut workers: Vec<WorkerInfo> = self
            .store()
            .list_workers(before(now, Duration::from_secs(3600)))
            .await?
            .into_iter()
            .map(|record| WorkerInfo {
                live: record.stopped_at.is_none() && record.last_heartbeat_at >= live_since,
                record,
            })
            .collect();
        workers.sort_by_key(|w| !w.live);
        Ok(workers)
    }

    /// Puts the tasks waiting on a queue that no live worker serves (for longer than
    /// [`RecoveryOptions::worker_unavailable_after`]) in the DLQ as `worker_unavailable`, once per
    /// task. The tasks themselves carry on when a worker comes. Run by the orchestrator loop.
    pub async fn detect_unavailable_workers(&self) -> Result<usize> {
        let now = Utc::now();
        let served: BTreeSet<String> = self
            .list_workers()
            .await?
            .into_iter()
            .filter(|w| w.live)
            .flat_map(|w| w.record.queues)
            .collect();
        let mut queues = BTreeSet::new();
        for row in self.store().list_templates().await? {
            if let Ok(t) = self.template_by_id(row.id).await {
                queues.extend(t.template.steps.iter().map(|s| t.queue_of(s)));
            }
        }
        let waited_since = before(now, self.inner.recovery.worker_unavailable_after);
        let mut entries = Vec::new();
        for queue in queues.difference(&served) {
            for task_uuid in self.store().waiting_tasks(queue, waited_since, 100).await? {
                entries.push(NewDlqEntry {
                    entry_uuid: Uuid::now_v7(),
                    task_uuid,
                    reason: Some(DlqReason::WorkerUnavailable),
                    task_state: TaskState::StepsInProcess,
                    note: Some(DlqNote {
                        by: "tasker".into(),
                        text: format!("queue '{queue}' has steps waiting and no live worker"),
                        at: now,
                        status: None,
                    }),
                });
            }
        }
        if entries.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store().begin().await?;
        let written = tx.insert_dlq_entries(&entries, now).await?;
        let effects = Effects {
            events: crate::events::dlq_entries_created(&written, TaskState::StepsInProcess.as_str()),
            ..Effects::default()
        };
        self.commit_effects(tx, effects).await?;
        if !written.is_empty() {
            tracing::warn!(
                tasks = written.len(),
                "tasks waiting on queues with no live worker put in the DLQ"
            );
        }
        Ok(written.len())
    }
}

/// The walk of the state table from an unfinished `state` to `error`.
fn error_triggers(state: TaskState) -> &'static [TaskTrigger] {
    use TaskTrigger as T;
    match state {
        TaskState::Initializing | TaskState::EnqueuingSteps | TaskState::BlockedByFailures => &[T::Fail],
        TaskState::EvaluatingResults => &[T::Block, T::Fail],
        TaskState::Pending => &[T::Start, T::Fail],
        _ => &[T::EvaluateResults, T::Block, T::Fail],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::NamedState;

    #[test]
    fn every_unfinished_state_has_a_legal_path_to_error() {
        for &state in TaskState::ALL.iter().filter(|s| !s.is_terminal()) {
            let end = error_triggers(state)
                .iter()
                .try_fold(state, |at, &t| at.apply(t))
                .expect("legal");
            assert_eq!(end, TaskState::Error, "{state}");
        }
    }
}
