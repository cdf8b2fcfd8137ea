//! The one place where failures become Ruby exceptions.
//!
//! Exception classes are defined in Ruby (`lib/tasker_core/errors.rb`) and looked up lazily by
//! name, so that they carry Ruby-side behaviour (`#code`, `#path`, `#problems`). Every exception
//! gets `@code`, the core's stable `TaskerError::code()`.

use std::any::Any;

use magnus::prelude::*;
use magnus::{Error, ExceptionClass, RClass, RModule, RObject, Ruby, Value};
use tasker_core::TaskerError;

use crate::convert::JsonError;

/// Everything the native layer can fail with.
#[derive(Debug)]
pub enum BindError {
    Core(TaskerError),
    /// A Ruby value that has no JSON form.
    Json(JsonError),
}

impl From<TaskerError> for BindError {
    fn from(e: TaskerError) -> Self {
        BindError::Core(e)
    }
}

impl From<JsonError> for BindError {
    fn from(e: JsonError) -> Self {
        BindError::Json(e)
    }
}

/// The Ruby class (under `TaskerCore`) for a core error code.
fn class_for(code: &str) -> &'static str {
    match code {
        "template_invalid" => "TemplateError",
        "validation_failed" => "ValidationError",
        "template_not_found" => "TemplateNotFound",
        "template_conflict" => "TemplateConflict",
        "task_not_found" => "TaskNotFound",
        "step_not_found" => "StepNotFound",
        "dlq_entry_not_found" => "DlqEntryNotFound",
        // An operator action the state does not allow, or a transition the tables refuse.
        "invalid_state" | "illegal_transition" => "InvalidStateError",
        // A bad database URL, or configuration files / `TASKER_*__*` variables that do not load.
        "database_url_invalid" | "config_invalid" => "ConfigurationError",
        // The message broker (`messaging.backend = "rabbitmq"`) is a connection like the
        // database's: unreachable now, transient, retried by the worker.
        "database_unreachable" | "broker_unreachable" => "ConnectionError",
        "database_error" | "migration_failed" | "queue_error" | "corrupt_data" => "DatabaseError",
        "timeout" => "TimeoutError",
        "unknown_event" => "UnknownEventError",
        "fenced" => "FencedError",
        "shut_down" => "ShutDownError",
        "worker_failed" => "WorkerFailedError",
        "unavailable" => "UnavailableError",
        "backpressure" => "BackpressureError",
        "invalid_argument" => "InvalidArgumentError",
        "not_serializable" | "result_too_deep" => "SerializationError",
        _ => "Error",
    }
}

fn lookup(ruby: &Ruby, name: &str) -> Option<ExceptionClass> {
    let module: RModule = ruby.class_object().const_get("TaskerCore").ok()?;
    let class: RClass = module.const_get(name).ok()?;
    ExceptionClass::from_value(class.as_value())
}

/// Builds the Ruby exception for `e`.
pub fn raise(ruby: &Ruby, e: impl Into<BindError>) -> Error {
    let e = e.into();
    let (code, message) = match &e {
        BindError::Core(core) => (core.code(), core.to_string()),
        // `result_too_deep`: the error type a step reports for it, as the engine would.
        BindError::Json(json) if json.too_deep => ("result_too_deep", json.to_string()),
        BindError::Json(json) => ("not_serializable", json.to_string()),
    };
    let Some(class) = lookup(ruby, class_for(code)).or_else(|| lookup(ruby, "Error")) else {
        // The Ruby layer is not loaded (the shared object was required on its own).
        return Error::new(ruby.exception_runtime_error(), format!("[{code}] {message}"));
    };
    let exception = match class.new_instance((message.as_str(),)) {
        Ok(exception) => exception,
        Err(err) => return err,
    };
    let object = RObject::from_value(exception.as_value());
    let set = |name: &str, value: Value| {
        // Setting an ivar on a fresh exception only fails if it is frozen, which it is not.
        if let Some(o) = object {
            let _ = o.ivar_set(name, value);
        }
    };
    set("@code", ruby.str_new(code).as_value());
    match &e {
        BindError::Core(TaskerError::Validation(v)) => set("@path", ruby.str_new(&v.path).as_value()),
        BindError::Core(TaskerError::Template(problems)) => {
            let list = ruby.ary_new_capa(problems.len());
            for p in problems {
                let h = ruby.hash_new();
                let opt = |s: Option<String>| match s {
                    Some(s) => ruby.str_new(&s).as_value(),
                    None => ruby.qnil().as_value(),
                };
                let _ = h.aset(
                    ruby.to_symbol("file"),
                    opt(p.file.as_ref().map(|f| f.display().to_string())),
                );
                let _ = h.aset(ruby.to_symbol("template"), opt(p.template.clone()));
                let _ = h.aset(ruby.to_symbol("step"), opt(p.step.clone()));
                let _ = h.aset(ruby.to_symbol("field"), opt(p.field.clone()));
                let _ = h.aset(ruby.to_symbol("message"), ruby.str_new(&p.message));
                let _ = list.push(h);
            }
            set("@problems", list.as_value());
        }
        BindError::Core(TaskerError::Config(problems)) => {
            let list = ruby.ary_new_capa(problems.len());
            for p in problems {
                let h = ruby.hash_new();
                let _ = h.aset(ruby.to_symbol("source"), ruby.str_new(&p.source));
                let _ = h.aset(ruby.to_symbol("key"), ruby.str_new(&p.key));
                let _ = h.aset(ruby.to_symbol("message"), ruby.str_new(&p.message));
                let _ = list.push(h);
            }
            set("@problems", list.as_value());
        }
        BindError::Core(TaskerError::TaskNotFound(uuid)) => {
            set("@task_uuid", ruby.str_new(&uuid.to_string()).as_value())
        }
        BindError::Core(TaskerError::StepNotFound { task_uuid, step }) => {
            set("@task_uuid", ruby.str_new(&task_uuid.to_string()).as_value());
            set("@step", ruby.str_new(step).as_value());
        }
        BindError::Core(TaskerError::DlqEntryNotFound(uuid)) => {
            set("@entry_uuid", ruby.str_new(&uuid.to_string()).as_value())
        }
        BindError::Core(TaskerError::Unavailable {
            resource, retry_after, ..
        }) => {
            set("@resource", ruby.str_new(resource).as_value());
            set(
                "@retry_after",
                ruby.float_from_f64(retry_after.as_secs_f64()).as_value(),
            );
        }
        BindError::Core(TaskerError::Backpressure {
            queue,
            depth,
            limit,
            retry_after,
        }) => {
            set("@queue", ruby.str_new(queue).as_value());
            set("@depth", ruby.integer_from_u64(*depth).as_value());
            set("@limit", ruby.integer_from_u64(*limit).as_value());
            set(
                "@retry_after",
                ruby.float_from_f64(retry_after.as_secs_f64()).as_value(),
            );
        }
        BindError::Json(json) => set("@path", ruby.str_new(&json.path).as_value()),
        _ => {}
    }
    Error::from(exception)
}

/// An invalid argument, raised as `TaskerCore::InvalidArgumentError`.
pub fn invalid_argument(ruby: &Ruby, message: impl Into<String>) -> Error {
    raise(ruby, TaskerError::InvalidArgument(message.into()))
}

/// A Rust panic caught before it reached Ruby.
pub fn panic(ruby: &Ruby, payload: Box<dyn Any + Send>) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Error::new(
        ruby.exception_runtime_error(),
        format!("tasker-core native code panicked: {message}"),
    )
}
