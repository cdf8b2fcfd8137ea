//! The event catalog: every system event the engine can publish about the task and step
//! lifecycle, operator actions, the dead-letter queue and workers, each with a category, a
//! description, the JSON Schema of its payload and an example payload.
//!
//! Every event is an envelope (`event_id` — a UUIDv7 —, `name`, `occurred_at`, `task_uuid`,
//! `step_uuid` for step events, `correlation_id`) around a `payload` whose schema the catalog
//! gives. Subscribers name events by pattern: `task.completed`, `step.*`, `*`
//! ([`pattern_matches`]).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::state::{StepState, TaskState};

/// One entry of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInfo {
    pub name: String,
    /// `task`, `step`, `operator`, `dlq` or `worker`.
    pub category: String,
    pub description: String,
    /// JSON Schema of the payload.
    pub payload_schema: Value,
    /// A payload that satisfies the schema.
    pub example: Value,
}

/// The envelope every event travels in, as a JSON Schema (its `payload` is the event's own).
pub fn envelope_schema() -> Value {
    json!({
        "type": "object",
        "required": ["event_id", "name", "occurred_at", "payload"],
        "properties": {
            "event_id": {"type": "string", "format": "uuid", "description": "UUIDv7: unique, and ordered by time"},
            "name": {"type": "string"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "task_uuid": {"type": "string", "format": "uuid"},
            "step_uuid": {"type": ["string", "null"], "format": "uuid"},
            "correlation_id": {"type": ["string", "null"], "format": "uuid"},
            "payload": {"type": "object"}
        }
    })
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn integer() -> Value {
    json!({"type": "integer"})
}

/// The fields every task event's payload has.
fn task_fields() -> Value {
    json!({
        "namespace": string(),
        "name": string(),
        "version": string(),
        "from_state": {"type": ["string", "null"]},
        "to_state": string(),
    })
}

/// The fields every step event's payload has.
fn step_fields() -> Value {
    json!({
        "step_name": string(),
        "from_state": {"type": ["string", "null"]},
        "to_state": string(),
        "attempt": integer(),
    })
}

fn merged(base: Value, extra: Value) -> Value {
    let mut base = base;
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn task_event(name: &str, description: &str, extra: Value, example_extra: Value) -> EventInfo {
    let example = merged(
        json!({"namespace": "ecommerce", "name": "order_fulfillment", "version": "1.0.0", "from_state": "evaluating_results", "to_state": "complete"}),
        example_extra,
    );
    EventInfo {
        name: name.to_owned(),
        category: "task".into(),
        description: description.to_owned(),
        payload_schema: object(
            &["namespace", "name", "version", "to_state"],
            merged(task_fields(), extra),
        ),
        example,
    }
}

fn step_event(name: &str, description: &str, extra: Value, example_extra: Value) -> EventInfo {
    let example = merged(
        json!({"step_name": "charge_payment", "from_state": "in_progress", "to_state": "complete", "attempt": 1}),
        example_extra,
    );
    EventInfo {
        name: name.to_owned(),
        category: "step".into(),
        description: description.to_owned(),
        payload_schema: object(&["step_name", "to_state", "attempt"], merged(step_fields(), extra)),
        example,
    }
}

fn other_event(name: &str, category: &str, description: &str, schema: Value, example: Value) -> EventInfo {
    EventInfo {
        name: name.to_owned(),
        category: category.to_owned(),
        description: description.to_owned(),
        payload_schema: schema,
        example,
    }
}

/// Every system event, in a stable order (by category, then lifecycle order).
pub fn catalog() -> Vec<EventInfo> {
    let error = json!({"type": "object", "properties": {"error_type": string(), "message": string(), "retryable": {"type": "boolean"}}});
    let operator = json!({"by": string(), "reason": string()});
    vec![
        task_event(
            "task.created",
            "A task was created and its first steps enqueued.",
            json!({}),
            json!({"from_state": null, "to_state": "steps_in_process"}),
        ),
        task_event(
            "task.started",
            "A task began running its steps.",
            json!({}),
            json!({"from_state": "enqueuing_steps", "to_state": "steps_in_process"}),
        ),
        task_event(
            "task.waiting_for_retry",
            "Every open step of a task waits for a retry.",
            json!({}),
            json!({"from_state": "evaluating_results", "to_state": "waiting_for_retry"}),
        ),
        task_event(
            "task.completed",
            "Every step of a task is done.",
            json!({"total_steps": integer()}),
            json!({"total_steps": 4}),
        ),
        task_event(
            "task.failed",
            "A step failed for good and nothing else can run: the task is in error (and in the DLQ).",
            json!({"failed_steps": integer()}),
            json!({"to_state": "error", "failed_steps": 1}),
        ),
        task_event(
            "task.cancelled",
            "A task was cancelled.",
            json!({}),
            json!({"from_state": "steps_in_process", "to_state": "cancelled"}),
        ),
        task_event(
            "task.resolved",
            "An operator closed a task by hand (resolved_manually).",
            operator.clone(),
            json!({"from_state": "error", "to_state": "resolved_manually", "by": "alice", "reason": "handled outside"}),
        ),
        task_event(
            "task.reopened",
            "An operator action let a failed task progress again.",
            operator.clone(),
            json!({"from_state": "error", "to_state": "enqueuing_steps", "by": "alice", "reason": "fixed upstream"}),
        ),
        step_event(
            "step.enqueued",
            "A step's dependencies are satisfied (or its retry is due): it waits for a worker.",
            json!({"queue": string()}),
            json!({"from_state": "pending", "to_state": "enqueued", "attempt": 0, "queue": "ecommerce"}),
        ),
        step_event(
            "step.started",
            "A worker claimed a step and an attempt began.",
            json!({"worker": string()}),
            json!({"from_state": "enqueued", "to_state": "in_progress", "worker": "host:4242"}),
        ),
        step_event(
            "step.completed",
            "A step's attempt succeeded.",
            json!({"result": {}}),
            json!({"result": {"payment_id": "pay-1"}}),
        ),
        step_event(
            "step.failed",
            "A step failed for good (a permanent error, or its attempts ran out).",
            json!({"error": error.clone()}),
            json!({"to_state": "error", "error": {"error_type": "CardDeclined", "message": "card declined", "retryable": false}}),
        ),
        step_event(
            "step.retry_scheduled",
            "A step's attempt failed and another is scheduled.",
            json!({"error": error.clone(), "retry_in_ms": integer()}),
            json!({"to_state": "waiting_for_retry", "retry_in_ms": 2000, "error": {"error_type": "Timeout", "message": "gateway timed out", "retryable": true}}),
        ),
        step_event(
            "step.timed_out",
            "A step's attempt overran its timeout_seconds.",
            json!({"timeout_seconds": integer()}),
            json!({"to_state": "waiting_for_retry", "timeout_seconds": 30}),
        ),
        step_event(
            "step.resolved",
            "An operator resolved a step by hand (resolved_manually).",
            operator.clone(),
            json!({"from_state": "error", "to_state": "resolved_manually", "by": "alice", "reason": "not needed"}),
        ),
        step_event(
            "step.completed_manually",
            "An operator completed a step with a result of their own.",
            merged(operator.clone(), json!({"result": {}})),
            json!({"from_state": "error", "to_state": "complete", "by": "alice", "reason": "charged by phone", "result": {"charge_id": "manual-1"}}),
        ),
        step_event(
            "step.reset",
            "An operator sent a step back to pending with a fresh retry budget.",
            operator.clone(),
            json!({"from_state": "error", "to_state": "pending", "by": "alice", "reason": "deployed the fix"}),
        ),
        step_event(
            "step.cancelled",
            "A step was cancelled (with its task, or by an operator).",
            json!({"reason": string()}),
            json!({"from_state": "enqueued", "to_state": "cancelled", "reason": "task cancelled"}),
        ),
        step_event(
            "step.checkpointed",
            "A running batch worker recorded its progress.",
            json!({"cursor": {}, "items_done": integer()}),
            json!({"from_state": "in_progress", "to_state": "in_progress", "cursor": 500, "items_done": 500}),
        ),
        other_event(
            "dlq.entry_created",
            "dlq",
            "A task entered the dead-letter queue.",
            object(
                &["entry_uuid", "reason"],
                json!({"entry_uuid": string(), "reason": string(), "task_state": string()}),
            ),
            json!({"entry_uuid": "0192f2b4-7c1e-7000-8000-000000000001", "reason": "permanent_failure", "task_state": "error"}),
        ),
        other_event(
            "dlq.entry_resolved",
            "dlq",
            "A dead-letter entry was closed (manually_resolved, permanently_failed or cancelled).",
            object(
                &["entry_uuid", "status"],
                json!({"entry_uuid": string(), "status": string(), "resolved_by": string()}),
            ),
            json!({"entry_uuid": "0192f2b4-7c1e-7000-8000-000000000001", "status": "manually_resolved", "resolved_by": "alice"}),
        ),
        other_event(
            "worker.registered",
            "worker",
            "A worker process started and registered.",
            object(
                &["worker_id", "language", "queues"],
                json!({"worker_id": string(), "language": string(), "queues": {"type": "array", "items": string()}}),
            ),
            json!({"worker_id": "host:4242", "language": "python", "queues": ["ecommerce"]}),
        ),
        other_event(
            "worker.stopped",
            "worker",
            "A worker process shut down.",
            object(&["worker_id"], json!({"worker_id": string()})),
            json!({"worker_id": "host:4242"}),
        ),
    ]
}

/// The catalog entry of `name`.
pub fn event_info(name: &str) -> Option<EventInfo> {
    catalog().into_iter().find(|e| e.name == name)
}

/// Whether an event name matches a subscription pattern: exact, or with `*` standing for any
/// run of characters (`step.*`, `*.failed`, `*`).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    // Patterns are short; collapse runs of `*` so the recursion stays linear in practice.
    let mut collapsed = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if !(c == '*' && collapsed.ends_with('*')) {
            collapsed.push(c);
        }
    }
    go(collapsed.as_bytes(), name.as_bytes())
}

/// The catalog event a task transition publishes, if any.
pub fn task_event_name(event: &str, to: TaskState) -> Option<&'static str> {
    Some(match (event, to) {
        ("create", _) => "task.created",
        ("steps_enqueued", TaskState::StepsInProcess) => "task.started",
        ("reopen", _) => "task.reopened",
        (_, TaskState::WaitingForRetry) => "task.waiting_for_retry",
        (_, TaskState::Complete) => "task.completed",
        (_, TaskState::Error) => "task.failed",
        (_, TaskState::Cancelled) => "task.cancelled",
        (_, TaskState::ResolvedManually) => "task.resolved",
        _ => return None,
    })
}

/// The catalog event a step transition publishes, if any; `timed_out` tells a timeout apart
/// from another failure.
pub fn step_event_name(event: &str, to: StepState, timed_out: bool) -> Option<&'static str> {
    Some(match (event, to) {
        (_, _) if timed_out => "step.timed_out",
        ("enqueue", StepState::Enqueued) => "step.enqueued",
        ("claim", StepState::InProgress) => "step.started",
        ("succeed", StepState::Complete) => "step.completed",
        ("complete_manually", _) => "step.completed_manually",
        ("schedule_retry", _) => "step.retry_scheduled",
        ("fail", _) => "step.failed",
        ("resolve_manually", _) => "step.resolved",
        ("reset", _) => "step.reset",
        ("cancel", _) => "step.cancelled",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_satisfies_its_schema_and_names_are_unique() {
        let catalog = catalog();
        let mut names: Vec<&str> = catalog.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), catalog.len());
        for e in &catalog {
            let validator = jsonschema::validator_for(&e.payload_schema).expect("valid schema");
            assert!(validator.is_valid(&e.example), "{}: {}", e.name, e.example);
            assert!(e.name.starts_with(&format!("{}.", e.category)), "{}", e.name);
        }
        for required in [
            "task.created",
            "task.started",
            "task.completed",
            "task.failed",
            "task.cancelled",
            "task.resolved",
            "step.enqueued",
            "step.started",
            "step.completed",
            "step.failed",
            "step.retry_scheduled",
            "step.timed_out",
            "step.resolved",
        ] {
            assert!(event_info(required).is_some(), "{required}");
        }
        assert!(event_info("nope").is_none());
    }

    #[test]
    fn patterns_match_with_wildcards() {
        assert!(pattern_matches("task.completed", "task.completed"));
        assert!(!pattern_matches("task.completed", "task.completed_x"));
        assert!(pattern_matches("step.*", "step.failed"));
        assert!(!pattern_matches("step.*", "task.failed"));
        assert!(pattern_matches("*.failed", "step.failed"));
        assert!(pattern_matches("*", "anything.at.all"));
        assert!(pattern_matches("payment.**", "payment.charged"));
        assert!(!pattern_matches("", "x"));
        assert!(pattern_matches(&"*".repeat(10_000), "x"));
    }

    #[test]
    fn lifecycle_transitions_name_catalog_events() {
        for name in [
            task_event_name("create", TaskState::Pending),
            task_event_name("all_steps_complete", TaskState::Complete),
            step_event_name("claim", StepState::InProgress, false),
            step_event_name("fail", StepState::Error, false),
            step_event_name("schedule_retry", StepState::WaitingForRetry, true),
        ] {
            let name = name.expect("named");
            assert!(event_info(name).is_some(), "{name}");
        }
        assert_eq!(step_event_name("release", StepState::Enqueued, false), None);
    }
}
