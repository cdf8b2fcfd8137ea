//! `tasker_core._native`: the pyo3 layer of the Python package. Thin on purpose: it converts
//! values (JSON text both ways) and errors (see `error.rs`); the engine is `tasker-core` and the
//! user-facing API is the pure-Python `tasker_core` package.

mod client;
mod error;
mod events;
mod logs;
mod worker;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<client::NativeClient>()?;
    m.add_class::<worker::NativeWorker>()?;
    m.add_class::<worker::WorkerSettings>()?;
    m.add_function(wrap_pyfunction!(client::load_config, m)?)?;
    m.add_class::<worker::NativeCancelSignal>()?;
    m.add_class::<events::NativeEventSubscription>()?;
    m.add_class::<events::NativeFastSubscription>()?;
    m.add_function(wrap_pyfunction!(events::catalog, m)?)?;
    m.add_function(wrap_pyfunction!(events::event_info, m)?)?;
    m.add_function(wrap_pyfunction!(events::envelope_schema, m)?)?;
    m.add_function(wrap_pyfunction!(events::pattern_matches, m)?)?;
    m.add_function(wrap_pyfunction!(logs::forward_logs, m)?)?;
    m.add_function(wrap_pyfunction!(logs::next_log, m)?)?;
    m.add_function(wrap_pyfunction!(logs::drain_logs, m)?)?;
    m.add("MAX_JSON_BYTES", tasker_core::limits::MAX_JSON_BYTES)?;
    m.add("MAX_JSON_DEPTH", tasker_core::limits::MAX_JSON_DEPTH)?;
    Ok(())
}
