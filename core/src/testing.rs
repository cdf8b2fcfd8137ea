//! Unit-testing Rust step handlers without a database: build a [`StepEvent`] from plain data,
//! run the handler, and read a decision or batch result back.
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

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::engine::{BATCH_KEY, DECISION_KEY};
use crate::outcome::BatchCursor;
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
                cancellation: CancelSignal::default(),
                recorder: CheckpointRecorder::None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{batch_cursors, step_results};

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
