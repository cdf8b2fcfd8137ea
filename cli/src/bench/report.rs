//! What `tasker bench` measured, and how it is shown: the human tables (default) or one JSON
//! document (`--json`), with the context a figure needs to be read (load average, options, the
//! commit and build profile of the binary).

use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

/// Where human-readable lines go. With `--json`, stdout carries only the JSON document, so
/// progress and tables go to stderr.
#[derive(Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn say(&self, line: impl AsRef<str>) {
        if self.json {
            eprintln!("{}", line.as_ref());
        } else {
            println!("{}", line.as_ref());
        }
    }
}

/// p50/p95/p99 of a set of latencies in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub runs: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn from_samples(mut samples_ms: Vec<f64>) -> Option<Self> {
        if samples_ms.is_empty() {
            return None;
        }
        samples_ms.sort_by(|a, b| a.total_cmp(b));
        let rank = |p: f64| {
            let index = ((samples_ms.len() as f64 * p).ceil() as usize).saturating_sub(1);
            samples_ms[index.min(samples_ms.len() - 1)]
        };
        Some(Self {
            runs: samples_ms.len(),
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            mean_ms: samples_ms.iter().sum::<f64>() / samples_ms.len() as f64,
        })
    }
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`); `None` where the system has none.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

pub fn describe_load(load: Option<[f64; 3]>) -> String {
    load.map(|[one, five, fifteen]| format!("{one:.2} {five:.2} {fifteen:.2}"))
        .unwrap_or_else(|| "n/a".into())
}

/// The database filled before measuring (`--history`).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryFigures {
    pub tasks: usize,
    pub steps_per_task: usize,
    pub seconds: f64,
    pub tasks_per_s: f64,
    /// PostgreSQL: the server's `autovacuum` setting.
    pub autovacuum: Option<String>,
    /// PostgreSQL, `--vacuum`: how long the `VACUUM ANALYZE` after the fill took.
    pub vacuum_analyze_s: Option<f64>,
}

/// The staleness detector over many unfinished tasks (`--open-tasks`).
#[derive(Debug, Clone, Serialize)]
pub struct StalenessFigures {
    pub open_tasks: usize,
    /// `staleness_report(0.0, 100)`: every unfinished task's health, the 100 most overdue kept.
    pub report_ms: f64,
    /// One pass of the detector (`detect_stale_tasks`), finding nothing stale.
    pub detect_ms: f64,
    /// The dashboard's task list and overview over the same tasks: (what, median ms).
    pub listing: Vec<(String, f64)>,
}

/// W2 run by separate `tasker worker` processes (`--processes`).
#[derive(Debug, Clone, Serialize)]
pub struct ProcessesFigures {
    pub processes: usize,
    pub concurrency_per_process: usize,
    pub tasks: usize,
    pub wall_s: f64,
    pub steps_per_s: f64,
    pub commits_per_step: Option<f64>,
    /// How the bench process saw tasks finish: `notify` (PostgreSQL LISTEN) or `poll` (SQLite:
    /// one task row per tick, so the wall time is late by up to one tick).
    pub completion: &'static str,
}

/// The mixed-language workflow (`--polyglot`).
#[derive(Debug, Clone, Serialize)]
pub struct PolyglotFigures {
    pub steps_per_task: usize,
    pub concurrency_per_worker: usize,
    pub w1: Option<Latency>,
    pub w2_tasks: usize,
    pub w2_wall_s: Option<f64>,
    pub w2_steps_per_s: Option<f64>,
    pub completion: &'static str,
    /// The language packages the worker processes ran, with what could be told of their build.
    pub packages: Vec<String>,
}

/// Everything measured on one backend. The W1/W2/W3 names are flat (not nested) because
/// `bindings-*/bench` read `backend`, `w2_wall_s` and `w2_steps_per_s` from this record.
#[derive(Debug, Default, Serialize)]
pub struct BackendReport {
    pub backend: &'static str,
    pub w1_runs: Option<usize>,
    pub w1_p50_ms: Option<f64>,
    pub w1_p95_ms: Option<f64>,
    pub w1_p99_ms: Option<f64>,
    pub w2_tasks: Option<usize>,
    pub w2_wall_s: Option<f64>,
    pub w2_steps_per_s: Option<f64>,
    pub w3_steps: Option<usize>,
    pub w3_wall_s: Option<f64>,
    pub w3_steps_per_s: Option<f64>,
    pub w4_steps: Option<usize>,
    pub w4_wall_s: Option<f64>,
    pub w4_steps_per_s: Option<f64>,
    /// PostgreSQL: server commits in the database during the in-process W2, per step.
    pub commits_per_step: Option<f64>,
    pub history: Option<HistoryFigures>,
    pub staleness: Option<StalenessFigures>,
    pub events: Option<super::events::EventFigures>,
    pub processes: Vec<ProcessesFigures>,
    pub polyglot: Option<PolyglotFigures>,
    pub load_average_start: Option<[f64; 3]>,
    pub load_average_end: Option<[f64; 3]>,
}

impl BackendReport {
    pub fn set_w1(&mut self, latency: Option<Latency>) {
        if let Some(l) = latency {
            self.w1_runs = Some(l.runs);
            self.w1_p50_ms = Some(l.p50_ms);
            self.w1_p95_ms = Some(l.p95_ms);
            self.w1_p99_ms = Some(l.p99_ms);
        }
    }
}

/// The commit of the checkout this binary was built from, as that checkout is now (the binary
/// may be older than its HEAD: `binary_modified` in the JSON tells when it was built), and
/// whether tracked files differ from it.
pub struct SourceState {
    pub commit: Option<String>,
    pub dirty: Option<bool>,
}

pub fn source_state(checkout: &Path) -> SourceState {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(checkout)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    SourceState {
        commit: git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty()),
        dirty: git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
    }
}

pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The JSON document: `header`'s fields and `"backends"`, one record per backend.
///
/// The layout keeps the old `--json` output's readers working: every line that starts with `{`
/// is one complete backend record (the document's own opening brace is indented, records are
/// separated by a line holding only a comma), so `bindings-*/bench`, which parse each such
/// line, still find their backend's figures.
pub fn json_document(header: &Value, reports: &[BackendReport]) -> String {
    let mut fields = header.as_object().cloned().unwrap_or_default();
    fields.remove("backends");
    let head = serde_json::to_string(&Value::Object(fields)).unwrap_or_else(|_| "{}".into());
    // `{"a":1,"b":2}` → ` {"a":1,"b":2,"backends":[` on the first line.
    let head = head.strip_suffix('}').unwrap_or(&head);
    let separator = if head.len() > 1 { "," } else { "" };
    let mut text = format!(" {head}{separator}\"backends\":[\n");
    for (i, report) in reports.iter().enumerate() {
        if i > 0 {
            text.push_str(",\n");
        }
        text.push_str(&serde_json::to_string(report).unwrap_or_else(|_| "{}".into()));
        text.push('\n');
    }
    text.push_str("]}");
    text
}

pub fn json_header(options: Value, checkout: &Path, load_start: Option<[f64; 3]>, load_end: Option<[f64; 3]>) -> Value {
    let source = source_state(checkout);
    let binary = std::env::current_exe().ok();
    let modified = binary
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| m.modified().ok())
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339());
    json!({
        "tool": "tasker bench",
        "version": env!("CARGO_PKG_VERSION"),
        "git_commit": source.commit,
        "git_dirty": source.dirty,
        "build_profile": build_profile(),
        "binary": binary.map(|p| p.display().to_string()),
        "binary_modified": modified,
        "finished_at": chrono::Utc::now().to_rfc3339(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "options": options,
        "load_average_start": load_start,
        "load_average_end": load_end,
    })
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map(|v| format!("{v:.decimals$}")).unwrap_or_else(|| "-".into())
}

/// One line per backend, as soon as its figures are known.
pub fn backend_line(r: &BackendReport) -> String {
    if r.w1_runs.is_none() && r.w2_tasks.is_none() && r.w3_steps.is_none() && r.w4_steps.is_none() {
        return format!(
            "  {:<8} done | load {} → {}",
            r.backend,
            describe_load(r.load_average_start),
            describe_load(r.load_average_end)
        );
    }
    format!(
        "  {:<8} W1 p50 {} ms p95 {} ms p99 {} ms | W2 {} s {} steps/s | W3 {} s {} steps/s | W4 {} s {} steps/s{} | load {} → {}",
        r.backend,
        cell(r.w1_p50_ms, 2),
        cell(r.w1_p95_ms, 2),
        cell(r.w1_p99_ms, 2),
        cell(r.w2_wall_s, 2),
        cell(r.w2_steps_per_s, 0),
        cell(r.w3_wall_s, 2),
        cell(r.w3_steps_per_s, 0),
        cell(r.w4_wall_s, 2),
        cell(r.w4_steps_per_s, 0),
        r.commits_per_step
            .map(|c| format!(" | {c:.2} commits/step"))
            .unwrap_or_default(),
        describe_load(r.load_average_start),
        describe_load(r.load_average_end),
    )
}

/// The markdown tables printed at the end (the format `docs/benchmarks.md` records).
pub fn tables(reports: &[BackendReport]) -> Vec<String> {
    let mut lines = Vec::new();
    let in_process =
        |r: &BackendReport| r.w1_runs.is_some() || r.w2_tasks.is_some() || r.w3_steps.is_some() || r.w4_steps.is_some();
    if reports.iter().any(in_process) {
        lines.extend(in_process_table(reports));
    }
    lines.extend(other_tables(reports));
    lines
}

fn in_process_table(reports: &[BackendReport]) -> Vec<String> {
    let mut lines = vec![
        String::new(),
        "| backend  | W1 p50 ms | W1 p95 ms | W1 p99 ms | W2 wall s | W2 steps/s | W3 wall s | W3 steps/s | W4 wall s | W4 steps/s | commits/step | load start → end |".into(),
        "|----------|-----------|-----------|-----------|-----------|------------|-----------|------------|-----------|------------|--------------|------------------|".into(),
    ];
    for r in reports {
        lines.push(format!(
            "| {:<8} | {:>9} | {:>9} | {:>9} | {:>9} | {:>10} | {:>9} | {:>10} | {:>9} | {:>10} | {:>12} | {} → {} |",
            r.backend,
            cell(r.w1_p50_ms, 2),
            cell(r.w1_p95_ms, 2),
            cell(r.w1_p99_ms, 2),
            cell(r.w2_wall_s, 2),
            cell(r.w2_steps_per_s, 0),
            cell(r.w3_wall_s, 2),
            cell(r.w3_steps_per_s, 0),
            cell(r.w4_wall_s, 2),
            cell(r.w4_steps_per_s, 0),
            r.commits_per_step
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "n/a".into()),
            describe_load(r.load_average_start),
            describe_load(r.load_average_end),
        ));
    }
    lines
}

fn other_tables(reports: &[BackendReport]) -> Vec<String> {
    let mut lines = Vec::new();
    if reports.iter().any(|r| r.history.is_some()) {
        lines.push(String::new());
        lines.push(
            "| backend  | history tasks | steps each | filled in s | tasks/s | autovacuum | VACUUM ANALYZE s |".into(),
        );
        lines.push(
            "|----------|---------------|------------|-------------|---------|------------|------------------|".into(),
        );
        for r in reports {
            if let Some(h) = &r.history {
                lines.push(format!(
                    "| {:<8} | {:>13} | {:>10} | {:>11.1} | {:>7.0} | {:<10} | {:>16} |",
                    r.backend,
                    h.tasks,
                    h.steps_per_task,
                    h.seconds,
                    h.tasks_per_s,
                    h.autovacuum.as_deref().unwrap_or("n/a"),
                    cell(h.vacuum_analyze_s, 1),
                ));
            }
        }
    }
    if reports.iter().any(|r| !r.processes.is_empty()) {
        lines.push(String::new());
        lines.push("W2 by separate `tasker worker` processes (the bench process only creates tasks):".into());
        lines.push(
            "| backend  | processes | slots each | W2 wall s | W2 steps/s | vs first row | commits/step | completion |"
                .into(),
        );
        lines.push(
            "|----------|-----------|------------|-----------|------------|--------------|--------------|------------|"
                .into(),
        );
        for r in reports {
            let first = r.processes.first().map(|p| p.steps_per_s);
            for p in &r.processes {
                lines.push(format!(
                    "| {:<8} | {:>9} | {:>10} | {:>9.2} | {:>10.0} | {:>12} | {:>12} | {:<10} |",
                    r.backend,
                    p.processes,
                    p.concurrency_per_process,
                    p.wall_s,
                    p.steps_per_s,
                    first.map(|f| format!("{:.2}×", p.steps_per_s / f)).unwrap_or_default(),
                    p.commits_per_step
                        .map(|c| format!("{c:.2}"))
                        .unwrap_or_else(|| "n/a".into()),
                    p.completion,
                ));
            }
        }
    }
    if reports.iter().any(|r| r.polyglot.is_some()) {
        lines.push(String::new());
        lines.push(
            "Polyglot order_fulfillment (Python → Ruby + TypeScript → Python → Ruby, one worker process per language):"
                .into(),
        );
        lines.push(
            "| backend  | W1 runs | W1 p50 ms | W1 p95 ms | W1 p99 ms | W2 tasks | W2 wall s | W2 steps/s |".into(),
        );
        lines.push(
            "|----------|---------|-----------|-----------|-----------|----------|-----------|------------|".into(),
        );
        for r in reports {
            if let Some(p) = &r.polyglot {
                lines.push(format!(
                    "| {:<8} | {:>7} | {:>9} | {:>9} | {:>9} | {:>8} | {:>9} | {:>10} |",
                    r.backend,
                    p.w1.map(|l| l.runs).unwrap_or(0),
                    cell(p.w1.map(|l| l.p50_ms), 2),
                    cell(p.w1.map(|l| l.p95_ms), 2),
                    cell(p.w1.map(|l| l.p99_ms), 2),
                    p.w2_tasks,
                    cell(p.w2_wall_s, 2),
                    cell(p.w2_steps_per_s, 0),
                ));
            }
        }
        if let Some(p) = reports.iter().find_map(|r| r.polyglot.as_ref()) {
            lines.push(format!("packages: {}", p.packages.join("; ")));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(backend: &'static str, steps_per_s: f64) -> BackendReport {
        BackendReport {
            backend,
            w2_tasks: Some(1000),
            w2_wall_s: Some(4000.0 / steps_per_s),
            w2_steps_per_s: Some(steps_per_s),
            ..Default::default()
        }
    }

    #[test]
    fn the_json_document_parses_whole_and_line_by_line() {
        let header = json!({ "tool": "tasker bench", "options": { "w2_tasks": 1000 } });
        let reports = [report("sqlite", 2000.0), report("postgres", 1500.0)];
        let text = json_document(&header, &reports);

        let whole: Value = serde_json::from_str(&text).expect("one JSON document");
        assert_eq!(whole["tool"], "tasker bench");
        assert_eq!(whole["backends"][1]["backend"], "postgres");

        // What bindings-*/bench do with the output: parse every line that starts with `{`.
        let records: Vec<Value> = text
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).expect("a line starting with { is a whole record"))
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["backend"], "sqlite");
        assert_eq!(records[0]["w2_steps_per_s"], 2000.0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let l = Latency::from_samples((1..=200).rev().map(f64::from).collect()).expect("samples");
        assert_eq!((l.runs, l.p50_ms, l.p95_ms, l.p99_ms), (200, 100.0, 190.0, 198.0));
        assert!(Latency::from_samples(Vec::new()).is_none());
    }
}
