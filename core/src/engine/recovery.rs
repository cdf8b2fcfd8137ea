//! Recovering failed work: operator actions on steps and tasks.
//!
//! Each action is one transaction that locks the task row and the step rows (the engine's one
//! lock order, through `lock_steps`), checks the current state, and writes a compare-and-swap
//! with its audit row naming who and why. A worker's late completion of an attempt an operator
//! reset, resolved or cancelled loses at its own compare-and-swap (the step is no longer
//! `in_progress` at that attempt). When an action lets a failed task progress, the task is
//! re-opened (`error` → `enqueuing_steps` → `steps_in_process`); when the task then finishes,
//! its open dead-letter entry is closed with the action's reason.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::dispatch::{close_task, empty, finish_change, lock_map, message_body, retrying, Effects, Plan, TaskClosing};
use super::{EngineEvent, Tasker};
use crate::error::{Result, TaskerError};
use crate::limits;
use crate::state::{StepState, StepTrigger, TaskState, TaskTrigger};
use crate::store::*;

/// What an operator does to a step.
#[derive(Debug, Clone, PartialEq)]
enum StepAction {
    Reset,
    Resolve,
    Complete { result: Value, metadata: Value },
    Cancel,
}

impl StepAction {
    fn name(&self) -> &'static str {
        match self {
            StepAction::Reset => "reset",
            StepAction::Resolve => "resolved manually",
            StepAction::Complete { .. } => "completed manually",
            StepAction::Cancel => "cancelled",
        }
    }

    /// The states it may start from, for the error message.
    fn allowed(&self) -> &'static [StepState] {
        use StepState as S;
        match self {
            StepAction::Reset => &[S::Error, S::WaitingForRetry, S::Enqueued],
            StepAction::Resolve | StepAction::Complete { .. } => &[
                S::Error,
                S::Pending,
                S::Enqueued,
                S::InProgress,
                S::EnqueuedForOrchestration,
                S::WaitingForRetry,
            ],
            StepAction::Cancel => &[
                S::Pending,
                S::Enqueued,
                S::InProgress,
                S::EnqueuedForOrchestration,
                S::WaitingForRetry,
            ],
        }
    }

    /// Whether it lets a failed task progress (so the task re-opens).
    fn reopens(&self) -> bool {
        !matches!(self, StepAction::Cancel)
    }
}

/// A step as an operator sees it: its row, every attempt's error, and what it is waiting for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDetail {
    #[serde(flatten)]
    pub step: StepSummary,
    /// The error of every failed attempt, oldest first (`last_error` is the newest).
    pub errors: Vec<Value>,
    /// Whether every dependency is `complete` or `resolved_manually`.
    pub dependencies_satisfied: bool,
    /// Whether the engine will run it again by itself: it waits for a retry, or it is still
    /// open with attempts left.
    pub retry_possible: bool,
    /// The step's audit trail.
    pub transitions: Vec<Transition>,
}

fn satisfies(state: &str) -> bool {
    matches!(state, "complete" | "resolved_manually")
}

impl StepDetail {
    fn from_detail(detail: &TaskDetail, step: &StepSummary) -> Self {
        let transitions: Vec<Transition> = detail
            .step_transitions
            .iter()
            .filter(|t| t.step_name.as_deref() == Some(step.name.as_str()))
            .cloned()
            .collect();
        let errors = transitions
            .iter()
            .filter_map(|t| t.metadata.get("error").cloned())
            .collect();
        let dependencies_satisfied = step
            .dependencies
            .iter()
            .all(|d| detail.step(d).is_some_and(|p| satisfies(&p.state)));
        let attempts_left = step.attempts.saturating_sub(step.free_attempts) < step.max_attempts;
        let retry_possible = step.state == StepState::WaitingForRetry.as_str()
            || (step.retryable
                && attempts_left
                && matches!(step.state.as_str(), "pending" | "enqueued" | "in_progress"));
        Self {
            step: step.clone(),
            errors,
            dependencies_satisfied,
            retry_possible,
            transitions,
        }
    }
}

/// Who acts and why, recorded in every audit row an action writes.
fn operator_metadata(by: &str, reason: &str) -> Value {
    json!({ "by": limits::clean_text(by), "reason": limits::clean_text(reason) })
}

impl Tasker {
    /// A step of a task, by name or uuid, with every attempt's error.
    pub async fn get_step(&self, task_uuid: Uuid, step: &str) -> Result<StepDetail> {
        let detail = self.get_task(task_uuid).await?;
        let found = find_summary(&detail, step).ok_or_else(|| TaskerError::StepNotFound {
            task_uuid,
            step: step.to_owned(),
        })?;
        Ok(StepDetail::from_detail(&detail, found))
    }

    /// Every step of a task (in template order), as [`Tasker::get_step`].
    pub async fn list_steps(&self, task_uuid: Uuid) -> Result<Vec<StepDetail>> {
        let detail = self.get_task(task_uuid).await?;
        Ok(detail
            .steps
            .iter()
            .map(|s| StepDetail::from_detail(&detail, s))
            .collect())
    }

    /// Sends an `error` (or stuck `waiting_for_retry` / `enqueued`) step back to `pending` with
    /// a fresh retry budget; it is enqueued at once when its dependencies allow, and a failed
    /// task re-opens. Attempt numbers keep growing, so the old attempt stays fenced off.
    pub async fn reset_step(&self, task_uuid: Uuid, step: &str, by: &str, reason: &str) -> Result<StepDetail> {
        self.step_action(task_uuid, step, StepAction::Reset, by, reason).await
    }

    /// Marks a step `resolved_manually` (it satisfies its dependents, which are released).
    pub async fn resolve_step_manually(
        &self,
        task_uuid: Uuid,
        step: &str,
        by: &str,
        reason: &str,
    ) -> Result<StepDetail> {
        self.step_action(task_uuid, step, StepAction::Resolve, by, reason).await
    }

    /// Completes a step with the operator's `result`, which its dependents receive. A result
    /// over the JSON limits is refused. For a decision or batchable step, the result's outcome
    /// creates steps as the handler's would.
    pub async fn complete_step_manually(
        &self,
        task_uuid: Uuid,
        step: &str,
        result: Value,
        metadata: Value,
        by: &str,
        reason: &str,
    ) -> Result<StepDetail> {
        for (value, what) in [(&result, "the result"), (&metadata, "the metadata")] {
            limits::check(value).map_err(|v| TaskerError::InvalidArgument(v.describe(what)))?;
        }
        let (mut result, mut metadata) = (result, metadata);
        limits::replace_nul(&mut result);
        limits::replace_nul(&mut metadata);
        self.step_action(task_uuid, step, StepAction::Complete { result, metadata }, by, reason)
            .await
    }

    /// Cancels a step that has not finished, and the pending steps below it (they could never
    /// run). Cancelled steps count as done: the task finishes when its other steps allow.
    pub async fn cancel_step(&self, task_uuid: Uuid, step: &str, by: &str, reason: &str) -> Result<StepDetail> {
        self.step_action(task_uuid, step, StepAction::Cancel, by, reason).await
    }

    /// Resets every `error` step of an `error` task, in one transaction.
    pub async fn retry_task(&self, task_uuid: Uuid, by: &str, reason: &str) -> Result<TaskSummary> {
        let task = self.task_summary(task_uuid).await?;
        if task.task_state() != Some(TaskState::Error) {
            return Err(TaskerError::InvalidState(format!(
                "task {task_uuid} is {}; only a task in error can be retried (reset its steps one by one instead)",
                task.state
            )));
        }
        retrying("retry task", || {
            self.step_action_once(task_uuid, None, &StepAction::Reset, by, reason)
        })
        .await?;
        self.task_summary(task_uuid).await
    }

    async fn step_action(
        &self,
        task_uuid: Uuid,
        step: &str,
        action: StepAction,
        by: &str,
        reason: &str,
    ) -> Result<StepDetail> {
        let step_uuid = retrying("operator action", || {
            self.step_action_once(task_uuid, Some(step), &action, by, reason)
        })
        .await?;
        self.get_step(task_uuid, &step_uuid.to_string()).await
    }

    /// One try of an action on `step` (or, with `None`, on every `error` step: `retry_task`).
    /// Returns the (first) step acted on.
    async fn step_action_once(
        &self,
        task_uuid: Uuid,
        step: Option<&str>,
        action: &StepAction,
        by: &str,
        reason: &str,
    ) -> Result<Uuid> {
        let mut tx = self.store().begin().await?;
        let steps = tx.task_steps(task_uuid).await?;
        if steps.is_empty() {
            tx.rollback().await?;
            return Err(match self.store().task_summary(task_uuid).await? {
                None => TaskerError::TaskNotFound(task_uuid),
                Some(_) => TaskerError::StepNotFound {
                    task_uuid,
                    step: step.unwrap_or_default().to_owned(),
                },
            });
        }
        let targets: Vec<&ExistingStep> = match step {
            Some(name) => match find_existing(&steps, name) {
                Some(s) => vec![s],
                None => {
                    tx.rollback().await?;
                    return Err(TaskerError::StepNotFound {
                        task_uuid,
                        step: name.to_owned(),
                    });
                }
            },
            None => steps.iter().filter(|s| s.state == StepState::Error).collect(),
        };
        let mut ids: Vec<Uuid> = targets.iter().map(|s| s.step_uuid).collect();
        // Cancelling also cancels the pending steps below.
        let below = match action {
            StepAction::Cancel => self.pending_below(tx.as_mut(), task_uuid, &steps, &targets).await?,
            _ => Vec::new(),
        };
        ids.extend(below.iter().map(|s| s.step_uuid));
        ids.sort();
        ids.dedup();
        let locks = lock_map(tx.as_mut(), &ids).await?;
        let first = targets
            .first()
            .map(|s| s.step_uuid)
            .ok_or_else(|| TaskerError::InvalidState(format!("task {task_uuid} has no step in error to retry")))?;
        let task_state = locks
            .get(&first)
            .map(|l| l.task_state)
            .ok_or_else(|| TaskerError::StepNotFound {
                task_uuid,
                step: first.to_string(),
            })?;
        // A finished task accepts operator actions only when it failed.
        if task_state.is_terminal() && task_state != TaskState::Error {
            tx.rollback().await?;
            return Err(TaskerError::InvalidState(format!(
                "task {task_uuid} is {task_state}; its steps can no longer change"
            )));
        }
        let now = Utc::now();
        let meta = operator_metadata(by, reason);
        let mut plan = Plan::default();
        let mut effects = Effects::default();
        let mut expansions = Vec::new();
        for target in &targets {
            let lock = locks.get(&target.step_uuid).ok_or_else(|| {
                TaskerError::Corrupt(format!("step {} vanished under its task's lock", target.step_uuid))
            })?;
            if !action.allowed().contains(&lock.state) {
                tx.rollback().await?;
                let allowed: Vec<&str> = action.allowed().iter().map(|s| s.as_str()).collect();
                return Err(TaskerError::InvalidState(format!(
                    "step '{}' is {}; only {} steps can be {}",
                    lock.name,
                    lock.state,
                    allowed.join(", "),
                    action.name()
                )));
            }
            self.plan_step_action(
                &mut plan,
                &mut effects,
                lock,
                target.pending_parents,
                action,
                &meta,
                now,
            )?;
            if let StepAction::Complete { result, .. } = action {
                match self.check_step_type_outcome(lock, result).await? {
                    Ok(Some(expansion)) => expansions.push((lock.clone(), expansion)),
                    Ok(None) => {}
                    Err(failure) => {
                        tx.rollback().await?;
                        return Err(TaskerError::InvalidArgument(failure.message));
                    }
                }
            }
        }
        for s in &below {
            if let Some(lock) = locks.get(&s.step_uuid).filter(|l| l.state == StepState::Pending) {
                plan.transition(
                    &mut effects,
                    lock,
                    lock.state,
                    StepTrigger::Cancel,
                    lock.attempts,
                    json!({"by": meta["by"], "reason": "a step it depends on was cancelled"}),
                    now,
                )?;
                plan.step_changes
                    .push(finish_change(lock, StepState::Cancelled, None, None));
                plan.delta(task_uuid).completed += 1;
            }
        }
        let (applied, mut ready) = tx
            .apply_outcome_writes(
                OutcomeWrites {
                    changes: &plan.step_changes,
                    transitions: &plan.step_transitions,
                    delete: &[],
                    released_parents: &plan.succeeded,
                },
                now,
            )
            .await?;
        if applied.len() != plan.step_changes.len() {
            return Err(TaskerError::Corrupt("a locked step changed under its lock".into()));
        }
        for (lock, expansion) in expansions {
            ready.extend(self.expand(tx.as_mut(), &lock, expansion, now).await?);
        }
        let priority = locks.values().next().map_or(0, |l| l.task_priority);
        let (child_changes, child_transitions) = enqueue_ready(&mut plan, &mut effects, &ready, priority, now)?;
        // Re-open a failed task the action lets progress, before its counters are evaluated.
        if action.reopens() && matches!(task_state, TaskState::Error | TaskState::BlockedByFailures) {
            let changed = self
                .walk_tasks(
                    tx.as_mut(),
                    &[task_uuid],
                    task_state,
                    &[TaskTrigger::Reopen, TaskTrigger::StepsEnqueued],
                    meta.clone(),
                    now,
                    &mut effects,
                )
                .await?;
            if changed.is_empty() {
                return Err(TaskerError::Corrupt(format!("task {task_uuid} changed under its lock")));
            }
        }
        // A task that waited for a retry runs again once a reset step is enqueued.
        if task_state == TaskState::WaitingForRetry && !plan.send.is_empty() {
            self.walk_tasks(
                tx.as_mut(),
                &[task_uuid],
                TaskState::WaitingForRetry,
                &[TaskTrigger::EnqueueReadySteps, TaskTrigger::StepsEnqueued],
                meta.clone(),
                now,
                &mut effects,
            )
            .await?;
        }
        let deltas = plan.nonzero_deltas();
        let followup = tx
            .apply_followup_writes(
                FollowupWrites {
                    changes: &child_changes,
                    transitions: &child_transitions,
                    send: &plan.send,
                    deltas: &deltas,
                    input_tasks: &[],
                    input_steps: &[],
                },
                now,
            )
            .await?;
        for m in &plan.send {
            effects.queues.push(m.queue.clone());
        }
        // The investigation records the action; the entry closes, credited to the operator,
        // when the task completes (in this transaction, or later when its steps have run).
        if action.reopens() {
            let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
            let mut text = format!("step '{}' {}", names.join("', '"), action.name());
            if !reason.trim().is_empty() {
                text = format!("{text}: {}", limits::clean_text(reason));
            }
            let note = DlqNote {
                by: limits::clean_text(by),
                text,
                at: now,
                status: None,
            };
            tx.note_dlq_resolution(&[task_uuid], &note, now).await?;
        }
        self.finalize_tasks(tx.as_mut(), &followup.counters, now, &mut effects)
            .await?;
        self.commit_effects(tx, effects).await?;
        Ok(first)
    }

    /// The step change, audit rows, counter deltas and releases of one action on `lock`.
    #[allow(clippy::too_many_arguments)]
    fn plan_step_action(
        &self,
        plan: &mut Plan,
        effects: &mut Effects,
        lock: &StepLock,
        pending_parents: i32,
        action: &StepAction,
        meta: &Value,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let from = lock.state;
        let was_active = matches!(
            from,
            StepState::Enqueued
                | StepState::InProgress
                | StepState::EnqueuedForOrchestration
                | StepState::WaitingForRetry
        );
        let d = plan.delta(lock.task_uuid);
        if was_active {
            d.active -= 1;
        }
        if from == StepState::Error {
            d.failed -= 1;
        }
        match action {
            StepAction::Reset => {
                let to = plan.transition(
                    effects,
                    lock,
                    from,
                    StepTrigger::Reset,
                    lock.attempts,
                    meta.clone(),
                    now,
                )?;
                // An enqueued step's message is superseded by a new one: its attempt number moves
                // on, so the old message is dropped when met. Every attempt so far stops counting.
                let bump = i32::from(from == StepState::Enqueued);
                let attempts = lock.attempts + bump;
                let mut change = StepChange {
                    free_attempts_delta: lock.handler_attempts() + bump,
                    ..StepChange::cas(lock.step_uuid, (from, lock.attempts), (to, attempts))
                };
                if pending_parents == 0 {
                    let enqueued = plan.transition(effects, lock, to, StepTrigger::Enqueue, attempts, empty(), now)?;
                    change.new_state = enqueued;
                    plan.send.push(OutgoingMessage {
                        queue: lock.queue.clone(),
                        body: message_body(lock.step_uuid, lock.task_uuid, attempts),
                        hidden_for: None,
                        priority: lock.task_priority,
                    });
                    plan.delta(lock.task_uuid).active += 1;
                }
                plan.step_changes.push(change);
            }
            StepAction::Resolve => {
                let to = plan.transition(
                    effects,
                    lock,
                    from,
                    StepTrigger::ResolveManually,
                    lock.attempts,
                    meta.clone(),
                    now,
                )?;
                plan.step_changes.push(finish_change(lock, to, None, None));
                plan.delta(lock.task_uuid).completed += 1;
                plan.succeeded.push(lock.step_uuid);
            }
            StepAction::Complete { result, metadata } => {
                let mut m = meta.clone();
                m["metadata"] = metadata.clone();
                let to = plan.transition(
                    effects,
                    lock,
                    from,
                    StepTrigger::CompleteManually,
                    lock.attempts,
                    m,
                    now,
                )?;
                plan.step_changes
                    .push(finish_change(lock, to, Some(result.clone()), None));
                plan.delta(lock.task_uuid).completed += 1;
                plan.succeeded.push(lock.step_uuid);
            }
            StepAction::Cancel => {
                let to = plan.transition(
                    effects,
                    lock,
                    from,
                    StepTrigger::Cancel,
                    lock.attempts,
                    meta.clone(),
                    now,
                )?;
                plan.step_changes.push(finish_change(lock, to, None, None));
                plan.delta(lock.task_uuid).completed += 1;
            }
        }
        Ok(())
    }

    /// The pending steps below `targets` in the task (through the template's edges).
    async fn pending_below<'s>(
        &self,
        tx: &mut dyn StoreTx,
        task_uuid: Uuid,
        steps: &'s [ExistingStep],
        targets: &[&ExistingStep],
    ) -> Result<Vec<&'s ExistingStep>> {
        let Some(input) = tx.task_inputs(&[task_uuid]).await?.into_iter().next() else {
            return Ok(Vec::new());
        };
        let template = self.template_by_id(input.template_id).await?;
        let mut below = BTreeSet::new();
        let mut stack: Vec<usize> = targets.iter().filter_map(|t| template.index_of(&t.name)).collect();
        while let Some(i) = stack.pop() {
            for &c in &template.children[i] {
                if below.insert(c) {
                    stack.push(c);
                }
            }
        }
        Ok(steps
            .iter()
            .filter(|s| s.state == StepState::Pending && template.index_of(&s.name).is_some_and(|i| below.contains(&i)))
            .collect())
    }

    /// Closes a task by hand: `resolved_manually` from `error` or any unfinished state. Open
    /// steps are cancelled; the task's open dead-letter entry is closed.
    pub async fn resolve_task(&self, task_uuid: Uuid, by: &str, reason: &str) -> Result<TaskSummary> {
        let meta = operator_metadata(by, reason);
        let closing = TaskClosing {
            trigger: TaskTrigger::ResolveManually,
            verb: "resolved",
            step_metadata: json!({"reason": "task resolved manually", "by": meta["by"]}),
            metadata: meta,
            dlq_status: DlqStatus::ManuallyResolved,
            dlq_by: limits::clean_text(by),
            dlq_text: format!("task resolved manually: {}", limits::clean_text(reason)),
            refused: |task_uuid, state, _| {
                TaskerError::InvalidState(format!(
                    "task {task_uuid} is {state}; only a failed or unfinished task can be resolved"
                ))
            },
            kept_changing: TaskerError::InvalidState,
        };
        close_task(self, task_uuid, &closing).await?;
        self.task_summary(task_uuid).await
    }
}

/// Enqueues steps whose dependencies are all satisfied now (released by the action, or created
/// by a decision completed by hand): their changes and audit rows; messages and counters go
/// into `plan`.
fn enqueue_ready(
    plan: &mut Plan,
    effects: &mut Effects,
    ready: &[ReadyChild],
    priority: i32,
    now: DateTime<Utc>,
) -> Result<(Vec<StepChange>, Vec<TransitionRecord>)> {
    let mut changes = Vec::with_capacity(ready.len());
    let mut transitions = Vec::with_capacity(ready.len());
    for child in ready {
        let enqueued = StepState::Pending.apply(StepTrigger::Enqueue)?;
        transitions.push(TransitionRecord {
            entity_uuid: child.step_uuid,
            task_uuid: child.task_uuid,
            from_state: Some(StepState::Pending.as_str()),
            to_state: enqueued.as_str(),
            event: StepTrigger::Enqueue.as_str(),
            metadata: empty(),
            at: now,
        });
        effects.events.push(EngineEvent::Step {
            task_uuid: child.task_uuid,
            step_uuid: child.step_uuid,
            step_name: child.name.clone(),
            from: StepState::Pending,
            to: enqueued,
            attempt: 0,
            trigger: StepTrigger::Enqueue.as_str(),
            details: json!({ "queue": child.queue }),
        });
        changes.push(StepChange::cas(child.step_uuid, (StepState::Pending, 0), (enqueued, 0)));
        plan.send.push(OutgoingMessage {
            queue: child.queue.clone(),
            body: message_body(child.step_uuid, child.task_uuid, 0),
            hidden_for: None,
            priority,
        });
        plan.delta(child.task_uuid).active += 1;
    }
    Ok((changes, transitions))
}

fn find_summary<'d>(detail: &'d TaskDetail, step: &str) -> Option<&'d StepSummary> {
    let by_uuid = Uuid::parse_str(step).ok();
    detail
        .steps
        .iter()
        .find(|s| s.name == step || Some(s.step_uuid) == by_uuid)
}

fn find_existing<'s>(steps: &'s [ExistingStep], step: &str) -> Option<&'s ExistingStep> {
    let by_uuid = Uuid::parse_str(step).ok();
    steps.iter().find(|s| s.name == step || Some(s.step_uuid) == by_uuid)
}
