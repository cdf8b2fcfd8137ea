//! The RabbitMQ messaging backend (`messaging.backend = "rabbitmq"`) as a decorator of the
//! PostgreSQL store: every statement still runs in PostgreSQL, and the PGMQ rows the engine
//! writes are the outbox the relay publishes (see [`crate::messaging`] for the whole protocol).
//!
//! What changes here is only how a claim finds its messages: [`RabbitTx::read_messages`] takes
//! deliveries this process's consumers buffered and claims their rows by id (a compare-and-swap
//! on `read_ct`, so a stale or duplicate delivery claims nothing). Deliveries are acknowledged
//! when that claim commits, given back when it does not. Commits that made messages visible
//! wake the relay; idle workers learn of work from deliveries, not from the database.
//!
//! Every other method is forwarded, the ones with default bodies included (but `read_and_lock`,
//! whose default reads through `read_messages`): PostgreSQL overrides those with fused
//! single-statement versions, which the defaults would silently replace.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::*;
use crate::error::{Result, TaskerError};
use crate::messaging::broker::{Broker, Buffered};
use crate::state::StepState;

/// See the module documentation.
#[derive(Debug)]
pub struct RabbitStore {
    inner: Arc<dyn Store>,
    broker: Arc<Broker>,
    /// What workers wait on: deliveries (sent by the broker) and the database's other signals.
    signals: broadcast::Sender<RemoteSignal>,
    /// The queues of each worker of this process, by registration.
    workers: Mutex<HashMap<Uuid, Vec<String>>>,
    /// The relay and the signal forwarder.
    tasks: Mutex<Option<Vec<JoinHandle<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Single inserts and removes: a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Queues that got a message visible at once.
fn visible_queues(messages: &[OutgoingMessage]) -> impl Iterator<Item = &str> {
    messages
        .iter()
        .filter(|m| m.hidden_for.is_none_or(|h| h.is_zero()))
        .map(|m| m.queue.as_str())
}

impl RabbitStore {
    /// Wraps `inner` (PostgreSQL; SQLite is refused) and starts the broker connection, the
    /// relay, and the forwarding of the database's signals.
    pub fn new(
        inner: Arc<dyn Store>,
        options: crate::messaging::RabbitOptions,
        breaker: crate::breaker::BreakerOptions,
    ) -> Result<Self> {
        if inner.backend() != Backend::Postgres {
            return Err(TaskerError::InvalidArgument(
                "messaging.backend = \"rabbitmq\" needs PostgreSQL as the database: the outbox that keeps a \
                 step's state and its message from diverging lives in PostgreSQL's transactions (use \
                 messaging.backend = \"database\" with SQLite)"
                    .into(),
            ));
        }
        let (signals, _) = broadcast::channel(4096);
        let broker = Broker::start(options, breaker, signals.clone())?;
        let mut tasks = vec![tokio::spawn(crate::messaging::relay::run(
            Arc::clone(&inner),
            Arc::downgrade(&broker),
        ))];
        if let Some(mut remote) = inner.subscribe_remote() {
            let to = signals.clone();
            let weak = Arc::downgrade(&broker);
            tasks.push(tokio::spawn(async move {
                loop {
                    match remote.recv().await {
                        // Another process sent messages: they reach workers through the relay.
                        Ok(RemoteSignal::Queue(q)) => match weak.upgrade() {
                            Some(b) => b.wake_relay([q.as_str()]),
                            None => return,
                        },
                        Ok(RemoteSignal::Reconnected) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            if let Some(b) = weak.upgrade() {
                                b.wake_relay_all();
                            }
                            let _ = to.send(RemoteSignal::Reconnected);
                        }
                        Ok(other) => {
                            let _ = to.send(other);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }));
        }
        Ok(Self {
            inner,
            broker,
            signals,
            workers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Some(tasks)),
        })
    }

    /// The broker connection (status for readiness, metrics, clean-up).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }
}

#[async_trait]
impl Store for RabbitStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        Ok(Box::new(RabbitTx {
            inner: Some(self.inner.begin().await?),
            broker: Arc::clone(&self.broker),
            taken: Vec::new(),
            wake: BTreeSet::new(),
        }))
    }

    async fn ensure_queue(&self, queue: &str) -> Result<()> {
        self.inner.ensure_queue(queue).await?;
        // The relay looks after the queues this process knows of.
        self.broker.wake_relay([queue]);
        Ok(())
    }

    async fn has_visible_messages(&self, queues: &[String]) -> Result<bool> {
        // Only a delivery can be claimed: idle workers wait on RabbitMQ, not on the database.
        Ok(self.broker.has_buffered(queues))
    }

    async fn register_templates(&self, templates: &[NewTemplate]) -> Result<Vec<TemplateRow>> {
        self.inner.register_templates(templates).await
    }

    async fn register_template(&self, template: &NewTemplate) -> Result<TemplateRow> {
        self.inner.register_template(template).await
    }

    async fn create_task(
        &self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        let inserted = self
            .inner
            .create_task(task, task_transitions, step_transitions, messages)
            .await?;
        if inserted == InsertedTask::Created {
            self.broker.wake_relay(visible_queues(messages));
        }
        Ok(inserted)
    }

    async fn create_task_with_events(
        &self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
        events: &[NewEvent],
    ) -> Result<InsertedTask> {
        let inserted = self
            .inner
            .create_task_with_events(task, task_transitions, step_transitions, messages, events)
            .await?;
        if inserted == InsertedTask::Created {
            self.broker.wake_relay(visible_queues(messages));
        }
        Ok(inserted)
    }

    async fn template_by_id(&self, id: i64) -> Result<Option<TemplateRow>> {
        self.inner.template_by_id(id).await
    }

    async fn template_versions(&self, namespace: &str, name: &str) -> Result<Vec<TemplateRow>> {
        self.inner.template_versions(namespace, name).await
    }

    async fn list_templates(&self) -> Result<Vec<TemplateRow>> {
        self.inner.list_templates().await
    }

    async fn task_detail(&self, task_uuid: Uuid) -> Result<Option<TaskDetail>> {
        self.inner.task_detail(task_uuid).await
    }

    async fn task_summary(&self, task_uuid: Uuid) -> Result<Option<TaskSummary>> {
        self.inner.task_summary(task_uuid).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>> {
        self.inner.list_tasks(filter).await
    }

    async fn due_retries(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>> {
        self.inner.due_retries(now, limit).await
    }

    async fn overdue_attempts(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<StepLock>> {
        self.inner.overdue_attempts(now, limit).await
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>> {
        self.inner.next_timer().await
    }

    async fn list_dlq(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>> {
        self.inner.list_dlq(filter).await
    }

    async fn dlq_entry(&self, entry_uuid: Uuid) -> Result<Option<DlqEntry>> {
        self.inner.dlq_entry(entry_uuid).await
    }

    async fn update_dlq_entry(
        &self,
        entry_uuid: Uuid,
        status: Option<DlqStatus>,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<Option<DlqEntry>> {
        self.inner.update_dlq_entry(entry_uuid, status, note, now).await
    }

    async fn dlq_counts(&self) -> Result<Vec<DlqCount>> {
        self.inner.dlq_counts().await
    }

    async fn open_tasks(
        &self,
        template_ids: &[i64],
        idle_before: DateTime<Utc>,
        created_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OpenTask>> {
        self.inner
            .open_tasks(template_ids, idle_before, created_before, limit)
            .await
    }

    async fn waiting_tasks(&self, queue: &str, enqueued_before: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>> {
        self.inner.waiting_tasks(queue, enqueued_before, limit).await
    }

    async fn register_worker(&self, worker: &WorkerRecord) -> Result<()> {
        self.inner.register_worker(worker).await?;
        // A worker of this process serves these queues: consume them until it stops.
        let concurrency = usize::try_from(worker.concurrency).unwrap_or(1);
        self.broker.serve(&worker.queues, concurrency);
        lock(&self.workers).insert(worker.registration_uuid, worker.queues.clone());
        Ok(())
    }

    async fn heartbeat_worker(
        &self,
        registration_uuid: Uuid,
        in_flight: i32,
        stopped: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if stopped {
            // Stopped claiming: its consumers go (their unclaimed deliveries return to RabbitMQ
            // for other consumers) whether or not the registry row could be written.
            let queues = lock(&self.workers).remove(&registration_uuid);
            if let Some(queues) = queues {
                self.broker.unserve(&queues).await;
            }
        }
        self.inner
            .heartbeat_worker(registration_uuid, in_flight, stopped, now)
            .await
    }

    async fn list_workers(&self, seen_since: DateTime<Utc>) -> Result<Vec<WorkerRecord>> {
        self.inner.list_workers(seen_since).await
    }

    async fn overview(&self, window: &OverviewWindow) -> Result<Overview> {
        self.inner.overview(window).await
    }

    async fn compact_task_counts(&self, before: DateTime<Utc>) -> Result<()> {
        self.inner.compact_task_counts(before).await
    }

    async fn commit_count(&self) -> Result<Option<i64>> {
        self.inner.commit_count().await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        self.inner.queue_stats().await
    }

    fn connection_stats(&self) -> (u32, u32) {
        self.inner.connection_stats()
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    fn subscribe_remote(&self) -> Option<tokio::sync::broadcast::Receiver<RemoteSignal>> {
        Some(self.signals.subscribe())
    }

    fn events(&self) -> &dyn EventStore {
        self.inner.events()
    }

    async fn close(&self) {
        self.broker.close().await;
        if let Some(task) = lock(&self.tasks).take() {
            for t in task {
                t.abort();
            }
        }
        self.inner.close().await;
    }
}

/// A transaction of a [`RabbitStore`]: the PostgreSQL transaction, the deliveries its claims
/// took, and the queues to relay once it commits.
struct RabbitTx {
    /// `None` once committed or rolled back.
    inner: Option<Box<dyn StoreTx>>,
    broker: Arc<Broker>,
    /// Deliveries whose rows this transaction claimed: acknowledged at commit, given back
    /// otherwise.
    taken: Vec<(String, Buffered)>,
    wake: BTreeSet<String>,
}

impl RabbitTx {
    fn inner(&mut self) -> Result<&mut Box<dyn StoreTx>> {
        self.inner
            .as_mut()
            .ok_or_else(|| TaskerError::Corrupt("the transaction already ended".into()))
    }

    fn note_sent(&mut self, messages: &[OutgoingMessage]) {
        for q in visible_queues(messages) {
            if !self.wake.contains(q) {
                self.wake.insert(q.to_owned());
            }
        }
    }
}

impl Drop for RabbitTx {
    fn drop(&mut self) {
        // Not committed: the claims did not happen, and their deliveries wait for the next one.
        let mut by_queue: HashMap<String, Vec<Buffered>> = HashMap::new();
        for (q, d) in self.taken.drain(..) {
            by_queue.entry(q).or_default().push(d);
        }
        for (q, ds) in by_queue {
            self.broker.give_back(&q, ds);
        }
    }
}

#[async_trait]
impl MessageQueue for RabbitTx {
    async fn read_messages(&mut self, queue: &str, lease: Duration, max: i64) -> Result<Vec<QueueMessage>> {
        let max = usize::try_from(max).unwrap_or(0);
        let deliveries = self.broker.take_or_pull(queue, max).await;
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let named: Vec<(i64, i32)> = deliveries.iter().map(|d| (d.msg_id, d.read_ct)).collect();
        let claimed = match self.inner()?.read_delivered(queue, lease, &named).await {
            Ok(c) => c,
            Err(e) => {
                self.broker.give_back(queue, deliveries);
                return Err(e);
            }
        };
        let ids: BTreeSet<i64> = claimed.iter().map(|m| m.msg_id).collect();
        let (used, stale): (Vec<Buffered>, Vec<Buffered>) =
            deliveries.into_iter().partition(|d| ids.contains(&d.msg_id));
        if !stale.is_empty() {
            // Published again, claimed, deleted, or held by another claim: this copy is useless
            // whatever becomes of this transaction.
            self.broker.count_stale(stale.len());
            let broker = Arc::clone(&self.broker);
            tokio::spawn(async move { broker.ack(stale).await });
        }
        self.taken.extend(used.into_iter().map(|d| (queue.to_owned(), d)));
        // Each delivery is two reads of its row (the relay's, then the claim's): the engine
        // counts claims, so that its first claim reads 1 as on PGMQ.
        Ok(claimed
            .into_iter()
            .map(|mut m| {
                m.read_ct = (m.read_ct + 1) / 2;
                m
            })
            .collect())
    }

    async fn read_delivered(
        &mut self,
        queue: &str,
        lease: Duration,
        delivered: &[(i64, i32)],
    ) -> Result<Vec<QueueMessage>> {
        self.inner()?.read_delivered(queue, lease, delivered).await
    }

    async fn send_messages(&mut self, messages: &[OutgoingMessage]) -> Result<Vec<MessageRef>> {
        let sent = self.inner()?.send_messages(messages).await?;
        self.note_sent(messages);
        Ok(sent)
    }

    async fn delete_messages(&mut self, messages: &[MessageRef]) -> Result<()> {
        self.inner()?.delete_messages(messages).await
    }

    async fn set_message_visibility(&mut self, messages: &[MessageRef], after: Duration) -> Result<()> {
        self.inner()?.set_message_visibility(messages, after).await?;
        if after.is_zero() {
            for m in messages {
                self.wake.insert(m.queue.clone());
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StoreTx for RabbitTx {
    // `read_and_lock` is the one method not forwarded: its default body reads through this
    // type's `read_messages` (the broker's deliveries), where PostgreSQL's fused version would
    // scan the outbox table itself.

    async fn lock_steps(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepLock>> {
        self.inner()?.lock_steps(step_uuids).await
    }

    async fn change_steps_with_inputs(
        &mut self,
        changes: &[StepChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
        task_uuids: &[Uuid],
        step_uuids: &[Uuid],
    ) -> Result<(Vec<Uuid>, Vec<TaskInput>, Vec<DependencyResult>)> {
        self.inner()?
            .change_steps_with_inputs(changes, transitions, now, task_uuids, step_uuids)
            .await
    }

    async fn change_steps(&mut self, changes: &[StepChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        self.inner()?.change_steps(changes, now).await
    }

    async fn change_steps_audited(
        &mut self,
        changes: &[StepChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>> {
        self.inner()?.change_steps_audited(changes, transitions, now).await
    }

    async fn cancel_open_steps(
        &mut self,
        task_uuid: Uuid,
        from: &[StepState],
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, String, StepState)>> {
        self.inner()?.cancel_open_steps(task_uuid, from, now).await
    }

    async fn release_children(&mut self, parents: &[Uuid]) -> Result<Vec<ReadyChild>> {
        self.inner()?.release_children(parents).await
    }

    async fn apply_task_deltas(&mut self, deltas: &[TaskDelta], now: DateTime<Utc>) -> Result<Vec<TaskCounters>> {
        self.inner()?.apply_task_deltas(deltas, now).await
    }

    async fn change_tasks(&mut self, changes: &[TaskChange], now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        self.inner()?.change_tasks(changes, now).await
    }

    async fn change_tasks_audited(
        &mut self,
        changes: &[TaskChange],
        transitions: &[TransitionRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>> {
        self.inner()?.change_tasks_audited(changes, transitions, now).await
    }

    async fn insert_step_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()> {
        self.inner()?.insert_step_transitions(rows).await
    }

    async fn insert_task_transitions(&mut self, rows: &[TransitionRecord]) -> Result<()> {
        self.inner()?.insert_task_transitions(rows).await
    }

    async fn insert_task(&mut self, task: &NewTask) -> Result<InsertedTask> {
        self.inner()?.insert_task(task).await
    }

    async fn create_task_rows(
        &mut self,
        task: &NewTask,
        task_transitions: &[TransitionRecord],
        step_transitions: &[TransitionRecord],
        messages: &[OutgoingMessage],
    ) -> Result<InsertedTask> {
        let inserted = self
            .inner()?
            .create_task_rows(task, task_transitions, step_transitions, messages)
            .await?;
        if inserted == InsertedTask::Created {
            self.note_sent(messages);
        }
        Ok(inserted)
    }

    async fn task_inputs(&mut self, task_uuids: &[Uuid]) -> Result<Vec<TaskInput>> {
        self.inner()?.task_inputs(task_uuids).await
    }

    async fn dependency_results(&mut self, step_uuids: &[Uuid]) -> Result<Vec<DependencyResult>> {
        self.inner()?.dependency_results(step_uuids).await
    }

    async fn claim_inputs(
        &mut self,
        task_uuids: &[Uuid],
        step_uuids: &[Uuid],
    ) -> Result<(Vec<TaskInput>, Vec<DependencyResult>)> {
        self.inner()?.claim_inputs(task_uuids, step_uuids).await
    }

    async fn apply_outcome_writes(
        &mut self,
        w: OutcomeWrites<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Uuid>, Vec<ReadyChild>)> {
        self.inner()?.apply_outcome_writes(w, now).await
    }

    async fn apply_followup_writes(&mut self, w: FollowupWrites<'_>, now: DateTime<Utc>) -> Result<Followup> {
        let followup = self.inner()?.apply_followup_writes(w, now).await?;
        self.note_sent(w.send);
        Ok(followup)
    }

    async fn task_steps(&mut self, task_uuid: Uuid) -> Result<Vec<ExistingStep>> {
        self.inner()?.task_steps(task_uuid).await
    }

    async fn insert_steps(
        &mut self,
        task_uuid: Uuid,
        steps: &[CreatedStep],
        edges: &[(Uuid, Uuid)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.inner()?.insert_steps(task_uuid, steps, edges, now).await
    }

    async fn step_extras(&mut self, step_uuids: &[Uuid]) -> Result<Vec<StepExtras>> {
        self.inner()?.step_extras(step_uuids).await
    }

    async fn save_checkpoint(
        &mut self,
        step_uuid: Uuid,
        attempt: i32,
        checkpoint: &Value,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.inner()?.save_checkpoint(step_uuid, attempt, checkpoint, now).await
    }

    async fn insert_events(&mut self, events: &[NewEvent]) -> Result<()> {
        self.inner()?.insert_events(events).await
    }

    async fn insert_dlq_entries(
        &mut self,
        entries: &[NewDlqEntry],
        now: DateTime<Utc>,
    ) -> Result<Vec<InsertedDlqEntry>> {
        self.inner()?.insert_dlq_entries(entries, now).await
    }

    async fn close_dlq_entries(
        &mut self,
        task_uuids: &[Uuid],
        status: DlqStatus,
        note: &DlqNote,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        self.inner()?.close_dlq_entries(task_uuids, status, note, now).await
    }

    async fn running_steps(&mut self, task_uuids: &[Uuid]) -> Result<Vec<(Uuid, i64)>> {
        self.inner()?.running_steps(task_uuids).await
    }

    async fn note_dlq_resolution(&mut self, task_uuids: &[Uuid], note: &DlqNote, now: DateTime<Utc>) -> Result<usize> {
        self.inner()?.note_dlq_resolution(task_uuids, note, now).await
    }

    async fn notify_task_finished(&mut self, task_uuid: Uuid) -> Result<()> {
        self.inner()?.notify_task_finished(task_uuid).await
    }

    async fn notify_timers(&mut self) -> Result<()> {
        self.inner()?.notify_timers().await
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let Some(inner) = self.inner.take() else {
            return Err(TaskerError::Corrupt("transaction already ended".into()));
        };
        match inner.commit().await {
            Ok(()) => {
                let taken: Vec<Buffered> = std::mem::take(&mut self.taken).into_iter().map(|(_, d)| d).collect();
                if !taken.is_empty() {
                    self.broker.ack(taken).await;
                }
                let wake = std::mem::take(&mut self.wake);
                self.broker.wake_relay(wake.iter().map(String::as_str));
                Ok(())
            }
            // Committed or not, the claims' compare-and-swap decides when the deliveries are
            // claimed again (dropping `self` gives them back).
            Err(e) => Err(e),
        }
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        match self.inner.take() {
            Some(inner) => inner.rollback().await,
            None => Ok(()),
        }
    }
}
