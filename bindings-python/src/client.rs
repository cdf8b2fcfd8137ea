//! `NativeClient`: the client half of [`tasker_core::Tasker`]. Values cross as JSON text, which
//! the Python layer turns into dataclasses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use serde_json::Value;
use tasker_core::state::{NamedState, TaskState};
use tasker_core::{runtime, DlqFilter, DlqReason, DlqStatus, TaskFilter, TaskRequest, Tasker, TaskerError};
use uuid::Uuid;

use crate::error::MapPy;
use crate::events::{JoinOptions, NativeEventSubscription, NativeFastSubscription};

/// Runs a core future on the process-wide runtime with the GIL released, so other Python
/// threads (handlers, the asyncio loop) keep running while the database is busy.
///
/// Takes a closure that makes the future, so only the closure (not the future, which the
/// runtime polls on this thread) has to be `Send`.
pub(crate) fn block<M, F, T>(py: Python<'_>, make: M) -> PyResult<T>
where
    M: FnOnce() -> F + Send,
    F: std::future::Future<Output = Result<T, TaskerError>>,
    T: Send,
{
    py.detach(|| runtime::block_on(make()).and_then(|r| r)).map_py()
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| crate::error::to_py(TaskerError::Corrupt(e.to_string())))
}

fn invalid(message: String) -> PyErr {
    crate::error::to_py(TaskerError::InvalidArgument(message))
}

fn parse_json(field: &str, text: &str) -> PyResult<Value> {
    serde_json::from_str(text).map_err(|e| invalid(format!("{field} is not valid JSON: {e}")))
}

/// A DLQ status or reason by name; an unknown one is refused with the known names.
fn parse_name<T: Copy>(
    field: &str,
    name: Option<&str>,
    all: &[T],
    parse: fn(&str) -> Option<T>,
    as_str: fn(T) -> &'static str,
) -> PyResult<Option<T>> {
    name.map(|n| {
        parse(n).ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
            invalid(format!(
                "{field} '{n}' is not a DLQ {field} (one of: {})",
                known.join(", ")
            ))
        })
    })
    .transpose()
}

pub(crate) fn parse_uuid(field: &str, text: &str) -> PyResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| invalid(format!("{field} '{text}' is not a valid UUID")))
}

fn at_least(field: &str, value: i64, min: i64) -> PyResult<i64> {
    if value < min {
        return Err(invalid(format!("{field} must be at least {min}, got {value}")));
    }
    Ok(value)
}

/// A connection to the engine's database.
#[pyclass(module = "tasker_core._native", frozen)]
pub struct NativeClient {
    pub(crate) tasker: Tasker,
}

#[pymethods]
impl NativeClient {
    /// Connects (running migrations) with the options the CLI uses
    /// (`tasker_core::config::connect_options`: the configuration files and
    /// `TASKER_<SECTION>__<KEY>` variables, the database from `database_url`, else
    /// `TASKER_DATABASE_URL`, else `DATABASE_URL`, else `database.url`, else `./tasker.db`).
    /// `max_connections`, when given, overrides `database.max_connections`.
    #[staticmethod]
    #[pyo3(signature = (database_url=None, max_connections=None))]
    fn connect(py: Python<'_>, database_url: Option<String>, max_connections: Option<u32>) -> PyResult<Self> {
        let mut options = tasker_core::config::connect_options(database_url.as_deref()).map_py()?;
        if let Some(m) = max_connections {
            options.max_connections = m;
        }
        let tasker = block(py, move || Tasker::connect_with(options))?;
        Ok(Self { tasker })
    }

    /// The database URL `connect(explicit)` would use (reads the configuration, so an invalid
    /// one raises).
    #[staticmethod]
    #[pyo3(signature = (explicit=None))]
    fn resolve_database_url(explicit: Option<&str>) -> PyResult<String> {
        let options = tasker_core::config::connect_options(explicit).map_py()?;
        Ok(tasker_core::resolve_database_url(options.database_url.as_deref()))
    }

    /// Where this client is connected, without credentials.
    #[getter]
    fn database(&self) -> String {
        self.tasker.database().to_owned()
    }

    /// `"sqlite"` or `"postgres"`.
    #[getter]
    fn backend(&self) -> &'static str {
        self.tasker.backend().as_str()
    }

    /// Registers every template under `path`; returns a JSON list of what was registered.
    fn register_templates(&self, py: Python<'_>, path: PathBuf) -> PyResult<String> {
        let tasker = self.tasker.clone();
        let registered = block(py, move || async move { tasker.register_templates(&path).await })?;
        to_json(&registered)
    }

    /// Every registered template version, as a JSON list of template infos.
    fn list_templates(&self, py: Python<'_>) -> PyResult<String> {
        let tasker = self.tasker.clone();
        let templates = block(py, move || async move { tasker.list_templates().await })?;
        to_json(&templates)
    }

    /// One registered template version (the highest without `version`), as JSON.
    #[pyo3(signature = (namespace, name, version=None))]
    fn get_template(
        &self,
        py: Python<'_>,
        namespace: String,
        name: String,
        version: Option<String>,
    ) -> PyResult<String> {
        let tasker = self.tasker.clone();
        let info = block(py, move || async move {
            tasker.get_template(&namespace, &name, version.as_deref()).await
        })?;
        to_json(&info)
    }

    /// Creates a task; returns `{"task": TaskSummary, "created": bool}` as JSON.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (namespace, name, version, context_json, initiator, source_system, reason, tags, priority, idempotency_key, strict_identity=false, traceparent=None))]
    fn create_task(
        &self,
        py: Python<'_>,
        namespace: String,
        name: String,
        version: Option<String>,
        context_json: &str,
        initiator: Option<String>,
        source_system: Option<String>,
        reason: Option<String>,
        tags: Vec<String>,
        priority: i32,
        idempotency_key: Option<String>,
        strict_identity: bool,
        traceparent: Option<String>,
    ) -> PyResult<String> {
        let request = TaskRequest {
            namespace,
            name,
            version,
            context: parse_json("context", context_json)?,
            initiator,
            source_system,
            reason,
            tags,
            priority,
            idempotency_key,
            strict_identity,
            traceparent,
        };
        let tasker = self.tasker.clone();
        let created = block(py, move || async move { tasker.create_task(request).await })?;
        to_json(&created)
    }

    /// The engine's metrics in the Prometheus text format.
    fn prometheus_metrics(&self, py: Python<'_>) -> PyResult<String> {
        let tasker = self.tasker.clone();
        block(py, move || async move { Ok(tasker.prometheus_metrics().await) })
    }

    /// The engine's metrics snapshot, as JSON.
    fn metrics(&self, py: Python<'_>) -> PyResult<String> {
        let tasker = self.tasker.clone();
        let snapshot = block(py, move || async move { Ok(tasker.metrics().await) })?;
        to_json(&snapshot)
    }

    /// Liveness and readiness (database, migrations), as JSON.
    fn health(&self, py: Python<'_>) -> PyResult<String> {
        let tasker = self.tasker.clone();
        let report = block(py, move || async move { Ok(tasker.health(&[]).await) })?;
        to_json(&report)
    }

    /// A task with its steps and transitions, as JSON.
    fn get_task(&self, py: Python<'_>, task_uuid: &str) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let tasker = self.tasker.clone();
        let detail = block(py, move || async move { tasker.get_task(uuid).await })?;
        to_json(&detail)
    }

    /// Tasks, newest first, as a JSON list of summaries.
    #[pyo3(signature = (namespace=None, name=None, state=None, limit=None))]
    fn list_tasks(
        &self,
        py: Python<'_>,
        namespace: Option<String>,
        name: Option<String>,
        state: Option<&str>,
        limit: Option<i64>,
    ) -> PyResult<String> {
        let state = match state {
            None => None,
            Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
                let known: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
                invalid(format!(
                    "state '{s}' is not a task state (one of: {})",
                    known.join(", ")
                ))
            })?),
        };
        if let Some(l) = limit {
            at_least("limit", l, 1)?;
        }
        let filter = TaskFilter {
            namespace,
            name,
            state,
            limit,
            ..TaskFilter::default()
        };
        let tasker = self.tasker.clone();
        let tasks = block(py, move || async move { tasker.list_tasks(&filter).await })?;
        to_json(&tasks)
    }

    /// Cancels a task; returns its summary as JSON.
    fn cancel_task(&self, py: Python<'_>, task_uuid: &str) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let tasker = self.tasker.clone();
        let task = block(py, move || async move { tasker.cancel_task(uuid).await })?;
        to_json(&task)
    }

    /// Waits until the task is terminal and returns it in full (JSON). Waits in short slices
    /// with the GIL released and checks for signals between them, so Ctrl-C interrupts a long
    /// wait promptly.
    fn wait_for_task(&self, py: Python<'_>, task_uuid: &str, timeout_seconds: f64) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        if !timeout_seconds.is_finite() || timeout_seconds < 0.0 {
            return Err(invalid(format!(
                "timeout must be a non-negative number of seconds, got {timeout_seconds}"
            )));
        }
        let total = Duration::from_secs_f64(timeout_seconds.min(1e9));
        let deadline = Instant::now() + total;
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(250));
            let tasker = self.tasker.clone();
            match py.detach(move || runtime::block_on(async move { tasker.wait_for_task(uuid, slice).await })) {
                Ok(Ok(detail)) => return to_json(&detail),
                Ok(Err(TaskerError::Timeout(_))) if Instant::now() < deadline => py.check_signals()?,
                Ok(Err(TaskerError::Timeout(_))) => return Err(crate::error::to_py(TaskerError::Timeout(total))),
                Ok(Err(e)) | Err(e) => return Err(crate::error::to_py(e)),
            }
        }
    }

    // Recovering failed work: operator actions. Each returns the step (a `StepDetail`) or the
    // task (a `TaskSummary`) afterwards, as JSON. `step` is a step's name or uuid.

    /// Sends an `error` (or stuck `waiting_for_retry` / `enqueued`) step back to `pending`.
    fn reset_step(
        &self,
        py: Python<'_>,
        task_uuid: &str,
        step: String,
        by: String,
        reason: String,
    ) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let tasker = self.tasker.clone();
        let detail = block(
            py,
            move || async move { tasker.reset_step(uuid, &step, &by, &reason).await },
        )?;
        to_json(&detail)
    }

    /// Marks a step `resolved_manually`, releasing its dependents.
    fn resolve_step_manually(
        &self,
        py: Python<'_>,
        task_uuid: &str,
        step: String,
        by: String,
        reason: String,
    ) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let tasker = self.tasker.clone();
        let detail = block(py, move || async move {
            tasker.resolve_step_manually(uuid, &step, &by, &reason).await
        })?;
        to_json(&detail)
    }

    /// Completes a step with the operator's result (JSON), which its dependents receive.
    #[allow(clippy::too_many_arguments)]
    fn complete_step_manually(
        &self,
        py: Python<'_>,
        task_uuid: &str,
        step: String,
        result_json: &str,
        metadata_json: &str,
        by: String,
        reason: String,
    ) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let result = parse_json("result", result_json)?;
        let metadata = parse_json("metadata", metadata_json)?;
        let tasker = self.tasker.clone();
        let detail = block(py, move || async move {
            tasker
                .complete_step_manually(uuid, &step, result, metadata, &by, &reason)
                .await
        })?;
        to_json(&detail)
    }

    /// Cancels a step that has not finished (and the pending steps below it).
    fn cancel_step(
        &self,
        py: Python<'_>,
        task_uuid: &str,
        step: String,
        by: String,
        reason: String,
    ) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let tasker = self.tasker.clone();
        let detail = block(py, move || async move {
            tasker.cancel_step(uuid, &step, &by, &reason).await
        })?;
        to_json(&detail)
    }

    /// Resets every `error` step of an `error` task; returns the task's summary.
    fn retry_task(&self, py: Python<'_>, task_uuid: &str, by: String, reason: String) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let tasker = self.tasker.clone();
        let task = block(py, move || async move { tasker.retry_task(uuid, &by, &reason).await })?;
        to_json(&task)
    }

    /// Closes a failed or unfinished task as `resolved_manually`; returns its summary.
    fn resolve_task(&self, py: Python<'_>, task_uuid: &str, by: String, reason: String) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let tasker = self.tasker.clone();
        let task = block(py, move || async move { tasker.resolve_task(uuid, &by, &reason).await })?;
        to_json(&task)
    }

    /// One step (by name or uuid) with every attempt's error, as JSON.
    fn get_step(&self, py: Python<'_>, task_uuid: &str, step: String) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let tasker = self.tasker.clone();
        let detail = block(py, move || async move { tasker.get_step(uuid, &step).await })?;
        to_json(&detail)
    }

    /// Every step of a task, as `get_step` shows it (a JSON list).
    fn list_steps(&self, py: Python<'_>, task_uuid: &str) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let tasker = self.tasker.clone();
        let steps = block(py, move || async move { tasker.list_steps(uuid).await })?;
        to_json(&steps)
    }

    // The dead-letter queue and the workers.

    /// DLQ entries, newest first, as a JSON list.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (status=None, reason=None, task_uuid=None, open_only=false, limit=100, offset=0))]
    fn list_dlq(
        &self,
        py: Python<'_>,
        status: Option<&str>,
        reason: Option<&str>,
        task_uuid: Option<&str>,
        open_only: bool,
        limit: i64,
        offset: i64,
    ) -> PyResult<String> {
        let filter = DlqFilter {
            status: parse_name("status", status, DlqStatus::ALL, DlqStatus::parse, DlqStatus::as_str)?,
            reason: parse_name("reason", reason, DlqReason::ALL, DlqReason::parse, DlqReason::as_str)?,
            task_uuid: task_uuid.map(|t| parse_uuid("task_uuid", t)).transpose()?,
            open_only,
            limit: Some(at_least("limit", limit, 1)?),
            offset: Some(at_least("offset", offset, 0)?),
        };
        let tasker = self.tasker.clone();
        let entries = block(py, move || async move { tasker.list_dlq(&filter).await })?;
        to_json(&entries)
    }

    /// One DLQ entry, as JSON.
    fn get_dlq_entry(&self, py: Python<'_>, entry_uuid: &str) -> PyResult<String> {
        let uuid = parse_uuid("entry_uuid", entry_uuid)?;
        let tasker = self.tasker.clone();
        let entry = block(py, move || async move { tasker.get_dlq_entry(uuid).await })?;
        to_json(&entry)
    }

    /// Adds a note by `by` to a DLQ entry and, with `status`, moves it there; returns the entry.
    #[pyo3(signature = (entry_uuid, status, note, by))]
    fn update_dlq_entry(
        &self,
        py: Python<'_>,
        entry_uuid: &str,
        status: Option<&str>,
        note: String,
        by: String,
    ) -> PyResult<String> {
        let uuid = parse_uuid("entry_uuid", entry_uuid)?;
        let status = parse_name("status", status, DlqStatus::ALL, DlqStatus::parse, DlqStatus::as_str)?;
        let tasker = self.tasker.clone();
        let entry = block(py, move || async move {
            tasker.update_dlq_entry(uuid, status, &note, &by).await
        })?;
        to_json(&entry)
    }

    /// Puts a task in the DLQ by hand (reason `manual`); returns the entry.
    fn add_to_dlq(&self, py: Python<'_>, task_uuid: &str, by: String, note: String) -> PyResult<String> {
        let uuid = parse_uuid("task_uuid", task_uuid)?;
        let tasker = self.tasker.clone();
        let entry = block(py, move || async move { tasker.add_to_dlq(uuid, &by, &note).await })?;
        to_json(&entry)
    }

    /// DLQ entries counted by reason and status, as JSON.
    fn dlq_stats(&self, py: Python<'_>) -> PyResult<String> {
        let tasker = self.tasker.clone();
        let stats = block(py, move || async move { tasker.dlq_stats().await })?;
        to_json(&stats)
    }

    /// The open DLQ entries, most urgent first, with their scores (a JSON list).
    #[pyo3(signature = (limit=50))]
    fn dlq_queue(&self, py: Python<'_>, limit: usize) -> PyResult<String> {
        if limit == 0 {
            return Err(invalid("limit must be at least 1, got 0".into()));
        }
        let tasker = self.tasker.clone();
        let queue = block(py, move || async move { tasker.dlq_queue(limit).await })?;
        to_json(&queue)
    }

    /// Each unfinished task at `min_ratio` of its staleness threshold or more, most overdue
    /// first (a JSON list).
    #[pyo3(signature = (min_ratio=0.0, limit=100))]
    fn staleness_report(&self, py: Python<'_>, min_ratio: f64, limit: usize) -> PyResult<String> {
        if !min_ratio.is_finite() || min_ratio < 0.0 {
            return Err(invalid(format!(
                "min_ratio must be a finite, non-negative number, got {min_ratio}"
            )));
        }
        if limit == 0 {
            return Err(invalid("limit must be at least 1, got 0".into()));
        }
        let tasker = self.tasker.clone();
        let report = block(
            py,
            move || async move { tasker.staleness_report(min_ratio, limit).await },
        )?;
        to_json(&report)
    }

    /// Workers seen within the last hour (live ones first), as JSON.
    fn list_workers(&self, py: Python<'_>) -> PyResult<String> {
        let tasker = self.tasker.clone();
        let workers = block(py, move || async move { tasker.list_workers().await })?;
        to_json(&workers)
    }

    // Events: subscriber groups and the fast broadcast (see `events.rs`), and the operators'
    // view of the groups.

    /// Joins (creating if needed) the durable subscriber group `group`; durations in seconds.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (group, patterns, member_id=None, from_start=false, max_attempts=5, backoff=0.2, max_backoff=30.0, lease=15.0, poll_interval=0.05, batch_size=500))]
    fn subscribe(
        &self,
        py: Python<'_>,
        group: String,
        patterns: Vec<String>,
        member_id: Option<String>,
        from_start: bool,
        max_attempts: u32,
        backoff: f64,
        max_backoff: f64,
        lease: f64,
        poll_interval: f64,
        batch_size: i64,
    ) -> PyResult<NativeEventSubscription> {
        let options = JoinOptions {
            member_id,
            from_start,
            max_attempts,
            backoff,
            max_backoff,
            lease,
            poll_interval,
            batch_size,
        };
        NativeEventSubscription::join(py, &self.tasker, group, patterns, options)
    }

    /// Reads this process's fast events matching `patterns`.
    fn subscribe_fast(&self, patterns: Vec<String>) -> PyResult<NativeFastSubscription> {
        NativeFastSubscription::new(&self.tasker, patterns)
    }

    /// Every subscriber group with its lag and dead letters, as a JSON list.
    fn event_groups(&self, py: Python<'_>) -> PyResult<String> {
        let tasker = self.tasker.clone();
        let groups = block(py, move || async move { tasker.event_groups().await })?;
        to_json(&groups)
    }

    /// Events subscribers gave up on, newest first (`group=None`: every group's), as JSON.
    #[pyo3(signature = (group=None, limit=100))]
    fn event_dead_letters(&self, py: Python<'_>, group: Option<String>, limit: usize) -> PyResult<String> {
        if limit == 0 {
            return Err(invalid("limit must be at least 1, got 0".into()));
        }
        let tasker = self.tasker.clone();
        let dead = block(py, move || async move {
            tasker.event_dead_letters(group.as_deref(), limit).await
        })?;
        to_json(&dead)
    }

    /// Deletes a subscriber group with its cursors and members; whether it existed.
    fn delete_event_group(&self, py: Python<'_>, group: String) -> PyResult<bool> {
        let tasker = self.tasker.clone();
        block(py, move || async move { tasker.delete_event_group(&group).await })
    }

    /// Stamps positions on committed events (PostgreSQL; SQLite: 0); how many.
    fn sequence_events(&self, py: Python<'_>) -> PyResult<u64> {
        let tasker = self.tasker.clone();
        block(py, move || async move { tasker.sequence_events().await })
    }

    /// Closes the connection pool.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let tasker = self.tasker.clone();
        py.detach(|| runtime::block_on(async move { tasker.close().await }))
            .map_py()
    }
}

/// The configuration this process runs with (`tasker_core::config::load_current`), as JSON:
/// `{"env", "root", "files", "values": [{"key", "value", "origin": {"kind", ...}}]}`, secrets
/// redacted (`values` is what `tasker config show --json` prints).
#[pyfunction]
pub fn load_config() -> PyResult<String> {
    let loaded = tasker_core::config::load_current().map_py()?;
    to_json(&serde_json::json!({
        "env": loaded.env,
        "root": loaded.root.as_ref().map(|r| r.display().to_string()),
        "files": loaded.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "values": loaded.shown(),
    }))
}
