//! Domain events: declared by a template, published by its steps.
//!
//! ```yaml
//! domain_events:
//!   - name: payment.charged
//!     description: A card was charged.
//!     schema: {type: object, required: [amount], properties: {amount: {type: number}}}
//! steps:
//!   - name: charge
//!     publishes_events:
//!       - name: payment.charged
//!         condition: success      # success (default) | failure | always
//!         delivery: durable       # durable (default) | fast
//! ```
//!
//! A handler publishes by adding `{"name", "payload"}` entries under `events` in its outcome's
//! metadata (each binding's `publish(name, payload)` helper does that). The engine checks each
//! against the step's declarations and the event's schema *before* writing anything: an
//! undeclared event or a payload that breaks its schema fails the step permanently
//! (`event_not_declared`, `event_payload_invalid`) — a programming error, surfaced where it was
//! made rather than dropped silently. An event whose condition does not hold for the attempt's
//! outcome is not published.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, TaskerError, TemplateProblem};
use crate::outcome::{StepFailure, StepOutcome};
use crate::template::{ContextValidator, TaskTemplate};

/// `error_type` of a step that published an event its template does not let it publish.
pub const EVENT_NOT_DECLARED: &str = "event_not_declared";
/// `error_type` of a step that published an event whose payload breaks the declared schema.
pub const EVENT_PAYLOAD_INVALID: &str = "event_payload_invalid";

/// One entry of a template's `domain_events:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainEventSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the payload; without one, any JSON value (null included) is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// When a step's declared event is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventCondition {
    /// When the attempt succeeds.
    #[default]
    Success,
    /// When the attempt fails (whether or not it is retried).
    Failure,
    Always,
}

impl EventCondition {
    pub fn holds(self, succeeded: bool) -> bool {
        match self {
            EventCondition::Success => succeeded,
            EventCondition::Failure => !succeeded,
            EventCondition::Always => true,
        }
    }
}

/// How a published event travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventDelivery {
    /// Written with the step's outcome, delivered at least once to every group.
    #[default]
    Durable,
    /// Broadcast in the process that ran the completion; nothing stored.
    Fast,
}

/// One entry of a step's `publishes_events:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepPublication {
    pub name: String,
    #[serde(default)]
    pub condition: EventCondition,
    #[serde(default)]
    pub delivery: EventDelivery,
}

/// An event a handler added to its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedEvent {
    pub name: String,
    #[serde(default)]
    pub payload: Value,
}

/// A template's domain events, compiled: what each step may publish and each payload's schema.
#[derive(Debug, Default)]
pub struct DomainEvents {
    schemas: HashMap<String, ContextValidator>,
    by_step: HashMap<String, Vec<StepPublication>>,
}

/// Event names are dotted lowercase words (`payment.charged`), so patterns like `payment.*`
/// mean something; catalog names are the engine's.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    let word_ok = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if !name.contains('.') || !name.split('.').all(word_ok) {
        return Some(format!(
            "event name '{name}' must be dotted lowercase words, like 'payment.charged'"
        ));
    }
    if super::event_info(name).is_some()
        || ["task", "step", "operator", "dlq", "worker"]
            .iter()
            .any(|c| name.starts_with(&format!("{c}.")))
    {
        return Some(format!(
            "event name '{name}' is in the engine's namespace (task., step., operator., dlq., worker.); pick a name of your domain"
        ));
    }
    None
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value, what: &str) -> std::result::Result<Vec<T>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(_) => serde_json::from_value(value.clone()).map_err(|e| format!("{what}: {e}")),
        _ => Err(format!("{what} must be a list")),
    }
}

/// Every problem of a template's event declarations, as `(step, field, message)`.
pub(crate) fn problems(t: &TaskTemplate) -> Vec<(Option<String>, String, String)> {
    let mut out = Vec::new();
    let declared: Vec<DomainEventSpec> = match t.domain_events.as_ref().map(|v| parse(v, "domain_events")) {
        None => Vec::new(),
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            out.push((None, "domain_events".to_owned(), e));
            Vec::new()
        }
    };
    let mut names: Vec<&str> = Vec::new();
    for d in &declared {
        if let Some(p) = name_problem(&d.name) {
            out.push((None, "domain_events".to_owned(), p));
        }
        if names.contains(&d.name.as_str()) {
            out.push((
                None,
                "domain_events".to_owned(),
                format!("event '{}' is declared twice", d.name),
            ));
        }
        names.push(&d.name);
        if let Some(schema) = &d.schema {
            if let Err(e) = crate::template::check_schema(schema) {
                out.push((None, format!("domain_events.{}.schema", d.name), e));
            }
        }
    }
    for s in &t.steps {
        let Some(value) = &s.publishes_events else { continue };
        match parse::<StepPublication>(value, "publishes_events") {
            Err(e) => out.push((Some(s.name.clone()), "publishes_events".to_owned(), e)),
            Ok(pubs) => {
                for p in pubs {
                    // A template that declares no domain events at all is one written for
                    // Tasker before declarations existed: it must load unchanged, so its steps'
                    // publications are their own declarations, and their payloads go unchecked.
                    if !names.is_empty() && !names.contains(&p.name.as_str()) {
                        out.push((
                            Some(s.name.clone()),
                            "publishes_events".to_owned(),
                            format!(
                                "step publishes '{}', which the template's domain_events does not declare (declared: [{}])",
                                p.name,
                                names.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
    }
    out
}

impl DomainEvents {
    /// Compiles a stored (hence valid) template's declarations.
    pub(crate) fn compile(t: &TaskTemplate) -> Result<Self> {
        let corrupt = |e: String| {
            TaskerError::Template(vec![TemplateProblem {
                file: None,
                template: Some(format!("{}/{}", t.namespace_name, t.name)),
                step: None,
                field: Some("domain_events".into()),
                message: e,
            }])
        };
        let mut schemas = HashMap::new();
        if let Some(v) = &t.domain_events {
            for d in parse::<DomainEventSpec>(v, "domain_events").map_err(corrupt)? {
                let field = format!("domain_events.{}.schema", d.name);
                schemas.insert(d.name.clone(), ContextValidator::for_field(d.schema.as_ref(), &field)?);
            }
        }
        let mut by_step = HashMap::new();
        for s in &t.steps {
            if let Some(v) = &s.publishes_events {
                by_step.insert(
                    s.name.clone(),
                    parse::<StepPublication>(v, "publishes_events").map_err(corrupt)?,
                );
            }
        }
        Ok(DomainEvents { schemas, by_step })
    }

    /// Whether any step publishes anything (a template without events skips all of this).
    pub fn is_empty(&self) -> bool {
        self.by_step.is_empty()
    }

    /// The events of one attempt's outcome to publish, with how; or the permanent failure the
    /// step gets instead. `template_step` is the step's name in the template (a batch
    /// instance's worker).
    pub fn to_publish(
        &self,
        template_step: &str,
        outcome: &StepOutcome,
    ) -> std::result::Result<Vec<(PublishedEvent, StepPublication)>, StepFailure> {
        let (metadata, succeeded) = match outcome {
            StepOutcome::Success { metadata, .. } => (metadata, true),
            StepOutcome::Failure(f) => (&f.metadata, false),
        };
        let Some(listed) = metadata.get("events") else {
            return Ok(Vec::new());
        };
        let published: Vec<PublishedEvent> = serde_json::from_value(listed.clone()).map_err(|e| {
            StepFailure::permanent(
                EVENT_PAYLOAD_INVALID,
                format!("step '{template_step}': metadata.events must be a list of {{name, payload}}: {e}"),
            )
        })?;
        let declared = self.by_step.get(template_step).map(Vec::as_slice).unwrap_or_default();
        let mut out = Vec::with_capacity(published.len());
        for event in published {
            let Some(publication) = declared.iter().find(|p| p.name == event.name) else {
                let names: Vec<&str> = declared.iter().map(|p| p.name.as_str()).collect();
                return Err(StepFailure::permanent(
                    EVENT_NOT_DECLARED,
                    format!(
                        "step '{template_step}' published '{}', which its publishes_events does not declare (declared: [{}])",
                        event.name,
                        names.join(", ")
                    ),
                ));
            };
            if let Some(schema) = self.schemas.get(&event.name) {
                if let Err(e) = schema.validate(&event.payload) {
                    let at = if e.path.is_empty() {
                        String::new()
                    } else {
                        format!(" at '{}'", e.path)
                    };
                    return Err(StepFailure::permanent(
                        EVENT_PAYLOAD_INVALID,
                        format!(
                            "step '{template_step}' published '{}' with a payload that breaks its schema{at}: {}",
                            event.name, e.message
                        ),
                    ));
                }
            }
            if publication.condition.holds(succeeded) {
                out.push((event, publication.clone()));
            }
        }
        Ok(out)
    }
}

/// Adds a published event to an outcome's metadata (what the bindings' `publish` helpers do).
pub fn publish_into(metadata: &mut Value, name: &str, payload: Value) {
    if !metadata.is_object() {
        *metadata = Value::Object(Default::default());
    }
    if let Value::Object(m) = metadata {
        let list = m.entry("events").or_insert_with(|| Value::Array(Vec::new()));
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        if let Value::Array(items) = list {
            items.push(serde_json::json!({"name": name, "payload": payload}));
        }
    }
}

impl StepOutcome {
    /// Publishes a domain event with this outcome (see [`crate::events::domain`]).
    pub fn with_event(mut self, name: &str, payload: Value) -> Self {
        match &mut self {
            StepOutcome::Success { metadata, .. } => publish_into(metadata, name, payload),
            StepOutcome::Failure(f) => publish_into(&mut f.metadata, name, payload),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_must_be_dotted_words_outside_the_engines_namespace() {
        assert_eq!(name_problem("payment.charged"), None);
        assert_eq!(name_problem("order.line_item.added2"), None);
        for bad in [
            "payment",
            "Payment.charged",
            "payment..x",
            "task.completed",
            "step.custom",
            ".x",
            "a.b-c",
        ] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn conditions_follow_the_attempts_outcome() {
        assert!(EventCondition::Success.holds(true) && !EventCondition::Success.holds(false));
        assert!(!EventCondition::Failure.holds(true) && EventCondition::Failure.holds(false));
        assert!(EventCondition::Always.holds(true) && EventCondition::Always.holds(false));
    }

    #[test]
    fn publish_into_appends_and_repairs_odd_metadata() {
        let mut m = Value::Null;
        publish_into(&mut m, "a.b", json!({"x": 1}));
        publish_into(&mut m, "a.c", json!({}));
        assert_eq!(m["events"].as_array().map(Vec::len), Some(2));
        let mut m = json!({"events": "junk", "keep": true});
        publish_into(&mut m, "a.b", json!(1));
        assert_eq!(m["keep"], json!(true));
        assert_eq!(m["events"][0]["name"], json!("a.b"));
    }
}
