//! Unit-testing Rust step handlers without a database: build a [`StepEvent`] from plain data
//! with [`TestEvent`], run the handler with [`run`] (exactly what a worker records, limits and
//! all), and assert on the outcome with [`OutcomeAssertions`].
//!
//! ```
//! use serde_json::json;
//! use tasker_core::handler::HandlerRegistry;
//! use tasker_core::testing::{self, OutcomeAssertions, TestEvent};
//! use tasker_core::{StepFailure, StepSuccess};
//!
//! let mut registry = HandlerRegistry::new();
//! registry.register_fn("double", |step| async move {
//!     let n = step.task_context["n"]
//!         .as_i64()
//!         .ok_or_else(|| StepFailure::permanent("invalid_input", "context.n must be an integer"))?;
//!     Ok(StepSuccess::new(json!({"n": n * 2})).with_metadata(json!({"doubled": true})))
//! });
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let (event, _) = TestEvent::new("double").context(json!({"n": 21})).build();
//! let outcome = testing::run(&registry, &event).await;
//! assert_eq!(outcome.expect_success()["n"], 42);
//! assert_eq!(outcome.success_metadata()["doubled"], true);
//!
//! let (event, _) = TestEvent::new("double").context(json!({})).build();
//! let failure = testing::run(&registry, &event).await.expect_failure().clone();
//! assert_eq!((failure.error_type.as_str(), failure.retryable), ("invalid_input", false));
//! # });
//! ```
//!
//! Batch workers read their batch and record checkpoints in memory:
//!
//! ```
//! use serde_json::json;
//! use tasker_core::testing::{self, TestEvent};
//!
//! let (event, checkpoints) = TestEvent::new("process_batch")
//!     .batch(json!(0), json!(250), json!({"checkpoint_interval": 100}))
//!     .build();
//! assert_eq!(event.batch.as_ref().unwrap()["end_cursor"], 250);
//! assert!(checkpoints.recorded().is_empty());
//! ```
//!
//! Event subscribers get their events from [`build_event`].

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::engine::{BATCH_KEY, DECISION_KEY};
use crate::handler::HandlerRegistry;
use crate::outcome::{BatchCursor, StepFailure, StepOutcome};
use crate::template::HandlerSpec;
use crate::worker::{CancelSignal, CheckpointRecorder, StepEvent};

/// Builds a [`StepEvent`] for a test.
#[derive(Debug, Clone)]
pub struct TestEvent {
    event: StepEvent,
}

/// The checkpoints a test event's handler recorded with [`StepEvent::checkpoint`].
#[derive(Debug, Clone, Default)]
pub struct CheckpointLog(Arc<Mutex<Vec<Value>>>);

impl CheckpointLog {
    /// Each recorded checkpoint: `{"cursor", "items_done", "accumulated"}`, in order.
    pub fn recorded(&self) -> Vec<Value> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl TestEvent {
    /// An event for the step `step_name`: attempt 1 of 3, empty context, no dependencies, the
    /// handler callable named like the step.
    pub fn new(step_name: &str) -> Self {
        Self {
            event: StepEvent {
                event_id: 0,
                task_uuid: Uuid::now_v7(),
                step_uuid: Uuid::now_v7(),
                step_name: step_name.to_owned(),
                namespace: "test".into(),
                task_name: "test".into(),
                task_version: "0.0.0".into(),
                handler: HandlerSpec {
                    callable: step_name.to_owned(),
                    method: "call".into(),
                    resolver: None,
                    initialization: Value::Object(Map::new()),
                    extra: Default::default(),
                },
                task_context: Value::Object(Map::new()),
                dependency_results: Map::new(),
                attempt: 1,
                max_attempts: 3,
                correlation_id: Uuid::now_v7(),
                deadline: None,
                batch: None,
                checkpoint: None,
                trace_context: None,
                cancellation: CancelSignal::default(),
                recorder: CheckpointRecorder::None,
                published: Default::default(),
            },
        }
    }

    /// The task context.
    pub fn context(mut self, context: Value) -> Self {
        self.event.task_context = context;
        self
    }

    /// The result of the dependency `name`.
    pub fn dependency(mut self, name: &str, result: Value) -> Self {
        self.event.dependency_results.insert(name.to_owned(), result);
        self
    }

    /// The handler's `initialization` config.
    pub fn config(mut self, config: Value) -> Self {
        self.event.handler.initialization = config;
        self
    }

    /// Attempt `attempt` of `max_attempts`.
    pub fn attempt(mut self, attempt: u32, max_attempts: u32) -> Self {
        self.event.attempt = attempt;
        self.event.max_attempts = max_attempts;
        self
    }

    /// The handler method the template names (`call` unless set).
    pub fn method(mut self, method: &str) -> Self {
        self.event.handler.method = method.to_owned();
        self
    }

    /// The handler callable the template names (the step name unless set).
    pub fn callable(mut self, callable: &str) -> Self {
        self.event.handler.callable = callable.to_owned();
        self
    }

    /// The attempt is already cancelled (`event.cancellation.is_cancelled()` is true), as when
    /// it timed out or the worker shuts down: for testing that a handler stops.
    pub fn cancelled(self) -> Self {
        self.event.cancellation.cancel();
        self
    }

    /// A batch worker instance's batch: `[start, end)`, with the template's `batch_config`.
    pub fn batch(mut self, start_cursor: Value, end_cursor: Value, batch_config: Value) -> Self {
        let size = match (start_cursor.as_u64(), end_cursor.as_u64()) {
            (Some(s), Some(e)) => json!(e.saturating_sub(s)),
            _ => Value::Null,
        };
        self.event.batch = Some(json!({
            "batch_id": "001",
            "start_cursor": start_cursor,
            "end_cursor": end_cursor,
            "batch_size": size,
            "is_no_op": false,
            "batch_config": batch_config,
        }));
        self
    }

    /// The last checkpoint of an earlier attempt (`{"cursor", "items_done", "accumulated"}`);
    /// the event becomes attempt 2 unless [`TestEvent::attempt`] says otherwise.
    pub fn resumed_from(mut self, checkpoint: Value) -> Self {
        if self.event.attempt == 1 {
            self.event.attempt = 2;
        }
        self.event.checkpoint = Some(checkpoint);
        self
    }

    /// The event, and the log its checkpoints go to.
    pub fn build(mut self) -> (StepEvent, CheckpointLog) {
        let log = CheckpointLog::default();
        self.event.recorder = CheckpointRecorder::Memory(log.0.clone());
        (self.event, log)
    }
}

/// Runs `event` through the handler `registry` holds for its callable and method, and returns
/// the outcome exactly as a worker would record it ([`StepOutcome::normalized`]: size and nesting
/// limits, `\u0000`, clamped `retry_after`). No database is involved.
pub async fn run(registry: &HandlerRegistry, event: &StepEvent) -> StepOutcome {
    registry.run(event).await.normalized()
}

/// Assertions on a handler's [`StepOutcome`]; each panics with the whole outcome when it does not
/// match, so a failing test shows what the handler did.
pub trait OutcomeAssertions {
    /// The result of a success.
    fn expect_success(&self) -> &Value;
    /// The metadata of a success (`Value::Null` when there is none).
    fn success_metadata(&self) -> &Value;
    /// The failure.
    fn expect_failure(&self) -> &StepFailure;
}

impl OutcomeAssertions for StepOutcome {
    fn expect_success(&self) -> &Value {
        match self {
            StepOutcome::Success { result, .. } => result,
            StepOutcome::Failure(f) => panic!("expected a success, the handler failed: {f:#?}"),
        }
    }

    fn success_metadata(&self) -> &Value {
        match self {
            StepOutcome::Success { metadata, .. } => metadata,
            StepOutcome::Failure(f) => panic!("expected a success, the handler failed: {f:#?}"),
        }
    }

    fn expect_failure(&self) -> &StepFailure {
        match self {
            StepOutcome::Failure(f) => f,
            success => panic!("expected a failure, the handler succeeded: {success:#?}"),
        }
    }
}

/// The steps a decision result chose (`Some(vec![])` for `no_branches`), or `None` when the
/// result carries no decision.
pub fn chosen_steps(result: &Value) -> Option<Vec<String>> {
    let outcome = result.get(DECISION_KEY)?;
    match outcome.get("type")?.as_str()? {
        "no_branches" => Some(Vec::new()),
        "create_steps" => serde_json::from_value(outcome.get("step_names")?.clone()).ok(),
        _ => None,
    }
}

/// A batchable step's result read back: the worker and its cursors (`Some((None, vec![]))` for
/// `no_batches`), or `None` when the result carries no batch outcome.
pub fn batches(result: &Value) -> Option<(Option<String>, Vec<BatchCursor>)> {
    let outcome = result.get(BATCH_KEY)?;
    match outcome.get("type")?.as_str()? {
        "no_batches" => Some((None, Vec::new())),
        "create_batches" => Some((
            outcome.get("worker_template_name")?.as_str().map(str::to_owned),
            serde_json::from_value(outcome.get("cursor_configs")?.clone()).ok()?,
        )),
        _ => None,
    }
}

/// An event as a durable subscriber receives it, for testing a [`crate::events::Subscriber`]
/// without a database: the payload is the catalog's example for a system event (`{}` for a
/// domain event), the ids are fresh, and the template is `test/test_task@1.0.0`. The fields are
/// public: change what the test is about with struct update syntax.
///
/// ```
/// use serde_json::json;
/// use tasker_core::events::Event;
/// use tasker_core::testing;
///
/// let completed = testing::build_event("task.completed");
/// assert_eq!((completed.category.as_str(), completed.delivery.as_str()), ("task", "durable"));
/// let charged = Event { payload: json!({"amount": 5}), ..testing::build_event("payment.charged") };
/// assert_eq!(charged.category, "domain");
/// ```
pub fn build_event(name: &str) -> crate::events::Event {
    let info = crate::events::event_info(name);
    // A system event of a step category carries a step; a domain event is published by a step.
    let with_step = info.as_ref().is_none_or(|i| i.category == "step");
    crate::events::Event {
        event_id: Uuid::now_v7(),
        name: name.to_owned(),
        category: info
            .as_ref()
            .map_or_else(|| "domain".to_owned(), |i| i.category.clone()),
        occurred_at: chrono::Utc::now(),
        task_uuid: Some(Uuid::now_v7()),
        step_uuid: with_step.then(Uuid::now_v7),
        correlation_id: Some(Uuid::now_v7()),
        namespace: Some("test".into()),
        task_name: Some("test_task".into()),
        task_version: Some("1.0.0".into()),
        payload: info.map_or_else(|| Value::Object(Map::new()), |i| i.example),
        delivery: "durable".into(),
        position: Some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{batch_cursors, step_results};

    #[test]
    fn a_built_event_looks_like_a_delivered_one() {
        let failed = build_event("step.failed");
        assert_eq!(failed.category, "step");
        assert!(failed.step_uuid.is_some() && failed.task_uuid.is_some());
        let example = crate::events::event_info("step.failed")
            .expect("in the catalog")
            .example;
        assert_eq!(failed.payload, example);
        let completed = build_event("task.completed");
        assert_eq!((completed.category.as_str(), completed.step_uuid), ("task", None));
        let domain = build_event("payment.charged");
        assert_eq!((domain.category.as_str(), &domain.payload), ("domain", &json!({})));
        assert_ne!(build_event("task.completed").event_id, completed.event_id);
    }

    #[tokio::test]
    async fn a_test_event_records_checkpoints_in_memory() {
        let (event, log) = TestEvent::new("w").batch(json!(0), json!(10), Value::Null).build();
        event
            .checkpoint(json!(5), 5, json!({"sum": 10}))
            .await
            .expect("recorded");
        assert_eq!(
            log.recorded(),
            vec![json!({"cursor": 5, "items_done": 5, "accumulated": {"sum": 10}})]
        );
        let resumed = TestEvent::new("w").resumed_from(json!({"cursor": 5})).build().0;
        assert_eq!((resumed.attempt, resumed.is_retry()), (2, true));
    }

    #[test]
    fn decisions_and_batches_read_back() {
        let r = step_results::decision(&["a", "b"], json!({"k": 1}));
        assert_eq!(chosen_steps(&r), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(chosen_steps(&step_results::no_branches(Value::Null)), Some(vec![]));
        assert_eq!(chosen_steps(&json!({"k": 1})), None);
        let cursors = batch_cursors(25, 10).expect("cursors");
        let r = step_results::batches("w", &cursors, Value::Null);
        assert_eq!(batches(&r), Some((Some("w".to_owned()), cursors)));
        assert_eq!(batches(&step_results::no_batches(Value::Null)), Some((None, vec![])));
    }
}
