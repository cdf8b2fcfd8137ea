//! Human-readable printing: tasks, steps, DLQ entries, staleness, workers; and JSON.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tasker_core::engine::Health;
use tasker_core::{DlqEntry, DlqStats, QueuedDlqEntry, StepDetail, TaskDetail, TaskHealth, TaskSummary, WorkerInfo};
use uuid::Uuid;

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

/// Prints `value` as pretty JSON.
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<(), tasker_core::TaskerError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| tasker_core::TaskerError::InvalidArgument(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// A plain-text table: columns padded to their widest cell, the last one left ragged.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints the table, or `empty` when it has no rows.
    pub fn print(&self, empty: &str) {
        if self.rows.is_empty() {
            println!("{empty}");
            return;
        }
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: &[String]| {
            let last = cells.len().saturating_sub(1);
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i == last {
                    out.push_str(cell);
                } else {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
            out.trim_end().to_owned()
        };
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_uppercase()).collect();
        println!("{}", line(&headers));
        for row in &self.rows {
            println!("{}", line(row));
        }
    }
}

/// `2024-05-01 12:00:00` (UTC).
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `time` of an optional instant, `-` when there is none.
pub fn opt_time(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map_or_else(|| "-".to_owned(), time)
}

/// How long ago `t` was: `12s ago`, `5m ago`, `3h ago`, `2d ago` (`in 4s` for the future).
pub fn ago(t: &DateTime<Utc>) -> String {
    let ms = (Utc::now() - *t).num_milliseconds();
    if ms < 0 {
        format!("in {}", duration_ms(ms.unsigned_abs()))
    } else {
        format!("{} ago", duration_ms(ms.unsigned_abs()))
    }
}

/// A duration in the largest unit that fits: `850ms`, `12s`, `5m 03s`, `3h 20m`, `2d 4h`.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `type: message` of a stored step error.
pub fn error_line(e: &Value) -> String {
    let kind = e["error_type"].as_str().unwrap_or("error");
    let message = e["message"].as_str().unwrap_or("");
    format!("{kind}: {message}")
}

/// Shortens `s` to `max` characters for a table cell.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

pub fn print_step_list(steps: &[StepDetail]) {
    let mut table = Table::new(&["step", "state", "attempts", "deps", "retry", "next retry", "last error"]);
    for s in steps {
        let st = &s.step;
        table.row(vec![
            st.name.clone(),
            st.state.clone(),
            format!("{}/{}", st.attempts, st.max_attempts),
            if st.dependencies.is_empty() {
                "-".into()
            } else if s.dependencies_satisfied {
                "met".into()
            } else {
                "waiting".into()
            },
            if s.retry_possible { "yes" } else { "no" }.into(),
            st.next_retry_at.as_ref().map_or_else(|| "-".into(), ago),
            st.last_error
                .as_ref()
                .map_or_else(String::new, |e| clip(&error_line(e), 70)),
        ]);
    }
    table.print("(no steps)");
}

pub fn print_step(task_uuid: Uuid, s: &StepDetail) {
    let st = &s.step;
    println!("step {}  {}  (task {task_uuid})", st.name, st.step_uuid);
    let field = |name: &str, value: String| println!("  {name:<15} {value}");
    field("state", st.state.clone());
    field(
        "attempts",
        format!(
            "{}/{}{}{}",
            st.attempts,
            st.max_attempts,
            if st.free_attempts > 0 {
                format!(" ({} not counted)", st.free_attempts)
            } else {
                String::new()
            },
            if st.retryable { "" } else { ", not retryable" }
        ),
    );
    field("retry possible", if s.retry_possible { "yes" } else { "no" }.to_owned());
    field("queue", st.queue.clone());
    if !st.dependencies.is_empty() {
        field(
            "dependencies",
            format!(
                "{} ({})",
                st.dependencies.join(", "),
                if s.dependencies_satisfied {
                    "satisfied"
                } else {
                    "not satisfied"
                }
            ),
        );
    }
    if let Some(by) = &st.created_by {
        field("created by", by.clone());
    }
    field("created", time(&st.created_at));
    field("first attempt", opt_time(&st.first_attempted_at));
    field("last attempt", opt_time(&st.last_attempted_at));
    field("finished", opt_time(&st.completed_at));
    if let Some(next) = &st.next_retry_at {
        field("next retry", format!("{} ({})", time(next), ago(next)));
    }
    if let Some(r) = &st.results {
        field("result", compact(r));
    }
    if s.errors.is_empty() {
        println!("  errors          none");
    } else {
        println!("  errors ({}, oldest first):", s.errors.len());
        for e in &s.errors {
            let attempt = e["attempt"]
                .as_i64()
                .map(|a| format!("attempt {a}"))
                .unwrap_or_default();
            println!(
                "    {attempt:<10} {}{}",
                error_line(e),
                if e["retryable"] == Value::Bool(false) {
                    "  (permanent)"
                } else {
                    ""
                }
            );
            if let Some(bt) = e["backtrace"].as_str() {
                for line in bt.lines().take(12) {
                    println!("               {line}");
                }
            }
        }
    }
    if !s.transitions.is_empty() {
        println!("  history:");
        for t in &s.transitions {
            let who = match (t.metadata["by"].as_str(), t.metadata["reason"].as_str()) {
                (Some(by), Some(reason)) if !reason.is_empty() => format!("  by {by}: {reason}"),
                (Some(by), _) => format!("  by {by}"),
                _ => String::new(),
            };
            println!(
                "    {}  {:<18} -> {:<18} {}{}",
                t.created_at.format("%H:%M:%S%.3f"),
                t.from_state.as_deref().unwrap_or("-"),
                t.to_state,
                t.event,
                who
            );
        }
    }
}

pub fn print_dlq_list(entries: &[DlqEntry]) {
    let mut table = Table::new(&["entry", "task", "reason", "status", "created", "failed steps"]);
    for e in entries {
        table.row(vec![
            e.entry_uuid.to_string(),
            e.task_uuid.to_string(),
            e.reason.clone(),
            e.status.clone(),
            ago(&e.created_at),
            failed_steps(&e.snapshot),
        ]);
    }
    table.print("(no DLQ entries)");
}

/// The names of the snapshot's steps in `error`.
fn failed_steps(snapshot: &Value) -> String {
    let names: Vec<&str> = snapshot["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter(|s| s["state"] == "error")
                .filter_map(|s| s["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        "-".into()
    } else {
        clip(&names.join(", "), 60)
    }
}

pub fn print_dlq_entry(e: &DlqEntry) {
    println!("DLQ entry {}", e.entry_uuid);
    let field = |name: &str, value: String| println!("  {name:<12} {value}");
    field("task", e.task_uuid.to_string());
    let template = &e.snapshot["template"];
    if let (Some(ns), Some(name)) = (template["namespace"].as_str(), template["name"].as_str()) {
        field(
            "template",
            format!("{ns}/{name}@{}", template["version"].as_str().unwrap_or("?")),
        );
    }
    field("reason", e.reason.clone());
    field("status", e.status.clone());
    field("task state", format!("{} when it entered", e.task_state));
    field("created", format!("{} ({})", time(&e.created_at), ago(&e.created_at)));
    field("updated", time(&e.updated_at));
    if let Some(by) = &e.resolved_by {
        field("resolved by", format!("{by} at {}", opt_time(&e.resolved_at)));
    }
    if let Some(steps) = e.snapshot["steps"].as_array() {
        println!("  steps when it entered:");
        let mut table = Table::new(&["  step", "state", "attempts", "last error"]);
        for s in steps {
            table.row(vec![
                format!("  {}", s["name"].as_str().unwrap_or("?")),
                s["state"].as_str().unwrap_or("?").to_owned(),
                format!("{}/{}", s["attempts"], s["max_attempts"]),
                if s["last_error"].is_object() {
                    clip(&error_line(&s["last_error"]), 80)
                } else {
                    String::new()
                },
            ]);
        }
        table.print("  (none)");
    }
    if e.notes.is_empty() {
        println!("  notes        none");
    } else {
        println!("  notes:");
        for n in &e.notes {
            println!(
                "    {}  {}{}: {}",
                time(&n.at),
                n.by,
                n.status.as_deref().map(|s| format!(" (-> {s})")).unwrap_or_default(),
                n.text
            );
        }
    }
}

pub fn print_dlq_stats(stats: &DlqStats) {
    println!("{} entries, {} open", stats.total, stats.open);
    if stats.counts.is_empty() {
        return;
    }
    let mut table = Table::new(&["reason", "status", "count"]);
    for c in &stats.counts {
        table.row(vec![c.reason.clone(), c.status.clone(), c.count.to_string()]);
    }
    println!();
    table.print("");
    println!();
    let join = |m: &std::collections::BTreeMap<String, i64>| {
        m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    };
    println!("by reason: {}", join(&stats.by_reason));
    println!("by status: {}", join(&stats.by_status));
}

pub fn print_dlq_queue(entries: &[QueuedDlqEntry]) {
    let mut table = Table::new(&["score", "entry", "task", "reason", "status", "waiting", "priority"]);
    for q in entries {
        let e = &q.entry;
        table.row(vec![
            format!("{:.1}", q.score),
            e.entry_uuid.to_string(),
            e.task_uuid.to_string(),
            e.reason.clone(),
            e.status.clone(),
            duration_ms(u64::try_from((Utc::now() - e.created_at).num_milliseconds()).unwrap_or(0)),
            e.task_priority.to_string(),
        ]);
    }
    table.print("(no open DLQ entries)");
}

pub fn print_staleness(report: &[TaskHealth]) {
    let mut table = Table::new(&["task", "state", "health", "idle", "threshold", "age", "max duration"]);
    for h in report {
        table.row(vec![
            h.task_uuid.to_string(),
            h.state.clone(),
            health_name(h.health).to_owned(),
            duration_ms(h.idle_ms),
            duration_ms(h.threshold_ms),
            duration_ms(h.age_ms),
            duration_ms(h.max_duration_ms),
        ]);
    }
    table.print("(no unfinished tasks at or over that ratio)");
}

pub fn health_name(h: Health) -> &'static str {
    match h {
        Health::Healthy => "healthy",
        Health::Warning => "warning",
        Health::Stale => "stale",
    }
}

pub fn print_workers(workers: &[WorkerInfo]) {
    let mut table = Table::new(&[
        "worker",
        "live",
        "language",
        "host",
        "pid",
        "queues",
        "in flight",
        "heartbeat",
        "started",
    ]);
    for w in workers {
        let r = &w.record;
        table.row(vec![
            r.worker_id.clone(),
            if w.live {
                "live".into()
            } else if r.stopped_at.is_some() {
                "stopped".into()
            } else {
                "dead".into()
            },
            r.language.clone(),
            r.host.clone(),
            r.pid.to_string(),
            clip(&r.queues.join(","), 40),
            format!("{}/{}", r.in_flight, r.concurrency),
            ago(&r.last_heartbeat_at),
            time(&r.started_at),
        ]);
    }
    table.print("(no workers seen in the last hour)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_unit_that_fits() {
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(12_400), "12s");
        assert_eq!(duration_ms(303_000), "5m 03s");
        assert_eq!(duration_ms(3 * 3_600_000 + 20 * 60_000), "3h 20m");
        assert_eq!(duration_ms(2 * 86_400_000 + 4 * 3_600_000), "2d 4h");
    }

    #[test]
    fn cells_are_clipped_on_character_boundaries() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééééé", 4), "ééé…");
    }

    #[test]
    fn stored_errors_read_as_type_and_message() {
        let e = serde_json::json!({"error_type": "handler_not_found", "message": "no handler"});
        assert_eq!(error_line(&e), "handler_not_found: no handler");
    }
}
