//! The one place where core errors become JavaScript errors.
//!
//! The JavaScript `Error` carries a marker and a JSON document in its message; the TypeScript
//! layer (`ts/errors.ts`, `fromNative`) turns it into the matching `TaskerError` subclass with
//! `code` and the structured fields (`path`, `problems`, …). A JSON payload keeps the mapping
//! in one function on each side instead of one JavaScript class per Rust variant.

use serde_json::{json, Value};
use tasker_core::TaskerError;

/// Prefix of messages that carry a structured error (must match `ts/errors.ts`).
pub(crate) const MARKER: &str = "__tasker_error__:";

fn native_error(details: Value) -> napi::Error {
    napi::Error::from_reason(format!("{MARKER}{details}"))
}

/// Converts a core error.
pub(crate) fn from_core(e: TaskerError) -> napi::Error {
    let mut details = json!({ "code": e.code(), "message": e.to_string() });
    match &e {
        TaskerError::Validation(v) => {
            details["path"] = json!(v.path);
            details["reason"] = json!(v.message);
        }
        TaskerError::Template(problems) => {
            details["problems"] = problems
                .iter()
                .map(|p| {
                    json!({
                        "file": p.file.as_ref().map(|f| f.display().to_string()),
                        "template": p.template,
                        "step": p.step,
                        "field": p.field,
                        "message": p.message,
                    })
                })
                .collect();
        }
        TaskerError::Config(problems) => {
            details["problems"] = problems
                .iter()
                .map(|p| json!({ "source": p.source, "key": p.key, "message": p.message }))
                .collect();
        }
        TaskerError::TemplateNotFound {
            namespace,
            name,
            version,
        } => {
            details["namespace"] = json!(namespace);
            details["name"] = json!(name);
            details["version"] = json!(version);
        }
        TaskerError::TemplateConflict {
            namespace,
            name,
            version,
            ..
        } => {
            details["namespace"] = json!(namespace);
            details["name"] = json!(name);
            details["version"] = json!(version);
        }
        TaskerError::TaskNotFound(uuid) => details["taskUuid"] = json!(uuid),
        TaskerError::StepNotFound { task_uuid, step } => {
            details["taskUuid"] = json!(task_uuid);
            details["step"] = json!(step);
        }
        TaskerError::DlqEntryNotFound(uuid) => details["entryUuid"] = json!(uuid),
        TaskerError::Timeout(d) => details["timeoutMs"] = json!(d.as_millis()),
        TaskerError::UnknownEvent(id) => details["eventId"] = json!(id),
        TaskerError::Unavailable {
            resource, retry_after, ..
        } => {
            details["resource"] = json!(resource);
            details["retryAfterMs"] = json!(retry_after.as_millis());
        }
        TaskerError::Backpressure {
            queue,
            depth,
            limit,
            retry_after,
        } => {
            details["queue"] = json!(queue);
            details["depth"] = json!(depth);
            details["limit"] = json!(limit);
            details["retryAfterMs"] = json!(retry_after.as_millis());
        }
        _ => {}
    }
    native_error(details)
}

/// An argument the JavaScript side passed is malformed. `path` names the field at fault.
pub(crate) fn invalid_argument(path: &str, message: impl std::fmt::Display) -> napi::Error {
    let message = if path.is_empty() {
        format!("invalid argument: {message}")
    } else {
        format!("invalid argument '{path}': {message}")
    };
    native_error(json!({ "code": "invalid_argument", "message": message, "path": path }))
}

/// Serialization of a core value failed (a bug, not a user error).
pub(crate) fn internal(message: impl std::fmt::Display) -> napi::Error {
    native_error(json!({ "code": "internal", "message": message.to_string() }))
}
