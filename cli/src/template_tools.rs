//! `tasker template diagram` and `tasker template docs`: a template (a YAML file, or one
//! registered in the database by name) as a Mermaid flowchart or a Markdown summary.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};
use tasker_core::diagram::template_mermaid;
use tasker_core::template::{current_env, load_path, BackoffKind, RetryPolicy, StepTemplate, StepType, TaskTemplate};
use tasker_core::{Tasker, TaskerError};

/// The templates `target` names: every template of a file or directory when it is a path,
/// else the registered template `namespace/name[@version]`.
pub async fn resolve(
    target: &str,
    connect: impl std::future::Future<Output = Result<Tasker, TaskerError>>,
) -> Result<Vec<TaskTemplate>, TaskerError> {
    let path = Path::new(target);
    if path.exists() {
        let loaded = load_path(path, &current_env())?;
        return Ok(loaded.into_iter().map(|l| l.template).collect());
    }
    let (key, version) = match target.split_once('@') {
        Some((k, v)) => (k, Some(v)),
        None => (target, None),
    };
    let Some((namespace, name)) = key.split_once('/') else {
        return Err(TaskerError::InvalidArgument(format!(
            "'{target}' is neither a file nor a registered template's namespace/name[@version] \
             (`tasker template list` shows them)"
        )));
    };
    let tasker = connect.await?;
    let found = tasker.template(namespace, name, version).await;
    tasker.close().await;
    Ok(vec![found?.template.clone()])
}

/// Prints each template's Mermaid flowchart (JSON: `[{"template", "mermaid"}]`).
pub fn print_diagrams(templates: &[TaskTemplate], json: bool) -> ExitCode {
    if json {
        let all: Vec<Value> = templates
            .iter()
            .map(|t| json!({ "template": t.key(), "mermaid": template_mermaid(t) }))
            .collect();
        println!("{}", Value::Array(all));
        return ExitCode::SUCCESS;
    }
    for (i, t) in templates.iter().enumerate() {
        if templates.len() > 1 {
            // Several templates: a Mermaid comment says which one each chart is.
            if i > 0 {
                println!();
            }
            println!("%% {}", t.key());
        }
        print!("{}", template_mermaid(t));
    }
    ExitCode::SUCCESS
}

/// Prints each template's Markdown summary.
pub fn print_docs(templates: &[TaskTemplate]) -> ExitCode {
    for (i, t) in templates.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", markdown(t));
    }
    ExitCode::SUCCESS
}

/// A Markdown page about `t`: what it is, its input schema, its steps (type, handler,
/// dependencies, retry policy, timeout) with their handler configuration, and its diagram.
pub fn markdown(t: &TaskTemplate) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}/{} {}\n", t.namespace_name, t.name, t.version);
    if let Some(d) = t.description.as_deref().filter(|d| !d.trim().is_empty()) {
        let _ = writeln!(out, "{}\n", d.trim());
    }
    let _ = writeln!(
        out,
        "Namespace (queue) `{}`, {} step{}.\n",
        t.namespace_name,
        t.steps.len(),
        if t.steps.len() == 1 { "" } else { "s" }
    );
    out.push_str("## Input\n\n");
    match &t.input_schema {
        Some(schema) => {
            let _ = writeln!(
                out,
                "The task's context must match this JSON Schema:\n\n```json\n{}\n```\n",
                serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string())
            );
        }
        None => out.push_str("Any JSON object (the template has no `input_schema`).\n\n"),
    }
    out.push_str("## Steps\n\n");
    out.push_str("| step | type | handler | depends on | retry | timeout |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for s in &t.steps {
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}`{} | {} | {} | {} |",
            cell(&s.name),
            s.step_type.as_str(),
            cell(&s.handler.callable),
            if s.handler.method == "call" {
                String::new()
            } else {
                format!(" (method `{}`)", cell(&s.handler.method))
            },
            dependencies(s),
            retry(&s.retry),
            s.timeout_seconds
                .map_or_else(|| "none".to_owned(), |secs| format!("{secs} s")),
        );
    }
    out.push('\n');
    let details: Vec<String> = t
        .steps
        .iter()
        .filter_map(|s| step_details(s, &t.namespace_name))
        .collect();
    if !details.is_empty() {
        out.push_str("### Step details\n\n");
        for d in details {
            out.push_str(&d);
        }
    }
    let _ = writeln!(out, "## Diagram\n\n```mermaid\n{}```", template_mermaid(t));
    out
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn dependencies(s: &StepTemplate) -> String {
    if s.dependencies.is_empty() {
        return "none".to_owned();
    }
    s.dependencies
        .iter()
        .map(|d| format!("`{}`", cell(d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A retry policy in words: `3 attempts, exponential backoff from 1000 ms to 30000 ms`.
fn retry(r: &RetryPolicy) -> String {
    if !r.retryable || r.max_attempts <= 1 {
        return "not retried".to_owned();
    }
    let backoff = match r.backoff {
        BackoffKind::None => "no backoff".to_owned(),
        kind => format!(
            "{} backoff from {} ms to {} ms",
            match kind {
                BackoffKind::Linear => "linear",
                BackoffKind::Exponential => "exponential",
                BackoffKind::Fibonacci => "fibonacci",
                BackoffKind::None => "no",
            },
            r.backoff_base_ms,
            r.max_backoff_ms
        ),
    };
    format!("{} attempts, {backoff}", r.max_attempts)
}

/// What a step's row cannot show: its description, queue override, handler configuration and
/// batch configuration.
fn step_details(s: &StepTemplate, namespace: &str) -> Option<String> {
    let mut lines = Vec::new();
    if let Some(d) = s.description.as_deref().filter(|d| !d.trim().is_empty()) {
        lines.push(d.trim().to_owned());
    }
    if s.queue_name(namespace) != namespace {
        lines.push(format!("Runs on queue `{}`.", s.queue_name(namespace)));
    }
    match s.step_type {
        StepType::Decision => lines.push("Its result chooses which of the steps depending on it are created.".into()),
        StepType::Batchable => lines.push("Its result splits the work into instances of a batch worker step.".into()),
        StepType::BatchWorker => lines.push("Runs once per batch its batchable step creates.".into()),
        StepType::DeferredConvergence => {
            lines.push("Waits for those of its dependencies that were created, and receives their results.".into())
        }
        StepType::Standard => {}
    }
    let mut out = String::new();
    for (label, value) in [
        ("handler initialization", Some(&s.handler.initialization)),
        ("batch_config", s.batch_config.as_ref()),
    ] {
        let Some(value) = value.filter(|v| !(v.is_null() || v.as_object().is_some_and(|o| o.is_empty()))) else {
            continue;
        };
        let _ = write!(
            out,
            "\n{label}:\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(value).ok()?
        );
    }
    if lines.is_empty() && out.is_empty() {
        return None;
    }
    Some(format!("**`{}`**: {}\n{out}\n", cell(&s.name), lines.join(" ")))
}
