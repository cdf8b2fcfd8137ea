//! Events (`tasker_core::events`): the catalog, durable subscriber group members
//! (`NativeSubscription`), fast in-process readers (`NativeFastSubscription`) and the operator
//! calls on groups (`NativeClient`, continued).
//!
//! Both kinds of subscription wait on the core's runtime and settle a promise, like the
//! worker's `poll`: the core's `EventSubscription::poll` blocks its thread, which must never be
//! the event loop's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use serde::Deserialize;
use serde_json::json;
use tasker_core::events::{Delivery, EventSubscription, FastSubscription, SubscriptionOptions};

use crate::client::{millis, NativeClient};
use crate::error::{from_core, internal, invalid_argument};
use crate::promise::{spawn, to_json};

/// The catalog of system events: JSON of `EventInfo[]` (name, category, description,
/// payload_schema, example).
#[napi]
pub fn event_catalog() -> napi::Result<String> {
    to_json(&tasker_core::events::catalog())
}

/// JSON of the catalog entry of `name`, or `null` for a name outside the catalog.
#[napi]
pub fn event_info(name: String) -> napi::Result<Option<String>> {
    tasker_core::events::event_info(&name).map(|i| to_json(&i)).transpose()
}

/// JSON Schema of the envelope every event travels in.
#[napi]
pub fn event_envelope_schema() -> napi::Result<String> {
    to_json(&tasker_core::events::envelope_schema())
}

/// Whether `name` matches `pattern` (exact, `*` for any run of characters), as the core
/// routes events.
#[napi]
pub fn event_pattern_matches(pattern: String, name: String) -> bool {
    tasker_core::events::pattern_matches(&pattern, &name)
}

/// `subscribe` options, as the TypeScript layer sends them: only what the caller passed; the
/// rest keeps the core's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeArgs {
    group: String,
    patterns: Vec<String>,
    member_id: Option<String>,
    from_start: Option<bool>,
    max_attempts: Option<u32>,
    backoff_ms: Option<f64>,
    max_backoff_ms: Option<f64>,
    lease_ms: Option<f64>,
    poll_interval_ms: Option<f64>,
    batch_size: Option<i64>,
}

impl SubscribeArgs {
    fn into_options(self) -> napi::Result<SubscriptionOptions> {
        let mut o = SubscriptionOptions::new(self.group, self.patterns);
        o.member_id = self.member_id;
        if let Some(v) = self.from_start {
            o.from_start = v;
        }
        if let Some(v) = self.max_attempts {
            o.max_attempts = v;
        }
        if let Some(ms) = self.backoff_ms {
            o.backoff = millis("backoffMs", ms)?;
        }
        if let Some(ms) = self.max_backoff_ms {
            o.max_backoff = millis("maxBackoffMs", ms)?;
        }
        if let Some(ms) = self.lease_ms {
            o.lease = millis("leaseMs", ms)?;
        }
        if let Some(ms) = self.poll_interval_ms {
            o.poll_interval = millis("pollIntervalMs", ms)?;
        }
        if let Some(n) = self.batch_size {
            o.batch_size = n;
        }
        Ok(o)
    }
}

fn delivery_json(d: &Delivery) -> serde_json::Value {
    json!({ "delivery_id": d.delivery_id, "attempt": d.attempt, "event": d.event.to_json() })
}

fn delivery_id(id: i64) -> napi::Result<u64> {
    u64::try_from(id).map_err(|_| invalid_argument("deliveryId", format!("{id} is negative")))
}

/// A member of a durable subscriber group. Every delivery handed out by `poll` must be
/// acknowledged (`ack`) or failed (`fail`): the next event of its partition waits for that.
#[napi]
pub struct NativeSubscription {
    subscription: Arc<EventSubscription>,
}

#[napi]
impl NativeSubscription {
    /// Waits up to `timeoutMs` for deliveries; resolves to a JSON array of at most `max` of
    /// them (`[]` when none came). Rejects once the subscription is closed or stopped.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn poll<'e>(&self, env: &'e Env, max: u32, timeout_ms: f64) -> napi::Result<Object<'e>> {
        let timeout = millis("timeoutMs", timeout_ms)?;
        let max = usize::try_from(max.max(1)).unwrap_or(1);
        let subscription = self.subscription.clone();
        spawn(env, async move {
            let mut out = Vec::new();
            match subscription.poll_async(timeout).await.map_err(from_core)? {
                Some(d) => out.push(delivery_json(&d)),
                None => return Ok("[]".to_owned()),
            }
            // Whatever else is ready now: one promise for a burst of deliveries.
            while out.len() < max {
                match subscription.poll_async(Duration::ZERO).await {
                    Ok(Some(d)) => out.push(delivery_json(&d)),
                    Ok(None) | Err(_) => break,
                }
            }
            to_json(&out)
        })
    }

    /// The delivery was handled. Never waits for the database.
    #[napi]
    pub fn ack(&self, delivery_id: i64) -> napi::Result<()> {
        self.subscription
            .ack(self::delivery_id(delivery_id)?)
            .map_err(from_core)
    }

    /// The handler failed with `error`: retried after a backoff, or moved to the group's dead
    /// letters after `maxAttempts`. Never waits for the database.
    #[napi]
    pub fn fail(&self, delivery_id: i64, error: String) -> napi::Result<()> {
        self.subscription
            .fail(self::delivery_id(delivery_id)?, &error)
            .map_err(from_core)
    }

    /// Records acknowledged positions, gives the partitions back and leaves the group.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let subscription = self.subscription.clone();
        spawn(env, async move { subscription.close().await.map_err(from_core) })
    }

    /// The group's name.
    #[napi(getter)]
    pub fn group(&self) -> String {
        self.subscription.group().to_owned()
    }

    /// This member's name in the group.
    #[napi(getter)]
    pub fn member_id(&self) -> String {
        self.subscription.member_id().to_owned()
    }
}

/// A reader of this process's fast broadcast (lifecycle events of the changes it commits, the
/// fast domain events of its completions). Nothing is stored or retried.
#[napi]
pub struct NativeFastSubscription {
    /// `None` once closed: the broadcast no longer keeps events for this reader.
    subscription: Mutex<Option<Arc<FastSubscription>>>,
}

impl NativeFastSubscription {
    fn current(&self) -> Option<Arc<FastSubscription>> {
        self.subscription.lock().ok().and_then(|s| s.clone())
    }
}

#[napi]
impl NativeFastSubscription {
    /// Waits up to `timeoutMs` for the next matching event; resolves to its JSON, or `null`
    /// when none came (or the reader is closed).
    #[napi(ts_return_type = "Promise<string | null>")]
    pub fn next<'e>(&self, env: &'e Env, timeout_ms: f64) -> napi::Result<Object<'e>> {
        let timeout = millis("timeoutMs", timeout_ms)?;
        let subscription = self.current();
        spawn(env, async move {
            let Some(subscription) = subscription else {
                return Ok(None);
            };
            match subscription.next(timeout).await.map_err(from_core)? {
                Some(event) => to_json(&event).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Events skipped because this reader fell more than the broadcast's buffer behind.
    #[napi(getter)]
    pub fn missed(&self) -> f64 {
        // Exact up to 2^53, far beyond any count of missed events.
        self.current().map_or(0.0, |s| s.missed() as f64)
    }

    /// Stops receiving (a `next` already waiting returns when its timeout ends).
    #[napi]
    pub fn close(&self) {
        if let Ok(mut s) = self.subscription.lock() {
            *s = None;
        }
    }
}

#[napi]
impl NativeClient {
    /// Joins (creating if needed) a durable subscriber group, from JSON options.
    #[napi(ts_return_type = "Promise<NativeSubscription>")]
    pub fn subscribe<'e>(&self, env: &'e Env, options_json: String) -> napi::Result<Object<'e>> {
        let args: SubscribeArgs =
            serde_json::from_str(&options_json).map_err(|e| invalid_argument("subscribe options", e))?;
        let options = args.into_options()?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            let subscription = tasker.subscribe(options).await.map_err(from_core)?;
            Ok(NativeSubscription {
                subscription: Arc::new(subscription),
            })
        })
    }

    /// Reads this process's fast events matching `patterns`.
    #[napi]
    pub fn subscribe_fast(&self, patterns: Vec<String>) -> napi::Result<NativeFastSubscription> {
        if patterns.is_empty() || patterns.iter().any(String::is_empty) {
            return Err(invalid_argument(
                "patterns",
                "needs at least one non-empty event pattern (e.g. \"task.*\" or \"*\")",
            ));
        }
        // Only registers a broadcast receiver: no runtime, no database.
        let subscription = self.tasker.subscribe_fast(patterns);
        Ok(NativeFastSubscription {
            subscription: Mutex::new(Some(Arc::new(subscription))),
        })
    }

    /// Every subscriber group with its lag; resolves to JSON of `EventGroupStatus[]`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn event_groups<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(
            env,
            async move { to_json(&tasker.event_groups().await.map_err(from_core)?) },
        )
    }

    /// Events subscribers gave up on (one group's, or every group's); resolves to JSON of
    /// `EventDeadLetter[]`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn event_dead_letters<'e>(&self, env: &'e Env, group: Option<String>, limit: u32) -> napi::Result<Object<'e>> {
        if limit == 0 {
            return Err(invalid_argument("limit", "must be at least 1"));
        }
        let tasker = self.tasker.clone();
        spawn(env, async move {
            let limit = usize::try_from(limit).map_err(internal)?;
            to_json(
                &tasker
                    .event_dead_letters(group.as_deref(), limit)
                    .await
                    .map_err(from_core)?,
            )
        })
    }

    /// Deletes a subscriber group with its cursors and members (its dead letters stay);
    /// resolves to whether it existed.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn delete_event_group<'e>(&self, env: &'e Env, group: String) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(env, async move {
            tasker.delete_event_group(&group).await.map_err(from_core)
        })
    }

    /// Stamps positions on committed events (PostgreSQL; nothing on SQLite); resolves to how
    /// many.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn sequence_events<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(env, async move {
            let n = tasker.sequence_events().await.map_err(from_core)?;
            Ok(n as f64)
        })
    }
}
