//! The engine: [`Tasker`] is the client API (register templates, create/get/list/cancel/wait for
//! tasks) and holds the orchestration logic that workers and the orchestrator run.
//!
//! Any number of processes may run engines against one database at once; they coordinate
//! only through it (compare-and-swap state changes, queue visibility timeouts, row locks).

mod backpressure;
mod dispatch;
mod dlq;
mod events;
mod recovery;
mod signals;
mod step_types;
mod telemetry;
mod templates;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use uuid::Uuid;

pub use backpressure::BackpressureOptions;
pub use dispatch::{ClaimBatch, ClaimedStep, Completion, CompletionReport, EagerClaim, MAX_LOST_LEASES};
pub use dlq::{DlqStats, Health, QueuedDlqEntry, RecoveryOptions, StalenessThresholds, TaskHealth, WorkerInfo};
pub use recovery::StepDetail;
pub use step_types::{instance_name, StepTypeLimits, BATCH_KEY, DECISION_KEY};
pub use telemetry::{HealthCheck, HealthReport};
pub use templates::{CompiledTemplate, RegisteredTemplate, TemplateInfo};

use crate::breaker::{BreakerOptions, CircuitBreaker};
use crate::error::{Result, TaskerError};
use crate::events::EventOptions;
use crate::state::{StepState, StepTrigger, TaskState, TaskTrigger};
use crate::store::*;
use crate::telemetry::trace::TraceContext;
use crate::telemetry::{MetricsReader, MetricsSource, Telemetry, TelemetryOptions};
use crate::template::LoadedTemplate;
use events::EventHub;
use signals::SignalHub;
use templates::TemplateCache;

/// Default database when none is configured: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./tasker.db";

/// The database URL to use: `explicit`, else `TASKER_DATABASE_URL`, else `DATABASE_URL`, else
/// [`DEFAULT_DATABASE_URL`].
pub fn resolve_database_url(explicit: Option<&str>) -> String {
    resolve_database_url_with(explicit, None)
}

/// [`resolve_database_url`] with a `configured` URL (the configuration's `database.url`)
/// between the environment variables and the default.
pub fn resolve_database_url_with(explicit: Option<&str>, configured: Option<&str>) -> String {
    explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("TASKER_DATABASE_URL").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()))
        .or_else(|| configured.map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct TaskerOptions {
    /// `sqlite://path`, `sqlite::memory:` is not supported (processes must share a file),
    /// a plain file path, or `postgres://…`. `None` resolves with [`resolve_database_url`].
    pub database_url: Option<String>,
    /// PostgreSQL pool size; at least 2 (LISTEN holds one). Ignored on SQLite.
    pub max_connections: u32,
    /// Listen for NOTIFY wake-ups (PostgreSQL).
    pub listen: bool,
    /// How long a call waits for a pooled connection before failing (PostgreSQL).
    pub acquire_timeout: Duration,
    /// PostgreSQL session limits: a statement, a lock wait, a transaction left idle.
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub idle_in_transaction_timeout: Duration,
    /// The SQLite file's readers and lock waits. Ignored on PostgreSQL.
    pub sqlite: SqliteSettings,
    /// What decisions and batches may create.
    pub step_type_limits: StepTypeLimits,
    /// Staleness thresholds, detector and heartbeat intervals.
    pub recovery: RecoveryOptions,
    /// Which lifecycle events are durable, and how long the event log keeps them.
    pub events: EventOptions,
    /// Traces and metrics export.
    pub telemetry: TelemetryOptions,
    /// The circuit breaker around the database (PostgreSQL; a SQLite file has no server to be
    /// away).
    pub circuit_breaker: BreakerOptions,
    /// The limit on waiting steps beyond which task creation is refused.
    pub backpressure: BackpressureOptions,
    /// Where step messages travel: the database's queue, or RabbitMQ (PostgreSQL only).
    pub messaging: crate::messaging::MessagingOptions,
}

impl Default for TaskerOptions {
    fn default() -> Self {
        Self {
            database_url: None,
            max_connections: 10,
            listen: true,
            acquire_timeout: PgSettings::default().acquire_timeout,
            statement_timeout: PgSettings::default().statement_timeout,
            lock_timeout: PgSettings::default().lock_timeout,
            idle_in_transaction_timeout: PgSettings::default().idle_in_transaction_timeout,
            sqlite: SqliteSettings::default(),
            step_type_limits: StepTypeLimits::default(),
            recovery: RecoveryOptions::default(),
            events: EventOptions::default(),
            telemetry: TelemetryOptions::default(),
            circuit_breaker: BreakerOptions::default(),
            backpressure: BackpressureOptions::default(),
            messaging: crate::messaging::MessagingOptions::default(),
        }
    }
}

/// A state change this process committed: shown live (the CLI demo), broadcast in-process as a
/// fast event, and — when lifecycle events are durable — written to the event log in the same
/// transaction (see [`crate::events`]).
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    Step {
        task_uuid: Uuid,
        step_uuid: Uuid,
        step_name: String,
        from: StepState,
        to: StepState,
        attempt: i32,
        /// The state machine's trigger (`claim`, `succeed`, `schedule_retry`, …).
        trigger: &'static str,
        /// What the audit row records about the change (worker, error, operator, result …).
        details: Value,
    },
    Task {
        task_uuid: Uuid,
        from: Option<TaskState>,
        to: TaskState,
        trigger: &'static str,
        details: Value,
    },
    /// Another catalog event (a DLQ entry written, …): its name and payload.
    Other {
        name: &'static str,
        task_uuid: Option<Uuid>,
        payload: Value,
    },
}

/// A request to create a task.
#[derive(Debug, Clone, Default)]
pub struct TaskRequest {
    pub namespace: String,
    pub name: String,
    /// `None` picks the highest registered version.
    pub version: Option<String>,
    pub context: Value,
    pub initiator: Option<String>,
    pub source_system: Option<String>,
    pub reason: Option<String>,
    pub tags: Vec<String>,
    pub priority: i32,
    /// Creating twice with the same key returns the first task.
    pub idempotency_key: Option<String>,
    /// Opt-in strict identity: the task is identified by a hash of its namespace, name, version
    /// and context, so creating the same request twice returns the first task (`created ==
    /// false`). Off by default: every request creates a task. Cannot be combined with an
    /// `idempotency_key` (which names the identity itself).
    pub strict_identity: bool,
    /// A W3C `traceparent`: the task joins the caller's trace (its correlation id becomes the
    /// trace id, and its span is a child of the caller's span).
    pub traceparent: Option<String>,
}

/// The result of [`Tasker::create_task`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CreatedTask {
    pub task: TaskSummary,
    /// `false` when the idempotency key matched an existing task.
    pub created: bool,
}

/// Handle to the engine. Cheap to clone; all clones share one pool and cache.
#[derive(Debug, Clone)]
pub struct Tasker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    templates: TemplateCache,
    signals: SignalHub,
    events: broadcast::Sender<EngineEvent>,
    /// Where we are connected, without credentials (for messages).
    target: String,
    /// Cross-process signals arrive (PostgreSQL with LISTEN on).
    listening: bool,
    limits: StepTypeLimits,
    recovery: RecoveryOptions,
    /// The event log's gate, the fast broadcast and its identity cache.
    event_hub: EventHub,
    /// Metrics, spans and their exporter.
    telemetry: Telemetry,
    /// The breaker `store` is behind, when it is behind one.
    breaker: Option<Arc<CircuitBreaker>>,
    backpressure: backpressure::Backpressure,
    /// The workers this process started on this engine, for [`Tasker::health`].
    local_workers: telemetry::LocalWorkers,
    /// The RabbitMQ connection, with `messaging.backend = "rabbitmq"`.
    broker: Option<Arc<crate::messaging::broker::Broker>>,
}

/// Describes a database URL without credentials: `scheme://host:port/db`, or the SQLite file.
/// Whatever the scheme, and even when the URL does not parse, the user-info part (and any
/// `password=` query parameter) never appears in the result.
pub fn describe_database(url: &str) -> String {
    if url.starts_with("sqlite:") || !url.contains("://") {
        return sqlite_path(url).to_owned();
    }
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("localhost");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}{}", u.scheme(), u.path())
        }
        Err(_) => {
            // Unparsable: keep the scheme and whatever follows the last '@' up to a query.
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let rest = rest.split(['?', '#']).next().unwrap_or_default();
            let host = match rest.rsplit_once('@') {
                Some((_, host)) => host,
                // No '@': only a plain `host[:port][/db]` is safe to show.
                None if looks_like_host(rest) => rest,
                None => "…",
            };
            format!("{scheme}://{host}")
        }
    }
}

fn looks_like_host(s: &str) -> bool {
    let authority = s.split('/').next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((host, port)) => !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()),
        None => true,
    }
}

fn sqlite_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

impl Tasker {
    /// Connects with default options to `database_url` (or the resolved default).
    pub async fn connect(database_url: Option<&str>) -> Result<Self> {
        Self::connect_with(TaskerOptions {
            database_url: database_url.map(str::to_owned),
            ..TaskerOptions::default()
        })
        .await
    }

    /// Connects, runs migrations (and installs PGMQ on PostgreSQL if needed).
    pub async fn connect_with(options: TaskerOptions) -> Result<Self> {
        let url = resolve_database_url(options.database_url.as_deref());
        let target = describe_database(&url);
        let connect_error = |e: TaskerError| match e {
            TaskerError::Database(db) => TaskerError::Connect {
                target: target.clone(),
                reason: redact(&db.to_string(), &url),
            },
            other => other,
        };
        let store: Arc<dyn Store> = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = sqlx::postgres::PgConnectOptions::from_str(&url)
                .map_err(|e| TaskerError::DatabaseUrl(redact(&e.to_string(), &url)))?;
            Arc::new(
                PostgresStore::connect(
                    opts,
                    &PgSettings {
                        max_connections: options.max_connections,
                        listen: options.listen,
                        acquire_timeout: options.acquire_timeout,
                        statement_timeout: options.statement_timeout,
                        lock_timeout: options.lock_timeout,
                        idle_in_transaction_timeout: options.idle_in_transaction_timeout,
                    },
                )
                .await
                .map_err(connect_error)?,
            )
        } else if url.contains("://") && !url.starts_with("sqlite:") {
            return Err(TaskerError::DatabaseUrl(format!(
                "unsupported scheme in '{target}': use sqlite://PATH or postgres://…"
            )));
        } else {
            let path = sqlite_path(&url);
            if path.is_empty() || path == ":memory:" {
                return Err(TaskerError::DatabaseUrl(
                    "SQLite needs a file path (an in-memory database cannot be shared with workers)".into(),
                ));
            }
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            Arc::new(
                SqliteStore::connect(opts, &options.sqlite)
                    .await
                    .map_err(connect_error)?,
            )
        };
        // Connecting went to the database directly: an unreachable server fails here with its
        // real reason. From now on calls go through the breaker.
        let (store, breaker) = if options.circuit_breaker.enabled && store.backend() == Backend::Postgres {
            let breaker = CircuitBreaker::new("database", options.circuit_breaker.clone(), std::time::Instant::now());
            let guarded: Arc<dyn Store> = Arc::new(GuardedStore::new(store, Arc::clone(&breaker)));
            (guarded, Some(breaker))
        } else {
            (store, None)
        };
        // RabbitMQ carries the messages; PostgreSQL (behind its breaker) keeps every state and
        // the outbox.
        let (store, broker): (Arc<dyn Store>, _) = match options.messaging.backend {
            crate::messaging::MessagingBackend::Database => (store, None),
            crate::messaging::MessagingBackend::Rabbitmq => {
                let rabbit = RabbitStore::new(
                    store,
                    options.messaging.rabbitmq.clone(),
                    options.circuit_breaker.clone(),
                )?;
                let broker = Arc::clone(rabbit.broker());
                (Arc::new(rabbit), Some(broker))
            }
        };
        let signals = SignalHub::new();
        if let Some(remote) = store.subscribe_remote() {
            signals.forward(remote);
        }
        let (events, _) = broadcast::channel(4096);
        let listening = options.listen && store.backend() == Backend::Postgres;
        let inner = Arc::new(Inner {
            listening,
            limits: options.step_type_limits,
            recovery: options.recovery,
            event_hub: EventHub::new(options.events),
            telemetry: Telemetry::new(options.telemetry),
            breaker,
            backpressure: backpressure::Backpressure::new(options.backpressure),
            local_workers: telemetry::LocalWorkers::default(),
            broker,
            store,
            templates: TemplateCache::default(),
            signals,
            events,
            target,
        });
        let source: MetricsSource = Arc::downgrade(&inner) as Weak<dyn MetricsReader>;
        inner.telemetry.start_exporter(source);
        Ok(Self { inner })
    }

    /// The circuit breaker around the database, where there is one (PostgreSQL, unless
    /// `circuit_breaker.enabled` is off): its state, what opened it, how often.
    pub fn breaker_status(&self) -> Option<crate::breaker::BreakerStatus> {
        self.inner.breaker.as_ref().map(|b| b.status(std::time::Instant::now()))
    }

    /// The RabbitMQ connection, when messages travel over RabbitMQ (`messaging.backend`).
    pub fn broker(&self) -> Option<&Arc<crate::messaging::broker::Broker>> {
        self.inner.broker.as_ref()
    }

    /// Which backend this engine uses.
    pub fn backend(&self) -> Backend {
        self.inner.store.backend()
    }

    /// The database, without credentials.
    pub fn database(&self) -> &str {
        &self.inner.target
    }

    /// The store (for tools and tests that need raw access).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Live events of this process.
    pub fn subscribe_events(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// The recovery options it was connected with.
    pub fn recovery_options(&self) -> RecoveryOptions {
        self.inner.recovery
    }

    pub(crate) fn subscribe_signals(&self) -> broadcast::Receiver<RemoteSignal> {
        self.inner.signals.subscribe()
    }

    pub(crate) fn publish_signal(&self, signal: RemoteSignal) {
        self.inner.signals.publish(signal);
    }

    pub(crate) fn emit(&self, event: impl FnOnce() -> EngineEvent) {
        if self.inner.events.receiver_count() > 0 {
            let _ = self.inner.events.send(event());
        }
    }

    /// Loads, validates and registers every template in a file or directory (for the current
    /// `TASKER_ENV`). All or nothing: unless every file is valid and no template clashes with a
    /// version already registered with other content (or with another file), nothing is stored.
    pub async fn register_templates(&self, path: impl AsRef<Path>) -> Result<Vec<RegisteredTemplate>> {
        let loaded = templates::load(path.as_ref())?;
        templates::register(self.inner.store.as_ref(), &self.inner.templates, &loaded).await
    }

    /// Registers one loaded template.
    pub async fn register_template(&self, loaded: &LoadedTemplate) -> Result<RegisteredTemplate> {
        let mut registered = self.register_loaded_templates(std::slice::from_ref(loaded)).await?;
        registered
            .pop()
            .ok_or_else(|| TaskerError::Corrupt("registering a template returned nothing".into()))
    }

    /// Registers templates already loaded (e.g. with [`crate::template::parse_str`]), all or
    /// nothing, in one transaction: a conflict in any of them stores none.
    pub async fn register_loaded_templates(&self, loaded: &[LoadedTemplate]) -> Result<Vec<RegisteredTemplate>> {
        templates::register(self.inner.store.as_ref(), &self.inner.templates, loaded).await
    }

    /// Every registered template version (namespace, name, version, description, steps,
    /// queues, source file, definition), ordered by namespace, name and version.
    pub async fn list_templates(&self) -> Result<Vec<TemplateInfo>> {
        self.inner
            .store
            .list_templates()
            .await?
            .into_iter()
            .map(TemplateInfo::from_row)
            .collect()
    }

    /// One registered template version; without a version, the highest registered one.
    /// [`TaskerError::TemplateNotFound`] when there is none. (The compiled form the engine runs is
    /// [`Tasker::template`].)
    pub async fn get_template(&self, namespace: &str, name: &str, version: Option<&str>) -> Result<TemplateInfo> {
        let compiled = self.template(namespace, name, version).await?;
        let row =
            self.inner.store.template_by_id(compiled.id).await?.ok_or_else(|| {
                TaskerError::Corrupt(format!("template id {} was resolved but is missing", compiled.id))
            })?;
        TemplateInfo::from_row(row)
    }

    /// The compiled template of `(namespace, name, version)`.
    pub async fn template(&self, namespace: &str, name: &str, version: Option<&str>) -> Result<Arc<CompiledTemplate>> {
        self.inner
            .templates
            .resolve(self.inner.store.as_ref(), namespace, name, version)
            .await
    }

    pub(crate) async fn template_by_id(&self, id: i64) -> Result<Arc<CompiledTemplate>> {
        self.inner.templates.get(self.inner.store.as_ref(), id).await
    }

    /// Creates a task and enqueues its root steps, in one transaction. With an idempotency key,
    /// a second call returns the first task (`created == false`) and writes nothing.
    pub async fn create_task(&self, request: TaskRequest) -> Result<CreatedTask> {
        let store = self.inner.store.as_ref();
        let (namespace, name, version) = (&request.namespace, &request.name, request.version.as_deref());
        // A cached "highest version" is checked by the insert itself; when a newer version was
        // registered elsewhere meanwhile, creation resolves from the store and runs once more
        // (a fresh resolution carries no such check, so the second run is the last).
        for fresh in [false, true] {
            let resolved = self
                .inner
                .templates
                .resolve_for_creation(store, namespace, name, version, fresh)
                .await?;
            if let Some(created) = self.create_with(resolved, &request).await? {
                return Ok(created);
            }
        }
        Err(TaskerError::Corrupt(
            "a task creation without a template guard was refused as superseded".into(),
        ))
    }

    /// [`Tasker::create_task`] with its template resolved; `None` when the store refused it
    /// because a newer version of the template exists ([`InsertedTask::TemplateSuperseded`]).
    async fn create_with(
        &self,
        resolved: templates::ForCreation,
        request: &TaskRequest,
    ) -> Result<Option<CreatedTask>> {
        let template = resolved.template;
        template.validator.validate(&request.context)?;
        let caller_trace = request
            .traceparent
            .as_deref()
            .map(TraceContext::parse)
            .transpose()
            .map_err(|e| TaskerError::InvalidArgument(format!("traceparent: {e}")))?;
        let t = &template.template;
        // Milliseconds, the precision SQLite stores: the summary returned below is then exactly
        // what a later read gives back, on either backend.
        let now = Utc::now().trunc_subsecs(3);
        let task_uuid = Uuid::now_v7();
        let identity_hash =
            match (&request.idempotency_key, request.strict_identity) {
                (Some(_), true) => return Err(TaskerError::InvalidArgument(
                    "strict_identity and idempotency_key cannot be combined: a key names the task's identity itself, \
                     strict identity derives it from namespace, name, version and context"
                        .into(),
                )),
                (Some(key), false) => identity_digest(&[&t.namespace_name, &t.name, key]),
                // The version is part of a strict identity: the same context on a new version is a
                // new task. The context's keys are sorted so that key order does not matter.
                (None, true) => identity_digest(&[
                    "strict",
                    &t.namespace_name,
                    &t.name,
                    &t.version,
                    &canonical_json(&request.context),
                ]),
                (None, false) => task_uuid.to_string(),
            };
        // The steps that need no run-time choice; decisions and batches create the rest.
        let planned = step_types::plan_steps(&template, &[], Vec::new());
        let mut steps = Vec::with_capacity(planned.len());
        let mut edges = Vec::new();
        let mut messages = Vec::new();
        let mut step_transitions = Vec::new();
        for p in planned {
            let s = &t.steps[p.index];
            let state = if p.pending_parents == 0 {
                StepState::Enqueued
            } else {
                StepState::Pending
            };
            edges.extend(p.parents.iter().map(|&parent| (parent, p.step_uuid)));
            let queue = template.queue_of(s);
            if state == StepState::Enqueued {
                messages.push(OutgoingMessage {
                    queue: queue.clone(),
                    body: StepMessage {
                        step_uuid: p.step_uuid,
                        task_uuid,
                        attempt: 0,
                    },
                    hidden_for: None,
                    priority: request.priority,
                });
                step_transitions.push(TransitionRecord {
                    entity_uuid: p.step_uuid,
                    task_uuid,
                    from_state: Some(StepState::Pending.as_str()),
                    to_state: StepState::Pending.apply(StepTrigger::Enqueue)?.as_str(),
                    event: StepTrigger::Enqueue.as_str(),
                    metadata: Value::Object(Default::default()),
                    at: now,
                });
            }
            steps.push(new_step(
                &template,
                p.index,
                p.step_uuid,
                p.name,
                state,
                p.pending_parents,
            ));
        }
        // Creation walks pending → initializing → enqueuing_steps → steps_in_process inside one
        // transaction; each step is audited.
        let mut task_transitions = vec![TransitionRecord {
            entity_uuid: task_uuid,
            task_uuid,
            from_state: None,
            to_state: TaskState::Pending.as_str(),
            event: "create",
            metadata: serde_json::json!({ "template": t.key() }),
            at: now,
        }];
        let mut state = TaskState::Pending;
        for trigger in [TaskTrigger::Start, TaskTrigger::Initialized, TaskTrigger::StepsEnqueued] {
            let next = state.apply(trigger)?;
            task_transitions.push(TransitionRecord {
                entity_uuid: task_uuid,
                task_uuid,
                from_state: Some(state.as_str()),
                to_state: next.as_str(),
                event: trigger.as_str(),
                metadata: Value::Object(Default::default()),
                at: now,
            });
            state = next;
        }
        let new_task = NewTask {
            task_uuid,
            template_id: template.id,
            namespace: t.namespace_name.clone(),
            name: t.name.clone(),
            version: t.version.clone(),
            state,
            context: request.context.clone(),
            initiator: request.initiator.clone(),
            source_system: request.source_system.clone(),
            reason: request.reason.clone(),
            tags: request.tags.clone(),
            priority: request.priority,
            correlation_id: caller_trace.map_or_else(Uuid::now_v7, |c| Uuid::from_bytes(c.trace_id)),
            trace_parent: caller_trace.map(|c| c.traceparent()),
            identity_hash,
            idempotency_key: request.idempotency_key.clone(),
            active_steps: i32::try_from(messages.len()).unwrap_or(i32::MAX),
            steps,
            edges,
            created_at: now,
            newest_template_id: resolved.newest_template_id,
        };
        // What creation announces: the task exists and runs, and its root steps wait.
        let mut changes = vec![EngineEvent::Task {
            task_uuid,
            from: None,
            to: state,
            trigger: "create",
            details: serde_json::json!({"total_steps": new_task.steps.len()}),
        }];
        if state == TaskState::StepsInProcess {
            changes.push(EngineEvent::Task {
                task_uuid,
                from: Some(TaskState::EnqueuingSteps),
                to: state,
                trigger: TaskTrigger::StepsEnqueued.as_str(),
                details: Value::Object(Default::default()),
            });
        }
        for s in new_task.steps.iter().filter(|s| s.state == StepState::Enqueued) {
            changes.push(EngineEvent::Step {
                task_uuid,
                step_uuid: s.step_uuid,
                step_name: s.name.clone(),
                from: StepState::Pending,
                to: StepState::Enqueued,
                attempt: 0,
                trigger: StepTrigger::Enqueue.as_str(),
                details: serde_json::json!({"queue": s.queue}),
            });
        }
        self.inner
            .backpressure
            .check(self.inner.store.as_ref(), &messages)
            .await?;
        let durable = self.durable_rows_for(&changes).await;
        let created = new_task.summary();
        let inserted = self
            .inner
            .store
            .create_task_with_events(&new_task, &task_transitions, &step_transitions, &messages, &durable)
            .await?;
        match inserted {
            InsertedTask::Created => {}
            InsertedTask::Existing(existing) => {
                let task = self.task_summary(existing).await?;
                return Ok(Some(CreatedTask { task, created: false }));
            }
            InsertedTask::TemplateSuperseded => {
                self.inner.templates.forget_latest(&t.namespace_name, &t.name);
                return Ok(None);
            }
        }
        for m in &messages {
            self.publish_signal(RemoteSignal::Queue(m.queue.clone()));
        }
        self.announce(changes, Vec::new());
        Ok(Some(CreatedTask {
            task: created,
            created: true,
        }))
    }

    /// A task with its steps and transitions.
    pub async fn get_task(&self, task_uuid: Uuid) -> Result<TaskDetail> {
        self.inner
            .store
            .task_detail(task_uuid)
            .await?
            .ok_or(TaskerError::TaskNotFound(task_uuid))
    }

    /// Only the task row.
    pub async fn task_summary(&self, task_uuid: Uuid) -> Result<TaskSummary> {
        self.inner
            .store
            .task_summary(task_uuid)
            .await?
            .ok_or(TaskerError::TaskNotFound(task_uuid))
    }

    /// Tasks, newest first.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>> {
        self.inner.store.list_tasks(filter).await
    }

    /// Task counts by state, tasks created over the last hour by 5-minute bucket, throughput and
    /// queue depths: what the dashboard's overview shows.
    pub async fn overview(&self, now: chrono::DateTime<Utc>) -> Result<Overview> {
        self.inner.store.overview(&OverviewWindow::last_hour(now)).await
    }

    /// Folds the overview's per-minute task counts older than the chart's window into one
    /// total per state (and, on PostgreSQL, the deltas appended since the last fold). The
    /// orchestrator runs it once per maintenance pass.
    pub async fn compact_task_counts(&self) -> Result<()> {
        self.inner
            .store
            .compact_task_counts(Utc::now() - chrono::Duration::milliseconds(OverviewWindow::KEPT_MS))
            .await
    }

    /// Waits until the task reaches a terminal state, then returns it in full. Wakes on this
    /// process's own completions and on NOTIFY (PostgreSQL); polls as a fallback, which is how
    /// completions made by other processes are seen on SQLite.
    pub async fn wait_for_task(&self, task_uuid: Uuid, timeout: Duration) -> Result<TaskDetail> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut signals = self.subscribe_signals();
        // On SQLite, polling is how completions made by other processes are seen: it starts at
        // 1 ms and backs off to 5 ms, as most tasks finish soon after being waited for. On
        // PostgreSQL every finish is announced (NOTIFY, at commit; a lost listener connection
        // says so), so polling is only a slow safety net, unless nothing listens.
        let (mut fallback, cap) = match self.backend() {
            Backend::Sqlite => (Duration::from_millis(1), Duration::from_millis(5)),
            Backend::Postgres if self.inner.listening => (Duration::from_millis(500), Duration::from_millis(500)),
            Backend::Postgres => (Duration::from_millis(1), Duration::from_millis(100)),
        };
        // Told that it finished, read it in full at once (one read instead of two).
        let mut announced = false;
        loop {
            if announced {
                let detail = self.get_task(task_uuid).await?;
                if detail.task.is_terminal() {
                    return Ok(detail);
                }
            } else if self.task_summary(task_uuid).await?.is_terminal() {
                return self.get_task(task_uuid).await;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(TaskerError::Timeout(timeout));
            }
            let wait = fallback.min(deadline - now);
            fallback = (fallback * 2).min(cap);
            announced = tokio::time::timeout(wait, async {
                loop {
                    match signals.recv().await {
                        Ok(RemoteSignal::TaskFinished(id)) if id == task_uuid => return true,
                        Ok(RemoteSignal::Reconnected) | Err(broadcast::error::RecvError::Lagged(_)) => return false,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            })
            .await
            .unwrap_or(false);
        }
    }

    /// Cancels a task: pending, enqueued and waiting steps are cancelled now; results of steps
    /// already running are ignored when they arrive. Cancelling a finished task is an error.
    pub async fn cancel_task(&self, task_uuid: Uuid) -> Result<TaskSummary> {
        dispatch::cancel(self, task_uuid).await?;
        self.task_summary(task_uuid).await
    }

    /// Closes the connection pool.
    pub async fn close(&self) {
        // What telemetry buffered goes out first (a no-op when export is off).
        self.inner.telemetry.flush(Duration::from_secs(5)).await;
        self.inner.store.close().await;
    }
}

/// The row of a new step: an instance of template step `index` called `name`.
fn new_step(
    template: &CompiledTemplate,
    index: usize,
    step_uuid: Uuid,
    name: String,
    state: StepState,
    pending_parents: i32,
) -> NewStep {
    let s = &template.template.steps[index];
    NewStep {
        step_uuid,
        name,
        position: i32::try_from(index).unwrap_or(i32::MAX),
        queue: template.queue_of(s),
        state,
        max_attempts: i32::try_from(s.retry.max_attempts.max(1)).unwrap_or(100),
        retryable: s.retry.retryable,
        pending_parents,
    }
}

/// Removes the password of `url` from a message, should a driver ever echo it.
fn redact(message: &str, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.password() {
            Some(pw) if !pw.is_empty() => message.replace(pw, "***"),
            _ => message.to_owned(),
        },
        Err(_) => message.to_owned(),
    }
}

/// `Tasker::connect_with` must be spawnable on a multi-threaded runtime (bindings do that).
#[allow(dead_code)]
fn assert_connect_is_send() {
    fn is_send<T: Send>(_: T) {}
    is_send(Tasker::connect_with(TaskerOptions::default()));
}

/// A task's identity hash: SHA-256 of the parts, each followed by a NUL (so that `("ab", "c")`
/// and `("a", "bc")` differ).
fn identity_digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    format!("{:x}", h.finalize())
}

/// `value` as JSON text with every object's keys sorted, so that equal contexts give equal text
/// whatever order their keys were written in.
fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::describe_database;

    #[test]
    fn no_password_is_ever_described() {
        for url in [
            "postgres://u:secret@db.example:5432/app",
            "mysql://u:secret@db.example/app",
            "redis://:secret@cache:6379",
            "mysql://u:secret@[bad/app",
            "weird://u:secret",
            "weird://u:secret@",
            "postgres://u:secret@h/db?password=secret",
        ] {
            let described = describe_database(url);
            assert!(!described.contains("secret"), "{url} -> {described}");
        }
        assert_eq!(describe_database("postgres://u:pw@h:5/db"), "postgres://h:5/db");
        assert_eq!(
            describe_database("mysql://u:secret@db.example/app"),
            "mysql://db.example/app"
        );
        assert_eq!(describe_database("sqlite://./tasker.db"), "./tasker.db");
    }
}
