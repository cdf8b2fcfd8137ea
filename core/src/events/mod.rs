//! Events: what the engine tells the rest of a system about its work.
//!
//! * [`catalog`] — every system event (task and step lifecycle, operator actions, DLQ, workers)
//!   with its payload schema and an example.
//! * [`domain`] — events a template declares (`domain_events:`) and its steps publish
//!   (`publishes_events:`), with the payloads their handlers add to their outcomes.
//! * Delivery, two ways:
//!   - **durable**: written to the event log (an outbox table) in the transaction of the state
//!     change that causes them, and read by subscriber groups ([`subscriber`]) at least once,
//!     in order per task, from a position that survives restarts;
//!   - **fast**: an in-process broadcast ([`crate::Tasker::subscribe_fast`]), nothing stored —
//!     for metrics and logs; a slow reader misses events rather than slowing the engine.
//!
//! Lifecycle events are durable while some subscriber group exists (or always, or never:
//! [`LifecycleEvents`]); a domain event's delivery is declared per step.

pub mod catalog;
pub mod domain;
pub mod subscriber;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The attribute a [`Subscriber`] implementation needs (`#[async_trait]`), re-exported so a
/// project that implements one does not need a dependency of its own on `async-trait`.
pub use async_trait::async_trait;
pub use catalog::*;
pub use domain::{DomainEventSpec, EventCondition, EventDelivery, PublishedEvent, StepPublication};
pub use subscriber::{
    Delivery, EventSubscription, FastSubscription, Subscriber, SubscriberRunner, SubscriptionOptions,
};

use crate::engine::EngineEvent;
use crate::store::{NewEvent, StoredEvent};

/// An event as subscribers receive it: an envelope around the payload the catalog (or the
/// template, for a domain event) describes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// UUIDv7: unique, ordered by time; the key for idempotent consumers.
    pub event_id: Uuid,
    pub name: String,
    /// `task`, `step`, `operator`, `dlq`, `worker`, or `domain` for template-declared events.
    pub category: String,
    pub occurred_at: DateTime<Utc>,
    pub task_uuid: Option<Uuid>,
    pub step_uuid: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
    /// The task's template: namespace, name and version.
    pub namespace: Option<String>,
    pub task_name: Option<String>,
    pub task_version: Option<String>,
    pub payload: Value,
    /// `durable` or `fast`.
    pub delivery: String,
    /// The event's place in the log (durable events only).
    pub position: Option<i64>,
}

impl Event {
    /// The event as JSON (what the bindings hand to subscribers).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// An event as this process broadcasts it (fast delivery): no position, and no task
    /// identity yet ([`crate::Tasker::fill_identity`] adds it for readers).
    pub(crate) fn fast(row: NewEvent) -> Event {
        Event {
            category: category_of(&row.name),
            event_id: row.event_id,
            name: row.name,
            occurred_at: row.occurred_at,
            task_uuid: row.task_uuid,
            step_uuid: row.step_uuid,
            correlation_id: None,
            namespace: None,
            task_name: None,
            task_version: None,
            payload: row.payload,
            delivery: "fast".into(),
            position: None,
        }
    }

    pub(crate) fn from_stored(e: StoredEvent) -> Event {
        let category = category_of(&e.name);
        let mut payload = e.payload;
        if category == "task" {
            fill_task_identity(
                &mut payload,
                e.namespace.as_deref(),
                e.task_name.as_deref(),
                e.version.as_deref(),
            );
        }
        Event {
            event_id: e.event_id,
            name: e.name,
            category,
            occurred_at: e.occurred_at,
            task_uuid: e.task_uuid,
            step_uuid: e.step_uuid,
            correlation_id: e.correlation_id,
            namespace: e.namespace,
            task_name: e.task_name,
            task_version: e.version,
            payload,
            delivery: "durable".into(),
            position: Some(e.position),
        }
    }
}

/// `task.completed` → `task`; a name outside the catalog is a domain event. (On every
/// delivery: a lookup in a table built once, not in the catalog with its schemas.)
pub fn category_of(name: &str) -> String {
    static CATEGORIES: std::sync::OnceLock<std::collections::HashMap<String, String>> = std::sync::OnceLock::new();
    let table = CATEGORIES.get_or_init(|| catalog().into_iter().map(|e| (e.name, e.category)).collect());
    table.get(name).cloned().unwrap_or_else(|| "domain".into())
}

/// Task events' payloads carry their template identity, which the hot path does not know: it is
/// read with the event (durable) or looked up (fast).
fn fill_task_identity(payload: &mut Value, namespace: Option<&str>, name: Option<&str>, version: Option<&str>) {
    if let Value::Object(p) = payload {
        for (key, value) in [("namespace", namespace), ("name", name), ("version", version)] {
            if let (false, Some(v)) = (p.contains_key(key), value) {
                p.insert(key.into(), Value::String(v.to_owned()));
            }
        }
    }
}

/// The catalog event a committed state change publishes: its name, task, step and payload.
pub(crate) fn lifecycle_event(e: &EngineEvent) -> Option<(&'static str, Option<Uuid>, Option<Uuid>, Value)> {
    match e {
        EngineEvent::Step {
            task_uuid,
            step_uuid,
            step_name,
            from,
            to,
            attempt,
            trigger,
            details,
        } => {
            let timed_out =
                details.get("error_type").and_then(Value::as_str) == Some(crate::outcome::error_types::TIMEOUT);
            let name = step_event_name(trigger, *to, timed_out)?;
            let mut payload = details_object(details);
            // The handler's own metadata stays in the audit trail; its published events travel
            // as events of their own.
            payload.remove("metadata");
            // The same for a failure's copy of it; the backtrace stays in the audit trail too.
            if let Some(Value::Object(error)) = payload.get_mut("error") {
                error.remove("metadata");
                error.remove("backtrace");
            }
            payload.insert("step_name".into(), Value::String(step_name.clone()));
            payload.insert("from_state".into(), Value::String(from.as_str().into()));
            payload.insert("to_state".into(), Value::String(to.as_str().into()));
            payload.insert("attempt".into(), Value::from(*attempt));
            Some((name, Some(*task_uuid), Some(*step_uuid), Value::Object(payload)))
        }
        EngineEvent::Task {
            task_uuid,
            from,
            to,
            trigger,
            details,
        } => {
            let name = task_event_name(trigger, *to)?;
            let mut payload = details_object(details);
            payload.insert(
                "from_state".into(),
                from.map_or(Value::Null, |f| Value::String(f.as_str().into())),
            );
            payload.insert("to_state".into(), Value::String(to.as_str().into()));
            Some((name, Some(*task_uuid), None, Value::Object(payload)))
        }
        EngineEvent::Other {
            name,
            task_uuid,
            payload,
        } => Some((name, *task_uuid, None, payload.clone())),
    }
}

fn details_object(details: &Value) -> Map<String, Value> {
    match details {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    }
}

/// The events of committed state changes (their lifecycle events) and the domain events that
/// came with them, in publication order: a step's domain events right after the lifecycle
/// event of the attempt that published them, so before the `task.completed` the same commit
/// may end with. The durable log and the fast broadcast both use this order.
pub(crate) fn in_order(lifecycle: &[EngineEvent], domain: Vec<NewEvent>) -> Vec<NewEvent> {
    let mut domain: Vec<Option<NewEvent>> = domain.into_iter().map(Some).collect();
    let mut rows = Vec::with_capacity(lifecycle.len() + domain.len());
    for e in lifecycle {
        let Some((name, task_uuid, step_uuid, payload)) = lifecycle_event(e) else {
            continue;
        };
        rows.push(NewEvent {
            event_id: Uuid::now_v7(),
            name: name.to_owned(),
            task_uuid,
            step_uuid,
            payload,
            occurred_at: Utc::now(),
        });
        if step_uuid.is_some() {
            rows.extend(
                domain
                    .iter_mut()
                    .filter(|d| d.as_ref().is_some_and(|d| d.step_uuid == step_uuid))
                    .filter_map(Option::take),
            );
        }
    }
    rows.extend(domain.into_iter().flatten());
    rows
}

/// `dlq.entry_created` for each dead-letter entry a transaction wrote.
pub(crate) fn dlq_entries_created(entries: &[crate::store::InsertedDlqEntry], task_state: &str) -> Vec<EngineEvent> {
    entries
        .iter()
        .map(|e| EngineEvent::Other {
            name: "dlq.entry_created",
            task_uuid: Some(e.task_uuid),
            payload: serde_json::json!({
                "entry_uuid": e.entry_uuid.to_string(),
                "reason": e.reason,
                "task_state": task_state,
            }),
        })
        .collect()
}

/// Which lifecycle events are written to the durable log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleEvents {
    /// While at least one subscriber group exists (checked every [`EventOptions::group_check`];
    /// at once in a process that joins a group). Costs nothing when nobody listens.
    #[default]
    WhenSubscribed,
    Always,
    Never,
}

/// How the engine writes and keeps events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventOptions {
    pub lifecycle: LifecycleEvents,
    /// How often a process re-checks whether groups exist (for `WhenSubscribed`).
    pub group_check: Duration,
    /// Events every group has acknowledged are deleted once older than this.
    pub retention: Duration,
    /// Fast (in-process) events buffered per reader; a reader further behind skips the oldest
    /// (and is told how many it missed).
    pub fast_buffer: usize,
}

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions {
            lifecycle: LifecycleEvents::WhenSubscribed,
            group_check: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 24 * 3600),
            fast_buffer: 8192,
        }
    }
}
