//! How a failed command is reported: `error: <the engine's message>` and, when there is an
//! obvious next step, `hint: <what to run>` on stderr, exit status 1. With `--json` the same is
//! one JSON object on stderr, `{"error": code, "message": …, "hint": …}`, `code` being the
//! engine's stable error code (`step_not_found`, `invalid_state`, …).
//!
//! Usage errors (unknown flags, a missing argument, a `--result` that is not JSON) are clap's,
//! exit status 2.

use std::process::ExitCode;

use serde_json::json;
use tasker_core::TaskerError;

/// A command that failed.
#[derive(Debug)]
pub struct Failure {
    pub error: TaskerError,
    /// What to do next, when the generic hint for the error is not good enough.
    pub hint: Option<String>,
    /// Report it as JSON.
    pub json: bool,
}

impl From<TaskerError> for Failure {
    fn from(error: TaskerError) -> Self {
        Self {
            error,
            hint: None,
            json: false,
        }
    }
}

impl Failure {
    /// Prints the failure on stderr; the exit status is 1.
    pub fn report(self) -> ExitCode {
        let hint = self.hint.or_else(|| generic_hint(&self.error));
        if self.json {
            let body = json!({
                "error": self.error.code(),
                "message": self.error.to_string(),
                "hint": hint,
            });
            eprintln!("{body}");
        } else {
            eprintln!("error: {}", self.error);
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
        }
        ExitCode::FAILURE
    }
}

/// Adds context to an engine error: the hint (if the error has none better) and the output mode.
pub trait Context<T> {
    fn context(self, json: bool, hint: impl FnOnce(&TaskerError) -> Option<String>) -> Result<T, Failure>;
}

impl<T> Context<T> for Result<T, TaskerError> {
    fn context(self, json: bool, hint: impl FnOnce(&TaskerError) -> Option<String>) -> Result<T, Failure> {
        self.map_err(|error| Failure {
            hint: hint(&error),
            error,
            json,
        })
    }
}

impl<T> Context<T> for Result<T, Failure> {
    fn context(self, json: bool, hint: impl FnOnce(&TaskerError) -> Option<String>) -> Result<T, Failure> {
        self.map_err(|f| Failure {
            hint: f.hint.or_else(|| hint(&f.error)),
            error: f.error,
            json: json || f.json,
        })
    }
}

/// What to run next, for errors whose next step does not depend on the command.
pub fn generic_hint(error: &TaskerError) -> Option<String> {
    match error {
        TaskerError::TaskNotFound(_) => Some("`tasker task list` shows recent tasks".into()),
        TaskerError::StepNotFound { task_uuid, .. } => {
            Some(format!("`tasker step list {task_uuid}` shows the task's steps"))
        }
        TaskerError::DlqEntryNotFound(_) => {
            Some("`tasker dlq list` shows entries; `tasker dlq list --task <task-uuid>` a task's entries".into())
        }
        TaskerError::DatabaseUrl(_) | TaskerError::Connect { .. } => {
            Some("pass --database-url sqlite://PATH or postgres://…, or set TASKER_DATABASE_URL".into())
        }
        _ => None,
    }
}
