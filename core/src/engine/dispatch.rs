//! The hot path: claiming steps from queues and applying their outcomes, plus the timed duties
//! (re-enqueueing due retries, failing overdue attempts) and cancellation.
//!
//! Each public function is one transaction. Decisions are made here from the rows the store
//! returns; the store only executes compare-and-swap primitives, so a concurrent writer (another
//! worker, an orchestrator, a late completion) loses cleanly instead of corrupting state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::step_types::{self, Expansion};
use super::{CompiledTemplate, EngineEvent, Tasker};
use crate::backoff;
use crate::error::{Result, TaskerError};
use crate::events::EventDelivery;
use crate::limits;
use crate::outcome::{error_types, StepFailure, StepOutcome};
use crate::state::{StepState, StepTrigger, TaskState, TaskTrigger};
use crate::store::*;
use crate::template::StepType;

/// A step claimed by a worker: everything needed to run one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedStep {
    pub message: MessageRef,
    pub step_uuid: Uuid,
    pub task_uuid: Uuid,
    pub step_name: String,
    /// 1-based number of this attempt.
    pub attempt: i32,
    pub max_attempts: i32,
    pub template: Arc<CompiledTemplate>,
    pub context: Value,
    pub dependency_results: Map<String, Value>,
    pub correlation_id: Uuid,
    /// When the engine fails this attempt with a `timeout` error.
    pub deadline: Option<DateTime<Utc>>,
    /// A batch worker instance's cursor (see [`crate::worker::StepEvent::batch`]).
    pub batch: Option<Value>,
    /// The last checkpoint of an earlier attempt (see [`crate::worker::StepEvent::checkpoint`]).
    pub checkpoint: Option<Value>,
}

/// What one claim got.
#[derive(Debug)]
pub struct ClaimBatch {
    pub steps: Vec<ClaimedStep>,
    /// The queues had fewer visible messages than were asked for: claiming again at once
    /// would most likely find nothing.
    pub drained: bool,
}

/// An outcome to apply to one attempt.
#[derive(Debug, Clone)]
pub struct Completion {
    pub step_uuid: Uuid,
    /// The attempt this outcome belongs to; anything else is fenced off.
    pub attempt: i32,
    /// The queue message of the attempt, deleted when the outcome is applied.
    pub message: Option<MessageRef>,
    pub outcome: StepOutcome,
    /// Free-form worker identity recorded in the audit row.
    pub worker: Option<String>,
    /// The attempt was lost with its worker's lease (set by the engine only): the step runs
    /// again without the attempt counting against it, up to [`MAX_LOST_LEASES`] times.
    pub lost_lease: bool,
}

/// Lost leases a step may suffer before it fails with `too_many_lost_leases`: enough to ride
/// out crashes and restarts, few enough that a handler that kills its process every time ends.
pub const MAX_LOST_LEASES: i32 = 5;

/// What happened to one [`Completion`].
#[derive(Debug, Clone, PartialEq)]
pub enum CompletionReport {
    /// The step moved to `state`.
    Applied { step_uuid: Uuid, state: StepState },
    /// The completion lost: the step is no longer in that attempt (it timed out, was re-claimed,
    /// or already completed). Nothing was written.
    Fenced { step_uuid: Uuid, reason: String },
    /// The task was cancelled while the step ran; the result was discarded.
    Discarded { step_uuid: Uuid },
}

/// Lets a completion claim the children it makes ready, in the same transaction, for the
/// worker that applies it ("eager dispatch"): a chained step then costs one transaction
/// instead of two and starts without a trip through the queue. The child's message is still
/// sent, hidden for `lease`, so crash recovery works exactly as for a claim from the queue.
#[derive(Debug, Clone)]
pub struct EagerClaim {
    /// Queues the worker serves; only children routed to these are claimed.
    pub queues: Vec<String>,
    /// Free slots: at most this many children are claimed.
    pub max: usize,
    pub lease: Duration,
}

/// Side effects to publish once a transaction commits.
#[derive(Default)]
pub(super) struct Effects {
    pub(super) queues: Vec<String>,
    pub(super) finished_tasks: Vec<Uuid>,
    /// Committed state changes: broadcast, and written as durable lifecycle events.
    pub(super) events: Vec<EngineEvent>,
    /// Durable domain events, written with the transaction.
    pub(super) outbox: Vec<NewEvent>,
    /// Fast domain events, broadcast after the commit.
    pub(super) fast: Vec<NewEvent>,
    pub(super) timers_changed: bool,
}

/// Rows to write in one transaction, built by the decision functions below.
#[derive(Default)]
pub(super) struct Plan {
    pub(super) step_changes: Vec<StepChange>,
    pub(super) step_transitions: Vec<TransitionRecord>,
    pub(super) deltas: BTreeMap<Uuid, TaskDelta>,
    pub(super) succeeded: Vec<Uuid>,
    pub(super) delete: Vec<MessageRef>,
    pub(super) send: Vec<OutgoingMessage>,
}

impl Plan {
    pub(super) fn delta(&mut self, task: Uuid) -> &mut TaskDelta {
        self.deltas.entry(task).or_insert_with(|| TaskDelta {
            task_uuid: task,
            ..TaskDelta::default()
        })
    }

    /// Task deltas that change something.
    pub(super) fn nonzero_deltas(&mut self) -> Vec<TaskDelta> {
        std::mem::take(&mut self.deltas)
            .into_values()
            .filter(|d| {
                *d != TaskDelta {
                    task_uuid: d.task_uuid,
                    ..TaskDelta::default()
                }
            })
            .collect()
    }

    /// Cancels an open (`enqueued` or `waiting_for_retry`) step whose task is already finished:
    /// the repair for a step left open by a race with cancellation.
    fn cancel_open_step(
        &mut self,
        effects: &mut Effects,
        lock: &StepLock,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<()> {
        self.transition(
            effects,
            lock,
            lock.state,
            StepTrigger::Cancel,
            lock.attempts,
            json!({ "reason": reason }),
            now,
        )?;
        self.step_changes
            .push(finish_change(lock, StepState::Cancelled, None, None));
        self.delta(lock.task_uuid).active -= 1;
        Ok(())
    }

    /// Records a step transition chosen by the state table.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn transition(
        &mut self,
        effects: &mut Effects,
        lock: &StepLock,
        from: StepState,
        trigger: StepTrigger,
        attempt: i32,
        metadata: Value,
        now: DateTime<Utc>,
    ) -> Result<StepState> {
        let to = from.apply(trigger)?;
        effects.events.push(EngineEvent::Step {
            task_uuid: lock.task_uuid,
            step_uuid: lock.step_uuid,
            step_name: lock.name.clone(),
            from,
            to,
            attempt,
            trigger: trigger.as_str(),
            details: metadata.clone(),
        });
        self.step_transitions.push(TransitionRecord {
            entity_uuid: lock.step_uuid,
            task_uuid: lock.task_uuid,
            from_state: Some(from.as_str()),
            to_state: to.as_str(),
            event: trigger.as_str(),
            metadata,
            at: now,
        });
        Ok(to)
    }
}

pub(super) fn empty() -> Value {
    Value::Object(Map::new())
}

pub(super) fn message_body(lock_step: Uuid, task: Uuid, attempt: i32) -> StepMessage {
    StepMessage {
        step_uuid: lock_step,
        task_uuid: task,
        attempt,
    }
}

impl Tasker {
    /// Claims up to `max` steps from `queues` (read in rotation starting at `start`), hiding
    /// their messages for `lease`. One transaction (run again if it loses a race).
    ///
    /// Besides `enqueued` steps, a claim meets three other kinds of message:
    /// * a step still `in_progress` in the attempt the message was sent for: the worker holding
    ///   that attempt stopped renewing its lease. The attempt is given back (`release`) without
    ///   counting against the step's attempts; after [`MAX_LOST_LEASES`] the step fails;
    /// * an open step under a terminal task (a race with cancellation that an older version
    ///   could lose): the step is cancelled;
    /// * a step that cannot run (its template, context or a dependency's result cannot be
    ///   read): it fails permanently with a `corrupt_step` error, so it never blocks the queue.
    pub async fn claim(
        &self,
        queues: &[String],
        max: usize,
        lease: Duration,
        start: usize,
    ) -> Result<Vec<ClaimedStep>> {
        Ok(self.claim_batch(queues, max, lease, start).await?.steps)
    }

    /// [`Tasker::claim`], also saying whether the queues ran out of visible messages.
    pub async fn claim_batch(
        &self,
        queues: &[String],
        max: usize,
        lease: Duration,
        start: usize,
    ) -> Result<ClaimBatch> {
        if queues.is_empty() || max == 0 {
            return Ok(ClaimBatch {
                steps: Vec::new(),
                drained: true,
            });
        }
        retrying("claim", || self.claim_once(queues, max, lease, start)).await
    }

    async fn claim_once(&self, queues: &[String], max: usize, lease: Duration, start: usize) -> Result<ClaimBatch> {
        let store = self.store();
        let mut tx = store.begin().await?;
        let mut messages = Vec::new();
        // One queue: its steps are locked with the read (one statement where the backend can).
        // Several: every queue is read first, then all their steps are locked in one pass.
        let mut locked = None;
        if let [queue] = queues {
            let (read, locks) = tx.read_and_lock(queue, lease, max as i64).await?;
            messages = read;
            locked = Some(locks);
        } else {
            for i in 0..queues.len() {
                let queue = &queues[(start + i) % queues.len()];
                let want = (max - messages.len()) as i64;
                messages.extend(tx.read_messages(queue, lease, want).await?);
                if messages.len() >= max {
                    break;
                }
            }
        }
        // Fewer messages than asked for: every queue was read to its end.
        let drained = messages.len() < max;
        if messages.is_empty() {
            tx.rollback().await?;
            return Ok(ClaimBatch {
                steps: Vec::new(),
                drained,
            });
        }
        let now = Utc::now();
        let mut plan = Plan::default();
        let mut effects = Effects::default();
        let mut parsed = Vec::with_capacity(messages.len());
        for m in &messages {
            match StepMessage::from_payload(&m.payload) {
                Ok(body) => parsed.push((m, body)),
                Err(e) => {
                    tracing::error!(queue = %m.queue, msg_id = m.msg_id, error = %e, "dropping malformed queue message");
                    plan.delete.push(m.reference());
                }
            }
        }
        let locks = match locked {
            Some(locks) => locks.into_iter().map(|l| (l.step_uuid, l)).collect(),
            None => {
                let ids: Vec<Uuid> = parsed.iter().map(|(_, b)| b.step_uuid).collect();
                lock_map(tx.as_mut(), &ids).await?
            }
        };
        let mut claims = Vec::new();
        let mut poisoned = Vec::new();
        let mut lost = Vec::new();
        // Ready → claimed, for messages read for the first time: a message is visible from the
        // commit that sent it (nothing is sent with a delay), while a re-read one became visible
        // when an earlier lease ran out, which the queue does not record.
        let mut waited: HashMap<Uuid, f64> = HashMap::new();
        // A step named by two messages of this batch is claimed by the first; the other one is
        // dropped as superseded (else the step would be handed out twice).
        let mut taken: HashSet<Uuid> = HashSet::new();
        for (m, body) in parsed {
            let Some(lock) = locks.get(&body.step_uuid) else {
                plan.delete.push(m.reference());
                continue;
            };
            let live = !lock.task_state.is_terminal();
            match lock.state {
                StepState::Enqueued if live && lock.attempts == body.attempt && taken.insert(lock.step_uuid) => {
                    if m.read_ct == 1 {
                        let ms = (now - m.enqueued_at).num_milliseconds().max(0);
                        waited.insert(lock.step_uuid, ms as f64 / 1000.0);
                    }
                    let attempt = lock.attempts + 1;
                    let template = match self.template_by_id(lock.template_id).await {
                        Ok(t) if t.step(&lock.name).is_some() => Ok(t),
                        Ok(t) => Err(format!("step '{}' is not in template {}", lock.name, t.template.key())),
                        Err(e) if e.is_transient() => return Err(e),
                        Err(e) => Err(format!("its template cannot be loaded: {e}")),
                    };
                    let timeout = template.as_ref().ok().and_then(|t| t.step(&lock.name)?.timeout_seconds);
                    let deadline = timeout.and_then(|secs| deadline_after(now, secs));
                    let to = plan.transition(
                        &mut effects,
                        lock,
                        lock.state,
                        StepTrigger::Claim,
                        attempt,
                        json!({ "attempt": attempt }),
                        now,
                    )?;
                    plan.step_changes.push(StepChange {
                        deadline_at: deadline,
                        attempt_started: true,
                        ..StepChange::cas(lock.step_uuid, (lock.state, lock.attempts), (to, attempt))
                    });
                    match template {
                        Ok(template) => claims.push(PendingClaim {
                            message: m.reference(),
                            step_uuid: lock.step_uuid,
                            task_uuid: lock.task_uuid,
                            step_name: lock.name.clone(),
                            attempt,
                            max_attempts: lock.max_attempts + lock.free_attempts,
                            template,
                            deadline,
                            lock: running_lock(lock, attempt),
                        }),
                        Err(why) => poisoned.push((running_lock(lock, attempt), Some(m.reference()), why)),
                    }
                }
                StepState::InProgress if lock.attempts == body.attempt + 1 => {
                    // Under a terminal task the lost attempt is discarded (the step cancelled).
                    lost.push(Completion {
                        step_uuid: lock.step_uuid,
                        attempt: lock.attempts,
                        message: Some(m.reference()),
                        outcome: StepOutcome::Failure(StepFailure::retryable(
                            error_types::WORKER_LOST,
                            format!(
                                "the worker running attempt {} stopped renewing its lease (crashed or killed)",
                                lock.attempts
                            ),
                        )),
                        worker: None,
                        lost_lease: true,
                    });
                }
                StepState::Enqueued | StepState::WaitingForRetry if !live => {
                    plan.cancel_open_step(&mut effects, lock, now, "task is already finished")?;
                    plan.delete.push(m.reference());
                }
                // A terminal step, or a message superseded by a newer one.
                _ => plan.delete.push(m.reference()),
            }
        }
        // The inputs of every claim are read with the change (see `claim_inputs`).
        let (task_ids, step_ids) = claim_input_ids(&claims);
        let (applied, inputs, dependency_results) = tx
            .change_steps_with_inputs(&plan.step_changes, &plan.step_transitions, now, &task_ids, &step_ids)
            .await?;
        claims.retain(|c| applied.contains(&c.step_uuid));
        poisoned.retain(|(l, _, _)| applied.contains(&l.step_uuid));
        tx.delete_messages(&plan.delete).await?;
        let deltas = plan.nonzero_deltas();
        tx.apply_task_deltas(&deltas, now).await?;
        if !lost.is_empty() {
            self.apply_in_tx(
                tx.as_mut(),
                &locks,
                &lost,
                now,
                &mut effects,
                None,
                &mut EagerClaims::default(),
            )
            .await?;
        }
        let (mut claimed, unreadable) = assemble_claims(claims, inputs, dependency_results);
        self.attach_extras(tx.as_mut(), &mut claimed).await?;
        poisoned.extend(unreadable);
        if !poisoned.is_empty() {
            self.fail_poisoned(tx.as_mut(), poisoned, now, &mut effects).await?;
        }
        self.commit_effects(tx, effects).await?;
        let metrics = &self.telemetry().metrics;
        for step in &claimed {
            if let Some(seconds) = waited.get(&step.step_uuid) {
                metrics.observe(
                    crate::telemetry::metrics::CLAIM_LATENCY,
                    &[("queue", &step.message.queue)],
                    *seconds,
                );
            }
        }
        Ok(ClaimBatch {
            steps: claimed,
            drained,
        })
    }

    /// Fails claimed steps that cannot run, permanently, in the claiming transaction.
    async fn fail_poisoned(
        &self,
        tx: &mut dyn StoreTx,
        poisoned: Vec<Poisoned>,
        now: DateTime<Utc>,
        effects: &mut Effects,
    ) -> Result<()> {
        let mut locks = HashMap::new();
        let mut batch = Vec::with_capacity(poisoned.len());
        for (lock, message, why) in poisoned {
            tracing::error!(
                task_uuid = %lock.task_uuid,
                step_uuid = %lock.step_uuid,
                step_name = %lock.name,
                attempt = lock.attempts,
                reason = %why,
                "step cannot run; failing it"
            );
            batch.push(Completion {
                step_uuid: lock.step_uuid,
                attempt: lock.attempts,
                message,
                outcome: StepOutcome::Failure(StepFailure::permanent(
                    error_types::CORRUPT_STEP,
                    format!("step '{}' cannot run: {why}", lock.name),
                )),
                worker: None,
                lost_lease: false,
            });
            locks.insert(lock.step_uuid, lock);
        }
        self.apply_in_tx(tx, &locks, &batch, now, effects, None, &mut EagerClaims::default())
            .await?;
        Ok(())
    }

    /// Applies a batch of outcomes in one transaction: stores results and errors, schedules
    /// retries, releases children whose last dependency completed (enqueueing them in the same
    /// transaction) and finalizes tasks.
    pub async fn apply_completions(&self, batch: Vec<Completion>) -> Result<Vec<CompletionReport>> {
        Ok(self.apply_completions_with(batch, None).await?.0)
    }

    /// [`Tasker::apply_completions`], also claiming ready children for the caller when `eager`
    /// allows (see [`EagerClaim`]). Returns the reports and the claimed steps.
    ///
    /// Every outcome is first [normalised](StepOutcome::normalized) (NUL characters, size and
    /// nesting limits), so a hostile value fails its own step and never the batch. A batch that
    /// loses a race is run again; one whose data the database still refuses (SQLSTATE classes
    /// 22, 23, 54) is split until the completion at fault is found, and that one is recorded as
    /// a permanent `outcome_rejected` failure of its step. Other errors (the database away)
    /// are returned: the caller holds the batch and tries again.
    pub async fn apply_completions_with(
        &self,
        batch: Vec<Completion>,
        eager: Option<&EagerClaim>,
    ) -> Result<(Vec<CompletionReport>, Vec<ClaimedStep>)> {
        if batch.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let batch: Vec<Completion> = batch
            .into_iter()
            .map(|c| Completion {
                outcome: c.outcome.normalized(),
                ..c
            })
            .collect();
        self.apply_isolating(&batch, eager).await
    }

    fn apply_isolating<'a>(&'a self, batch: &'a [Completion], eager: Option<&'a EagerClaim>) -> BoxedApply<'a> {
        Box::pin(async move {
            let error = match retrying("apply completions", || self.apply_once(batch, eager)).await {
                Ok(done) => return Ok(done),
                // Only a refusal of the data itself is worth isolating; anything else (the
                // database away, a bug) is returned whole and the caller decides.
                Err(e) if !e.is_data_refusal() => return Err(e),
                Err(e) => e,
            };
            match batch {
                [] => Ok((Vec::new(), Vec::new())),
                [one] if matches!(&one.outcome, StepOutcome::Failure(f) if f.error_type == error_types::OUTCOME_REJECTED) => {
                    Err(error)
                }
                [one] => {
                    tracing::error!(step_uuid = %one.step_uuid, attempt = one.attempt, error = %error, "the database refused a step's outcome; failing the step");
                    let rejected = Completion {
                        outcome: StepOutcome::Failure(StepFailure::permanent(
                            error_types::OUTCOME_REJECTED,
                            limits::clean_text(&format!("the database refused this step's outcome: {error}")),
                        )),
                        ..one.clone()
                    };
                    self.apply_isolating(std::slice::from_ref(&rejected), eager).await
                }
                many => {
                    tracing::warn!(count = many.len(), error = %error, "a completion batch was refused; isolating the completion at fault");
                    let (left, right) = many.split_at(many.len() / 2);
                    let (mut reports, mut claimed) = self.apply_isolating(left, eager).await?;
                    let (more_reports, more_claimed) = self.apply_isolating(right, None).await?;
                    reports.extend(more_reports);
                    claimed.extend(more_claimed);
                    Ok((reports, claimed))
                }
            }
        })
    }

    async fn apply_once(
        &self,
        batch: &[Completion],
        eager: Option<&EagerClaim>,
    ) -> Result<(Vec<CompletionReport>, Vec<ClaimedStep>)> {
        let mut tx = self.store().begin().await?;
        let mut ids: Vec<Uuid> = batch.iter().map(|c| c.step_uuid).collect();
        ids.sort();
        ids.dedup();
        let locks = lock_map(tx.as_mut(), &ids).await?;
        let now = Utc::now();
        let mut effects = Effects::default();
        let mut eager_claims = EagerClaims::default();
        let reports = self
            .apply_in_tx(tx.as_mut(), &locks, batch, now, &mut effects, eager, &mut eager_claims)
            .await?;
        let (mut claimed, unreadable) = assemble_claims(
            eager_claims.claims,
            eager_claims.inputs,
            eager_claims.dependency_results,
        );
        self.attach_extras(tx.as_mut(), &mut claimed).await?;
        if !unreadable.is_empty() {
            self.fail_poisoned(tx.as_mut(), unreadable, now, &mut effects).await?;
        }
        self.commit_effects(tx, effects).await?;
        Ok((reports, claimed))
    }

    /// The decision logic shared by completions, lost leases and timeouts.
    #[allow(clippy::too_many_arguments)]
    async fn apply_in_tx(
        &self,
        tx: &mut dyn StoreTx,
        locks: &HashMap<Uuid, StepLock>,
        batch: &[Completion],
        now: DateTime<Utc>,
        effects: &mut Effects,
        eager: Option<&EagerClaim>,
        eager_claims: &mut EagerClaims,
    ) -> Result<Vec<CompletionReport>> {
        let mut plan = Plan::default();
        let mut reports = Vec::with_capacity(batch.len());
        // A step may appear twice in one batch (e.g. a late completion and a timeout); only the
        // first matching one wins, exactly as if they had been separate transactions.
        let mut decided: HashSet<Uuid> = HashSet::new();
        // Decisions and batches that succeed, to expand once their completion is written.
        let mut expansions: Vec<(StepLock, Expansion)> = Vec::new();
        // Tasks with a step that now waits for a retry.
        let mut retrying_tasks: BTreeSet<Uuid> = BTreeSet::new();
        for c in batch {
            let Some(lock) = locks.get(&c.step_uuid) else {
                reports.push(CompletionReport::Fenced {
                    step_uuid: c.step_uuid,
                    reason: "no such step".into(),
                });
                continue;
            };
            if lock.state != StepState::InProgress || lock.attempts != c.attempt || decided.contains(&c.step_uuid) {
                reports.push(CompletionReport::Fenced {
                    step_uuid: c.step_uuid,
                    reason: format!(
                        "step is {} at attempt {}, completion was for attempt {}",
                        lock.state, lock.attempts, c.attempt
                    ),
                });
                continue;
            }
            decided.insert(c.step_uuid);
            if let Some(m) = &c.message {
                plan.delete.push(m.clone());
            }
            let worker = c.worker.clone().map(Value::String).unwrap_or(Value::Null);
            if lock.task_state.is_terminal() {
                plan.transition(
                    effects,
                    lock,
                    lock.state,
                    StepTrigger::Cancel,
                    c.attempt,
                    json!({"reason": "task cancelled; result discarded", "worker": worker}),
                    now,
                )?;
                plan.step_changes
                    .push(finish_change(lock, StepState::Cancelled, None, None));
                plan.delta(lock.task_uuid).active -= 1;
                reports.push(CompletionReport::Discarded { step_uuid: c.step_uuid });
                continue;
            }
            // A decision or batch outcome is checked before anything is written: an invalid one
            // fails its step instead. A batchable step's result is stored without its cursors
            // (each instance holds its own): its workers read it as a dependency result.
            let replaced;
            let outcome = match &c.outcome {
                StepOutcome::Success { result, metadata } => match self.check_step_type_outcome(lock, result).await? {
                    Ok(None) => &c.outcome,
                    Ok(Some(expansion)) => {
                        let stored = matches!(expansion, Expansion::Batches(_)).then(|| StepOutcome::Success {
                            result: step_types::without_cursors(result),
                            metadata: metadata.clone(),
                        });
                        expansions.push((lock.clone(), expansion));
                        match stored {
                            Some(stored) => {
                                replaced = stored;
                                &replaced
                            }
                            None => &c.outcome,
                        }
                    }
                    Err(failure) => {
                        replaced = StepOutcome::Failure(failure);
                        &replaced
                    }
                },
                other => other,
            };
            // Domain events the outcome carries are checked against the template before
            // anything is written: an undeclared one or a bad payload fails the step instead.
            let replaced_for_events;
            let (outcome, publish) = match self.events_to_publish(lock, outcome).await? {
                Ok(publish) => (outcome, publish),
                Err(failure) => {
                    replaced_for_events = StepOutcome::Failure(failure);
                    (&replaced_for_events, Vec::new())
                }
            };
            for (event, how) in publish {
                let row = NewEvent {
                    event_id: Uuid::now_v7(),
                    name: event.name,
                    task_uuid: Some(lock.task_uuid),
                    step_uuid: Some(lock.step_uuid),
                    payload: event.payload,
                    occurred_at: now,
                };
                match how.delivery {
                    EventDelivery::Durable => effects.outbox.push(row),
                    EventDelivery::Fast => effects.fast.push(row),
                }
            }
            let state = match outcome {
                StepOutcome::Success { result, metadata } => {
                    let to = plan.transition(
                        effects,
                        lock,
                        lock.state,
                        StepTrigger::Succeed,
                        c.attempt,
                        json!({"attempt": c.attempt, "worker": worker, "metadata": metadata}),
                        now,
                    )?;
                    // step.completed carries the result; cloned only when someone may read it.
                    if self.wants_lifecycle_events() {
                        if let Some(EngineEvent::Step { details, .. }) = effects.events.last_mut() {
                            details["result"] = result.clone();
                        }
                    }
                    plan.step_changes
                        .push(finish_change(lock, to, Some(result.clone()), None));
                    let d = plan.delta(lock.task_uuid);
                    d.completed += 1;
                    d.active -= 1;
                    if self.may_release_children(lock).await? {
                        plan.succeeded.push(lock.step_uuid);
                    }
                    to
                }
                StepOutcome::Failure(failure) if c.lost_lease && lock.lost_leases < MAX_LOST_LEASES => {
                    // The engine's failure, not the handler's: the attempt is given back without
                    // counting against max_attempts or `retryable: false`, and runs again at once.
                    let lost = lock.lost_leases + 1;
                    let to = plan.transition(
                        effects,
                        lock,
                        lock.state,
                        StepTrigger::Release,
                        c.attempt,
                        json!({"attempt": c.attempt, "error_type": failure.error_type, "lost_leases": lost}),
                        now,
                    )?;
                    plan.step_changes.push(StepChange {
                        last_error: Some(failure.to_record(c.attempt)),
                        free_attempts_delta: 1,
                        lost_leases_delta: 1,
                        ..StepChange::cas(lock.step_uuid, (lock.state, lock.attempts), (to, lock.attempts))
                    });
                    plan.send.push(OutgoingMessage {
                        queue: lock.queue.clone(),
                        body: message_body(lock.step_uuid, lock.task_uuid, lock.attempts),
                        hidden_for: None,
                        priority: lock.task_priority,
                    });
                    to
                }
                StepOutcome::Failure(failure) => {
                    let lost_too_often = c.lost_lease;
                    let failure = if lost_too_often {
                        StepFailure::permanent(
                            error_types::TOO_MANY_LOST_LEASES,
                            format!(
                                "{} (its worker was lost {} times, the limit is {MAX_LOST_LEASES})",
                                failure.message,
                                lock.lost_leases + 1
                            ),
                        )
                    } else {
                        failure.clone()
                    };
                    let error = failure.to_record(c.attempt);
                    let policy = if failure.retryable {
                        match self.template_by_id(lock.template_id).await {
                            Ok(t) => t.step(&lock.name).map(|s| s.retry.clone()),
                            Err(e) if e.is_transient() => return Err(e),
                            // A template that cannot be read allows no retry.
                            Err(_) => None,
                        }
                    } else {
                        None
                    };
                    let retry = policy
                        .as_ref()
                        .filter(|p| p.retryable && lock.handler_attempts() < lock.max_attempts);
                    if let Some(policy) = retry {
                        let handler_attempt = u32::try_from(lock.handler_attempts()).unwrap_or(1);
                        let delay = backoff::retry_delay(policy, handler_attempt, failure.retry_after);
                        let retry_at = later(now, delay);
                        let to = plan.transition(effects, lock, lock.state, StepTrigger::ScheduleRetry, c.attempt, json!({"attempt": c.attempt, "worker": worker, "error_type": failure.error_type, "retry_in_ms": u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "error": error}), now)?;
                        plan.step_changes.push(StepChange {
                            next_retry_at: Some(retry_at),
                            ..finish_change(lock, to, None, Some(error))
                        });
                        effects.timers_changed = true;
                        retrying_tasks.insert(lock.task_uuid);
                        to
                    } else {
                        let to = plan.transition(
                            effects,
                            lock,
                            lock.state,
                            StepTrigger::Fail,
                            c.attempt,
                            json!({"attempt": c.attempt, "worker": worker, "error_type": failure.error_type, "error": error}),
                            now,
                        )?;
                        plan.step_changes.push(StepChange {
                            lost_leases_delta: i32::from(lost_too_often),
                            ..finish_change(lock, to, None, Some(error))
                        });
                        let d = plan.delta(lock.task_uuid);
                        d.failed += 1;
                        d.active -= 1;
                        to
                    }
                }
            };
            reports.push(CompletionReport::Applied {
                step_uuid: c.step_uuid,
                state,
            });
        }

        // Children whose last dependency just completed are enqueued in this same transaction,
        // or claimed right away for the applying worker when it has free slots (eager dispatch).
        let (applied, mut ready) = tx
            .apply_outcome_writes(
                OutcomeWrites {
                    changes: &plan.step_changes,
                    transitions: &plan.step_transitions,
                    delete: &plan.delete,
                    released_parents: &plan.succeeded,
                },
                now,
            )
            .await?;
        if applied.len() != plan.step_changes.len() {
            // Rows were locked by lock_steps, so this means the store broke its contract.
            return Err(TaskerError::Corrupt("a locked step changed under its lock".into()));
        }
        // The steps decisions and batches create join the released children: those with no
        // pending parent are enqueued (or claimed) below like any other.
        for (lock, expansion) in expansions {
            ready.extend(self.expand(tx, &lock, expansion, now).await?);
        }
        let mut eager_pending = Vec::new();
        let mut child_changes = Vec::new();
        let mut child_transitions = Vec::new();
        if !ready.is_empty() {
            let mut slots = eager.map(|e| e.max).unwrap_or(0);
            let mut changes = Vec::with_capacity(ready.len());
            let mut transitions = Vec::with_capacity(ready.len());
            let mut claimed_now = Vec::new();
            for child in &ready {
                let claim = match eager {
                    Some(e) if slots > 0 && e.queues.contains(&child.queue) => {
                        slots -= 1;
                        Some(e.lease)
                    }
                    _ => None,
                };
                // A child's messages carry its task's priority, known from the locked parent.
                let parent_priority = locks
                    .values()
                    .find(|l| l.task_uuid == child.task_uuid)
                    .map_or(0, |p| p.task_priority);
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
                let mut change = StepChange::cas(child.step_uuid, (StepState::Pending, 0), (enqueued, 0));
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
                // A child belongs to the task of the (locked) parent that released it. A child
                // whose template cannot be read is only enqueued: its claim then fails it.
                let template = match claim {
                    None => None,
                    Some(_) => {
                        let parent = locks.values().find(|l| l.task_uuid == child.task_uuid).ok_or_else(|| {
                            TaskerError::Corrupt(format!("step {} released without a locked parent", child.step_uuid))
                        })?;
                        match self.template_by_id(parent.template_id).await {
                            Ok(t) if t.step(&child.name).is_some() => Some(t),
                            Err(e) if e.is_transient() => return Err(e),
                            _ => None,
                        }
                    }
                };
                let claim = claim.filter(|_| template.is_some());
                if let (Some(_), Some(template)) = (claim, template) {
                    let timeout = template.step(&child.name).and_then(|s| s.timeout_seconds);
                    let running = enqueued.apply(StepTrigger::Claim)?;
                    transitions.push(TransitionRecord {
                        entity_uuid: child.step_uuid,
                        task_uuid: child.task_uuid,
                        from_state: Some(enqueued.as_str()),
                        to_state: running.as_str(),
                        event: StepTrigger::Claim.as_str(),
                        metadata: json!({ "attempt": 1, "eager": true }),
                        at: now,
                    });
                    effects.events.push(EngineEvent::Step {
                        task_uuid: child.task_uuid,
                        step_uuid: child.step_uuid,
                        step_name: child.name.clone(),
                        from: enqueued,
                        to: running,
                        attempt: 1,
                        trigger: StepTrigger::Claim.as_str(),
                        details: json!({ "attempt": 1, "eager": true }),
                    });
                    change.new_state = running;
                    change.new_attempts = 1;
                    change.attempt_started = true;
                    change.deadline_at = timeout.and_then(|secs| deadline_after(now, secs));
                    let parent = locks.values().find(|l| l.task_uuid == child.task_uuid);
                    let lock = StepLock {
                        step_uuid: child.step_uuid,
                        task_uuid: child.task_uuid,
                        name: child.name.clone(),
                        queue: child.queue.clone(),
                        state: running,
                        attempts: 1,
                        max_attempts: child.max_attempts,
                        free_attempts: 0,
                        lost_leases: 0,
                        task_state: parent.map(|p| p.task_state).unwrap_or(TaskState::StepsInProcess),
                        template_id: parent.map(|p| p.template_id).unwrap_or_default(),
                        task_priority: parent_priority,
                    };
                    claimed_now.push((lock, template, change.deadline_at));
                }
                changes.push(change);
                plan.send.push(OutgoingMessage {
                    queue: child.queue.clone(),
                    body: message_body(child.step_uuid, child.task_uuid, 0),
                    hidden_for: claim,
                    priority: parent_priority,
                });
                plan.delta(child.task_uuid).active += 1;
            }
            eager_pending = claimed_now;
            child_changes = changes;
            child_transitions = transitions;
        }
        // The children's changes, the messages (released children and given-back attempts) and
        // the task counters, then what the eagerly claimed children need to run: eager
        // children always have dependencies.
        let mut input_tasks: Vec<Uuid> = eager_pending.iter().map(|(l, _, _)| l.task_uuid).collect();
        input_tasks.sort();
        input_tasks.dedup();
        let input_steps: Vec<Uuid> = eager_pending.iter().map(|(l, _, _)| l.step_uuid).collect();
        let deltas = plan.nonzero_deltas();
        let followup = tx
            .apply_followup_writes(
                FollowupWrites {
                    changes: &child_changes,
                    transitions: &child_transitions,
                    send: &plan.send,
                    deltas: &deltas,
                    input_tasks: &input_tasks,
                    input_steps: &input_steps,
                },
                now,
            )
            .await?;
        // The rows were released under this transaction's locks: every change applies.
        if followup.applied.len() != child_changes.len() {
            return Err(TaskerError::Corrupt("a released child changed under its lock".into()));
        }
        eager_claims.inputs = followup.inputs;
        eager_claims.dependency_results = followup.dependency_results;
        for (m, r) in plan.send.iter().zip(&followup.sent) {
            if m.hidden_for.is_none() {
                effects.queues.push(m.queue.clone());
            } else if let Some(pos) = eager_pending
                .iter()
                .position(|(c, _, _)| c.step_uuid == m.body.step_uuid)
            {
                let (lock, template, deadline) = eager_pending.swap_remove(pos);
                eager_claims.claims.push(PendingClaim {
                    message: r.clone(),
                    step_uuid: lock.step_uuid,
                    task_uuid: lock.task_uuid,
                    step_name: lock.name.clone(),
                    attempt: 1,
                    max_attempts: lock.max_attempts,
                    template,
                    deadline,
                    lock,
                });
            }
        }

        self.finalize_tasks(tx, &followup.counters, now, effects).await?;
        // A retry changes no counter, so the task's state comes from the locked rows.
        let open: Vec<Uuid> = retrying_tasks
            .into_iter()
            .filter(|t| {
                locks
                    .values()
                    .any(|l| l.task_uuid == *t && l.task_state == TaskState::StepsInProcess)
            })
            .collect();
        self.await_retries(tx, &open, now, effects).await?;
        Ok(reports)
    }

    /// Moves tasks whose counters show they are done to `complete`, or to
    /// `blocked_by_failures` → `error` when a step failed for good and nothing else can run.
    pub(super) async fn finalize_tasks(
        &self,
        tx: &mut dyn StoreTx,
        counters: &[TaskCounters],
        now: DateTime<Utc>,
        effects: &mut Effects,
    ) -> Result<()> {
        let mut changes = Vec::new();
        let mut transitions = Vec::new();
        for c in counters {
            if c.state.is_terminal() {
                continue;
            }
            let triggers: &[TaskTrigger] = if c.completed == c.total {
                &[TaskTrigger::EvaluateResults, TaskTrigger::AllStepsComplete]
            } else if c.active == 0 && c.failed > 0 {
                &[TaskTrigger::EvaluateResults, TaskTrigger::Block, TaskTrigger::Fail]
            } else {
                continue;
            };
            let mut state = c.state;
            for &trigger in triggers {
                let next = state.apply(trigger)?;
                transitions.push(TransitionRecord {
                    entity_uuid: c.task_uuid,
                    task_uuid: c.task_uuid,
                    from_state: Some(state.as_str()),
                    to_state: next.as_str(),
                    event: trigger.as_str(),
                    metadata: json!({"completed_steps": c.completed, "failed_steps": c.failed, "total_steps": c.total}),
                    at: now,
                });
                effects.events.push(EngineEvent::Task {
                    task_uuid: c.task_uuid,
                    from: Some(state),
                    to: next,
                    trigger: trigger.as_str(),
                    details: json!({"completed_steps": c.completed, "failed_steps": c.failed, "total_steps": c.total}),
                });
                state = next;
            }
            changes.push(TaskChange {
                task_uuid: c.task_uuid,
                expected: c.state,
                new: state,
            });
        }
        if changes.is_empty() {
            return Ok(());
        }
        // Every change here ends its task (complete or error): each one that applies is announced.
        let applied = tx.change_tasks_audited(&changes, &transitions, now).await?;
        // A task that failed needs a human: its dead-letter entry is written with the failure.
        let failed: Vec<NewDlqEntry> = changes
            .iter()
            .filter(|c| c.new == TaskState::Error && applied.contains(&c.task_uuid))
            .map(|c| NewDlqEntry {
                entry_uuid: Uuid::now_v7(),
                task_uuid: c.task_uuid,
                reason: None,
                task_state: c.new,
                note: None,
            })
            .collect();
        let entries = tx.insert_dlq_entries(&failed, now).await?;
        effects
            .events
            .extend(crate::events::dlq_entries_created(&entries, TaskState::Error.as_str()));
        effects.finished_tasks.extend(applied);
        Ok(())
    }

    /// Moves tasks whose every open step waits for a retry to `waiting_for_retry` (nothing of
    /// theirs runs until a retry is due). Read only when a retry was scheduled.
    async fn await_retries(
        &self,
        tx: &mut dyn StoreTx,
        tasks: &[Uuid],
        now: DateTime<Utc>,
        effects: &mut Effects,
    ) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let ids = tasks.to_vec();
        let running: HashSet<Uuid> = tx.running_steps(&ids).await?.into_iter().map(|(t, _)| t).collect();
        let waiting: Vec<Uuid> = ids.into_iter().filter(|t| !running.contains(t)).collect();
        self.walk_tasks(
            tx,
            &waiting,
            TaskState::StepsInProcess,
            &[TaskTrigger::EvaluateResults, TaskTrigger::AwaitRetry],
            json!({"reason": "every open step waits for a retry"}),
            now,
            effects,
        )
        .await?;
        Ok(())
    }

    /// Moves `tasks` from `from` along `triggers` (a compare-and-swap with an audit row per
    /// transition); tasks no longer in `from` are left alone. Returns the tasks moved.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn walk_tasks(
        &self,
        tx: &mut dyn StoreTx,
        tasks: &[Uuid],
        from: TaskState,
        triggers: &[TaskTrigger],
        metadata: Value,
        now: DateTime<Utc>,
        effects: &mut Effects,
    ) -> Result<Vec<Uuid>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut transitions = Vec::new();
        let mut to = from;
        let mut steps = Vec::new();
        for &trigger in triggers {
            let next = to.apply(trigger)?;
            steps.push((to, trigger, next));
            to = next;
        }
        for &task_uuid in tasks {
            for &(a, trigger, b) in &steps {
                transitions.push(TransitionRecord {
                    entity_uuid: task_uuid,
                    task_uuid,
                    from_state: Some(a.as_str()),
                    to_state: b.as_str(),
                    event: trigger.as_str(),
                    metadata: metadata.clone(),
                    at: now,
                });
            }
        }
        let changes: Vec<TaskChange> = tasks
            .iter()
            .map(|&task_uuid| TaskChange {
                task_uuid,
                expected: from,
                new: to,
            })
            .collect();
        let applied = tx.change_tasks_audited(&changes, &transitions, now).await?;
        for &task_uuid in &applied {
            for &(a, trigger, b) in &steps {
                effects.events.push(EngineEvent::Task {
                    task_uuid,
                    from: Some(a),
                    to: b,
                    trigger: trigger.as_str(),
                    details: metadata.clone(),
                });
            }
        }
        Ok(applied)
    }

    /// Re-enqueues steps whose retry is due. Safe to run in many processes at once. A step
    /// waiting for a retry under a task that is already finished is cancelled instead.
    pub async fn enqueue_due_retries(&self, limit: i64) -> Result<usize> {
        let now = Utc::now();
        let due = self.store().due_retries(now, limit).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = due.iter().map(|l| l.step_uuid).collect();
        retrying("enqueue due retries", || self.enqueue_retries_once(&ids)).await
    }

    async fn enqueue_retries_once(&self, ids: &[Uuid]) -> Result<usize> {
        let mut tx = self.store().begin().await?;
        let locks = tx.lock_steps(ids).await?;
        let now = Utc::now();
        let mut plan = Plan::default();
        let mut effects = Effects::default();
        for lock in locks.iter().filter(|l| l.state == StepState::WaitingForRetry) {
            if lock.task_state.is_terminal() {
                plan.cancel_open_step(&mut effects, lock, now, "task is already finished")?;
                continue;
            }
            let to = plan.transition(
                &mut effects,
                lock,
                lock.state,
                StepTrigger::Enqueue,
                lock.attempts,
                json!({"retry_of_attempt": lock.attempts}),
                now,
            )?;
            plan.step_changes.push(StepChange::cas(
                lock.step_uuid,
                (lock.state, lock.attempts),
                (to, lock.attempts),
            ));
            plan.send.push(OutgoingMessage {
                queue: lock.queue.clone(),
                body: message_body(lock.step_uuid, lock.task_uuid, lock.attempts),
                hidden_for: None,
                priority: lock.task_priority,
            });
        }
        let applied = tx
            .change_steps_audited(&plan.step_changes, &plan.step_transitions, now)
            .await?;
        plan.send.retain(|m| applied.contains(&m.body.step_uuid));
        tx.send_messages(&plan.send).await?;
        let deltas = plan.nonzero_deltas();
        tx.apply_task_deltas(&deltas, now).await?;
        // Tasks that waited for these retries run again.
        let mut resumed: Vec<Uuid> = locks
            .iter()
            .filter(|l| l.task_state == TaskState::WaitingForRetry && applied.contains(&l.step_uuid))
            .map(|l| l.task_uuid)
            .collect();
        resumed.sort();
        resumed.dedup();
        self.walk_tasks(
            tx.as_mut(),
            &resumed,
            TaskState::WaitingForRetry,
            &[TaskTrigger::EnqueueReadySteps, TaskTrigger::StepsEnqueued],
            json!({"reason": "a retry is due"}),
            now,
            &mut effects,
        )
        .await?;
        effects.queues.extend(plan.send.iter().map(|m| m.queue.clone()));
        self.commit_effects(tx, effects).await?;
        Ok(applied.len())
    }

    /// Fails attempts that overran their `timeout_seconds` (retryable `timeout` errors). Workers
    /// enforce their own deadlines too; this catches attempts whose worker went away.
    pub async fn fail_overdue_attempts(&self, limit: i64) -> Result<usize> {
        let now = Utc::now();
        let overdue = self.store().overdue_attempts(now, limit).await?;
        if overdue.is_empty() {
            return Ok(0);
        }
        let batch = overdue
            .iter()
            .map(|l| Completion {
                step_uuid: l.step_uuid,
                attempt: l.attempts,
                message: None,
                outcome: StepOutcome::Failure(timeout_failure(l)),
                worker: Some("orchestrator".into()),
                lost_lease: false,
            })
            .collect();
        let reports = self.apply_completions(batch).await?;
        Ok(reports
            .iter()
            .filter(|r| matches!(r, CompletionReport::Applied { .. }))
            .count())
    }

    /// Gives claimed-but-unstarted steps back to their queue (graceful shutdown): the step is
    /// `enqueued` again under a fresh message, visible at once. Attempt numbers only grow, so
    /// fencing holds; the unused attempt does not count against `max_attempts`.
    pub async fn release_claims(&self, claims: &[(Uuid, i32, MessageRef)]) -> Result<usize> {
        if claims.is_empty() {
            return Ok(0);
        }
        retrying("release claims", || self.release_claims_once(claims)).await
    }

    async fn release_claims_once(&self, claims: &[(Uuid, i32, MessageRef)]) -> Result<usize> {
        let mut tx = self.store().begin().await?;
        let ids: Vec<Uuid> = claims.iter().map(|c| c.0).collect();
        let locks = lock_map(tx.as_mut(), &ids).await?;
        let now = Utc::now();
        let mut plan = Plan::default();
        let mut effects = Effects::default();
        for (step, attempt, message) in claims {
            let Some(lock) = locks.get(step) else { continue };
            if lock.state != StepState::InProgress || lock.attempts != *attempt {
                continue;
            }
            let to = plan.transition(
                &mut effects,
                lock,
                lock.state,
                StepTrigger::Release,
                *attempt,
                json!({"reason": "worker shutting down before the attempt started"}),
                now,
            )?;
            plan.step_changes.push(StepChange {
                free_attempts_delta: 1,
                ..StepChange::cas(lock.step_uuid, (lock.state, lock.attempts), (to, lock.attempts))
            });
            plan.delete.push(message.clone());
            plan.send.push(OutgoingMessage {
                queue: lock.queue.clone(),
                body: message_body(lock.step_uuid, lock.task_uuid, lock.attempts),
                hidden_for: None,
                priority: lock.task_priority,
            });
        }
        let applied = tx
            .change_steps_audited(&plan.step_changes, &plan.step_transitions, now)
            .await?;
        plan.send.retain(|m| applied.contains(&m.body.step_uuid));
        tx.delete_messages(&plan.delete).await?;
        tx.send_messages(&plan.send).await?;
        effects.queues.extend(plan.send.iter().map(|m| m.queue.clone()));
        self.commit_effects(tx, effects).await?;
        Ok(applied.len())
    }

    /// Extends the leases of messages whose handlers are still running.
    pub async fn extend_leases(&self, messages: &[MessageRef], lease: Duration) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut tx = self.store().begin().await?;
        tx.set_message_visibility(messages, lease).await?;
        tx.commit().await?;
        if lease.is_zero() {
            // Visible now: this process's workers hear it here, other processes by NOTIFY.
            let mut queues: Vec<&String> = messages.iter().map(|m| &m.queue).collect();
            queues.sort();
            queues.dedup();
            for q in queues {
                self.publish_signal(RemoteSignal::Queue(q.clone()));
            }
        }
        Ok(())
    }

    pub(super) fn publish(&self, effects: Effects) {
        let mut queues = effects.queues;
        queues.sort();
        queues.dedup();
        for q in queues {
            self.publish_signal(RemoteSignal::Queue(q));
        }
        for t in effects.finished_tasks {
            self.publish_signal(RemoteSignal::TaskFinished(t));
        }
        if effects.timers_changed {
            self.publish_signal(RemoteSignal::Timers);
        }
        self.announce(effects.events, effects.fast);
    }
}

/// A step claimed in the current transaction (from its queue, or eagerly by a completion),
/// before its task context and dependency results are read.
struct PendingClaim {
    message: MessageRef,
    step_uuid: Uuid,
    task_uuid: Uuid,
    step_name: String,
    attempt: i32,
    /// Effective budget handed to the handler: `max_attempts` plus the attempts that do not
    /// count (released claims, lost leases), so `is_last_retry` stays right.
    max_attempts: i32,
    template: Arc<CompiledTemplate>,
    deadline: Option<DateTime<Utc>>,
    /// The step row as this transaction left it (used to fail the step if it cannot run).
    lock: StepLock,
}

/// What a claim reads for its steps (task contexts and dependency results, in the claiming
/// transaction): the tasks of `claims`, and those of their steps that have dependencies (root
/// steps have no dependency results to read: their template says so).
fn claim_input_ids(claims: &[PendingClaim]) -> (Vec<Uuid>, Vec<Uuid>) {
    let mut task_ids: Vec<Uuid> = claims.iter().map(|c| c.task_uuid).collect();
    task_ids.sort();
    task_ids.dedup();
    let step_ids = claims
        .iter()
        .filter(|c| c.template.has_dependencies(&c.step_name))
        .map(|c| c.step_uuid)
        .collect();
    (task_ids, step_ids)
}

/// Claims made by a completion (eager dispatch), with the inputs read for them.
#[derive(Default)]
struct EagerClaims {
    claims: Vec<PendingClaim>,
    inputs: Vec<TaskInput>,
    dependency_results: Vec<DependencyResult>,
}

/// Turns claims into [`ClaimedStep`]s with their task inputs and dependency results; a claim
/// whose inputs cannot be read comes back as poisoned, to be failed.
fn assemble_claims(
    claims: Vec<PendingClaim>,
    inputs: Vec<TaskInput>,
    dependency_results: Vec<DependencyResult>,
) -> (Vec<ClaimedStep>, Vec<Poisoned>) {
    let inputs: HashMap<Uuid, TaskInput> = inputs.into_iter().map(|i| (i.task_uuid, i)).collect();
    let mut deps: HashMap<Uuid, Map<String, Value>> = HashMap::new();
    let mut unreadable_deps: HashMap<Uuid, String> = HashMap::new();
    for (child, name, result) in dependency_results {
        match result {
            Ok(value) => {
                deps.entry(child).or_default().insert(name, value);
            }
            Err(why) => {
                unreadable_deps.insert(child, format!("the result of its dependency '{name}': {why}"));
            }
        }
    }
    let mut out = Vec::with_capacity(claims.len());
    let mut poisoned = Vec::new();
    for c in claims {
        let context = match inputs.get(&c.task_uuid).map(|i| (&i.context, i.correlation_id)) {
            None => Err(format!("its task {} is missing", c.task_uuid)),
            Some((Err(why), _)) => Err(why.clone()),
            Some((Ok(context), correlation)) => match unreadable_deps.remove(&c.step_uuid) {
                Some(why) => Err(why),
                None => Ok((context.clone(), correlation)),
            },
        };
        match context {
            Ok((context, correlation_id)) => out.push(ClaimedStep {
                message: c.message,
                step_uuid: c.step_uuid,
                task_uuid: c.task_uuid,
                step_name: c.step_name,
                attempt: c.attempt,
                max_attempts: c.max_attempts,
                template: c.template,
                context,
                dependency_results: deps.remove(&c.step_uuid).unwrap_or_default(),
                correlation_id,
                deadline: c.deadline,
                batch: None,
                checkpoint: None,
            }),
            Err(why) => poisoned.push((c.lock, Some(c.message), why)),
        }
    }
    (out, poisoned)
}

impl Tasker {
    /// Checks a successful result against its step's type (see [`step_types::check_outcome`]).
    /// A template that cannot be read expands nothing (the step's claim already checked it).
    pub(super) async fn check_step_type_outcome(
        &self,
        lock: &StepLock,
        result: &Value,
    ) -> Result<std::result::Result<Option<Expansion>, StepFailure>> {
        let template = match self.template_by_id(lock.template_id).await {
            Ok(t) => t,
            Err(e) if e.is_transient() => return Err(e),
            Err(_) => return Ok(Ok(None)),
        };
        if !template.creates_steps_at_run_time() {
            return Ok(Ok(None));
        }
        Ok(step_types::check_outcome(
            &template,
            &lock.name,
            result,
            &self.inner.limits,
        ))
    }

    /// Creates the steps a decision or batch makes possible in `lock`'s task, whose completion
    /// this transaction has written; returns those ready to run. The task row is locked (by
    /// `lock_steps`), so no other completion in the task runs meanwhile and the states read
    /// here hold until commit.
    pub(super) async fn expand(
        &self,
        tx: &mut dyn StoreTx,
        lock: &StepLock,
        expansion: Expansion,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReadyChild>> {
        let template = self.template_by_id(lock.template_id).await?;
        let existing = tx.task_steps(lock.task_uuid).await?;
        let requested = match expansion {
            Expansion::Decision => Vec::new(),
            Expansion::Batches(instances) => instances,
        };
        let planned = step_types::plan_steps(&template, &existing, requested);
        if planned.is_empty() {
            return Ok(Vec::new());
        }
        let mut created = Vec::with_capacity(planned.len());
        let mut edges = Vec::new();
        let mut ready = Vec::new();
        for p in planned {
            edges.extend(p.parents.iter().map(|&parent| (parent, p.step_uuid)));
            let step = super::new_step(
                &template,
                p.index,
                p.step_uuid,
                p.name,
                StepState::Pending,
                p.pending_parents,
            );
            if p.pending_parents == 0 {
                ready.push(ReadyChild {
                    step_uuid: step.step_uuid,
                    name: step.name.clone(),
                    task_uuid: lock.task_uuid,
                    queue: step.queue.clone(),
                    max_attempts: step.max_attempts,
                });
            }
            created.push(CreatedStep {
                step,
                inputs: p.inputs,
                created_by: lock.name.clone(),
            });
        }
        tracing::debug!(task = %lock.task_uuid, by = %lock.name, created = created.len(), "steps created at run time");
        tx.insert_steps(lock.task_uuid, &created, &edges, now).await?;
        Ok(ready)
    }

    /// Records a checkpoint of `attempt` of a running step (see [`crate::Worker::checkpoint`]):
    /// `{"cursor": …, "items_done": n, "accumulated": …}`, checked against the JSON limits,
    /// stored with the attempt and the time. Fenced: [`TaskerError::Fenced`] when the step is
    /// no longer `in_progress` at that attempt.
    pub async fn save_checkpoint(&self, step_uuid: Uuid, attempt: i32, checkpoint: Value) -> Result<()> {
        let now = Utc::now();
        let record = checkpoint_record(checkpoint, attempt, now)?;
        retrying("checkpoint", || async {
            let mut tx = self.store().begin().await?;
            if tx.save_checkpoint(step_uuid, attempt, &record, now).await? {
                tx.commit().await
            } else {
                tx.rollback().await?;
                Err(TaskerError::Fenced(format!(
                    "step {step_uuid} is no longer running attempt {attempt} (it timed out, was re-claimed or cancelled)"
                )))
            }
        })
        .await
    }

    /// Reads what claimed batch workers and retried steps need beyond the hot-path reads: a
    /// batch worker's cursor and the last checkpoint.
    async fn attach_extras(&self, tx: &mut dyn StoreTx, claimed: &mut [ClaimedStep]) -> Result<()> {
        let ids: Vec<Uuid> = claimed
            .iter()
            .filter(|c| {
                c.attempt > 1
                    || c.template
                        .step(&c.step_name)
                        .is_some_and(|s| s.step_type == StepType::BatchWorker)
            })
            .map(|c| c.step_uuid)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut extras: HashMap<Uuid, StepExtras> = tx
            .step_extras(&ids)
            .await?
            .into_iter()
            .map(|x| (x.step_uuid, x))
            .collect();
        for c in claimed {
            if let Some(x) = extras.remove(&c.step_uuid) {
                c.batch = x.inputs.and_then(|mut i| i.get_mut("batch").map(Value::take));
                c.checkpoint = x.checkpoint;
            }
        }
        Ok(())
    }

    /// Whether completing this step can make children ready: `false` only when its template
    /// says no step depends on it, which saves the release statement for leaves.
    async fn may_release_children(&self, lock: &StepLock) -> Result<bool> {
        match self.template_by_id(lock.template_id).await {
            Ok(t) => Ok(t.has_dependents(&lock.name)),
            Err(e) if e.is_transient() => Err(e),
            Err(_) => Ok(true),
        }
    }
}

/// What `apply_isolating` returns; boxed because it recurses.
type BoxedApply<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(Vec<CompletionReport>, Vec<ClaimedStep>)>> + Send + 'a>>;

/// A claimed step that cannot run: its lock as claimed, its message, and why.
type Poisoned = (StepLock, Option<MessageRef>, String);

/// Runs one transaction again (a few times, after a short random pause) when it loses a
/// deadlock or serialization race or a lock/busy timeout: such a loser is retried, never dropped.
pub(super) async fn retrying<T, F, Fut>(what: &str, mut body: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    const RACE_RETRIES: u32 = 10;
    let mut lost = 0;
    loop {
        match body().await {
            Err(e) if e.is_race() && lost < RACE_RETRIES => {
                lost += 1;
                tracing::debug!(error = %e, what, lost, "transaction lost a race; running it again");
                let pause = rand::random_range(1..=5u64 * u64::from(lost));
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            other => return other,
        }
    }
}

/// `now + secs`, or `None` (no deadline) should a stored value ever be out of chrono's range.
fn deadline_after(now: DateTime<Utc>, secs: u64) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(secs).ok()?;
    now.checked_add_signed(chrono::Duration::try_seconds(secs)?)
}

/// `now + delay`, saturating at a year from now (delays are bounded far below that).
fn later(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    let year = chrono::Duration::days(365);
    let delay = chrono::Duration::from_std(delay).unwrap_or(year).min(year);
    now.checked_add_signed(delay).unwrap_or(now)
}

/// `lock` as it is after a claim moved it to `in_progress` at `attempt`.
fn running_lock(lock: &StepLock, attempt: i32) -> StepLock {
    StepLock {
        state: StepState::InProgress,
        attempts: attempt,
        ..lock.clone()
    }
}

/// Locks `ids` (see [`StoreTx::lock_steps`]) and indexes them by step.
pub(super) async fn lock_map(tx: &mut dyn StoreTx, ids: &[Uuid]) -> Result<HashMap<Uuid, StepLock>> {
    Ok(tx
        .lock_steps(ids)
        .await?
        .into_iter()
        .map(|l| (l.step_uuid, l))
        .collect())
}

/// A step change that ends an attempt (success, retry scheduling, failure, cancellation).
pub(super) fn finish_change(
    lock: &StepLock,
    to: StepState,
    results: Option<Value>,
    error: Option<Value>,
) -> StepChange {
    StepChange {
        results,
        last_error: error,
        finished: to.is_terminal(),
        ..StepChange::cas(lock.step_uuid, (lock.state, lock.attempts), (to, lock.attempts))
    }
}

/// A handler's checkpoint as stored: its `cursor` (required), `items_done` (a non-negative
/// integer, 0 when absent) and `accumulated` (any JSON, `null` when absent), with the attempt and
/// the time. Anything else, or a value over the JSON limits, is refused naming it.
fn checkpoint_record(checkpoint: Value, attempt: i32, now: DateTime<Utc>) -> Result<Value> {
    let bad = |why: String| TaskerError::InvalidArgument(format!("checkpoint: {why}"));
    let Value::Object(mut fields) = checkpoint else {
        return Err(bad(format!(
            "expected an object with 'cursor', 'items_done' and 'accumulated', got {}",
            limits::clean_text(&checkpoint.to_string())
        )));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "cursor" | "items_done" | "accumulated"))
    {
        return Err(bad(format!(
            "unknown field '{}' (allowed: cursor, items_done, accumulated)",
            limits::clean_text(unknown)
        )));
    }
    let cursor = fields
        .remove("cursor")
        .ok_or_else(|| bad("'cursor' is required".into()))?;
    let items_done = match fields.remove("items_done") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad(format!("'items_done' must be a non-negative integer, got {v}")))?,
    };
    let accumulated = fields.remove("accumulated").unwrap_or(Value::Null);
    let mut record = json!({
        "cursor": cursor,
        "items_done": items_done,
        "accumulated": accumulated,
        "attempt": attempt,
        "recorded_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    limits::check(&record).map_err(|v| bad(v.describe("the checkpoint")))?;
    limits::replace_nul(&mut record);
    Ok(record)
}

fn timeout_failure(lock: &StepLock) -> StepFailure {
    StepFailure::retryable(
        error_types::TIMEOUT,
        format!(
            "step '{}' attempt {} exceeded its timeout_seconds",
            lock.name, lock.attempts
        ),
    )
}

/// How a task is closed by hand: cancelled, or resolved by an operator.
pub(super) struct TaskClosing {
    pub trigger: TaskTrigger,
    /// Past participle for messages: "cancelled", "resolved".
    pub verb: &'static str,
    /// The task transition's audit metadata.
    pub metadata: Value,
    /// The audit metadata of each open step it cancels.
    pub step_metadata: Value,
    /// The status its open DLQ entry closes with, and the note it gets.
    pub dlq_status: DlqStatus,
    pub dlq_by: String,
    pub dlq_text: String,
    /// The error for a task whose state does not allow it (given the state table's).
    pub refused: fn(Uuid, TaskState, TaskerError) -> TaskerError,
    /// The error for a task that kept changing under every try.
    pub kept_changing: fn(String) -> TaskerError,
}

/// Cancels a task and its open steps in one transaction. The task row is changed (and so
/// locked) first, as the lock order demands; a cancel that races another change of the task
/// reads its new state and tries again, and one that lost a deadlock is run again.
pub(super) async fn cancel(tasker: &Tasker, task_uuid: Uuid) -> Result<()> {
    close_task(
        tasker,
        task_uuid,
        &TaskClosing {
            trigger: TaskTrigger::Cancel,
            verb: "cancelled",
            metadata: empty(),
            step_metadata: json!({"reason": "task cancelled"}),
            dlq_status: DlqStatus::Cancelled,
            dlq_by: "tasker".into(),
            dlq_text: "task cancelled".into(),
            refused: |_, _, e| e,
            kept_changing: TaskerError::InvalidArgument,
        },
    )
    .await
}

/// Closes a task (see [`TaskClosing`]) and cancels its open steps, in one transaction; steps
/// still running are cancelled when their outcome arrives. Its open DLQ entry is closed.
pub(super) async fn close_task(tasker: &Tasker, task_uuid: Uuid, how: &TaskClosing) -> Result<()> {
    const CONCURRENT_CHANGES: u32 = 20;
    for _ in 0..CONCURRENT_CHANGES {
        if retrying(how.verb, || close_task_once(tasker, task_uuid, how)).await? {
            return Ok(());
        }
    }
    let now_state = tasker.task_summary(task_uuid).await?.state;
    Err((how.kept_changing)(format!(
        "task {task_uuid} kept changing while being {} (now {now_state}); try again if still wanted",
        how.verb
    )))
}

/// One try: `false` when the task changed between reading its state and the compare-and-swap.
async fn close_task_once(tasker: &Tasker, task_uuid: Uuid, how: &TaskClosing) -> Result<bool> {
    let task = tasker.task_summary(task_uuid).await?;
    let state = task
        .task_state()
        .ok_or_else(|| TaskerError::Corrupt(format!("task {task_uuid} has unknown state '{}'", task.state)))?;
    let to = state
        .apply(how.trigger)
        .map_err(|e| (how.refused)(task_uuid, state, e))?;
    let now = Utc::now();
    let mut tx = tasker.store().begin().await?;
    let applied = tx
        .change_tasks(
            &[TaskChange {
                task_uuid,
                expected: state,
                new: to,
            }],
            now,
        )
        .await?;
    if applied.is_empty() {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.insert_task_transitions(&[TransitionRecord {
        entity_uuid: task_uuid,
        task_uuid,
        from_state: Some(state.as_str()),
        to_state: to.as_str(),
        event: how.trigger.as_str(),
        metadata: how.metadata.clone(),
        at: now,
    }])
    .await?;
    let open = [StepState::Pending, StepState::Enqueued, StepState::WaitingForRetry];
    let cancelled = tx.cancel_open_steps(task_uuid, &open, now).await?;
    let mut transitions = Vec::with_capacity(cancelled.len());
    let mut changes = vec![EngineEvent::Task {
        task_uuid,
        from: Some(state),
        to,
        trigger: how.trigger.as_str(),
        details: how.metadata.clone(),
    }];
    let mut active_delta = 0;
    for (step, name, from) in &cancelled {
        let to = from.apply(StepTrigger::Cancel)?;
        if *from != StepState::Pending {
            active_delta -= 1;
        }
        transitions.push(TransitionRecord {
            entity_uuid: *step,
            task_uuid,
            from_state: Some(from.as_str()),
            to_state: to.as_str(),
            event: StepTrigger::Cancel.as_str(),
            metadata: how.step_metadata.clone(),
            at: now,
        });
        changes.push(EngineEvent::Step {
            task_uuid,
            step_uuid: *step,
            step_name: name.clone(),
            from: *from,
            to,
            attempt: 0,
            trigger: StepTrigger::Cancel.as_str(),
            details: how.step_metadata.clone(),
        });
    }
    tx.insert_step_transitions(&transitions).await?;
    tx.apply_task_deltas(
        &[TaskDelta {
            task_uuid,
            active: active_delta,
            ..TaskDelta::default()
        }],
        now,
    )
    .await?;
    let note = DlqNote {
        by: how.dlq_by.clone(),
        text: how.dlq_text.clone(),
        at: now,
        status: Some(how.dlq_status.as_str().to_owned()),
    };
    let closed = tx.close_dlq_entries(&[task_uuid], how.dlq_status, &note, now).await?;
    tx.notify_task_finished(task_uuid).await?;
    let effects = Effects {
        finished_tasks: vec![task_uuid],
        events: changes,
        ..Effects::default()
    };
    tasker.commit_effects(tx, effects).await?;
    if closed > 0 {
        let filter = DlqFilter {
            task_uuid: Some(task_uuid),
            status: Some(how.dlq_status),
            ..DlqFilter::default()
        };
        if let Some(entry) = tasker.list_dlq(&filter).await?.into_iter().max_by_key(|e| e.updated_at) {
            tasker
                .publish_after(
                    "dlq.entry_resolved",
                    Some(task_uuid),
                    json!({"entry_uuid": entry.entry_uuid.to_string(), "status": how.dlq_status.as_str(),
                        "resolved_by": how.dlq_by}),
                )
                .await;
        }
    }
    Ok(true)
}
