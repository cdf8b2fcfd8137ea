//! Events (`tasker_core::events`): the catalog, durable subscriber group members
//! (`TaskerCore::Native::EventSubscription`), readers of the in-process broadcast
//! (`TaskerCore::Native::FastSubscription`), and the operator calls on `TaskerCore::Native::Client`.
//! The Ruby layer (`lib/tasker_core/events.rb`, `subscriber.rb`, `subscriber_runner.rb`) turns the
//! Hashes into `TaskerCore::Event` records and runs subscribers on threads.

use std::time::Duration;

use magnus::{function, method, prelude::*, Error, RClass, RModule, Ruby, Value};
use tasker_core::events::SubscriptionOptions;
use tasker_core::events::{self, Delivery, EventSubscription as CoreSubscription, FastSubscription as CoreFast};

use crate::client::{duration, ser, wait, Client};
use crate::error::{invalid_argument, raise};
use crate::gvl;

/// `Native.event_catalog`: every system event, as `EventInfo` Hashes.
fn event_catalog(ruby: &Ruby) -> Result<Value, Error> {
    ser(ruby, &events::catalog())
}

/// `Native.event_info(name)`: the catalog entry of `name`, or `nil`.
fn event_info(ruby: &Ruby, name: String) -> Result<Value, Error> {
    ser(ruby, &events::event_info(&name))
}

/// `Native.event_envelope_schema`: the JSON Schema of the envelope every event travels in.
fn event_envelope_schema(ruby: &Ruby) -> Result<Value, Error> {
    ser(ruby, &events::envelope_schema())
}

/// `Native.event_pattern_matches(pattern, name)`: the core's `*` wildcard match.
fn event_pattern_matches(pattern: String, name: String) -> bool {
    events::pattern_matches(&pattern, &name)
}

fn delivery_hash(ruby: &Ruby, d: &Delivery) -> Result<Value, Error> {
    let h = ruby.hash_new();
    h.aset("delivery_id", d.delivery_id)?;
    h.aset("attempt", d.attempt)?;
    h.aset("event", ser(ruby, &d.event)?)?;
    Ok(h.as_value())
}

/// A member of a durable subscriber group. `poll` waits without the GVL; `ack` and `fail` are
/// channel sends (no waiting), so handler threads call them while another thread polls.
#[magnus::wrap(class = "TaskerCore::Native::EventSubscription", free_immediately, size)]
pub struct EventSubscription {
    sub: CoreSubscription,
}

impl EventSubscription {
    /// The next delivery (`{"delivery_id", "attempt", "event"}`), or `nil` when none came within
    /// `timeout` seconds (or an interrupt was handled without raising, so that the caller's loop
    /// looks at its stop flag).
    fn poll(ruby: &Ruby, rb_self: &Self, timeout: f64) -> Result<Value, Error> {
        let timeout = duration(ruby, "timeout", timeout)?;
        // Fast path: a delivery already waiting is taken without giving up the GVL.
        let ready = match rb_self.sub.poll(Duration::ZERO) {
            Ok(None) => None,
            other => Some(other),
        };
        let polled = match ready {
            Some(p) => p,
            None => gvl::block_on(ruby, rb_self.sub.poll_async(timeout), || Some(Ok(None)))?,
        };
        match polled.map_err(|e| raise(ruby, e))? {
            Some(d) => delivery_hash(ruby, &d),
            None => Ok(ruby.qnil().as_value()),
        }
    }

    fn ack(ruby: &Ruby, rb_self: &Self, delivery_id: u64) -> Result<(), Error> {
        rb_self.sub.ack(delivery_id).map_err(|e| raise(ruby, e))
    }

    fn fail(ruby: &Ruby, rb_self: &Self, delivery_id: u64, error: String) -> Result<(), Error> {
        rb_self.sub.fail(delivery_id, &error).map_err(|e| raise(ruby, e))
    }

    /// Records acknowledged positions, gives the partitions back and leaves the group. An
    /// interrupt that raises abandons the wait; the member loop still closes in the background.
    fn close(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        wait(ruby, rb_self.sub.close())
    }

    fn group(&self) -> String {
        self.sub.group().to_owned()
    }

    fn member_id(&self) -> String {
        self.sub.member_id().to_owned()
    }
}

/// A reader of this process's fast events.
#[magnus::wrap(class = "TaskerCore::Native::FastSubscription", free_immediately, size)]
pub struct FastSubscription {
    sub: CoreFast,
}

impl FastSubscription {
    /// The next matching event as a Hash, or `nil` after `timeout` seconds (or an interrupt that
    /// did not raise).
    fn poll(ruby: &Ruby, rb_self: &Self, timeout: f64) -> Result<Value, Error> {
        let timeout = duration(ruby, "timeout", timeout)?;
        let next = gvl::block_on(ruby, rb_self.sub.next(timeout), || Some(Ok(None)))?;
        match next.map_err(|e| raise(ruby, e))? {
            Some(event) => ser(ruby, &event),
            None => Ok(ruby.qnil().as_value()),
        }
    }

    fn missed(&self) -> u64 {
        self.sub.missed()
    }
}

fn check_patterns(ruby: &Ruby, patterns: &[String]) -> Result<(), Error> {
    if patterns.is_empty() || patterns.iter().any(|p| p.is_empty()) {
        return Err(invalid_argument(
            ruby,
            "patterns must name at least one non-empty event pattern (e.g. \"task.*\" or \"*\")",
        ));
    }
    Ok(())
}

impl Client {
    /// Joins (creating if needed) a subscriber group. Every option that is `nil` keeps the core's
    /// default (`SubscriptionOptions::new`).
    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        ruby: &Ruby,
        rb_self: &Self,
        group: String,
        patterns: Vec<String>,
        member_id: Option<String>,
        from_start: bool,
        max_attempts: Option<u32>,
        backoff: Option<f64>,
        max_backoff: Option<f64>,
        lease: Option<f64>,
        poll_interval: Option<f64>,
        batch_size: Option<i64>,
    ) -> Result<EventSubscription, Error> {
        let mut options = SubscriptionOptions::new(group, patterns);
        options.member_id = member_id;
        options.from_start = from_start;
        if let Some(n) = max_attempts {
            options.max_attempts = n;
        }
        if let Some(s) = backoff {
            options.backoff = duration(ruby, "backoff", s)?;
        }
        if let Some(s) = max_backoff {
            options.max_backoff = duration(ruby, "max_backoff", s)?;
        }
        if let Some(s) = lease {
            options.lease = duration(ruby, "lease", s)?;
        }
        if let Some(s) = poll_interval {
            options.poll_interval = duration(ruby, "poll_interval", s)?;
        }
        if let Some(n) = batch_size {
            options.batch_size = n;
        }
        let sub = wait(ruby, rb_self.tasker.subscribe(options))?;
        Ok(EventSubscription { sub })
    }

    fn subscribe_fast(ruby: &Ruby, rb_self: &Self, patterns: Vec<String>) -> Result<FastSubscription, Error> {
        check_patterns(ruby, &patterns)?;
        // The receiver is registered on the engine's broadcast at once: nothing committed after
        // this returns is missed.
        Ok(FastSubscription {
            sub: rb_self.tasker.subscribe_fast(patterns),
        })
    }

    fn event_groups(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        let groups = wait(ruby, rb_self.tasker.event_groups())?;
        ser(ruby, &groups)
    }

    fn event_dead_letters(ruby: &Ruby, rb_self: &Self, group: Option<String>, limit: i64) -> Result<Value, Error> {
        if limit < 1 {
            return Err(invalid_argument(ruby, format!("limit must be at least 1, got {limit}")));
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let letters = wait(ruby, rb_self.tasker.event_dead_letters(group.as_deref(), limit))?;
        ser(ruby, &letters)
    }

    fn delete_event_group(ruby: &Ruby, rb_self: &Self, group: String) -> Result<bool, Error> {
        wait(ruby, rb_self.tasker.delete_event_group(&group))
    }

    fn sequence_events(ruby: &Ruby, rb_self: &Self) -> Result<u64, Error> {
        wait(ruby, rb_self.tasker.sequence_events())
    }
}

pub fn define(ruby: &Ruby, native: RModule, client: RClass) -> Result<(), Error> {
    native.define_singleton_method("event_catalog", function!(event_catalog, 0))?;
    native.define_singleton_method("event_info", function!(event_info, 1))?;
    native.define_singleton_method("event_envelope_schema", function!(event_envelope_schema, 0))?;
    native.define_singleton_method("event_pattern_matches", function!(event_pattern_matches, 2))?;

    client.define_method("subscribe", method!(Client::subscribe, 10))?;
    client.define_method("subscribe_fast", method!(Client::subscribe_fast, 1))?;
    client.define_method("event_groups", method!(Client::event_groups, 0))?;
    client.define_method("event_dead_letters", method!(Client::event_dead_letters, 2))?;
    client.define_method("delete_event_group", method!(Client::delete_event_group, 1))?;
    client.define_method("sequence_events", method!(Client::sequence_events, 0))?;

    let sub = native.define_class("EventSubscription", ruby.class_object())?;
    sub.define_method("poll", method!(EventSubscription::poll, 1))?;
    sub.define_method("ack", method!(EventSubscription::ack, 1))?;
    sub.define_method("fail", method!(EventSubscription::fail, 2))?;
    sub.define_method("close", method!(EventSubscription::close, 0))?;
    sub.define_method("group", method!(EventSubscription::group, 0))?;
    sub.define_method("member_id", method!(EventSubscription::member_id, 0))?;

    let fast = native.define_class("FastSubscription", ruby.class_object())?;
    fast.define_method("poll", method!(FastSubscription::poll, 1))?;
    fast.define_method("missed", method!(FastSubscription::missed, 0))?;
    Ok(())
}
