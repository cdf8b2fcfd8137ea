//! The API's one error type and the one place where engine errors become HTTP statuses.
//!
//! Every error response is `{"error": code, "message": …, "details": …}`. The codes are the
//! engine's stable [`TaskerError::code`] strings (the same the bindings raise), plus a few of
//! the API's own (`unauthenticated`, `forbidden`, `overloaded`, …). Internal failures answer
//! with a generic message: the real one (which may hold SQL or a path) only goes to the log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use tasker_core::TaskerError;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `task_not_found`, `forbidden`, `overloaded`.
    pub error: String,
    /// A human-readable explanation (never SQL, a stack trace or an internal path).
    pub message: String,
    /// Structured detail when there is some (template problems, the missing permission, …).
    pub details: Value,
}

/// An error answered to a client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Value,
    /// Seconds for the `Retry-After` header (503 and 429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            details: Value::Null,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 naming the permission the credential lacks.
    pub fn forbidden(permission: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this credential lacks the permission '{permission}'"),
        )
        .with_details(serde_json::json!({ "required_permission": permission }))
    }

    /// 503 with `Retry-After`: the server is saturated and the client should come back.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).retry_after(1)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error (the server log has the details)",
        )
    }
}

impl From<TaskerError> for ApiError {
    fn from(e: TaskerError) -> Self {
        let code = e.code();
        let retry_secs = |d: std::time::Duration| d.as_millis().div_ceil(1000).max(1) as u64;
        // The engine refused at once: too many steps waiting (backpressure), or the database
        // breaker is open. Both say when to come back.
        match &e {
            TaskerError::Backpressure {
                queue,
                depth,
                limit,
                retry_after,
            } => {
                tracing::info!(error = %e, "task creation refused: backpressure");
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string())
                    .retry_after(retry_secs(*retry_after))
                    .with_details(serde_json::json!({ "queue": queue, "depth": depth, "limit": limit }));
            }
            TaskerError::Unavailable {
                resource, retry_after, ..
            } => {
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string())
                    .retry_after(retry_secs(*retry_after))
                    .with_details(serde_json::json!({ "resource": resource, "cause": "circuit_breaker_open" }));
            }
            _ => {}
        }
        // Transient database trouble (pool exhausted, connection lost, a lost race that kept
        // losing) is saturation, not a bug: the client may retry.
        if e.is_transient() || matches!(e, TaskerError::Timeout(_) | TaskerError::ShutDown) {
            tracing::warn!(error = %e, code, "request failed transiently");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is busy or unreachable; retry shortly",
            )
            .retry_after(1)
            .with_details(serde_json::json!({ "cause": code }));
        }
        let status = match &e {
            TaskerError::Template(_) | TaskerError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            TaskerError::TemplateNotFound { .. }
            | TaskerError::TaskNotFound(_)
            | TaskerError::StepNotFound { .. }
            | TaskerError::DlqEntryNotFound(_) => StatusCode::NOT_FOUND,
            TaskerError::TemplateConflict { .. }
            | TaskerError::InvalidState(_)
            | TaskerError::IllegalTaskTransition { .. }
            | TaskerError::IllegalStepTransition { .. }
            | TaskerError::Fenced(_) => StatusCode::CONFLICT,
            TaskerError::Backpressure { .. } | TaskerError::Unavailable { .. } | TaskerError::Broker(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            TaskerError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            TaskerError::Config(_)
            | TaskerError::DatabaseUrl(_)
            | TaskerError::Connect { .. }
            | TaskerError::Database(_)
            | TaskerError::Migration(_)
            | TaskerError::Queue(_)
            | TaskerError::Timeout(_)
            | TaskerError::UnknownEvent(_)
            | TaskerError::ShutDown
            | TaskerError::WorkerFailed(_)
            | TaskerError::Corrupt(_) => {
                tracing::error!(error = %e, code, "request failed");
                return ApiError::internal();
            }
        };
        let details = match &e {
            TaskerError::Template(problems) => serde_json::json!({
                "problems": problems.iter().map(problem_json).collect::<Vec<_>>()
            }),
            TaskerError::Validation(v) => serde_json::json!({ "path": v.path }),
            _ => Value::Null,
        };
        ApiError::new(status, code, e.to_string()).with_details(details)
    }
}

/// One template problem as JSON (file, template, step, field, message).
pub fn problem_json(p: &tasker_core::TemplateProblem) -> Value {
    serde_json::json!({
        "template": p.template,
        "step": p.step,
        "field": p.field,
        "message": p.message,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
            details: self.details,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;
