//! The engine's side of events: writing durable rows with the transactions that cause them,
//! the fast broadcast, and the calls subscribers and operators use. The model is in
//! [`crate::events`]; the statements are in `store/events.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::dispatch::Effects;
use super::{EngineEvent, Tasker};
use crate::error::Result;
use crate::events::{
    self, Event, EventOptions, EventSubscription, FastSubscription, LifecycleEvents, SubscriptionOptions,
};
use crate::events::{PublishedEvent, StepPublication};
use crate::outcome::{StepFailure, StepOutcome};
use crate::store::{EventDeadLetter, EventGroupStatus, NewEvent, StepLock, StoreTx};

/// Task identities kept for fast task events (cleared when full).
const IDENTITY_CACHE: usize = 10_000;

#[derive(Debug, Clone)]
struct Identity {
    namespace: String,
    name: String,
    version: String,
    correlation_id: Option<Uuid>,
}

/// Per-engine event state.
#[derive(Debug)]
pub(super) struct EventHub {
    options: EventOptions,
    /// Whether a subscriber group exists (for [`LifecycleEvents::WhenSubscribed`]).
    groups_exist: AtomicBool,
    checked_at: Mutex<Option<Instant>>,
    checking: AtomicBool,
    fast: broadcast::Sender<Arc<Event>>,
    identities: Mutex<HashMap<Uuid, Identity>>,
}

impl EventHub {
    pub(super) fn new(options: EventOptions) -> Self {
        let (fast, _) = broadcast::channel(options.fast_buffer.max(1));
        EventHub {
            options,
            groups_exist: AtomicBool::new(false),
            checked_at: Mutex::new(None),
            checking: AtomicBool::new(false),
            fast,
            identities: Mutex::new(HashMap::new()),
        }
    }
}

impl Tasker {
    fn hub(&self) -> &EventHub {
        &self.inner.event_hub
    }

    /// Whether lifecycle events go to the durable log now. With `WhenSubscribed` the answer is
    /// re-checked in the background every `group_check`; the first check waits for the answer
    /// (so a process that starts while a group exists writes from its first transaction).
    pub(super) async fn lifecycle_durable(&self) -> bool {
        let hub = self.hub();
        match hub.options.lifecycle {
            LifecycleEvents::Always => return true,
            LifecycleEvents::Never => return false,
            LifecycleEvents::WhenSubscribed => {}
        }
        let last = hub.checked_at.lock().ok().and_then(|c| *c);
        match last {
            None => self.check_groups().await,
            Some(at) if at.elapsed() >= hub.options.group_check => {
                if !hub.checking.swap(true, Ordering::AcqRel) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.check_groups().await;
                        me.hub().checking.store(false, Ordering::Release);
                    });
                }
            }
            Some(_) => {}
        }
        hub.groups_exist.load(Ordering::Acquire)
    }

    async fn check_groups(&self) {
        let hub = self.hub();
        match self.store().events().has_event_groups().await {
            Ok(exists) => {
                hub.groups_exist.store(exists, Ordering::Release);
                if let Ok(mut c) = hub.checked_at.lock() {
                    *c = Some(Instant::now());
                }
            }
            // Keep the last answer; the next transaction asks again.
            Err(e) => tracing::warn!(error = %e, "could not check for event subscriber groups"),
        }
    }

    /// Whether a committed change's lifecycle event may be read by anyone (a durable group, a
    /// fast reader, or an [`EngineEvent`] subscriber): extra payload is built only then.
    pub(super) fn wants_lifecycle_events(&self) -> bool {
        let hub = self.hub();
        match hub.options.lifecycle {
            LifecycleEvents::Always => return true,
            LifecycleEvents::WhenSubscribed if hub.groups_exist.load(Ordering::Acquire) => return true,
            _ => {}
        }
        hub.fast.receiver_count() > 0 || self.inner.events.receiver_count() > 0
    }

    /// The domain events of one attempt's outcome to publish, or the failure the step gets
    /// instead (see [`crate::events::domain`]). Outcomes without events cost nothing here.
    pub(super) async fn events_to_publish(
        &self,
        lock: &StepLock,
        outcome: &StepOutcome,
    ) -> Result<std::result::Result<Vec<(PublishedEvent, StepPublication)>, StepFailure>> {
        let metadata = match outcome {
            StepOutcome::Success { metadata, .. } => metadata,
            StepOutcome::Failure(f) => &f.metadata,
        };
        if metadata.get("events").is_none() {
            return Ok(Ok(Vec::new()));
        }
        let template = self.template_by_id(lock.template_id).await?;
        let step = template
            .step(&lock.name)
            .map_or(lock.name.as_str(), |s| s.name.as_str());
        Ok(template.domain_events.to_publish(step, outcome))
    }

    /// Publishes a catalog event whose change a single statement of its own made (a worker
    /// registered or stopped, an operator closed a DLQ entry): written (when lifecycle events
    /// are durable) in a transaction right after that change, and broadcast. A crash between
    /// the two loses this event, unlike the events of state transitions.
    pub(crate) async fn publish_after(&self, name: &'static str, task_uuid: Option<Uuid>, payload: serde_json::Value) {
        let event = [EngineEvent::Other {
            name,
            task_uuid,
            payload,
        }];
        let rows = self.durable_rows_for(&event).await;
        if !rows.is_empty() {
            let written = async {
                let mut tx = self.store().begin().await?;
                tx.insert_events(&rows).await?;
                tx.commit().await
            }
            .await;
            if let Err(e) = written {
                tracing::warn!(event = name, error = %e, "could not write an event");
            }
        }
        self.broadcast_fast(&event, Vec::new());
    }

    /// A group was joined in this process: write lifecycle events from now on.
    pub(crate) fn note_event_group_exists(&self) {
        self.hub().groups_exist.store(true, Ordering::Release);
    }

    /// Writes the transaction's durable events, commits, then publishes its effects.
    pub(super) async fn commit_effects(&self, mut tx: Box<dyn StoreTx>, effects: Effects) -> Result<()> {
        let rows = if effects.events.is_empty() || !self.lifecycle_durable().await {
            effects.outbox.clone()
        } else {
            events::in_order(&effects.events, effects.outbox.clone())
        };
        if !rows.is_empty() {
            tx.insert_events(&rows).await?;
        }
        tx.commit().await?;
        self.publish(effects);
        Ok(())
    }

    /// The rows [`Self::commit_effects`] writes, for a transaction that commits elsewhere (task
    /// creation, closing a task).
    pub(super) async fn durable_rows_for(&self, events: &[EngineEvent]) -> Vec<NewEvent> {
        if events.is_empty() || !self.lifecycle_durable().await {
            return Vec::new();
        }
        events::in_order(events, Vec::new())
    }

    /// Broadcasts committed changes and fast domain events to this process's fast readers, in
    /// the same order as the durable log ([`events::in_order`]).
    pub(super) fn broadcast_fast(&self, lifecycle: &[EngineEvent], domain: Vec<NewEvent>) {
        let hub = self.hub();
        if hub.fast.receiver_count() == 0 {
            return;
        }
        for row in events::in_order(lifecycle, domain) {
            let _ = hub.fast.send(Arc::new(Event::fast(row)));
        }
    }

    /// Fills a fast event's task identity (the hot path does not carry it), from a cache.
    pub(crate) async fn fill_identity(&self, event: &mut Event) {
        let Some(task_uuid) = event.task_uuid else { return };
        if event.namespace.is_some() {
            return;
        }
        let cached = self
            .hub()
            .identities
            .lock()
            .ok()
            .and_then(|c| c.get(&task_uuid).cloned());
        let identity = match cached {
            Some(i) => i,
            None => match self.task_summary(task_uuid).await {
                Ok(t) => {
                    let i = Identity {
                        namespace: t.namespace.clone(),
                        name: t.name.clone(),
                        version: t.version.clone(),
                        correlation_id: Some(t.correlation_id),
                    };
                    if let Ok(mut c) = self.hub().identities.lock() {
                        if c.len() >= IDENTITY_CACHE {
                            c.clear();
                        }
                        c.insert(task_uuid, i.clone());
                    }
                    i
                }
                Err(_) => return,
            },
        };
        if event.category == "task" {
            if let serde_json::Value::Object(p) = &mut event.payload {
                p.entry("namespace")
                    .or_insert_with(|| identity.namespace.clone().into());
                p.entry("name").or_insert_with(|| identity.name.clone().into());
                p.entry("version").or_insert_with(|| identity.version.clone().into());
            }
        }
        event.namespace = Some(identity.namespace);
        event.task_name = Some(identity.name);
        event.task_version = Some(identity.version);
        event.correlation_id = event.correlation_id.or(identity.correlation_id);
    }

    /// Reads this process's fast events matching `patterns`.
    pub fn subscribe_fast(&self, patterns: Vec<String>) -> FastSubscription {
        FastSubscription::new(self.clone(), self.hub().fast.subscribe(), patterns)
    }

    /// Joins a durable subscriber group (see [`EventSubscription`]).
    pub async fn subscribe(&self, options: SubscriptionOptions) -> Result<EventSubscription> {
        EventSubscription::join(self, options).await
    }

    /// Publishes `count` domain events of no task (tools and load tests: a step's events come
    /// with its outcome), in transactions of 500; returns their ids. The name follows the
    /// rules of a template's `domain_events`.
    pub async fn publish_events(&self, name: &str, payload: &serde_json::Value, count: usize) -> Result<Vec<Uuid>> {
        if let Some(problem) = crate::events::domain::name_problem(name) {
            return Err(crate::error::TaskerError::InvalidArgument(problem));
        }
        crate::limits::check(payload)
            .map_err(|v| crate::error::TaskerError::InvalidArgument(v.describe("the event's payload")))?;
        let mut ids = Vec::with_capacity(count);
        while ids.len() < count {
            let rows: Vec<NewEvent> = (0..(count - ids.len()).min(500))
                .map(|_| NewEvent {
                    event_id: Uuid::now_v7(),
                    name: name.to_owned(),
                    task_uuid: None,
                    step_uuid: None,
                    payload: payload.clone(),
                    occurred_at: Utc::now(),
                })
                .collect();
            let mut tx = self.store().begin().await?;
            tx.insert_events(&rows).await?;
            tx.commit().await?;
            ids.extend(rows.iter().map(|r| r.event_id));
        }
        Ok(ids)
    }

    /// Every subscriber group, with how far behind it is.
    pub async fn event_groups(&self) -> Result<Vec<EventGroupStatus>> {
        let lease = chrono::Duration::seconds(60);
        self.store().events().event_groups(Utc::now() - lease).await
    }

    /// Events subscribers gave up on (every group's with `None`).
    pub async fn event_dead_letters(&self, group: Option<&str>, limit: usize) -> Result<Vec<EventDeadLetter>> {
        self.store()
            .events()
            .event_dead_letters(group, i64::try_from(limit).unwrap_or(i64::MAX))
            .await
    }

    /// Deletes a subscriber group with its cursors and members (its dead letters stay).
    pub async fn delete_event_group(&self, group: &str) -> Result<bool> {
        self.store().events().delete_event_group(group).await
    }

    /// Deletes events past the retention that every group has acknowledged; returns how many.
    /// The orchestrator runs it once per maintenance pass.
    pub async fn prune_events(&self) -> Result<u64> {
        let keep = chrono::Duration::from_std(self.hub().options.retention).unwrap_or(chrono::Duration::days(7));
        let before = Utc::now() - keep;
        let mut total = 0;
        loop {
            let n = self.store().events().prune_events(before, 5_000).await?;
            total += n;
            if n < 5_000 {
                return Ok(total);
            }
        }
    }

    /// Stamps positions on committed events (PostgreSQL; a no-op on SQLite). Subscribers do it
    /// as they read; tools call it to see the log up to now.
    pub async fn sequence_events(&self) -> Result<u64> {
        self.store().events().sequence_events(10_000).await
    }

    /// How many fast events a reader may fall behind before it skips ahead
    /// (`events.fast_buffer`).
    pub fn fast_buffer(&self) -> usize {
        self.event_options().fast_buffer
    }

    /// How this engine writes and keeps events.
    pub fn event_options(&self) -> &EventOptions {
        &self.hub().options
    }
}
