//! The `{{step_name}}` batchable step: splits the task's `total_items` into batches of
//! [`BATCH_SIZE`].
//!
//! In the template, this step has `type: batchable`, and a `batch_worker` step depending on it
//! processes each batch; its name is this handler's `worker` initialization value (default
//! `process_batch`). The engine creates one instance of it per batch (process_batch_001, …), and
//! a `deferred_convergence` step after them receives all their results. No items still creates
//! one no-op instance, so the convergence step runs.

use serde_json::{json, Value};
use tasker_core::handler::HandlerRegistry;
use tasker_core::outcome::{batch_cursors, step_results};
use tasker_core::{StepEvent, StepFailure};

/// The `callable` a template's step names to run this handler.
pub const CALLABLE: &str = "{{callable}}";
pub const BATCH_SIZE: u64 = 100;

pub fn register(registry: &mut HandlerRegistry) {
    registry.register_fn(CALLABLE, |step| async move { handle(&step) });
}

pub fn handle(step: &StepEvent) -> Result<Value, StepFailure> {
    let total = step.task_context["total_items"].as_u64().unwrap_or(0);
    if total == 0 {
        return Ok(step_results::no_batches(json!({ "total_items": 0 })));
    }
    let worker = step.config()["worker"].as_str().unwrap_or("process_batch");
    let cursors =
        batch_cursors(total, BATCH_SIZE).map_err(|e| StepFailure::permanent("invalid_input", e.to_string()))?;
    Ok(step_results::batches(worker, &cursors, json!({ "total_items": total })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasker_core::testing::{batches, TestEvent};

    fn split(total: u64) -> (Option<String>, Vec<(Value, Value)>) {
        let (event, _) = TestEvent::new("{{step_name}}").context(json!({ "total_items": total })).build();
        let (worker, cursors) = batches(&handle(&event).expect("a success")).expect("a batch outcome");
        (worker, cursors.into_iter().map(|c| (c.start_cursor, c.end_cursor)).collect())
    }

    #[test]
    fn splits_the_items_into_batches() {
        let (worker, ranges) = split(250);
        assert_eq!(worker.as_deref(), Some("process_batch"));
        assert_eq!(ranges, [(json!(0), json!(100)), (json!(100), json!(200)), (json!(200), json!(250))]);
    }

    #[test]
    fn creates_no_batches_without_items() {
        assert_eq!(split(0), (None, vec![]));
    }
}
