//! A ledger of handler runs for fault tests: every run of a step is counted, and a test reads
//! "no step ran twice" from it and from the audit rows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tasker_core::handler::HandlerRegistry;
use tasker_core::Tasker;
use uuid::Uuid;

use super::wait;

pub const NAMESPACE: &str = "rabbit_faults";

/// Handler runs by step.
pub type Ledger = Arc<Mutex<HashMap<Uuid, usize>>>;

pub fn chain_template() -> String {
    format!(
        "name: chain\nnamespace_name: {NAMESPACE}\nversion: 1.0.0\nsteps:\n\
         \x20 - name: a\n    handler: {{ callable: slow }}\n\
         \x20 - name: b\n    handler: {{ callable: slow }}\n    dependencies: [a]\n\
         \x20 - name: c\n    handler: {{ callable: slow }}\n    dependencies: [b]\n"
    )
}

/// A handler that records its run and takes `pause`.
pub fn ledger_registry(ledger: &Ledger, pause: Duration) -> HandlerRegistry {
    let mut r = HandlerRegistry::new();
    let ledger = Arc::clone(ledger);
    r.register_fn("slow", move |step| {
        let ledger = Arc::clone(&ledger);
        async move {
            *ledger.lock().expect("ledger").entry(step.step_uuid).or_default() += 1;
            tokio::time::sleep(pause).await;
            Ok(json!({ "attempt": step.attempt }))
        }
    });
    r
}

/// Every task completes, and no step ran (or succeeded) twice.
pub async fn assert_each_step_ran_once(tasker: &Tasker, tasks: &[Uuid], ledger: &Ledger) {
    let mut steps = 0;
    for &task in tasks {
        let d = wait(tasker, task).await;
        assert_eq!(d.task.state, "complete", "{:#?}", d.steps);
        for s in &d.steps {
            steps += 1;
            let runs = ledger.lock().expect("ledger").get(&s.step_uuid).copied().unwrap_or(0);
            assert_eq!(runs, 1, "step {} of task {task} ran {runs} times", s.name);
            let succeeded = d
                .step_transitions
                .iter()
                .filter(|t| t.step_name.as_deref() == Some(s.name.as_str()) && t.to_state == "complete")
                .count();
            assert_eq!(succeeded, 1, "step {} completed {succeeded} times", s.name);
        }
    }
    assert_eq!(steps, tasks.len() * 3);
}
