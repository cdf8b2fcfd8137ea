//! Live progress of a task for `tasker task create --wait` and `tasker task watch`: steps done
//! out of the total, the steps running, the time since the task was created.
//!
//! Progress goes to stderr, so stdout keeps only the command's result (the task uuid, then the
//! task). On a terminal it is one line redrawn in place a few times a second; otherwise
//! (a pipe, a CI log) it is a plain line whenever the progress changes, and at least every
//! [`PLAIN_HEARTBEAT`] while nothing does, so a long wait never looks hung.
//!
//! The line is made from a [`Snapshot`], read from the database (local mode) or from the REST
//! API's `GET /v1/tasks/{uuid}?include=steps` (remote mode, `crate::remote`), so both modes show
//! the same progress.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tasker_core::{TaskDetail, Tasker, TaskerError};
use uuid::Uuid;

/// How often the task is read while waiting.
pub const TICK: Duration = Duration::from_millis(500);
/// The longest a non-terminal output stays silent.
pub const PLAIN_HEARTBEAT: Duration = Duration::from_secs(5);
const SPINNER: &[char] = &['|', '/', '-', '\\'];

/// Step states that count as done.
const DONE_STATES: &[&str] = &["complete", "resolved_manually"];

/// Waits for the task to finish, showing its progress on stderr; `None` waits without a limit.
/// Returns the finished task; a task still running at the limit is a `timeout` error.
pub async fn wait_with_progress(
    tasker: &Tasker,
    task_uuid: Uuid,
    limit: Option<Duration>,
) -> Result<TaskDetail, TaskerError> {
    let started = Instant::now();
    let mut reporter = Reporter::new(std::io::stderr().is_terminal());
    loop {
        let remaining = match limit {
            Some(l) => match l.checked_sub(started.elapsed()) {
                Some(r) if !r.is_zero() => Some(r),
                _ => {
                    reporter.clear();
                    return Err(TaskerError::Timeout(l));
                }
            },
            None => None,
        };
        // wait_for_task wakes as soon as the task finishes; the short timeout is the tick.
        let slice = remaining.map_or(TICK, |r| r.min(TICK));
        match tasker.wait_for_task(task_uuid, slice).await {
            Ok(detail) => {
                reporter.finish(&Snapshot::from(&detail));
                return Ok(detail);
            }
            Err(TaskerError::Timeout(_)) => {
                let detail = tasker.get_task(task_uuid).await?;
                reporter.update(&Snapshot::from(&detail));
            }
            Err(e) => {
                reporter.clear();
                return Err(e);
            }
        }
    }
}

/// What the progress line is made of: the task's template, state and creation time, and the
/// name and state of each of its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub namespace: String,
    pub name: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    /// `(name, state)` of each step.
    pub steps: Vec<(String, String)>,
}

impl From<&TaskDetail> for Snapshot {
    fn from(detail: &TaskDetail) -> Self {
        let t = &detail.task;
        Snapshot {
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            state: t.state.clone(),
            created_at: t.created_at,
            steps: detail.steps.iter().map(|s| (s.name.clone(), s.state.clone())).collect(),
        }
    }
}

impl Snapshot {
    /// From the REST API's task (`GET /v1/tasks/{uuid}?include=steps`); `None` when the answer
    /// is not a task with its steps (an API of another version), so the caller shows nothing
    /// rather than a wrong count.
    pub fn from_api(task: &Value) -> Option<Snapshot> {
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let steps = task
            .get("steps")?
            .as_array()?
            .iter()
            .map(|s| Some((text(s, "name")?, text(s, "state")?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Snapshot {
            namespace: text(task, "namespace")?,
            name: text(task, "name")?,
            state: text(task, "state")?,
            created_at: text(task, "created_at")
                .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
                .map_or_else(Utc::now, |c| c.with_timezone(&Utc)),
            steps,
        })
    }
}

/// A task's progress in one line: `orders/process_order: 2/5 steps done, running:
/// charge_payment, 1 failed (12s)`.
pub fn describe(snapshot: &Snapshot) -> String {
    let steps = &snapshot.steps;
    let total = steps.len();
    let done = steps
        .iter()
        .filter(|(_, state)| DONE_STATES.contains(&state.as_str()))
        .count();
    let running: Vec<&str> = steps
        .iter()
        .filter(|(_, state)| state == "in_progress")
        .map(|(name, _)| name.as_str())
        .collect();
    let failed = steps.iter().filter(|(_, state)| state == "error").count();
    let retrying = steps.iter().filter(|(_, state)| state == "waiting_for_retry").count();
    let t = snapshot;
    let mut line = format!("{}/{} {}: {done}/{total} steps done", t.namespace, t.name, t.state);
    if !running.is_empty() {
        line.push_str(&format!(", running: {}", running.join(", ")));
    }
    if retrying > 0 {
        line.push_str(&format!(", {retrying} waiting to retry"));
    }
    if failed > 0 {
        line.push_str(&format!(", {failed} failed"));
    }
    let elapsed = (Utc::now() - t.created_at).to_std().unwrap_or_default();
    line.push_str(&format!(" ({})", seconds(elapsed)));
    line
}

/// `4.2s`, `3m07s`.
fn seconds(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// Draws the progress line (see the module's docs).
pub struct Reporter {
    terminal: bool,
    frame: usize,
    /// What the last plain line said (without its time), and when it was printed.
    last: Option<(String, Instant)>,
    drawn: bool,
}

impl Reporter {
    /// `terminal`: stderr is a terminal (the line is redrawn in place).
    pub fn new(terminal: bool) -> Self {
        Self {
            terminal,
            frame: 0,
            last: None,
            drawn: false,
        }
    }

    /// Shows the task's progress now (a plain line only when it changed, or when the last one
    /// is [`PLAIN_HEARTBEAT`] old).
    pub fn update(&mut self, snapshot: &Snapshot) {
        let line = describe(snapshot);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            self.frame = (self.frame + 1) % SPINNER.len();
            // Carriage return and erase-line: the line is redrawn in place.
            let _ = write!(err, "\r\x1b[2K{} {line}", SPINNER[self.frame]);
            let _ = err.flush();
            self.drawn = true;
            return;
        }
        let progress = line.rsplit_once(" (").map_or(line.as_str(), |(p, _)| p).to_owned();
        let due = match &self.last {
            None => true,
            Some((said, at)) => *said != progress || at.elapsed() >= PLAIN_HEARTBEAT,
        };
        if due {
            let _ = writeln!(err, "{line}");
            self.last = Some((progress, Instant::now()));
        }
    }

    /// The finished task's line, on a line of its own.
    pub fn finish(&mut self, snapshot: &Snapshot) {
        self.clear();
        let _ = writeln!(std::io::stderr(), "{}", describe(snapshot));
    }

    /// Removes the in-place line, so what follows starts on a clean line.
    pub fn clear(&mut self) {
        if self.terminal && self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_api_task_gives_the_same_line_as_the_database() {
        let created = Utc::now() - chrono::Duration::seconds(3);
        let api = json!({
            "namespace": "orders", "name": "process_order", "state": "in_progress",
            "created_at": created.to_rfc3339(),
            "steps": [
                {"name": "validate", "state": "complete"},
                {"name": "charge", "state": "in_progress"},
                {"name": "notify", "state": "waiting_for_retry"},
                {"name": "ship", "state": "pending"},
            ],
        });
        let snapshot = Snapshot::from_api(&api).expect("a task with steps");
        let line = describe(&snapshot);
        assert!(
            line.starts_with(
                "orders/process_order in_progress: 1/4 steps done, running: charge, 1 waiting to retry (3."
            ),
            "{line}"
        );
        // Without its steps (no ?include=steps) it is no snapshot: no wrong 0/0 count.
        assert_eq!(
            Snapshot::from_api(&json!({"namespace": "o", "name": "p", "state": "pending"})),
            None
        );
    }
}
