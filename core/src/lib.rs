//! # tasker-core
//!
//! The engine behind Tasker: task templates (DAGs of steps), task and step state machines,
//! persistence on SQLite or PostgreSQL, queueing with visibility timeouts (a queue table on
//! SQLite, PGMQ on PostgreSQL), orchestration with retries and backoff, and the pull-based worker
//! API that the Python, Ruby and TypeScript packages are built on. Rust applications use it
//! directly: handlers are async closures or [`handler::StepHandler`] implementations.
//!
//! * [`Tasker`]: connect, register templates, create / get / list / cancel / wait for tasks,
//!   operator actions, the dead-letter queue, events.
//! * [`handler`]: Rust step handlers ([`handler::HandlerRegistry`], [`handler::run_handlers`]).
//! * [`worker::Worker`]: the poll/complete dispatch contract (read its module docs).
//! * [`testing`]: unit-testing handlers without a database.
//! * [`diagram`]: Mermaid flowcharts of templates and tasks.
//! * [`orchestrator`]: retries and timeouts that no completion triggers.
//! * [`config`]: the layered configuration the CLI and every binding read.
//! * [`logging`]: the core's log records, handed to the host language's logger.
//!
//! The guide for Rust users is `docs/rust.md` in the repository; `docs/parity.md` maps every API
//! to its name in the other languages.
//!
//! ## Connect, register, handle, run, wait
//!
//! The workflow of every getting-started guide (`docs/snippets/getting_started.yaml`): validate an
//! order, then compute its total.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use serde_json::json;
//! use tasker_core::handler::{run_handlers, HandlerRegistry};
//! use tasker_core::{StepFailure, StepSuccess, TaskRequest, Tasker, Worker, WorkerConfig};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> tasker_core::Result<()> {
//! # let dir = tempfile::tempdir().expect("a temporary directory");
//! # let database_url = format!("sqlite://{}", dir.path().join("tasker.db").display());
//! # let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/snippets/getting_started.yaml");
//! // Connect: an embedded SQLite file here; `postgres://…` in production.
//! let tasker = Tasker::connect(Some(&database_url)).await?;
//! // Register: a YAML file or a directory of them (all or nothing).
//! tasker.register_templates(templates).await?;
//!
//! // Handlers, by the template's `handler.callable`.
//! let mut handlers = HandlerRegistry::new();
//! handlers.register_fn("getting_started.validate_order", |step| async move {
//!     let items = step.input()["items"].as_array().cloned().unwrap_or_default();
//!     if items.iter().any(|item| item["quantity"].as_u64() > Some(100)) {
//!         return Err(StepFailure::permanent("quantity_too_large", "at most 100 of an item per order"));
//!     }
//!     Ok(json!({"order_id": step.input()["order_id"], "lines": items.len()}))
//! });
//! handlers.register_fn("getting_started.compute_total", |step| async move {
//!     let subtotal: f64 = step.input()["items"]
//!         .as_array()
//!         .into_iter()
//!         .flatten()
//!         .map(|item| item["price"].as_f64().unwrap_or(0.0) * item["quantity"].as_f64().unwrap_or(0.0))
//!         .sum();
//!     let tax_rate = step.config()["tax_rate"].as_f64().unwrap_or(0.0);
//!     let total = (subtotal * (1.0 + tax_rate) * 100.0).round() / 100.0;
//!     let order = step.dependency_result("validate_order").cloned().unwrap_or_default();
//!     // A typed result is checked on the way to JSON: NaN or infinity would fail the step clearly.
//!     Ok(StepSuccess::serialize(&json!({"order_id": order["order_id"], "total": total}))?
//!         .with_metadata(json!({"lines": order["lines"]})))
//! });
//!
//! // A worker on the template's queue (its namespace), running the handlers.
//! let worker = Worker::start(&tasker, WorkerConfig::new(vec!["getting_started".into()])).await?;
//! let running = tokio::spawn(run_handlers(worker.clone(), Arc::new(handlers)));
//!
//! // Create a task and wait for it.
//! let created = tasker
//!     .create_task(TaskRequest {
//!         namespace: "getting_started".into(),
//!         name: "order_total".into(),
//!         context: json!({"order_id": 7, "items": [{"price": 10.0, "quantity": 3}]}),
//!         ..Default::default()
//!     })
//!     .await?;
//! let done = tasker.wait_for_task(created.task.task_uuid, Duration::from_secs(30)).await?;
//! assert_eq!(done.task.state.as_str(), "complete");
//! let total = done.step("compute_total").and_then(|s| s.results.clone());
//! assert_eq!(total, Some(json!({"order_id": 7, "total": 36.0})));
//!
//! worker.shutdown(Duration::from_secs(5)).await?;
//! running.await.expect("the handlers stopped");
//! tasker.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Testing a handler without a database
//!
//! See [`testing`]: build a [`StepEvent`] with [`testing::TestEvent`], run it with
//! [`testing::run`], assert with [`testing::OutcomeAssertions`].

pub mod backoff;
pub mod breaker;
pub mod config;
pub mod diagram;
pub mod engine;
pub mod error;
pub mod events;
pub mod handler;
pub mod limits;
pub mod logging;
pub mod messaging;
pub mod orchestrator;
pub mod outcome;
pub mod runtime;
pub mod scratch;
pub mod serialize;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod testing;
pub mod worker;

pub use engine::{
    describe_database, resolve_database_url, CreatedTask, EngineEvent, RegisteredTemplate, TaskRequest, Tasker,
    TaskerOptions, TemplateInfo, DEFAULT_DATABASE_URL,
};
pub use engine::{
    BackpressureOptions, DlqStats, HealthCheck, HealthReport, QueuedDlqEntry, RecoveryOptions, StepDetail, TaskHealth,
    WorkerInfo,
};
pub use error::{Result, TaskerError, TemplateProblem, ValidationError};
pub use outcome::{StepFailure, StepOutcome, StepSuccess};
pub use store::{
    BucketCount, DlqEntry, DlqFilter, DlqReason, DlqStatus, Overview, OverviewWindow, QueueDepth, StateCount,
    StepSummary, TaskDetail, TaskFilter, TaskSummary, Transition, WorkerRecord,
};
pub use worker::{CancelSignal, DispatchMode, Poll, StepEvent, Worker, WorkerConfig};
