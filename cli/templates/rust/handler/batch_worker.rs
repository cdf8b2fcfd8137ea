//! The `{{step_name}}` batch worker step: processes one batch (here: adds up the item numbers),
//! checkpointing as it goes.
//!
//! In the template, this step has `type: batch_worker` and depends on the batchable step that
//! splits the work; `batch_config: {checkpoint_interval: N}` there sets how often it records its
//! progress. A retry (after a failure, a timeout or a lost worker) resumes from the last
//! checkpoint instead of starting over.

use serde_json::{json, Value};
use tasker_core::handler::HandlerRegistry;
use tasker_core::{StepEvent, StepFailure};

/// The `callable` a template's step names to run this handler.
pub const CALLABLE: &str = "{{callable}}";

pub fn register(registry: &mut HandlerRegistry) {
    registry.register_fn(CALLABLE, |step| async move { handle(&step).await });
}

pub async fn handle(step: &StepEvent) -> Result<Value, StepFailure> {
    let Some(batch) = step.batch.as_ref() else {
        return Err(StepFailure::permanent("not_a_batch", "{{callable}} runs as a batch_worker instance only"));
    };
    if batch["is_no_op"].as_bool().unwrap_or(false) {
        return Ok(json!({ "items": 0, "sum": 0 }));
    }
    let start = batch["start_cursor"].as_u64().unwrap_or(0);
    let end = batch["end_cursor"].as_u64().unwrap_or(0);
    let interval = batch["batch_config"]["checkpoint_interval"].as_u64().unwrap_or(100).max(1);
    // Resume from the last checkpoint, if an earlier attempt left one.
    let (mut next, mut sum) = match &step.checkpoint {
        Some(c) => (c["cursor"].as_u64().unwrap_or(start), c["accumulated"]["sum"].as_u64().unwrap_or(0)),
        None => (start, 0),
    };
    while next < end {
        let upto = (next + interval).min(end);
        sum += (next..upto).sum::<u64>(); // the work on these items
        next = upto;
        step.checkpoint(json!(next), next - start, json!({ "sum": sum }))
            .await
            .map_err(|e| StepFailure::retryable("checkpoint_failed", e.to_string()))?;
    }
    Ok(json!({ "items": end - start, "sum": sum }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasker_core::testing::TestEvent;

    fn cursors(log: &tasker_core::testing::CheckpointLog) -> Vec<Value> {
        log.recorded().iter().map(|c| c["cursor"].clone()).collect()
    }

    #[tokio::test]
    async fn processes_its_range_with_checkpoints() {
        let (event, log) = TestEvent::new("{{step_name}}_001")
            .batch(json!(0), json!(250), json!({ "checkpoint_interval": 100 }))
            .build();
        assert_eq!(handle(&event).await.expect("a success"), json!({ "items": 250, "sum": (0..250).sum::<u64>() }));
        assert_eq!(cursors(&log), [json!(100), json!(200), json!(250)]);
    }

    #[tokio::test]
    async fn resumes_from_the_last_checkpoint() {
        let (event, log) = TestEvent::new("{{step_name}}_001")
            .batch(json!(0), json!(250), json!({ "checkpoint_interval": 100 }))
            .resumed_from(json!({ "cursor": 200, "items_done": 200, "accumulated": { "sum": (0..200).sum::<u64>() } }))
            .build();
        assert_eq!(handle(&event).await.expect("a success"), json!({ "items": 250, "sum": (0..250).sum::<u64>() }));
        assert_eq!(cursors(&log), [json!(250)]);
    }
}
