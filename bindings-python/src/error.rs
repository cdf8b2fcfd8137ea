//! The one place where core errors become Python exceptions.
//!
//! The exception classes live in `tasker_core.errors` (plain Python, so users can subclass,
//! pickle and type-check them). They are looked up lazily by name; each gets `code` (the
//! core's stable [`TaskerError::code`]) plus variant-specific keyword arguments.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tasker_core::TaskerError;

/// Converts a core error into an exception of `tasker_core.errors`.
pub fn to_py(err: TaskerError) -> PyErr {
    Python::attach(|py| match build(py, &err) {
        Ok(e) => e,
        // The errors module failed to import (a broken install): keep the information anyway.
        Err(import_error) => {
            let e = PyRuntimeError::new_err(format!("[{}] {err}", err.code()));
            e.set_cause(py, Some(import_error));
            e
        }
    })
}

/// Extension trait so call sites read `core_call().map_py()?`.
pub trait MapPy<T> {
    fn map_py(self) -> PyResult<T>;
}

impl<T> MapPy<T> for Result<T, TaskerError> {
    fn map_py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

fn class_name(err: &TaskerError) -> &'static str {
    match err {
        TaskerError::Template(_) => "TemplateError",
        TaskerError::Config(_) => "ConfigurationError",
        TaskerError::Validation(_) => "ValidationError",
        TaskerError::TemplateNotFound { .. } => "TemplateNotFound",
        TaskerError::TemplateConflict { .. } => "TemplateConflict",
        TaskerError::TaskNotFound(_) => "TaskNotFound",
        TaskerError::StepNotFound { .. } => "StepNotFound",
        TaskerError::InvalidState(_) => "InvalidState",
        TaskerError::DlqEntryNotFound(_) => "DlqEntryNotFound",
        TaskerError::IllegalTaskTransition { .. } | TaskerError::IllegalStepTransition { .. } => "IllegalTransition",
        TaskerError::DatabaseUrl(_) => "InvalidDatabaseUrl",
        TaskerError::Connect { .. } | TaskerError::Broker(_) => "DatabaseConnectionError",
        TaskerError::Database(_) | TaskerError::Migration(_) | TaskerError::Queue(_) | TaskerError::Corrupt(_) => {
            "DatabaseError"
        }
        TaskerError::Timeout(_) => "WaitTimeout",
        TaskerError::UnknownEvent(_) => "UnknownEvent",
        TaskerError::ShutDown => "WorkerShutDown",
        TaskerError::WorkerFailed(_) => "WorkerFailed",
        TaskerError::InvalidArgument(_) => "InvalidArgument",
        TaskerError::Fenced(_) => "Fenced",
        TaskerError::Unavailable { .. } => "Unavailable",
        TaskerError::Backpressure { .. } => "Backpressure",
    }
}

fn build(py: Python<'_>, err: &TaskerError) -> PyResult<PyErr> {
    let module = py.import("tasker_core.errors")?;
    let class = module.getattr(class_name(err))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("code", err.code())?;
    match err {
        TaskerError::Template(problems) => {
            let list = PyList::empty(py);
            for p in problems {
                let d = PyDict::new(py);
                d.set_item("file", p.file.as_ref().map(|f| f.display().to_string()))?;
                d.set_item("template", p.template.as_deref())?;
                d.set_item("step", p.step.as_deref())?;
                d.set_item("field", p.field.as_deref())?;
                d.set_item("message", &p.message)?;
                list.append(d)?;
            }
            kwargs.set_item("problems", list)?;
        }
        TaskerError::Config(problems) => {
            let list = PyList::empty(py);
            for p in problems {
                let d = PyDict::new(py);
                d.set_item("source", &p.source)?;
                d.set_item("key", &p.key)?;
                d.set_item("message", &p.message)?;
                list.append(d)?;
            }
            kwargs.set_item("problems", list)?;
        }
        TaskerError::Validation(v) => {
            kwargs.set_item("path", &v.path)?;
            kwargs.set_item("detail", &v.message)?;
        }
        TaskerError::TemplateNotFound {
            namespace,
            name,
            version,
        } => {
            kwargs.set_item("namespace", namespace)?;
            kwargs.set_item("name", name)?;
            kwargs.set_item("version", version.as_deref())?;
        }
        TaskerError::TemplateConflict {
            namespace,
            name,
            version,
            ..
        } => {
            kwargs.set_item("namespace", namespace)?;
            kwargs.set_item("name", name)?;
            kwargs.set_item("version", version)?;
        }
        TaskerError::TaskNotFound(uuid) => kwargs.set_item("task_uuid", uuid.to_string())?,
        TaskerError::StepNotFound { task_uuid, step } => {
            kwargs.set_item("task_uuid", task_uuid.to_string())?;
            kwargs.set_item("step", step)?;
        }
        TaskerError::DlqEntryNotFound(uuid) => kwargs.set_item("entry_uuid", uuid.to_string())?,
        TaskerError::Timeout(d) => kwargs.set_item("timeout", d.as_secs_f64())?,
        TaskerError::UnknownEvent(id) => kwargs.set_item("event_id", *id)?,
        TaskerError::Unavailable {
            resource, retry_after, ..
        } => {
            kwargs.set_item("resource", *resource)?;
            kwargs.set_item("retry_after", retry_after.as_secs_f64())?;
        }
        TaskerError::Backpressure {
            queue,
            depth,
            limit,
            retry_after,
        } => {
            kwargs.set_item("queue", queue)?;
            kwargs.set_item("depth", *depth)?;
            kwargs.set_item("limit", *limit)?;
            kwargs.set_item("retry_after", retry_after.as_secs_f64())?;
        }
        _ => {}
    }
    let exc = class.call((err.to_string(),), Some(&kwargs))?;
    Ok(PyErr::from_value(exc))
}
