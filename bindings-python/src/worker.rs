//! `NativeWorker`: the poll/complete half of [`tasker_core::Worker`]. The Python layer runs the
//! handlers; this file only moves events out and outcomes in.

use std::time::Duration;

use pyo3::prelude::*;
use serde_json::Value;
use tasker_core::outcome::StepOutcome;
use tasker_core::{runtime, CancelSignal, DispatchMode, Poll, TaskerError, Worker, WorkerConfig};

use crate::client::{block, to_json, NativeClient};
use crate::error::{to_py, MapPy};

fn invalid(msg: String) -> PyErr {
    to_py(TaskerError::InvalidArgument(msg))
}

pub(crate) fn seconds(field: &str, value: f64) -> PyResult<Duration> {
    if !value.is_finite() || value < 0.0 {
        return Err(invalid(format!(
            "{field} must be a non-negative number of seconds, got {value}"
        )));
    }
    Ok(Duration::from_secs_f64(value.min(1e9)))
}

/// The cancellation signal of one step attempt ([`CancelSignal`]): raised when the attempt timed
/// out, was given up, or shutdown's deadline passed. Reading it is one atomic load.
#[pyclass(module = "tasker_core._native", frozen)]
pub struct NativeCancelSignal {
    signal: CancelSignal,
}

#[pymethods]
impl NativeCancelSignal {
    /// Whether the attempt has been cancelled.
    #[getter]
    fn is_cancelled(&self) -> bool {
        self.signal.is_cancelled()
    }
}

/// A worker's settings, built the way the CLI builds them: the configuration
/// (`tasker_core::config::load_current`, so `TASKER_CONFIG_ROOT` / `./config/tasker` files and
/// `TASKER_WORKER__*` variables apply) gives every value, then each argument passed here (not
/// `None`) overrides its key. `queues` are added to the configured `worker.queues`.
#[pyclass(module = "tasker_core._native", frozen)]
pub struct WorkerSettings {
    config: WorkerConfig,
}

#[pymethods]
impl WorkerSettings {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (queues, concurrency=None, lease_seconds=None, dispatch_mode=None, poll_interval_seconds=None, embedded_orchestration=None, worker_id=None))]
    fn new(
        queues: Vec<String>,
        concurrency: Option<usize>,
        lease_seconds: Option<f64>,
        dispatch_mode: Option<&str>,
        poll_interval_seconds: Option<f64>,
        embedded_orchestration: Option<bool>,
        worker_id: Option<String>,
    ) -> PyResult<Self> {
        let loaded = tasker_core::config::load_current().map_py()?;
        let mut config = loaded.config.worker_config(&queues);
        if let Some(c) = concurrency {
            config.concurrency = c;
        }
        if let Some(s) = lease_seconds {
            config.lease = seconds("lease_seconds", s)?;
        }
        if let Some(mode) = dispatch_mode {
            config.dispatch_mode = mode.parse::<DispatchMode>().map_py()?;
        }
        if let Some(s) = poll_interval_seconds {
            config.poll_interval = Some(seconds("poll_interval", s)?);
        }
        if let Some(e) = embedded_orchestration {
            config.embedded_orchestration = e;
        }
        // Shown by `list_workers`: the handlers behind this worker are Python's.
        config.language = "python".into();
        if let Some(id) = worker_id {
            config.worker_id = id;
        }
        Ok(Self { config })
    }

    /// The given queues after the configured ones (`worker.queues`), without duplicates.
    #[getter]
    fn queues(&self) -> Vec<String> {
        self.config.queues.clone()
    }

    #[getter]
    fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    #[getter]
    fn lease_seconds(&self) -> f64 {
        self.config.lease.as_secs_f64()
    }

    /// `"hybrid"`, `"polling"` or `"event_driven"`.
    #[getter]
    fn dispatch_mode(&self) -> &'static str {
        match self.config.dispatch_mode {
            DispatchMode::Polling => "polling",
            DispatchMode::EventDriven => "event_driven",
            DispatchMode::Hybrid => "hybrid",
        }
    }

    /// `None`: the engine's default for the backend.
    #[getter]
    fn poll_interval_seconds(&self) -> Option<f64> {
        self.config.poll_interval.map(|d| d.as_secs_f64())
    }

    #[getter]
    fn embedded_orchestration(&self) -> bool {
        self.config.embedded_orchestration
    }

    #[getter]
    fn worker_id(&self) -> String {
        self.config.worker_id.clone()
    }
}

/// A running worker claiming steps from its queues.
#[pyclass(module = "tasker_core._native", frozen)]
pub struct NativeWorker {
    worker: Worker,
}

#[pymethods]
impl NativeWorker {
    /// Starts claiming (background tasks on the core's runtime) with `settings`.
    #[staticmethod]
    fn start(py: Python<'_>, client: &NativeClient, settings: &WorkerSettings) -> PyResult<Self> {
        let config = settings.config.clone();
        let tasker = client.tasker.clone();
        let worker = block(py, move || async move { Worker::start(&tasker, config).await })?;
        Ok(Self { worker })
    }

    /// Waits up to `timeout_ms` for a step event. Returns the event as JSON, or `None` when
    /// nothing arrived or the worker is shutting down (see `shutting_down`).
    fn poll(&self, py: Python<'_>, timeout_ms: u64) -> PyResult<Option<String>> {
        // Released GIL: the handlers this worker runs on other threads need it, and holding it
        // here while the core blocks would deadlock a sync handler that the poll waits for.
        let worker = &self.worker;
        match py.detach(|| worker.poll(Duration::from_millis(timeout_ms))) {
            Poll::Event(event) => to_json(&*event).map(Some),
            Poll::Empty | Poll::ShutDown => Ok(None),
            Poll::Failed(e) => Err(e).map_py(),
        }
    }

    /// Reports an outcome (`{"status": "success", ...}` / `{"status": "failure", ...}` JSON).
    /// Never waits for the database.
    fn complete(&self, py: Python<'_>, event_id: u64, outcome_json: &str) -> PyResult<()> {
        let worker = &self.worker;
        py.detach(|| worker.complete(event_id, StepOutcome::from_json(outcome_json)?))
            .map_py()
    }

    /// Persists a checkpoint (`{"cursor": ..., "items_done": ..., "accumulated": ...}` JSON)
    /// for the attempt of `event_id`; committed before it returns, so it waits on the
    /// database, with the GIL released like every such call. Raises `Fenced` once the attempt
    /// no longer holds its step.
    fn checkpoint(&self, py: Python<'_>, event_id: u64, checkpoint_json: &str) -> PyResult<()> {
        let checkpoint: Value =
            serde_json::from_str(checkpoint_json).map_err(|e| invalid(format!("checkpoint is not valid JSON: {e}")))?;
        let worker = self.worker.clone();
        block(py, move || async move { worker.checkpoint(event_id, checkpoint).await })
    }

    /// The cancellation signal of a handed-out event; `None` once the event is finished (which
    /// counts as cancelled: nobody uses its result any more).
    fn cancel_signal(&self, event_id: u64) -> Option<NativeCancelSignal> {
        self.worker
            .cancel_signal(event_id)
            .map(|signal| NativeCancelSignal { signal })
    }

    /// Whether the handler of `event_id` should stop (see `cancel_signal`).
    fn is_cancelled(&self, event_id: u64) -> bool {
        self.worker.is_cancelled(event_id)
    }

    /// Whether shutdown has begun (`poll` returns `None` from then on).
    #[getter]
    fn shutting_down(&self) -> bool {
        self.worker.is_shutting_down()
    }

    /// Graceful shutdown: stop claiming, release unstarted events, wait up to `timeout_seconds`
    /// for in-flight handlers. Returns `(released, abandoned)`.
    fn shutdown(&self, py: Python<'_>, timeout_seconds: f64) -> PyResult<(usize, usize)> {
        let deadline = seconds("timeout", timeout_seconds)?;
        let worker = self.worker.clone();
        let report = py
            .detach(|| runtime::block_on(async move { worker.shutdown(deadline).await }))
            .and_then(|r| r)
            .map_py()?;
        Ok((report.released, report.abandoned))
    }
}
