//! The `{{step_name}}` decision step: chooses which of the steps depending on it are created.
//!
//! In the template, this step has `type: decision` and each branch is a step with
//! `dependencies: [{{step_name}}]`; only the branches named in the decision exist in the task. A
//! `deferred_convergence` step after the branches receives the results of those created.

use serde_json::{json, Value};
use tasker_core::handler::HandlerRegistry;
use tasker_core::outcome::step_results;
use tasker_core::{StepEvent, StepFailure};

/// The `callable` a template's step names to run this handler.
pub const CALLABLE: &str = "{{callable}}";

pub fn register(registry: &mut HandlerRegistry) {
    registry.register_fn(CALLABLE, |step| async move { handle(&step) });
}

pub fn handle(step: &StepEvent) -> Result<Value, StepFailure> {
    let amount = step.task_context["amount"].as_f64().unwrap_or(0.0);
    let branch = if amount >= 1_000.0 { "manual_review" } else { "auto_approve" };
    Ok(step_results::decision(&[branch], json!({ "amount": amount })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasker_core::testing::{chosen_steps, TestEvent};

    fn choice(amount: i64) -> Option<Vec<String>> {
        let (event, _) = TestEvent::new("{{step_name}}").context(json!({ "amount": amount })).build();
        chosen_steps(&handle(&event).expect("a success"))
    }

    #[test]
    fn sends_large_amounts_to_manual_review() {
        assert_eq!(choice(5_000), Some(vec!["manual_review".to_owned()]));
    }

    #[test]
    fn approves_small_amounts_automatically() {
        assert_eq!(choice(20), Some(vec!["auto_approve".to_owned()]));
    }
}
