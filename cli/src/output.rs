//! Human-readable printing of tasks.

use tasker_core::{TaskDetail, TaskSummary};

pub fn print_task(detail: &TaskDetail) {
    let t = &detail.task;
    println!(
        "task {}  {}/{}@{}  {}",
        t.task_uuid, t.namespace, t.name, t.version, t.state
    );
    println!(
        "  steps: {} complete, {} failed, {} active of {}   created {}{}",
        t.completed_steps,
        t.failed_steps,
        t.active_steps,
        t.total_steps,
        t.created_at.format("%H:%M:%S%.3f"),
        t.completed_at
            .map(|c| format!(", finished {}", c.format("%H:%M:%S%.3f")))
            .unwrap_or_default()
    );
    let width = detail.steps.iter().map(|s| s.name.len()).max().unwrap_or(4);
    for s in &detail.steps {
        let outcome = match (&s.results, &s.last_error) {
            (Some(r), _) => compact(r),
            (None, Some(e)) => format!(
                "error {}: {}",
                e["error_type"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("")
            ),
            (None, None) => String::new(),
        };
        let created = s
            .created_by
            .as_deref()
            .map(|by| format!("  (created by {by})"))
            .unwrap_or_default();
        println!(
            "  {:width$}  {:<18} attempts {}/{}  {}{}",
            s.name,
            s.state,
            s.attempts,
            s.max_attempts,
            outcome,
            created,
            width = width
        );
    }
}

pub fn print_task_list(tasks: &[TaskSummary]) {
    for t in tasks {
        println!(
            "{}  {:<20} {}/{}@{}  {}/{} steps  {}",
            t.task_uuid,
            t.state,
            t.namespace,
            t.name,
            t.version,
            t.completed_steps,
            t.total_steps,
            t.created_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
}

/// One-line JSON, shortened for terminals.
pub fn compact(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 90 {
        format!("{}…", &s[..s.char_indices().nth(88).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}
