//! The `{{step_name}}` step: greets the `name` given in the task's context.
//!
//! `step.task_context` is the task's context, `step.dependency_results` the results of the steps
//! this one depends on (by step name), `step.config()` the step's handler.initialization in the
//! template. Return `Ok(value)` to succeed; `StepFailure::permanent(type, message)` fails at once,
//! `StepFailure::retryable(type, message)` is retried as the template's retry policy says.

use serde_json::{json, Value};
use tasker_core::handler::HandlerRegistry;
use tasker_core::{StepEvent, StepFailure};

/// The `callable` a template's step names to run this handler.
pub const CALLABLE: &str = "{{callable}}";

pub fn register(registry: &mut HandlerRegistry) {
    registry.register_fn(CALLABLE, |step| async move { handle(&step) });
}

pub fn handle(step: &StepEvent) -> Result<Value, StepFailure> {
    let name = step.task_context["name"].as_str().unwrap_or("world");
    Ok(json!({ "greeting": format!("Hello, {name}!") }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasker_core::testing::TestEvent;

    #[test]
    fn greets_the_name_in_the_context() {
        let (event, _) = TestEvent::new("{{step_name}}").context(json!({ "name": "Ada" })).build();
        assert_eq!(handle(&event).expect("a success"), json!({ "greeting": "Hello, Ada!" }));
    }

    #[test]
    fn greets_the_world_by_default() {
        let (event, _) = TestEvent::new("{{step_name}}").build();
        assert_eq!(handle(&event).expect("a success"), json!({ "greeting": "Hello, world!" }));
    }
}
