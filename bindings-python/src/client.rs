//! `NativeClient`: the client half of [`tasker_core::Tasker`]. Values cross as JSON text, which
//! the Python layer turns into dataclasses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use serde_json::Value;
use tasker_core::state::{NamedState, TaskState};
use tasker_core::{runtime, TaskFilter, TaskRequest, Tasker, TaskerError, TaskerOptions};
use uuid::Uuid;

use crate::error::MapPy;

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

fn parse_json(field: &str, text: &str) -> PyResult<Value> {
    serde_json::from_str(text)
        .map_err(|e| crate::error::to_py(TaskerError::InvalidArgument(format!("{field} is not valid JSON: {e}"))))
}

pub(crate) fn parse_uuid(field: &str, text: &str) -> PyResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| {
        crate::error::to_py(TaskerError::InvalidArgument(format!(
            "{field} '{text}' is not a valid UUID"
        )))
    })
}

/// A connection to the engine's database.
#[pyclass(module = "tasker_core._native", frozen)]
pub struct NativeClient {
    pub(crate) tasker: Tasker,
}

#[pymethods]
impl NativeClient {
    /// Connects (running migrations). `database_url=None` resolves like the CLI does.
    #[staticmethod]
    #[pyo3(signature = (database_url=None, max_connections=10))]
    fn connect(py: Python<'_>, database_url: Option<String>, max_connections: u32) -> PyResult<Self> {
        let options = TaskerOptions {
            database_url,
            max_connections,
            ..TaskerOptions::default()
        };
        let tasker = block(py, move || Tasker::connect_with(options))?;
        Ok(Self { tasker })
    }

    /// The database URL `connect(None)` would use.
    #[staticmethod]
    #[pyo3(signature = (explicit=None))]
    fn resolve_database_url(explicit: Option<&str>) -> String {
        tasker_core::resolve_database_url(explicit)
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

    /// Creates a task; returns `{"task": TaskSummary, "created": bool}` as JSON.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (namespace, name, version, context_json, initiator, source_system, reason, tags, priority, idempotency_key))]
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
        };
        let tasker = self.tasker.clone();
        let created = block(py, move || async move { tasker.create_task(request).await })?;
        to_json(&created)
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
                crate::error::to_py(TaskerError::InvalidArgument(format!(
                    "state '{s}' is not a task state (one of: {})",
                    known.join(", ")
                )))
            })?),
        };
        if let Some(l) = limit {
            if l < 1 {
                return Err(crate::error::to_py(TaskerError::InvalidArgument(format!(
                    "limit must be at least 1, got {l}"
                ))));
            }
        }
        let filter = TaskFilter {
            namespace,
            name,
            state,
            limit,
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
            return Err(crate::error::to_py(TaskerError::InvalidArgument(format!(
                "timeout must be a non-negative number of seconds, got {timeout_seconds}"
            ))));
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

    /// Closes the connection pool.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let tasker = self.tasker.clone();
        py.detach(|| runtime::block_on(async move { tasker.close().await }))
            .map_py()
    }
}
