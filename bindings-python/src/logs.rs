//! The core's log records, for the Python layer to hand to `logging` (see
//! `tasker_core/_logs.py` and `tasker_core::logging`).

use std::time::Duration;

use pyo3::prelude::*;
use tasker_core::logging::{self, LogRecord};

use crate::error::MapPy;

/// A record as the Python layer takes it: (level, target, message, fields, unix seconds).
type PyLogRecord = (&'static str, String, String, Vec<(String, String)>, f64);

fn to_tuple(r: LogRecord) -> PyLogRecord {
    let seconds = r.timestamp.timestamp_micros() as f64 / 1e6;
    (
        r.level.as_str(),
        r.target,
        r.message,
        r.fields.into_iter().collect(),
        seconds,
    )
}

/// Starts forwarding the core's records at the configured `logging.level` (`TASKER_LOG` wins);
/// once per process, later calls do nothing. Returns the filter in force.
#[pyfunction]
pub fn forward_logs() -> PyResult<String> {
    logging::forward_configured().map(|f| f.filter().to_owned()).map_py()
}

/// The next record, waiting up to `timeout_ms` with the GIL released; `None` when none came or
/// forwarding was never started.
#[pyfunction]
pub fn next_log(py: Python<'_>, timeout_ms: u64) -> PyResult<Option<PyLogRecord>> {
    let Some(forwarder) = logging::installed() else {
        return Ok(None);
    };
    Ok(py
        .detach(|| forwarder.poll(Duration::from_millis(timeout_ms)))
        .map(to_tuple))
}

/// Every record waiting now, without blocking (to flush at exit).
#[pyfunction]
pub fn drain_logs() -> Vec<PyLogRecord> {
    logging::installed()
        .map(|f| f.drain(usize::MAX).into_iter().map(to_tuple).collect())
        .unwrap_or_default()
}
