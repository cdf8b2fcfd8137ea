//! Mermaid flowcharts of a template's DAG and of a task's steps with their states.
//!
//! One renderer for every entry point: `tasker template diagram`, `tasker task diagram` and the
//! REST API's `GET /v1/tasks/{uuid}/diagram` all print what these functions return, so a
//! diagram looks the same wherever it comes from.
//!
//! ```
//! use tasker_core::diagram::template_mermaid;
//! use tasker_core::template::TaskTemplate;
//!
//! let template: TaskTemplate = serde_yaml::from_str(
//!     "name: t\nnamespace_name: n\nversion: 1.0.0\nsteps:\n\
//!      - {name: a, handler: {callable: A}}\n\
//!      - {name: b, handler: {callable: B}, dependencies: [a]}\n",
//! ).unwrap();
//! assert!(template_mermaid(&template).contains("s0 --> s1"));
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::store::TaskDetail;
use crate::template::{StepType, TaskTemplate};

/// Fill colours of the step states, in the order the `classDef` lines are printed.
/// Done states are green, failures red, running blue, waiting yellow/orange, not started grey.
pub const STATE_COLOURS: &[(&str, &str)] = &[
    ("complete", "#c8e6c9"),
    ("resolved_manually", "#dcedc8"),
    ("error", "#ffcdd2"),
    ("cancelled", "#e0e0e0"),
    ("in_progress", "#bbdefb"),
    ("enqueued", "#fff9c4"),
    ("enqueued_for_orchestration", "#fff9c4"),
    ("waiting_for_retry", "#ffe0b2"),
    ("pending", "#f5f5f5"),
];

/// Text made safe inside a quoted Mermaid label: quotes and angle brackets become Mermaid
/// entities (a step name cannot inject markup or end the label), control characters spaces.
pub fn mermaid_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The node ids (`s0`, `s1`, … in the given order) by step name.
fn node_ids<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, String> {
    names.enumerate().map(|(i, n)| (n, format!("s{i}"))).collect()
}

/// A template's DAG: one node per step (its shape says its type: a rhombus for a decision, a
/// subroutine box for a batchable step, a parallelogram for a batch worker, a stadium for a
/// deferred convergence), an edge from each dependency to its dependent.
pub fn template_mermaid(template: &TaskTemplate) -> String {
    let ids = node_ids(template.steps.iter().map(|s| s.name.as_str()));
    let mut out = String::from("flowchart TD\n");
    for (i, step) in template.steps.iter().enumerate() {
        let name = mermaid_label(&step.name);
        let label = match step.step_type {
            StepType::Standard => format!("\"{name}\""),
            other => format!("\"{name}<br/><i>{}</i>\"", other.as_str()),
        };
        let (open, close) = match step.step_type {
            StepType::Standard => ("[", "]"),
            StepType::Decision => ("{", "}"),
            StepType::DeferredConvergence => ("([", "])"),
            StepType::Batchable => ("[[", "]]"),
            StepType::BatchWorker => ("[/", "/]"),
        };
        let _ = writeln!(out, "  s{i}{open}{label}{close}");
    }
    for step in &template.steps {
        for dep in &step.dependencies {
            if let (Some(from), Some(to)) = (ids.get(dep.as_str()), ids.get(step.name.as_str())) {
                // A batch worker runs as many instances: the edge says so.
                let arrow = if step.step_type == StepType::BatchWorker {
                    "-- batches -->"
                } else {
                    "-->"
                };
                let _ = writeln!(out, "  {from} {arrow} {to}");
            }
        }
    }
    out
}

/// A task's steps, each labelled with its name and state and coloured by its state
/// ([`STATE_COLOURS`]), with an edge from each dependency to its dependent. Steps a decision
/// never created are not in the task, so they are not drawn.
pub fn task_mermaid(detail: &TaskDetail) -> String {
    let ids = node_ids(detail.steps.iter().map(|s| s.name.as_str()));
    let mut out = String::from("flowchart TD\n");
    for (i, step) in detail.steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "  s{i}[\"{}<br/>{}\"]:::{}",
            mermaid_label(&step.name),
            mermaid_label(&step.state),
            css_class(&step.state),
        );
    }
    for step in &detail.steps {
        for dep in &step.dependencies {
            if let (Some(from), Some(to)) = (ids.get(dep.as_str()), ids.get(step.name.as_str())) {
                let _ = writeln!(out, "  {from} --> {to}");
            }
        }
    }
    for (state, colour) in STATE_COLOURS {
        let _ = writeln!(out, "  classDef {state} fill:{colour}");
    }
    out
}

/// A state name usable as a Mermaid class (states are snake_case already; anything else is
/// reduced to the characters a class name may hold).
fn css_class(state: &str) -> String {
    state
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cannot_break_out_of_their_quotes() {
        assert_eq!(mermaid_label("a\"b<c>\nd"), "a#quot;b#lt;c#gt; d");
    }

    #[test]
    fn step_types_get_their_own_shapes() {
        let template: TaskTemplate = serde_yaml::from_str(
            "name: t\nnamespace_name: n\nversion: 1.0.0\nsteps:\n\
             - {name: split, type: batchable, handler: {callable: A}}\n\
             - {name: work, type: batch_worker, handler: {callable: B}, dependencies: [split]}\n\
             - {name: join, type: deferred_convergence, handler: {callable: C}, dependencies: [work]}\n",
        )
        .expect("a valid template");
        let text = template_mermaid(&template);
        assert!(text.contains("s0[[\"split<br/><i>batchable</i>\"]]"), "{text}");
        assert!(text.contains("s1[/\"work<br/><i>batch_worker</i>\"/]"), "{text}");
        assert!(text.contains("s0 -- batches --> s1"), "{text}");
        assert!(
            text.contains("s2([\"join<br/><i>deferred_convergence</i>\"])"),
            "{text}"
        );
    }
}
