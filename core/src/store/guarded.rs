//! A [`Store`] behind a [`CircuitBreaker`]: every call asks the breaker first and reports to it
//! how the database answered.
//!
//! A transaction holds one permit from `begin` to `commit`/`rollback`: with lazy `BEGIN`s and
//! connections reused without a check (`pg_connections.rs`), `begin` itself often touches
//! nothing, so it is the statements and the commit that tell whether the server is there.
//!
//! Every method is forwarded, the ones with default bodies included: a backend overrides those
//! with fused single-statement versions, which the defaults would silently replace.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::*;
use crate::breaker::{CircuitBreaker, Permit};
use crate::error::Result;
use crate::state::StepState;

/// See the module documentation.
#[derive(Debug)]
pub struct GuardedStore {
    inner: Arc<dyn Store>,
    breaker: Arc<CircuitBreaker>,
    events: GuardedEvents,
}

impl GuardedStore {
    pub fn new(inner: Arc<dyn Store>, breaker: Arc<CircuitBreaker>) -> Self {
        Self {
            events: GuardedEvents {
                inner: Arc::clone(&inner),
                breaker: Arc::clone(&breaker),
            },
            inner,
            breaker,
        }
    }

    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }
}

/// Runs `call` if the breaker admits it, and reports its outcome.
async fn guarded<T>(breaker: &Arc<CircuitBreaker>, call: impl Future<Output = Result<T>>) -> Result<T> {
    let permit = breaker.admit(Instant::now())?;
    let result = call.await;
    permit.settle(&result, Instant::now());
    result
}

#[async_trait]
impl Store for GuardedStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        let permit = self.breaker.admit(Instant::now())?;
        match self.inner.begin().await {
            Ok(tx) => Ok(Box::new(GuardedTx {
                inner: tx,
                permit: Some(permit),
            })),
            Err(e) => {
                permit.failed(&e, Instant::now());
                Err(e)
            }
        }
    }

    async fn ensure_queue(&self, queue: &str) -> Result<()> {
        guarded(&self.breaker, self.inner.ensure_queue(queue)).await
    }

    async fn has_visible_messages(&self, queues: &[String]) -> Result<bool> {
        guarded(&self.breaker, self.inner.has_visible_messages(queues)).await
    }

    async fn register_templates(&self, templates: &[NewTemplate]) -> Result<Vec<TemplateRow>> {
        guarded(&self.breaker, self.inner.register_templates(templates)).await
    }

    async fn register_template(&self, template: &NewTemplate) -> Result<TemplateRow> {
        guarded(&self.breaker, self.inner.register_template(template)).await
    }

    async fn create_task(
        &self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        guarded(
            &self.breaker,
            self.inner
                .create_task(task, task_transitions, step_transitions, messages),
        )
        .await
    }

    async fn create_task_with_events(
        &self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
        events: &[NewEvent],
    ) -> Result<InsertedTask> {
        guarded(
            &self.breaker,
            self.inner
                .create_task_with_events(task, task_transitions, step_transitions, messages, events),
        )
        .await
    }

    async fn template_by_id(&self, id: i64) -> Result<Option<TemplateRow>> {
        guarded(&self.breaker, self.inner.template_by_id(id)).await
    }

    async fn template_versions(&self, namespace: &str, name: &str) -> Result<Vec<TemplateRow>> {
        guarded(&self.breaker, self.inner.template_versions(namespace, name)).await
    }

    async fn list_templates(&self) -> Result<Vec<TemplateRow>> {
        guarded(&self.breaker, self.inner.list_templates()).await
    }

    async fn task_detail(&self, task_uuid: Uuid) -> Result<Option<TaskDetail>> {
        guarded(&self.breaker, self.inner.task_detail(task_uuid)).await
    }

    async fn task_summary(&self, task_uuid: Uuid) -> Result<Option<TaskSummary>> {
        guarded(&self.breaker, self.inner.task_summary(task_uuid)).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>> {
        guarded(&self.breaker, self.inner.list_tasks(filter)).await
    }

    async fn due_retries(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>> {
        guarded(&self.breaker, self.inner.due_retries(now, limit)).await
    }

    async fn overdue_attempts(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>> {
        guarded(&self.breaker, self.inner.overdue_attempts(now, limit)).await
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>> {
        guarded(&self.breaker, self.inner.next_timer()).await
    }

    async fn list_dlq(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>> {
        guarded(&self.breaker, self.inner.list_dlq(filter)).await
    }

    async fn dlq_entry(&self, entry_uuid: Uuid) -> Result<Option<DlqEntry>> {
        guarded(&self.breaker, self.inner.dlq_entry(entry_uuid)).await
    }

    async fn update_dlq_entry(
        &self,
        entry_uuid: Uuid,
        status: Option<DlqStatus>,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<Option<DlqEntry>> {
        guarded(
            &self.breaker,
            self.inner.update_dlq_entry(entry_uuid, status, note, now),
        )
        .await
    }

    async fn dlq_counts(&self) -> Result<Vec<DlqCount>> {
        guarded(&self.breaker, self.inner.dlq_counts()).await
    }

    async fn open_tasks(
        &self,
        template_ids: &[i64],
        idle_before: DateTime<Utc>,
        created_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OpenTask>> {
        guarded(
            &self.breaker,
            self.inner.open_tasks(template_ids, idle_before, created_before, limit),
        )
        .await
    }

    async fn waiting_tasks(&self, queue: &str, enqueued_before: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>> {
        guarded(&self.breaker, self.inner.waiting_tasks(queue, enqueued_before, limit)).await
    }

    async fn register_worker(&self, worker: &WorkerRecord) -> Result<()> {
        guarded(&self.breaker, self.inner.register_worker(worker)).await
    }

    async fn heartbeat_worker(
        &self,
        registration_uuid: Uuid,
        in_flight: i32,
        stopped: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        guarded(
            &self.breaker,
            self.inner.heartbeat_worker(registration_uuid, in_flight, stopped, now),
        )
        .await
    }

    async fn list_workers(&self, seen_since: DateTime<Utc>) -> Result<Vec<WorkerRecord>> {
        guarded(&self.breaker, self.inner.list_workers(seen_since)).await
    }

    async fn overview(&self, window: &OverviewWindow) -> Result<Overview> {
        guarded(&self.breaker, self.inner.overview(window)).await
    }

    async fn compact_task_counts(&self, before: DateTime<Utc>) -> Result<()> {
        guarded(&self.breaker, self.inner.compact_task_counts(before)).await
    }

    async fn commit_count(&self) -> Result<Option<i64>> {
        guarded(&self.breaker, self.inner.commit_count()).await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        guarded(&self.breaker, self.inner.queue_stats()).await
    }

    fn connection_stats(&self) -> (u32, u32) {
        self.inner.connection_stats()
    }

    async fn ping(&self) -> Result<()> {
        guarded(&self.breaker, self.inner.ping()).await
    }

    fn subscribe_remote(&self) -> Option<tokio::sync::broadcast::Receiver<RemoteSignal>> {
        self.inner.subscribe_remote()
    }

    fn events(&self) -> &dyn EventStore {
        &self.events
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

/// A transaction of a [`GuardedStore`]: its permit is settled by the first failure that says
/// the server is away, else by the commit or rollback.
struct GuardedTx {
    inner: Box<dyn StoreTx>,
    /// `None` once settled.
    permit: Option<Permit>,
}

impl GuardedTx {
    fn note<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if e.is_unreachable() {
                if let Some(permit) = self.permit.take() {
                    permit.failed(e, Instant::now());
                }
            }
        }
        result
    }
}

#[async_trait]
impl MessageQueue for GuardedTx {
    async fn read_messages(&mut self, queue: &str, lease: Duration, max: i64) -> Result<Vec<QueueMessage>> {
        let r = self.inner.read_messages(queue, lease, max).await;
        self.note(r)
    }

    async fn read_delivered(
        &mut self,
        queue: &str,
        lease: Duration,
        delivered: &[(i64, i32)],
    ) -> Result<Vec<QueueMessage>> {
        let r = self.inner.read_delivered(queue, lease, delivered).await;
        self.note(r)
    }

    async fn send_messages(&mut self, messages: &[OutgoingMessage]) -> Result<Vec<MessageRef>> {
        let r = self.inner.send_messages(messages).await;
        self.note(r)
    }

    async fn delete_messages(&mut self, messages: &[MessageRef]) -> Result<()> {
        let r = self.inner.delete_messages(messages).await;
        self.note(r)
    }

    async fn set_message_visibility(&mut self, messages: &[MessageRef], after: Duration) -> Result<()> {
        let r = self.inner.set_message_visibility(messages, after).await;
        self.note(r)
    }
}

#[async_trait]
impl StoreTx for GuardedTx {
    async fn lock_steps(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepLock>> {
        let r = self.inner.lock_steps(step_uuids).await;
        self.note(r)
    }

    async fn read_and_lock(
        &mut self,
        queue: &str,
        lease: Duration,
        max: i64,
    ) -> Result<(Vec<QueueMessage>, Vec<StepLock>)> {
        let r = self.inner.read_and_lock(queue, lease, max).await;
        self.note(r)
    }

    async fn change_steps_with_inputs(
        &mut self,
        changes: &[StepChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
        task_uuids: &[Uuid],
        step_uuids: &[Uuid],
    ) -> Result<(Vec<Uuid>, Vec<TaskInput>, Vec<DependencyResult>)> {
        let r = self
            .inner
            .change_steps_with_inputs(changes, transitions, now, task_uuids, step_uuids)
            .await;
        self.note(r)
    }

    async fn change_steps(&mut self, changes: &[StepChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        let r = self.inner.change_steps(changes, now).await;
        self.note(r)
    }

    async fn change_steps_audited(
        &mut self,
        changes: &[StepChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>> {
        let r = self.inner.change_steps_audited(changes, transitions, now).await;
        self.note(r)
    }

    async fn cancel_open_steps(
        &mut self,
        task_uuid: Uuid,
        from: &[StepState],
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, String, StepState)>> {
        let r = self.inner.cancel_open_steps(task_uuid, from, now).await;
        self.note(r)
    }

    async fn release_children(&mut self, parents: &[Uuid]) -> Result<Vec<ReadyChild>> {
        let r = self.inner.release_children(parents).await;
        self.note(r)
    }

    async fn apply_task_deltas(&mut self, deltas: &[TaskDelta], now: DateTime<Utc>) -> Result<Vec<TaskCounters>> {
        let r = self.inner.apply_task_deltas(deltas, now).await;
        self.note(r)
    }

    async fn change_tasks(&mut self, changes: &[TaskChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        let r = self.inner.change_tasks(changes, now).await;
        self.note(r)
    }

    async fn change_tasks_audited(
        &mut self,
        changes: &[TaskChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>> {
        let r = self.inner.change_tasks_audited(changes, transitions, now).await;
        self.note(r)
    }

    async fn insert_step_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()> {
        let r = self.inner.insert_step_transitions(rows).await;
        self.note(r)
    }

    async fn insert_task_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()> {
        let r = self.inner.insert_task_transitions(rows).await;
        self.note(r)
    }

    async fn insert_task(&mut self, task: &NewTask) -> Result<InsertedTask> {
        let r = self.inner.insert_task(task).await;
        self.note(r)
    }

    async fn create_task_rows(
        &mut self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        let r = self
            .inner
            .create_task_rows(task, task_transitions, step_transitions, messages)
            .await;
        self.note(r)
    }

    async fn task_inputs(&mut self, task_uuids: &[Uuid]) -> Result<Vec<TaskInput>> {
        let r = self.inner.task_inputs(task_uuids).await;
        self.note(r)
    }

    async fn dependency_results(&mut self, step_uuids: &[Uuid]) -> Result<Vec<DependencyResult>> {
        let r = self.inner.dependency_results(step_uuids).await;
        self.note(r)
    }

    async fn claim_inputs(
        &mut self,
        task_uuids: &[Uuid],
        step_uuids: &[Uuid],
    ) -> Result<(Vec<TaskInput>, Vec<DependencyResult>)> {
        let r = self.inner.claim_inputs(task_uuids, step_uuids).await;
        self.note(r)
    }

    async fn apply_outcome_writes(
        &mut self,
        w: OutcomeWrites<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Uuid>, Vec<ReadyChild>)> {
        let r = self.inner.apply_outcome_writes(w, now).await;
        self.note(r)
    }

    async fn apply_followup_writes(&mut self, w: FollowupWrites<'_>, now: DateTime<Utc>) -> Result<Followup> {
        let r = self.inner.apply_followup_writes(w, now).await;
        self.note(r)
    }

    async fn task_steps(&mut self, task_uuid: Uuid) -> Result<Vec<ExistingStep>> {
        let r = self.inner.task_steps(task_uuid).await;
        self.note(r)
    }

    async fn insert_steps(
        &mut self,
        task_uuid: Uuid,
        steps: &[CreatedStep],
        edges: &[(Uuid, Uuid)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let r = self.inner.insert_steps(task_uuid, steps, edges, now).await;
        self.note(r)
    }

    async fn step_extras(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepExtras>> {
        let r = self.inner.step_extras(step_uuids).await;
        self.note(r)
    }

    async fn save_checkpoint(
        &mut self,
        step_uuid: Uuid,
        attempt: i32,
        checkpoint: &Value,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let r = self.inner.save_checkpoint(step_uuid, attempt, checkpoint, now).await;
        self.note(r)
    }

    async fn insert_events(&mut self, events: &[NewEvent]) -> Result<()> {
        let r = self.inner.insert_events(events).await;
        self.note(r)
    }

    async fn insert_dlq_entries(
        &mut self,
        entries: &[NewDlqEntry],
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertedDlqEntry>> {
        let r = self.inner.insert_dlq_entries(entries, now).await;
        self.note(r)
    }

    async fn close_dlq_entries(
        &mut self,
        task_uuids: &[Uuid],
        status: DlqStatus,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let r = self.inner.close_dlq_entries(task_uuids, status, note, now).await;
        self.note(r)
    }

    async fn running_steps(&mut self, task_uuids: &[Uuid]) -> Result<Vec<(Uuid, i64)>> {
        let r = self.inner.running_steps(task_uuids).await;
        self.note(r)
    }

    async fn note_dlq_resolution(&mut self, task_uuids: &[Uuid], note: &DlqNote, now: DateTime<Utc>) -> Result<usize> {
        let r = self.inner.note_dlq_resolution(task_uuids, note, now).await;
        self.note(r)
    }

    async fn notify_task_finished(&mut self, task_uuid: Uuid) -> Result<()> {
        let r = self.inner.notify_task_finished(task_uuid).await;
        self.note(r)
    }

    async fn notify_timers(&mut self) -> Result<()> {
        let r = self.inner.notify_timers().await;
        self.note(r)
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let GuardedTx { inner, permit } = *self;
        let result = inner.commit().await;
        if let Some(permit) = permit {
            permit.settle(&result, Instant::now());
        }
        result
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        let GuardedTx { inner, permit } = *self;
        let result = inner.rollback().await;
        if let Some(permit) = permit {
            permit.settle(&result, Instant::now());
        }
        result
    }
}

/// The event log's statements behind the same breaker.
#[derive(Debug)]
struct GuardedEvents {
    inner: Arc<dyn Store>,
    breaker: Arc<CircuitBreaker>,
}

#[async_trait]
impl EventStore for GuardedEvents {
    async fn sequence_events(&self, limit: i64) -> Result<u64> {
        guarded(&self.breaker, self.inner.events().sequence_events(limit)).await
    }

    async fn read_events(&self, partition: i16, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        guarded(&self.breaker, self.inner.events().read_events(partition, after, limit)).await
    }

    async fn join_event_group(
        &self,
        fence: Fence<'_>,
        patterns: &[String],
        start_after: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        guarded(
            &self.breaker,
            self.inner.events().join_event_group(fence, patterns, start_after, now),
        )
        .await
    }

    async fn event_member_heartbeat(
        &self,
        fence: Fence<'_>,
        now: DateTime<Utc>,
        live_since: DateTime<Utc>,
    ) -> Result<i64> {
        guarded(
            &self.breaker,
            self.inner.events().event_member_heartbeat(fence, now, live_since),
        )
        .await
    }

    async fn claim_event_partitions(
        &self,
        fence: Fence<'_>,
        max: i64,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventCursor>> {
        guarded(
            &self.breaker,
            self.inner.events().claim_event_partitions(fence, max, lease_until, now),
        )
        .await
    }

    async fn renew_event_partitions(
        &self,
        fence: Fence<'_>,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<i16>> {
        guarded(
            &self.breaker,
            self.inner.events().renew_event_partitions(fence, lease_until, now),
        )
        .await
    }

    async fn commit_event_positions(
        &self,
        fence: Fence<'_>,
        positions: &[EventCursor],
        now: DateTime<Utc>,
    ) -> Result<Vec<i16>> {
        guarded(
            &self.breaker,
            self.inner.events().commit_event_positions(fence, positions, now),
        )
        .await
    }

    async fn release_event_partitions(&self, fence: Fence<'_>, partitions: &[i16], now: DateTime<Utc>) -> Result<()> {
        guarded(
            &self.breaker,
            self.inner.events().release_event_partitions(fence, partitions, now),
        )
        .await
    }

    async fn leave_event_group(&self, fence: Fence<'_>, now: DateTime<Utc>) -> Result<()> {
        guarded(&self.breaker, self.inner.events().leave_event_group(fence, now)).await
    }

    async fn dead_letter_event(
        &self,
        fence: Fence<'_>,
        at: EventCursor,
        event: &StoredEvent,
        envelope: &Value,
        error: &str,
        attempts: i32,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        guarded(
            &self.breaker,
            self.inner
                .events()
                .dead_letter_event(fence, at, event, envelope, error, attempts, now),
        )
        .await
    }

    async fn event_dead_letters(&self, group: Option<&str>, limit: i64) -> Result<Vec<EventDeadLetter>> {
        guarded(&self.breaker, self.inner.events().event_dead_letters(group, limit)).await
    }

    async fn event_groups(&self, live_since: DateTime<Utc>) -> Result<Vec<EventGroupStatus>> {
        guarded(&self.breaker, self.inner.events().event_groups(live_since)).await
    }

    async fn delete_event_group(&self, group: &str) -> Result<bool> {
        guarded(&self.breaker, self.inner.events().delete_event_group(group)).await
    }

    async fn has_event_groups(&self) -> Result<bool> {
        guarded(&self.breaker, self.inner.events().has_event_groups()).await
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        guarded(&self.breaker, self.inner.events().prune_events(before, limit)).await
    }
}
