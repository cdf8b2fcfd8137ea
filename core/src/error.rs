//! Error types of the engine. Bindings map these to their language's exceptions in one place.

use std::path::PathBuf;

use uuid::Uuid;

use crate::state::{StepState, TaskState};

/// Result alias used across the crate.
pub type Result<T, E = TaskerError> = std::result::Result<T, E>;

/// Every error the engine reports to callers.
#[derive(Debug, thiserror::Error)]
pub enum TaskerError {
    /// A template file could not be read, parsed or validated. Holds one entry per problem.
    #[error("{}", format_template_problems(.0))]
    Template(Vec<TemplateProblem>),

    /// The configuration files or `TASKER_<SECTION>__<KEY>` variables are invalid. Holds one
    /// entry per problem, each naming the file or variable and the key.
    #[error("{}", format_config_problems(.0))]
    Config(Vec<crate::config::ConfigProblem>),

    /// The task context failed the template's `input_schema` or a size limit.
    #[error("invalid task context: {0}")]
    Validation(#[from] ValidationError),

    #[error("template not found: {namespace}/{name}{}", version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default())]
    TemplateNotFound {
        namespace: String,
        name: String,
        version: Option<String>,
    },

    /// A template version registered again with another definition. The files are named so
    /// the user knows which one to edit (or whose version to bump) without searching.
    #[error(
        "template {namespace}/{name} version {version}{} is already registered{} with different content; bump the version to change it",
        path.as_deref().map(|p| format!(" in {p}")).unwrap_or_default(),
        registered_from.as_deref().map(|p| format!(" (from {p})")).unwrap_or_default()
    )]
    TemplateConflict {
        namespace: String,
        name: String,
        version: String,
        /// The file being registered, when it came from one.
        path: Option<String>,
        /// The file the stored version was registered from, when known.
        registered_from: Option<String>,
    },

    #[error("task not found: {0}")]
    TaskNotFound(Uuid),

    /// No step of that name (or uuid) in the task.
    #[error("task {task_uuid} has no step '{step}'")]
    StepNotFound { task_uuid: Uuid, step: String },

    /// An operator action the step's or task's current state does not allow; the message names
    /// the state and what is allowed.
    #[error("{0}")]
    InvalidState(String),

    #[error("dead-letter queue entry not found: {0}")]
    DlqEntryNotFound(Uuid),

    #[error("illegal task transition: {event} from {from}")]
    IllegalTaskTransition { from: TaskState, event: String },

    #[error("illegal step transition: {event} from {from}")]
    IllegalStepTransition { from: StepState, event: String },

    /// The database URL is malformed or names an unsupported scheme.
    #[error("invalid database url: {0}")]
    DatabaseUrl(String),

    /// The database could not be reached. `target` names the host/file, never credentials.
    #[error("cannot connect to database at {target}: {reason}")]
    Connect { target: String, reason: String },

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    #[error("database migration failed: {0}")]
    Migration(String),

    #[error("queue error: {0}")]
    Queue(String),

    /// RabbitMQ (`messaging.backend = "rabbitmq"`) could not be reached or dropped the
    /// connection. Messages wait in PostgreSQL meanwhile; nothing is lost.
    #[error("message broker unreachable: {0}")]
    Broker(String),

    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),

    /// A completion or call referred to a step event this worker never handed out (or already
    /// completed).
    #[error("unknown step event id {0}")]
    UnknownEvent(u64),

    #[error("worker is shut down")]
    ShutDown,

    /// A background task of the worker (dispatcher, applier, lease loop, orchestrator) died.
    /// The worker stops claiming, and `poll`/`complete` report this instead of a silent
    /// shutdown; in-flight attempts come back to other workers when their leases expire.
    #[error("worker failed: {0}")]
    WorkerFailed(String),

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A write for an attempt that no longer holds its step (it timed out, was re-claimed or
    /// cancelled), refused like a late completion.
    #[error("fenced: {0}")]
    Fenced(String),

    #[error("corrupt data in the database: {0}")]
    Corrupt(String),

    /// The circuit breaker around `resource` is open: it failed as unreachable too often, and
    /// calls are refused at once instead of waiting on it. `retry_after` is when the breaker
    /// lets the next probe through (see [`crate::breaker`]).
    #[error("{resource} unavailable: the circuit breaker is open after {reason}; retry in {} ms", retry_after.as_millis())]
    Unavailable {
        resource: &'static str,
        reason: String,
        retry_after: std::time::Duration,
    },

    /// Creating the task would put more than `limit` waiting steps on `queue` (the
    /// `backpressure.max_queue_depth` key): workers are not keeping up. Retry after
    /// `retry_after`, or add workers.
    #[error("backpressure: queue '{queue}' has {depth} steps waiting, the limit is {limit}; retry in {} ms", retry_after.as_millis())]
    Backpressure {
        queue: String,
        depth: u64,
        limit: u64,
        retry_after: std::time::Duration,
    },
}

/// One problem found while loading or validating a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    /// File the template came from, when it came from a file.
    pub file: Option<PathBuf>,
    /// `namespace/name@version` when known.
    pub template: Option<String>,
    /// Step the problem is in, when it is in a step.
    pub step: Option<String>,
    /// Field path, e.g. `retry.max_attempts`.
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut wrote = false;
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            wrote = true;
        }
        if let Some(t) = &self.template {
            write!(f, "{}{t}", if wrote { ": " } else { "" })?;
            wrote = true;
        }
        if let Some(step) = &self.step {
            write!(f, "{}step '{step}'", if wrote { ": " } else { "" })?;
            wrote = true;
        }
        if let Some(field) = &self.field {
            write!(f, "{}field '{field}'", if wrote { ": " } else { "" })?;
            wrote = true;
        }
        write!(f, "{}{}", if wrote { ": " } else { "" }, self.message)
    }
}

fn format_template_problems(problems: &[TemplateProblem]) -> String {
    match problems {
        [one] => format!("invalid template: {one}"),
        many => {
            let lines: Vec<String> = many.iter().map(|p| format!("  - {p}")).collect();
            format!("invalid template ({} problems):\n{}", many.len(), lines.join("\n"))
        }
    }
}

fn format_config_problems(problems: &[crate::config::ConfigProblem]) -> String {
    match problems {
        [one] => format!("invalid configuration: {one}"),
        many => {
            let lines: Vec<String> = many.iter().map(|p| format!("  - {p}")).collect();
            format!("invalid configuration ({} problems):\n{}", many.len(), lines.join("\n"))
        }
    }
}

/// The task context was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("at '{path}': ") })]
pub struct ValidationError {
    /// JSON pointer of the failing value inside the context (empty for the whole context).
    pub path: String,
    pub message: String,
}

impl TaskerError {
    /// Stable machine-readable code, used by bindings as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            TaskerError::Template(_) => "template_invalid",
            TaskerError::Config(_) => "config_invalid",
            TaskerError::Validation(_) => "validation_failed",
            TaskerError::TemplateNotFound { .. } => "template_not_found",
            TaskerError::TemplateConflict { .. } => "template_conflict",
            TaskerError::TaskNotFound(_) => "task_not_found",
            TaskerError::StepNotFound { .. } => "step_not_found",
            TaskerError::InvalidState(_) => "invalid_state",
            TaskerError::DlqEntryNotFound(_) => "dlq_entry_not_found",
            TaskerError::IllegalTaskTransition { .. } | TaskerError::IllegalStepTransition { .. } => {
                "illegal_transition"
            }
            TaskerError::DatabaseUrl(_) => "database_url_invalid",
            TaskerError::Connect { .. } => "database_unreachable",
            TaskerError::Database(_) => "database_error",
            TaskerError::Migration(_) => "migration_failed",
            TaskerError::Queue(_) => "queue_error",
            TaskerError::Broker(_) => "broker_unreachable",
            TaskerError::Timeout(_) => "timeout",
            TaskerError::UnknownEvent(_) => "unknown_event",
            TaskerError::ShutDown => "shut_down",
            TaskerError::WorkerFailed(_) => "worker_failed",
            TaskerError::InvalidArgument(_) => "invalid_argument",
            TaskerError::Fenced(_) => "fenced",
            TaskerError::Corrupt(_) => "corrupt_data",
            TaskerError::Unavailable { .. } => "unavailable",
            TaskerError::Backpressure { .. } => "backpressure",
        }
    }
}

impl TaskerError {
    /// Whether the transaction lost a race that running it again resolves: a deadlock, a
    /// serialization failure, a lock timeout (PostgreSQL), or a busy/locked database (SQLite).
    pub fn is_race(&self) -> bool {
        match self {
            TaskerError::Database(e) => sqlx_is_race(e),
            _ => false,
        }
    }

    /// Whether the failure is about the database being unreachable or overloaded right now
    /// (connection lost, pool exhausted, server restarting, statement timeout), or a race:
    /// the same work may succeed later, so it must be held and retried, never dropped.
    pub fn is_transient(&self) -> bool {
        match self {
            TaskerError::Database(e) => sqlx_is_transient(e),
            TaskerError::Connect { .. } | TaskerError::Unavailable { .. } | TaskerError::Broker(_) => true,
            _ => false,
        }
    }

    /// Whether the failure says the database server is away (as opposed to answering with an
    /// error): a lost or refused connection, a pool timeout, the server shutting down or
    /// refusing connections. What the circuit breaker counts; races and statement timeouts are
    /// the server answering, and do not count.
    pub fn is_unreachable(&self) -> bool {
        match self {
            TaskerError::Connect { .. } | TaskerError::Broker(_) => true,
            TaskerError::Database(e) => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                    // connection_exception (08…), admin/crash shutdown, cannot_connect_now,
                    // too_many_connections.
                    code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
                }),
                _ => false,
            },
            _ => false,
        }
    }
}

impl TaskerError {
    /// Whether the database refused the *data* of a statement (SQLSTATE classes 22 data
    /// exception, 23 integrity constraint, 54 program limit exceeded): the same values would be
    /// refused again, so the completion carrying them is failed instead of retried.
    pub fn is_data_refusal(&self) -> bool {
        match self {
            TaskerError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|c| {
                // PostgreSQL SQLSTATE classes 22 (data exception), 23 (integrity constraint) and
                // 54 (program limit); SQLite result codes TOOBIG, CONSTRAINT and MISMATCH, whose
                // extended codes keep the primary code in their low byte.
                c.starts_with("22")
                    || c.starts_with("23")
                    || c.starts_with("54")
                    || c.parse::<i32>()
                        .is_ok_and(|n| matches!(n & 0xff, 18..=20) && n < 10_000)
            }),
            _ => false,
        }
    }
}

/// See [`TaskerError::is_race`].
pub fn sqlx_is_race(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // PostgreSQL: serialization_failure, deadlock_detected, lock_not_available.
            Some("40001" | "40P01" | "55P03")
            // SQLite: SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
            | Some("5" | "6" | "261" | "262" | "517" | "773")
        ),
        _ => false,
    }
}

/// See [`TaskerError::is_transient`].
pub fn sqlx_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            sqlx_is_race(e)
                || db.code().is_some_and(|code| {
                    // connection_exception (08…), query_canceled (statement_timeout),
                    // admin/crash shutdown, cannot_connect_now, too_many_connections,
                    // idle_in_transaction_session_timeout.
                    code.starts_with("08")
                        || matches!(code.as_ref(), "57014" | "57P01" | "57P02" | "57P03" | "53300" | "25P03")
                })
        }
        _ => false,
    }
}
