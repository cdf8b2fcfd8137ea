//! Events ([`tasker_core::events`]): the catalog, a member of a durable subscriber group
//! ([`EventSubscription`]) and a reader of the in-process broadcast ([`FastSubscription`]).
//! Events cross as JSON text (`Event::to_json`); `tasker_core.events` turns them into the
//! `Event` dataclass and runs the subscribers.

use std::time::Duration;

use pyo3::prelude::*;
use tasker_core::events::{self, EventSubscription, FastSubscription, SubscriptionOptions};
use tasker_core::{Tasker, TaskerError};

use crate::client::{block, to_json};
use crate::error::MapPy;
use crate::worker::seconds;

/// Every system event (`task.*`, `step.*`, `operator.*`, `dlq.*`, `worker.*`) as a JSON list
/// of `{name, category, description, payload_schema, example}`.
#[pyfunction]
pub fn catalog() -> PyResult<String> {
    to_json(&events::catalog())
}

/// The catalog entry of `name` as JSON, `None` for a name outside the catalog.
#[pyfunction]
pub fn event_info(name: &str) -> PyResult<Option<String>> {
    events::event_info(name).map(|e| to_json(&e)).transpose()
}

/// The JSON Schema of the envelope every event travels in.
#[pyfunction]
pub fn envelope_schema() -> PyResult<String> {
    to_json(&events::envelope_schema())
}

/// Whether `name` matches the subscription pattern `pattern` (`*` stands for any run of
/// characters).
#[pyfunction]
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    events::pattern_matches(pattern, name)
}

/// How a member joins its group; durations in seconds (see [`SubscriptionOptions`]).
pub(crate) struct JoinOptions {
    pub member_id: Option<String>,
    pub from_start: bool,
    pub max_attempts: u32,
    pub backoff: f64,
    pub max_backoff: f64,
    pub lease: f64,
    pub poll_interval: f64,
    pub batch_size: i64,
}

/// A member of a durable subscriber group. Every delivery `poll` hands out must be given back
/// with `ack` or `fail`: the group's next event of that partition (task) waits for it.
#[pyclass(module = "tasker_core._native", frozen)]
pub struct NativeEventSubscription {
    subscription: EventSubscription,
}

impl NativeEventSubscription {
    pub(crate) fn join(
        py: Python<'_>,
        tasker: &Tasker,
        group: String,
        patterns: Vec<String>,
        o: JoinOptions,
    ) -> PyResult<Self> {
        let mut options = SubscriptionOptions::new(group, patterns);
        options.member_id = o.member_id;
        options.from_start = o.from_start;
        options.max_attempts = o.max_attempts;
        options.backoff = seconds("backoff", o.backoff)?;
        options.max_backoff = seconds("max_backoff", o.max_backoff)?;
        options.lease = seconds("lease", o.lease)?;
        options.poll_interval = seconds("poll_interval", o.poll_interval)?;
        options.batch_size = o.batch_size;
        let tasker = tasker.clone();
        let subscription = block(py, move || async move { tasker.subscribe(options).await })?;
        Ok(Self { subscription })
    }
}

#[pymethods]
impl NativeEventSubscription {
    #[getter]
    fn group(&self) -> &str {
        self.subscription.group()
    }

    #[getter]
    fn member_id(&self) -> &str {
        self.subscription.member_id()
    }

    /// Waits up to `timeout_ms` for the next delivery: `(delivery_id, attempt, event JSON)`, or
    /// `None` when nothing came. Raises `InvalidState` once the subscription is closed or
    /// stopped (the message says why).
    fn poll(&self, py: Python<'_>, timeout_ms: u64) -> PyResult<Option<(u64, u32, String)>> {
        // Released GIL: the subscriber's handlers run on other threads meanwhile, and the
        // thread that acks a delivery (which the next one waits for) needs it.
        let subscription = &self.subscription;
        let delivery = py
            .detach(|| subscription.poll(Duration::from_millis(timeout_ms)))
            .map_py()?;
        delivery
            .map(|d| Ok((d.delivery_id, d.attempt, to_json(&d.event)?)))
            .transpose()
    }

    /// The delivery was handled. Never waits for the database.
    fn ack(&self, delivery_id: u64) -> PyResult<()> {
        self.subscription.ack(delivery_id).map_py()
    }

    /// The handler failed with `error`: the event is retried after a backoff, or goes to the
    /// group's dead letters after `max_attempts`. Never waits for the database.
    fn fail(&self, delivery_id: u64, error: &str) -> PyResult<()> {
        self.subscription.fail(delivery_id, error).map_py()
    }

    /// Records the acknowledged positions and leaves the group (deliveries not acknowledged go
    /// to another member). Raises the error that stopped the subscription, if one did.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let subscription = &self.subscription;
        block(py, move || async move { subscription.close().await })
    }
}

/// A reader of this process's fast events (nothing stored, nothing retried).
#[pyclass(module = "tasker_core._native", frozen)]
pub struct NativeFastSubscription {
    subscription: FastSubscription,
}

impl NativeFastSubscription {
    pub(crate) fn new(tasker: &Tasker, patterns: Vec<String>) -> PyResult<Self> {
        if patterns.is_empty() || patterns.iter().any(String::is_empty) {
            return Err(crate::error::to_py(TaskerError::InvalidArgument(
                "a fast subscription needs at least one non-empty event pattern (e.g. \"task.*\" or \"*\")".into(),
            )));
        }
        Ok(Self {
            subscription: tasker.subscribe_fast(patterns),
        })
    }
}

#[pymethods]
impl NativeFastSubscription {
    /// Waits up to `timeout_ms` for the next matching event (JSON), `None` when nothing came.
    fn poll(&self, py: Python<'_>, timeout_ms: u64) -> PyResult<Option<String>> {
        let subscription = &self.subscription;
        let event = py
            .detach(|| subscription.poll(Duration::from_millis(timeout_ms)))
            .map_py()?;
        event.map(|e| to_json(&e)).transpose()
    }

    /// Events skipped because this reader fell more than the broadcast's buffer behind.
    #[getter]
    fn missed(&self) -> u64 {
        self.subscription.missed()
    }
}
