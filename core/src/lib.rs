//! # tasker-core
//!
//! The engine behind Tasker: task templates (DAGs of steps), task and step state machines,
//! persistence on SQLite or PostgreSQL, queueing with visibility timeouts (a queue table on
//! SQLite, PGMQ on PostgreSQL), orchestration with retries and backoff, and the pull-based worker
//! API that the Python, Ruby and TypeScript packages are built on.
//!
//! * [`Tasker`]: connect, register templates, create / get / list / cancel / wait for tasks.
//! * [`worker::Worker`]: the poll/complete dispatch contract (read its module docs).
//! * [`handler`]: Rust step handlers on the same path.
//! * [`orchestrator`]: retries and timeouts that no completion triggers.
//! * [`testing`]: unit-testing handlers without a database.

pub mod backoff;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
pub mod handler;
pub mod limits;
pub mod orchestrator;
pub mod outcome;
pub mod runtime;
pub mod scratch;
pub mod state;
pub mod store;
pub mod template;
pub mod testing;
pub mod worker;

pub use engine::{
    describe_database, resolve_database_url, CreatedTask, EngineEvent, RegisteredTemplate, TaskRequest, Tasker,
    TaskerOptions, DEFAULT_DATABASE_URL,
};
pub use engine::{DlqStats, QueuedDlqEntry, RecoveryOptions, StepDetail, TaskHealth, WorkerInfo};
pub use error::{Result, TaskerError, TemplateProblem, ValidationError};
pub use outcome::{StepFailure, StepOutcome};
pub use store::{
    DlqEntry, DlqFilter, DlqReason, DlqStatus, StepSummary, TaskDetail, TaskFilter, TaskSummary, Transition,
    WorkerRecord,
};
pub use worker::{CancelSignal, DispatchMode, Poll, StepEvent, Worker, WorkerConfig};
