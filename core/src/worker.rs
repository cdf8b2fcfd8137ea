//! The worker API: the contract the Python, Ruby and TypeScript packages (and Rust handlers)
//! are built on.
//!
//! # Protocol
//!
//! A [`Worker`] listens on its queues and claims steps **only when it has a free slot**
//! (`concurrency` slots). Each claimed step becomes a [`StepEvent`] pushed into a bounded
//! channel; the language side pulls with [`Worker::poll`] (blocking, for threads that released
//! the GIL/GVL) or [`Worker::poll_async`], runs its handler, and reports with
//! [`Worker::complete`].
//!
//! # What may run concurrently
//!
//! * `poll` may be called from several threads at once; each event is delivered exactly once.
//! * `complete` may be called from any thread, concurrently. It never waits for the database:
//!   outcomes go to a background task that applies them in batches (one transaction per batch).
//! * Every event handed out must be completed once.
//!
//! # Slots
//!
//! A slot is taken when a step is claimed and freed only when its handler has returned
//! (`complete`), so at most `concurrency` handlers ever run at once. Two documented
//! exceptions: an event whose attempt timed out before anyone polled it is dropped at `poll`
//! (nobody runs it) and frees its slot there; and a handler still running one lease length
//! after its deadline is **given up**: its slot is freed and its late `complete` is ignored.
//!
//! # Cancellation
//!
//! Each event carries a [`CancelSignal`] (`StepEvent::cancellation`, or
//! [`Worker::is_cancelled`] by event id from a binding). It is raised when the attempt times
//! out, when the handler is given up, and when shutdown's deadline passes. Handlers should
//! stop soon after; their result is ignored.
//!
//! # Fencing
//!
//! An outcome applies only to the attempt it was handed out for. When an attempt overruns
//! `timeout_seconds`, the worker fails it with a retryable `timeout` error (the handler keeps
//! its slot until it returns); the handler's later `complete` is accepted and ignored. An event
//! whose attempt is no longer current is never handed out. If this process dies, its leases
//! expire and another worker receives the message again: it gives the lost attempt back
//! (`worker_lost`, which counts against neither `max_attempts` nor `retryable: false`, up to
//! [`crate::engine::MAX_LOST_LEASES`] times) and the step runs again. Attempt numbers only
//! grow; a completion for an attempt that was failed or re-claimed meanwhile is rejected by the
//! compare-and-swap and never applied.
//!
//! # Faults
//!
//! Outcomes are held while the database is unreachable and applied when it is back (leases
//! still renewed). If a background task (dispatcher, applier, lease loop, orchestrator) dies,
//! the worker stops claiming and [`Worker::poll`] returns [`Poll::Failed`]; `complete` fails
//! too once the applier is gone. Nothing is silently dropped.
//!
//! # Shutdown
//!
//! [`Worker::shutdown`] stops claiming, gives events nobody has polled yet back to their queue
//! (the released attempt does not count), waits up to the deadline for in-flight handlers to
//! complete — renewing their leases and enforcing their deadlines meanwhile — then raises the
//! cancel signal of any still running and makes their steps visible to other workers at once.
//! From the moment shutdown begins, `poll` returns [`Poll::ShutDown`]; `complete` keeps working
//! until shutdown returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::engine::{ClaimBatch, ClaimedStep, Completion, EagerClaim, Tasker};
use crate::error::{Result, TaskerError};
use crate::logging::step_log;
use crate::orchestrator;
use crate::outcome::{error_types, StepFailure, StepOutcome};
use crate::store::{Backend, MessageRef, RemoteSignal, WorkerRecord};
use crate::telemetry::metrics as m;
use crate::telemetry::trace::{AttributeValue, SpanKind, SpanRecord, TraceContext};
use crate::template::{is_valid_queue_name, HandlerSpec};

/// How a worker learns that work is available, and the longest it can take to notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DispatchMode {
    /// Poll the queues: within `poll_interval` of a message becoming visible (after work the
    /// interval starts at 1 ms and doubles up to `poll_interval`), on both backends.
    Polling,
    /// Wake on notifications only (PostgreSQL LISTEN/NOTIFY; sends, releases and given-up
    /// leases all notify), plus a recovery poll once per `lease` for leases that simply expire
    /// (a crashed worker). Refused on SQLite, which has no cross-process notification.
    EventDriven,
    /// Notifications where the backend has them, with polling as a fallback: on PostgreSQL at
    /// once for notified work and within `poll_interval` (1 s) otherwise; on SQLite within
    /// `poll_interval` (3 ms), plus at once for work enqueued in the same process.
    #[default]
    Hybrid,
}

impl std::str::FromStr for DispatchMode {
    type Err = TaskerError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "polling" => Ok(DispatchMode::Polling),
            "event_driven" => Ok(DispatchMode::EventDriven),
            "hybrid" => Ok(DispatchMode::Hybrid),
            other => Err(TaskerError::InvalidArgument(format!(
                "dispatch mode '{other}' is not one of polling, event_driven, hybrid"
            ))),
        }
    }
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Queues to claim from (namespace names, or per-step queue overrides).
    pub queues: Vec<String>,
    /// Handler slots: at most this many steps are claimed and not yet completed.
    pub concurrency: usize,
    /// How long a claimed message stays hidden; renewed while the handler runs.
    pub lease: Duration,
    pub dispatch_mode: DispatchMode,
    /// Longest fallback polling interval (`None`: 3 ms on SQLite, 1 s on PostgreSQL). On SQLite
    /// polling starts at 1 ms after work and backs off to this; with `None`, a worker that found
    /// nothing for about 0.75 s polls every 20 ms until work comes again (idle CPU stays low).
    pub poll_interval: Option<Duration>,
    /// Also run the orchestrator loop (due retries, overdue attempts) in this process.
    pub embedded_orchestration: bool,
    /// Recorded in audit rows and in the worker registry.
    pub worker_id: String,
    /// The language its handlers are written in, shown in the worker registry
    /// (`rust`, `python`, `ruby`, `typescript`).
    pub language: String,
    /// Most steps one claim transaction takes (and never more than the free slots).
    pub claim_batch_size: usize,
    /// Most outcomes one completion transaction applies.
    pub completion_batch_size: usize,
}

impl WorkerConfig {
    /// Defaults for `queues`.
    pub fn new(queues: Vec<String>) -> Self {
        Self {
            queues,
            concurrency: 8,
            lease: Duration::from_secs(30),
            dispatch_mode: DispatchMode::Hybrid,
            poll_interval: None,
            embedded_orchestration: true,
            worker_id: format!("{}:{}", hostname(), std::process::id()),
            language: "rust".into(),
            claim_batch_size: 64,
            completion_batch_size: 256,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.queues.is_empty() {
            return Err(TaskerError::InvalidArgument("a worker needs at least one queue".into()));
        }
        if let Some(bad) = self.queues.iter().find(|q| !is_valid_queue_name(q)) {
            return Err(TaskerError::InvalidArgument(format!(
                "queue name '{bad}' is invalid: use 1-40 lowercase letters, digits or '_', starting with a letter"
            )));
        }
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return Err(TaskerError::InvalidArgument(format!(
                "concurrency must be between 1 and 10000, got {}",
                self.concurrency
            )));
        }
        if self.claim_batch_size == 0 || self.completion_batch_size == 0 {
            return Err(TaskerError::InvalidArgument(format!(
                "claim_batch_size and completion_batch_size must be at least 1, got {} and {}",
                self.claim_batch_size, self.completion_batch_size
            )));
        }
        if self.lease < Duration::from_secs(1) {
            return Err(TaskerError::InvalidArgument("lease must be at least 1 second".into()));
        }
        Ok(())
    }
}

pub(crate) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// One step attempt handed to a handler.
#[derive(Debug, Clone, Serialize)]
pub struct StepEvent {
    /// Identifies this hand-out in [`Worker::complete`].
    pub event_id: u64,
    pub task_uuid: Uuid,
    pub step_uuid: Uuid,
    pub step_name: String,
    pub namespace: String,
    pub task_name: String,
    pub task_version: String,
    /// The step's handler: callable, method, resolver and `initialization` config.
    pub handler: HandlerSpec,
    /// The task context (the task's input).
    pub task_context: Value,
    /// Results of the step's direct dependencies, by step name.
    pub dependency_results: Map<String, Value>,
    /// 1-based.
    pub attempt: u32,
    pub max_attempts: u32,
    pub correlation_id: Uuid,
    /// When the engine fails this attempt with `timeout`.
    pub deadline: Option<DateTime<Utc>>,
    /// For an instance of a `batch_worker` step, its batch: `batch_id`, `start_cursor`,
    /// `end_cursor`, `batch_size`, `is_no_op` (the placeholder of `no_batches`) and the
    /// template's `batch_config`. `None` for other steps.
    pub batch: Option<Value>,
    /// The last checkpoint an earlier attempt of this step recorded ([`Worker::checkpoint`]):
    /// `cursor`, `items_done`, `accumulated`, `attempt`, `recorded_at`. Resume from it.
    pub checkpoint: Option<Value>,
    /// The attempt's W3C `traceparent` when traces are exported (`telemetry.enabled`): spans a
    /// handler starts under it with its own OpenTelemetry SDK nest under the attempt's span.
    pub trace_context: Option<String>,
    /// Raised when the attempt is cancelled (see [`CancelSignal`]). Not serialized: a binding
    /// asks [`Worker::is_cancelled`] with the event id.
    #[serde(skip)]
    pub cancellation: CancelSignal,
    /// Where [`StepEvent::checkpoint`] records.
    #[serde(skip)]
    pub(crate) recorder: CheckpointRecorder,
    /// Domain events a Rust handler published with [`StepEvent::publish`].
    #[serde(skip)]
    pub(crate) published: Arc<Mutex<Vec<(String, Value)>>>,
}

/// Where a step event's checkpoints go: the engine that handed it out, or a test's log.
#[derive(Debug, Clone, Default)]
pub(crate) enum CheckpointRecorder {
    /// Not handed out by a worker (built by hand): checkpointing is an error.
    #[default]
    None,
    Engine(Tasker),
    /// [`crate::testing`]: checkpoints are kept in memory for the test to read.
    Memory(Arc<Mutex<Vec<Value>>>),
}

impl StepEvent {
    fn from_claim(
        event_id: u64,
        c: &ClaimedStep,
        cancellation: CancelSignal,
        recorder: &Tasker,
        span: Option<&TraceContext>,
    ) -> std::result::Result<Self, StepFailure> {
        let t = &c.template.template;
        let step = c.template.step(&c.step_name).ok_or_else(|| {
            StepFailure::permanent(
                error_types::CORRUPT_STEP,
                format!("step '{}' cannot run: it is not in template {}", c.step_name, t.key()),
            )
        })?;
        // `${VAR}` references in `initialization` become this worker's values here, and only
        // here: what the database stores keeps the reference (template::secrets).
        let mut handler = step.handler.clone();
        handler.initialization =
            crate::template::secrets::resolve_from_env(&step.handler.initialization).map_err(|e| {
                StepFailure::retryable(
                    error_types::HANDLER_CONFIG_UNRESOLVED,
                    format!("step '{}' cannot run on this worker: {e}", c.step_name),
                )
            })?;
        Ok(Self {
            event_id,
            task_uuid: c.task_uuid,
            step_uuid: c.step_uuid,
            step_name: c.step_name.clone(),
            namespace: t.namespace_name.clone(),
            task_name: t.name.clone(),
            task_version: t.version.clone(),
            handler,
            task_context: c.context.clone(),
            dependency_results: c.dependency_results.clone(),
            attempt: u32::try_from(c.attempt).unwrap_or(0),
            max_attempts: u32::try_from(c.max_attempts).unwrap_or(1),
            correlation_id: c.correlation_id,
            deadline: c.deadline,
            batch: c.batch.clone(),
            checkpoint: c.checkpoint.clone(),
            trace_context: span.map(TraceContext::traceparent),
            cancellation,
            recorder: CheckpointRecorder::Engine(recorder.clone()),
            published: Arc::default(),
        })
    }

    /// Records this attempt's progress (see [`Worker::checkpoint`]): where it got to, how many
    /// items are done, and whatever it accumulated so far. The next attempt, if any, receives
    /// it as [`StepEvent::checkpoint`].
    pub async fn checkpoint(&self, cursor: Value, items_done: u64, accumulated: Value) -> Result<()> {
        let record = serde_json::json!({"cursor": cursor, "items_done": items_done, "accumulated": accumulated});
        match &self.recorder {
            CheckpointRecorder::Engine(tasker) => {
                let attempt = i32::try_from(self.attempt).unwrap_or(i32::MAX);
                tasker.save_checkpoint(self.step_uuid, attempt, record).await
            }
            CheckpointRecorder::Memory(log) => {
                log.lock().unwrap_or_else(|p| p.into_inner()).push(record);
                Ok(())
            }
            CheckpointRecorder::None => Err(TaskerError::InvalidArgument(
                "this step event was not handed out by a worker (build test events with tasker_core::testing)".into(),
            )),
        }
    }

    /// Result of the dependency called `name`.
    /// Publishes a domain event with this attempt's outcome (the step must declare it in
    /// `publishes_events`; see [`crate::events::domain`]). Used by Rust handlers run through
    /// [`crate::handler::HandlerRegistry`].
    pub fn publish(&self, name: &str, payload: Value) {
        if let Ok(mut p) = self.published.lock() {
            p.push((name.to_owned(), payload));
        }
    }

    /// The events [`StepEvent::publish`] recorded, taken.
    pub fn take_published(&self) -> Vec<(String, Value)> {
        self.published
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    /// The task context (the task's input): the same as `task_context`, under the name the other
    /// languages use (`input`).
    pub fn input(&self) -> &Value {
        &self.task_context
    }

    pub fn dependency_result(&self, name: &str) -> Option<&Value> {
        self.dependency_results.get(name)
    }

    /// The handler's `initialization` config.
    pub fn config(&self) -> &Value {
        &self.handler.initialization
    }

    /// Whether an earlier attempt failed.
    pub fn is_retry(&self) -> bool {
        self.attempt > 1
    }

    /// Whether a failure of this attempt will not be retried.
    pub fn is_last_retry(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// What [`Worker::poll`] returns.
#[derive(Debug)]
pub enum Poll {
    Event(Box<StepEvent>),
    /// Nothing arrived within the timeout.
    Empty,
    /// The worker is shutting down: stop polling, finish in-flight handlers.
    ShutDown,
    /// A background task of the worker died ([`TaskerError::WorkerFailed`]): it claims nothing
    /// more. Report it and stop; in-flight attempts come back through their leases.
    Failed(TaskerError),
}

/// Counts reported by [`Worker::shutdown`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Claimed but never polled: given back to their queue.
    pub released: usize,
    /// Still running at the deadline: made visible to other workers.
    pub abandoned: usize,
}

/// A handler's cancellation signal: raised when its attempt timed out, when the worker gave it
/// up (see [`Worker`]'s module docs, "Slots"), or when shutdown's deadline passed. Handlers
/// should stop soon after; their late result is ignored. Cheap to clone.
#[derive(Clone, Default)]
pub struct CancelSignal(Arc<CancelInner>);

#[derive(Default)]
struct CancelInner {
    raised: AtomicBool,
    notify: tokio::sync::Notify,
}

impl CancelSignal {
    /// Whether the attempt has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.raised.load(Ordering::SeqCst)
    }

    /// Resolves once the attempt is cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn cancel(&self) {
        self.0.raised.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
}

impl std::fmt::Debug for CancelSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CancelSignal").field(&self.is_cancelled()).finish()
    }
}

const RUNNING: u8 = 0;
const DRAINING: u8 = 1;
const STOPPED: u8 = 2;

/// Where one handed-out attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// In the event channel, not polled yet.
    Queued,
    /// Polled: its handler runs.
    Running,
    /// Its deadline passed (the `timeout` failure went to the applier); the handler may still
    /// run and holds its slot until it returns or is given up.
    TimedOut,
    /// The handler returned; its outcome waits to be applied. The lease is still renewed.
    Applying,
}

struct Inflight {
    step_uuid: Uuid,
    attempt: i32,
    /// With `step_uuid` and `attempt`, the fields of every log record about the attempt
    /// (`logging::STEP_FIELDS`).
    task_uuid: Uuid,
    step_name: String,
    correlation_id: Uuid,
    message: MessageRef,
    /// The attempt's slot. Freed when the handler returns (its outcome then carries it to the
    /// applier), when a dead event is discarded at poll, or when the handler is given up.
    permit: Option<OwnedSemaphorePermit>,
    claimed_at: Instant,
    deadline: Option<Instant>,
    phase: Phase,
    cancel: CancelSignal,
    trace: AttemptTrace,
}

/// What an attempt's duration metric and span need.
struct AttemptTrace {
    queue: String,
    /// The attempt's span, when traces are exported.
    span: Option<AttemptSpan>,
    /// When a handler took it.
    started: Option<(Instant, SystemTime)>,
}

/// What the span of an attempt is made of, known at hand-out.
struct AttemptSpan {
    context: TraceContext,
    /// The task span's id.
    parent: [u8; 8],
    name: String,
    attributes: Vec<(&'static str, AttributeValue)>,
}

impl AttemptTrace {
    /// The attempt ended (`outcome`: success, failure or timeout): its duration is observed
    /// and its span emitted.
    fn finish(&mut self, tasker: &Tasker, outcome: &StepOutcome, label: &'static str) {
        let Some((started, start_time)) = self.started.take() else {
            return;
        };
        let telemetry = tasker.telemetry();
        telemetry.metrics.observe(
            m::STEP_DURATION,
            &[("queue", &self.queue), ("outcome", label)],
            started.elapsed().as_secs_f64(),
        );
        let Some(AttemptSpan {
            context,
            parent,
            name,
            mut attributes,
        }) = self.span.take()
        else {
            return;
        };
        attributes.push(("tasker.step.outcome", label.into()));
        let error = match outcome {
            StepOutcome::Failure(f) => {
                attributes.push(("error.type", f.error_type.clone().into()));
                attributes.push(("tasker.step.retryable", f.retryable.into()));
                Some(f.message.chars().take(1024).collect())
            }
            StepOutcome::Success { .. } => None,
        };
        let end = SystemTime::now();
        telemetry.emit(SpanRecord {
            context,
            parent_span_id: Some(parent),
            name,
            kind: SpanKind::Consumer,
            start: start_time,
            end: end.max(start_time),
            attributes,
            error,
        });
    }
}

impl Inflight {
    /// Whether its lease must be kept alive.
    fn holds_lease(&self) -> bool {
        matches!(self.phase, Phase::Queued | Phase::Running | Phase::Applying)
    }
}

struct CompletionJob {
    completion: Completion,
    /// The in-flight entry to drop once this outcome is applied (`None` for the engine's own
    /// timeout failures, whose handler may still be running).
    event_id: Option<u64>,
    /// The handler's slot, freed when its outcome is taken for applying.
    permit: Option<OwnedSemaphorePermit>,
}

struct Shared {
    tasker: Tasker,
    config: WorkerConfig,
    poll_interval: Duration,
    events_tx: flume::Sender<StepEvent>,
    events_rx: flume::Receiver<StepEvent>,
    completions_tx: flume::Sender<CompletionJob>,
    inflight: Mutex<HashMap<u64, Inflight>>,
    /// Completions sent to the applier and not yet applied.
    pending_jobs: AtomicUsize,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
    state: AtomicU8,
    /// Stops claiming (shutdown began, or a background task failed).
    stop: watch::Sender<bool>,
    /// Stops the applier's retries and the lease loop: the worker is fully stopped.
    stopped: watch::Sender<bool>,
    /// Set when a background task died; reported by `poll` and (for the applier) `complete`.
    fatal: Mutex<Option<String>>,
    applier_alive: AtomicBool,
    /// This worker's row in the registry of workers.
    registration_uuid: Uuid,
}

impl Shared {
    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Inflight>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts,
        // removes and field stores), so a poisoned lock is still usable.
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fatal_error(&self) -> Option<TaskerError> {
        self.fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(TaskerError::WorkerFailed)
    }

    /// Records that a background task died: the worker claims nothing more.
    fn fail(&self, task: &str, why: String) {
        let message = format!("the worker's {task} stopped: {why}");
        tracing::error!(%message, "worker failed");
        let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        fatal.get_or_insert(message);
        let _ = self.stop.send(true);
    }

    fn stopping(&self) -> bool {
        self.state.load(Ordering::SeqCst) != RUNNING
    }
}

/// A running worker. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queues", &self.shared.config.queues)
            .field("concurrency", &self.shared.config.concurrency)
            .finish()
    }
}

/// Runs a background task under supervision: if it panics, or returns while the worker is
/// still meant to run, the worker is marked failed (see [`Shared::fail`]).
fn supervise<F>(shared: &Arc<Shared>, name: &'static str, task: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let inner = tokio::spawn(task);
    let shared = shared.clone();
    tokio::spawn(async move {
        let outcome = inner.await;
        if name == "applier" {
            shared.applier_alive.store(false, Ordering::SeqCst);
        }
        match outcome {
            Err(e) if e.is_panic() => shared.fail(name, format!("panicked: {}", crate::handler::panic_message(e))),
            Err(_) => {} // aborted by shutdown
            Ok(()) if !ended_on_purpose(&shared, name) => shared.fail(name, "exited unexpectedly".to_owned()),
            Ok(()) => {}
        }
    })
}

/// The dispatcher and the orchestrator end when claiming stops; the others only when the
/// worker is fully stopped.
fn ended_on_purpose(shared: &Shared, task: &str) -> bool {
    let claiming_stopped = *shared.stop.borrow();
    let stopped = *shared.stopped.borrow();
    stopped || (claiming_stopped && matches!(task, "dispatcher" | "orchestrator"))
}

impl Worker {
    /// Starts claiming. Must be called within a tokio runtime (see [`crate::runtime`]).
    pub async fn start(tasker: &Tasker, config: WorkerConfig) -> Result<Worker> {
        config.validate()?;
        if config.dispatch_mode == DispatchMode::EventDriven && tasker.backend() == Backend::Sqlite {
            return Err(TaskerError::InvalidArgument(
                "dispatch mode 'event_driven' needs notifications across processes, which SQLite does not have: \
                 use 'hybrid' (the default) or 'polling' on SQLite"
                    .into(),
            ));
        }
        for q in &config.queues {
            tasker.store().ensure_queue(q).await?;
        }
        let poll_interval = config.poll_interval.unwrap_or(match tasker.backend() {
            // Polling is how other processes' enqueues are seen on SQLite: a 3 ms cap keeps a
            // cross-process hop short, and an idle worker's probe is a read-only index lookup
            // of a few microseconds.
            Backend::Sqlite => Duration::from_millis(3),
            Backend::Postgres => Duration::from_secs(1),
        });
        let (events_tx, events_rx) = flume::bounded(config.concurrency);
        // Each in-flight attempt sends at most two jobs (the engine's timeout failure, then
        // nothing, or the handler's outcome), so this never fills.
        let (completions_tx, completions_rx) = flume::bounded(config.concurrency * 2 + 16);
        let (stop, _) = watch::channel(false);
        let (stopped, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            tasker: tasker.clone(),
            slots: Arc::new(Semaphore::new(config.concurrency)),
            config,
            poll_interval,
            events_tx,
            events_rx,
            completions_tx,
            inflight: Mutex::new(HashMap::new()),
            pending_jobs: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            state: AtomicU8::new(RUNNING),
            stop,
            stopped,
            fatal: Mutex::new(None),
            applier_alive: AtomicBool::new(true),
            registration_uuid: Uuid::now_v7(),
        });
        let now = Utc::now();
        tasker
            .store()
            .register_worker(&WorkerRecord {
                registration_uuid: shared.registration_uuid,
                worker_id: shared.config.worker_id.clone(),
                host: hostname(),
                pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
                language: shared.config.language.clone(),
                queues: shared.config.queues.clone(),
                concurrency: i32::try_from(shared.config.concurrency).unwrap_or(i32::MAX),
                in_flight: 0,
                started_at: now,
                last_heartbeat_at: now,
                stopped_at: None,
            })
            .await?;
        tasker
            .publish_after(
                "worker.registered",
                None,
                serde_json::json!({"worker_id": shared.config.worker_id, "language": shared.config.language,
                    "queues": shared.config.queues}),
            )
            .await;
        let mut tasks = vec![
            supervise(&shared, "dispatcher", dispatch_loop(shared.clone())),
            supervise(&shared, "applier", apply_loop(shared.clone(), completions_rx)),
            supervise(&shared, "lease loop", lease_loop(shared.clone())),
            supervise(&shared, "heartbeat", heartbeat_loop(shared.clone())),
        ];
        if shared.config.embedded_orchestration {
            let stop = shared.stop.subscribe();
            tasks.push(supervise(
                &shared,
                "orchestrator",
                orchestrator::run(tasker.clone(), stop),
            ));
        }
        // Readiness (`Tasker::health`) reports this worker while it runs: failed when one of
        // its loops died; not at all once it stopped on purpose or was dropped.
        let probe = Arc::downgrade(&shared);
        tasker.add_local_worker(Box::new(move || {
            let shared = probe.upgrade()?;
            let failure = shared.fatal_error().map(|e| e.to_string());
            if failure.is_none() && shared.state.load(Ordering::SeqCst) == STOPPED {
                return None;
            }
            Some((shared.config.worker_id.clone(), failure))
        }));
        Ok(Worker {
            shared,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// The worker's configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.shared.config
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.stopping()
    }

    /// The error that stopped this worker, if a background task died.
    pub fn failure(&self) -> Option<TaskerError> {
        self.shared.fatal_error()
    }

    /// The cancellation signal of a handed-out event; `None` once it is finished.
    pub fn cancel_signal(&self, event_id: u64) -> Option<CancelSignal> {
        self.shared.inflight().get(&event_id).map(|i| i.cancel.clone())
    }

    /// Whether the handler of `event_id` should stop: its attempt was cancelled (timeout, given
    /// up, shutdown deadline), or the event is no longer in flight.
    pub fn is_cancelled(&self, event_id: u64) -> bool {
        self.cancel_signal(event_id).is_none_or(|c| c.is_cancelled())
    }

    /// Waits up to `timeout` for the next step event. Blocks the calling thread: call it with
    /// the GIL/GVL released. Returns within ~50 ms of shutdown starting.
    pub fn poll(&self, timeout: Duration) -> Poll {
        let deadline = Instant::now() + timeout;
        loop {
            // An event already waiting is returned even with a zero timeout.
            if let Some(p) = self.ready() {
                return p;
            }
            let now = Instant::now();
            if now >= deadline {
                return Poll::Empty;
            }
            let slice = (deadline - now).min(Duration::from_millis(50));
            match self.shared.events_rx.recv_timeout(slice) {
                Ok(e) => {
                    if let Some(p) = self.deliver(e) {
                        return p;
                    }
                }
                Err(flume::RecvTimeoutError::Timeout) => continue,
                Err(flume::RecvTimeoutError::Disconnected) => return Poll::ShutDown,
            }
        }
    }

    /// Async [`Worker::poll`].
    pub async fn poll_async(&self, timeout: Duration) -> Poll {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stop = self.shared.stop.subscribe();
        loop {
            if let Some(p) = self.ready() {
                return p;
            }
            tokio::select! {
                r = tokio::time::timeout_at(deadline, self.shared.events_rx.recv_async()) => match r {
                    Ok(Ok(e)) => {
                        if let Some(p) = self.deliver(e) {
                            return p;
                        }
                    }
                    Ok(Err(_)) => return Poll::ShutDown,
                    Err(_) => return Poll::Empty,
                },
                _ = stop.wait_for(|s| *s) => {}
            }
        }
    }

    /// A reason to stop, or an event already waiting (dead ones are dropped on the way);
    /// `None` when there is neither.
    fn ready(&self) -> Option<Poll> {
        if let Some(stop) = self.stop_reason() {
            return Some(stop);
        }
        while let Ok(e) = self.shared.events_rx.try_recv() {
            if let Some(p) = self.deliver(e) {
                return Some(p);
            }
        }
        None
    }

    fn stop_reason(&self) -> Option<Poll> {
        if let Some(e) = self.shared.fatal_error() {
            return Some(Poll::Failed(e));
        }
        self.is_shutting_down().then_some(Poll::ShutDown)
    }

    /// Hands `event` out if its attempt is still current; `None` for a dead event (its attempt
    /// timed out while it waited in the channel), which is dropped with its slot.
    fn deliver(&self, event: StepEvent) -> Option<Poll> {
        let mut inflight = self.shared.inflight();
        if self.is_shutting_down() {
            drop(inflight);
            // Raced with shutdown: give it back with the other unstarted events.
            let _ = self.shared.events_tx.try_send(event);
            return Some(self.stop_reason().unwrap_or(Poll::ShutDown));
        }
        match inflight.get_mut(&event.event_id) {
            Some(entry) if entry.phase == Phase::Queued => {
                entry.phase = Phase::Running;
                entry.trace.started = Some((Instant::now(), SystemTime::now()));
                Some(Poll::Event(Box::new(event)))
            }
            Some(_) => {
                // Timed out before anyone polled it: nobody runs it, its slot is free again.
                inflight.remove(&event.event_id);
                tracing::debug!(
                    event_id = event.event_id,
                    "dropping an event whose attempt timed out unpolled"
                );
                None
            }
            None => None,
        }
    }

    /// Reports the outcome of an event. Never waits for the database.
    pub fn complete(&self, event_id: u64, outcome: StepOutcome) -> Result<()> {
        if !self.shared.applier_alive.load(Ordering::SeqCst) {
            return Err(self.shared.fatal_error().unwrap_or(TaskerError::ShutDown));
        }
        if self.shared.state.load(Ordering::SeqCst) == STOPPED {
            return Err(TaskerError::ShutDown);
        }
        let mut inflight = self.shared.inflight();
        let entry = inflight.get_mut(&event_id).ok_or(TaskerError::UnknownEvent(event_id))?;
        match entry.phase {
            Phase::Running => {
                entry.phase = Phase::Applying;
                let permit = entry.permit.take();
                // Past its deadline, the attempt has timed out even if the lease loop has not
                // noticed yet (it looks every 50 ms, and a binding may abort its handler at the
                // deadline itself): the outcome is ignored, as it would be a moment later.
                let outcome = if entry.deadline.is_some_and(|d| d <= Instant::now()) {
                    entry.cancel.cancel();
                    StepOutcome::Failure(timeout_failure(entry.attempt))
                } else {
                    outcome
                };
                let label = match &outcome {
                    StepOutcome::Success { .. } => "success",
                    StepOutcome::Failure(f) if f.error_type == error_types::TIMEOUT => "timeout",
                    StepOutcome::Failure(_) => "failure",
                };
                entry.trace.finish(&self.shared.tasker, &outcome, label);
                log_outcome(entry, &outcome);
                let completion = completion_of(&self.shared, entry, outcome);
                send_job(&self.shared, completion, Some(event_id), permit)
            }
            Phase::TimedOut => {
                // The handler returned after its timeout: its slot is free now; the result is
                // ignored (the attempt already failed with `timeout`).
                if let Some(entry) = inflight.remove(&event_id) {
                    step_log!(warn, entry, event_id, "late completion after timeout ignored");
                }
                Ok(())
            }
            Phase::Queued | Phase::Applying => Err(TaskerError::UnknownEvent(event_id)),
        }
    }

    /// Records the progress of a running event's attempt (`{"cursor": …, "items_done": n,
    /// "accumulated": …}`), committed before this returns. A later attempt of the step (after a
    /// failure, a timeout or a lost worker) receives the last one as
    /// [`StepEvent::checkpoint`]. Fenced like a completion: once the attempt timed out or the
    /// step was re-claimed or cancelled, this fails with [`TaskerError::Fenced`].
    pub async fn checkpoint(&self, event_id: u64, checkpoint: Value) -> Result<()> {
        let (step_uuid, attempt) = {
            let inflight = self.shared.inflight();
            match inflight.get(&event_id) {
                // Past its deadline the attempt has timed out, as `complete` treats it, even
                // before the lease loop records the timeout.
                Some(entry) if entry.deadline.is_some_and(|d| d <= Instant::now()) => {
                    return Err(TaskerError::Fenced(format!(
                        "event {event_id}'s attempt is past its timeout_seconds"
                    )))
                }
                Some(entry) if entry.phase == Phase::Running => (entry.step_uuid, entry.attempt),
                Some(_) => {
                    return Err(TaskerError::Fenced(format!(
                        "event {event_id} is no longer running (it timed out or was completed)"
                    )))
                }
                None => return Err(TaskerError::UnknownEvent(event_id)),
            }
        };
        self.shared.tasker.save_checkpoint(step_uuid, attempt, checkpoint).await
    }

    /// Graceful shutdown; see the module docs. Idempotent.
    pub async fn shutdown(&self, deadline: Duration) -> Result<ShutdownReport> {
        let shared = &self.shared;
        {
            // Under the in-flight lock, so that no hand-out can slip an event into the channel
            // after it is drained below (a hand-out checks the state under the same lock).
            let _inflight = shared.inflight();
            if shared
                .state
                .compare_exchange(RUNNING, DRAINING, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                return Ok(ShutdownReport::default());
            }
        }
        let until = Instant::now() + deadline;
        let _ = shared.stop.send(true);
        // `start` spawns the dispatcher first; it must finish before unstarted claims are taken
        // back, so that none of its claims lands after the release.
        let handles: Vec<JoinHandle<()>> = self.tasks.lock().map(|mut t| t.drain(..).collect()).unwrap_or_default();
        if let Some(dispatcher) = handles.first() {
            while !dispatcher.is_finished() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let mut report = ShutdownReport::default();
        let unstarted: Vec<(Uuid, i32, MessageRef)> = {
            let mut inflight = shared.inflight();
            shared
                .events_rx
                .try_iter()
                .filter_map(|e| inflight.remove(&e.event_id))
                .filter(|i| i.phase == Phase::Queued)
                .map(|i| (i.step_uuid, i.attempt, i.message))
                .collect()
        };
        report.released = unstarted.len();
        if let Err(e) = shared.tasker.release_claims(&unstarted).await {
            tracing::warn!(error = %e, "could not release unstarted claims; their leases will expire instead");
        }
        // Handlers finish and their outcomes are applied; leases are renewed and deadlines
        // enforced meanwhile (the lease loop runs until the worker is fully stopped).
        while Instant::now() < until {
            let busy = shared
                .inflight()
                .values()
                .any(|i| matches!(i.phase, Phase::Running | Phase::Applying))
                || shared.pending_jobs.load(Ordering::SeqCst) > 0;
            if !busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let given_up: Vec<Inflight> = {
            let mut inflight = shared.inflight();
            let ids: Vec<u64> = inflight
                .iter()
                .filter(|(_, i)| matches!(i.phase, Phase::Running | Phase::TimedOut))
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| inflight.remove(id)).collect()
        };
        for i in &given_up {
            i.cancel.cancel();
        }
        let abandoned: Vec<MessageRef> = given_up
            .into_iter()
            .filter(|i| i.phase == Phase::Running)
            .map(|i| i.message)
            .collect();
        report.abandoned = abandoned.len();
        if !abandoned.is_empty() {
            // Visible at once: the next claim gives the attempt back as a lost lease, which does
            // not count against the step's attempts.
            if let Err(e) = shared.tasker.extend_leases(&abandoned, Duration::ZERO).await {
                tracing::warn!(error = %e, "could not expire abandoned leases; they will expire on their own");
            }
        }
        // Gone from the registry of live workers.
        if let Err(e) = shared
            .tasker
            .store()
            .heartbeat_worker(shared.registration_uuid, 0, true, Utc::now())
            .await
        {
            tracing::warn!(error = %e, "could not mark the worker stopped in the registry");
        } else {
            shared
                .tasker
                .publish_after(
                    "worker.stopped",
                    None,
                    serde_json::json!({"worker_id": shared.config.worker_id}),
                )
                .await;
        }
        // Let the applier finish what was already handed to it.
        while shared.pending_jobs.load(Ordering::SeqCst) > 0 && Instant::now() < until + Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shared.state.store(STOPPED, Ordering::SeqCst);
        let _ = shared.stopped.send(true);
        for h in handles.iter().skip(1) {
            h.abort();
        }
        Ok(report)
    }
}

fn completion_of(shared: &Shared, entry: &Inflight, outcome: StepOutcome) -> Completion {
    Completion {
        step_uuid: entry.step_uuid,
        attempt: entry.attempt,
        message: Some(entry.message.clone()),
        outcome,
        worker: Some(shared.config.worker_id.clone()),
        lost_lease: false,
    }
}

/// Hands an outcome to the applier.
fn send_job(
    shared: &Shared,
    completion: Completion,
    event_id: Option<u64>,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<()> {
    shared.pending_jobs.fetch_add(1, Ordering::SeqCst);
    let job = CompletionJob {
        completion,
        event_id,
        permit,
    };
    // Capacity covers every job the in-flight attempts can send (see `start`), so this never
    // fails while the applier runs; never block a caller's thread if it did.
    shared.completions_tx.try_send(job).map_err(|e| {
        shared.pending_jobs.fetch_sub(1, Ordering::SeqCst);
        match e {
            flume::TrySendError::Full(_) => TaskerError::WorkerFailed("the completion queue is full".into()),
            flume::TrySendError::Disconnected(_) => shared.fatal_error().unwrap_or(TaskerError::ShutDown),
        }
    })
}

/// Claims steps whenever slots are free, and waits for work otherwise.
async fn dispatch_loop(shared: Arc<Shared>) {
    let tasker = shared.tasker.clone();
    let mut signals = tasker.subscribe_signals();
    let mut stop = shared.stop.subscribe();
    let max_batch = shared.config.concurrency.min(shared.config.claim_batch_size);
    let mut rotate = 0usize;
    let mut failures = 0u32;
    // Consecutive empty claims; the polling fallback backs off with it (see wait_for_work).
    let mut idle_rounds = 0u32;
    loop {
        let first = tokio::select! {
            p = shared.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let mut permits = vec![first];
        while permits.len() < max_batch {
            match shared.slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let claimed = match has_work(&shared).await {
            Ok(false) => Ok(ClaimBatch {
                steps: Vec::new(),
                drained: true,
            }),
            Ok(true) => {
                tasker
                    .claim_batch(&shared.config.queues, permits.len(), shared.config.lease, rotate)
                    .await
            }
            Err(e) => Err(e),
        };
        rotate = rotate.wrapping_add(1);
        let (claimed, drained) = match claimed {
            Ok(c) => {
                failures = 0;
                (c.steps, c.drained)
            }
            Err(e) => {
                failures += 1;
                let pause = Duration::from_millis(50 * u64::from(failures.min(40)));
                tracing::warn!(error = %e, ?pause, "claiming failed; retrying");
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        let got = claimed.len();
        let not_handed_out = hand_out(&shared, claimed, &mut permits);
        drop(permits);
        if !not_handed_out.is_empty() {
            give_back(&shared, not_handed_out).await;
            // The worker is stopping (or its channel is unexpectedly full): never spin.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        if got > 0 {
            idle_rounds = 0;
            // The queues ran dry: claim again when told of new work (or at the next poll),
            // not at once, which would find nothing (signals sent meanwhile are not lost:
            // wait_for_work sees them first).
            if drained && !wait_for_work(&shared, &mut signals, &mut stop, 1).await {
                return;
            }
        } else {
            idle_rounds = idle_rounds.saturating_add(1);
            if !wait_for_work(&shared, &mut signals, &mut stop, idle_rounds).await {
                return;
            }
        }
    }
}

/// Registers claimed steps as in flight and puts their events in the channel, each with one
/// of `permits`. Returns the claims that could not be handed out (the worker is stopping, or a
/// step event cannot be built): the caller gives them back or fails them.
///
/// The state is checked under the in-flight lock, the same lock shutdown holds when it starts
/// draining, so an event is either in the channel before the drain or not handed out at all.
fn hand_out(
    shared: &Shared,
    claimed: Vec<ClaimedStep>,
    permits: &mut Vec<OwnedSemaphorePermit>,
) -> Vec<(ClaimedStep, Option<StepFailure>)> {
    let mut refused = Vec::new();
    let mut inflight = shared.inflight();
    let failed = shared.fatal_error().is_some();
    for step in claimed {
        if failed || shared.stopping() {
            refused.push((step, None));
            continue;
        }
        let Some(permit) = permits.pop() else {
            refused.push((step, None));
            continue;
        };
        let event_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = CancelSignal::default();
        let span = shared.tasker.tracing_enabled().then(|| {
            let task = TraceContext::of_task(step.task_uuid, step.correlation_id, true);
            (task.child(), task.span_id)
        });
        let event = match StepEvent::from_claim(
            event_id,
            &step,
            cancel.clone(),
            &shared.tasker,
            span.as_ref().map(|(c, _)| c),
        ) {
            Ok(e) => e,
            Err(failure) => {
                refused.push((step, Some(failure)));
                continue;
            }
        };
        let now = Instant::now();
        let deadline = step
            .deadline
            .map(|d| now + (d - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        inflight.insert(
            event_id,
            Inflight {
                step_uuid: step.step_uuid,
                attempt: step.attempt,
                task_uuid: step.task_uuid,
                step_name: step.step_name.clone(),
                correlation_id: step.correlation_id,
                message: step.message.clone(),
                permit: Some(permit),
                claimed_at: now,
                deadline,
                phase: Phase::Queued,
                cancel,
                trace: AttemptTrace {
                    queue: step.message.queue.clone(),
                    span: span.map(|(context, parent)| AttemptSpan {
                        context,
                        parent,
                        name: format!("step {}", step.step_name),
                        attributes: attempt_attributes(shared, &event, &step),
                    }),
                    started: None,
                },
            },
        );
        shared
            .tasker
            .telemetry()
            .metrics
            .add(m::STEPS_CLAIMED, &[("queue", &step.message.queue)], 1);
        // The channel holds `concurrency` events and every queued event owns a slot: never full.
        if shared.events_tx.try_send(event).is_err() {
            tracing::error!(event_id, "event channel full; giving the claim back");
            inflight.remove(&event_id);
            refused.push((step, None));
        }
    }
    refused
}

/// The attributes of an attempt's span.
fn attempt_attributes(shared: &Shared, e: &StepEvent, step: &ClaimedStep) -> Vec<(&'static str, AttributeValue)> {
    vec![
        ("tasker.task.uuid", e.task_uuid.to_string().into()),
        ("tasker.task.namespace", e.namespace.clone().into()),
        ("tasker.task.name", e.task_name.clone().into()),
        ("tasker.step.uuid", e.step_uuid.to_string().into()),
        ("tasker.step.name", e.step_name.clone().into()),
        ("tasker.step.attempt", i64::from(e.attempt).into()),
        ("tasker.correlation_id", e.correlation_id.to_string().into()),
        ("tasker.worker.id", shared.config.worker_id.clone().into()),
        ("messaging.destination.name", step.message.queue.clone().into()),
    ]
}

/// Gives back claims that were not handed out: released to their queue (the attempt does not
/// count), or failed permanently when no step event can be built for them.
async fn give_back(shared: &Shared, refused: Vec<(ClaimedStep, Option<StepFailure>)>) {
    let mut release = Vec::new();
    let mut fail = Vec::new();
    for (step, why) in refused {
        match why {
            None => release.push((step.step_uuid, step.attempt, step.message)),
            Some(failure) => {
                step_log!(warn, step, error_type = %failure.error_type, error = %failure.message, "step cannot be handed to a handler; failing the attempt");
                fail.push(Completion {
                    step_uuid: step.step_uuid,
                    attempt: step.attempt,
                    message: Some(step.message),
                    outcome: StepOutcome::Failure(failure),
                    worker: Some(shared.config.worker_id.clone()),
                    lost_lease: false,
                });
            }
        }
    }
    if let Err(e) = shared.tasker.release_claims(&release).await {
        tracing::warn!(error = %e, "could not release claims; their leases will expire instead");
    }
    if let Err(e) = shared.tasker.apply_completions(fail).await {
        tracing::warn!(error = %e, "could not fail steps that cannot run; their leases will expire instead");
    }
}

/// Cheap check before a claim transaction. On SQLite a claim takes the database write lock, so
/// idle workers in other processes must not take it every poll interval.
async fn has_work(shared: &Shared) -> Result<bool> {
    shared.tasker.store().has_visible_messages(&shared.config.queues).await
}

/// Empty polls after which a worker counts as idle for long (see [`IDLE_POLL_INTERVAL`]).
const LONG_IDLE_ROUNDS: u32 = 250;

/// Polling interval of a worker idle for long, when none was configured.
const IDLE_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Returns false when the worker is stopping.
///
/// The polling fallback is adaptive: right after work it polls every millisecond (work tends to
/// come in bursts, and on SQLite polling is how other processes' enqueues are seen), then doubles
/// the interval with each empty round up to `poll_interval`, so idle workers stay cheap.
///
/// `event_driven` (PostgreSQL only) wakes on notifications; a claim released or given up
/// notifies too, and leases that simply expire (a crashed worker) are found by a recovery
/// poll every lease length, its documented bound.
async fn wait_for_work(
    shared: &Shared,
    signals: &mut broadcast::Receiver<RemoteSignal>,
    stop: &mut watch::Receiver<bool>,
    idle_rounds: u32,
) -> bool {
    let relevant = |s: &RemoteSignal| match s {
        RemoteSignal::Queue(q) => shared.config.queues.iter().any(|x| x == q),
        RemoteSignal::Reconnected => true,
        _ => false,
    };
    // Signals that arrived while we were claiming.
    loop {
        match signals.try_recv() {
            Ok(s) if relevant(&s) => return true,
            Ok(_) => continue,
            Err(broadcast::error::TryRecvError::Lagged(_)) => return true,
            Err(_) => break,
        }
    }
    let backoff = Duration::from_millis(1u64 << idle_rounds.saturating_sub(1).min(16));
    // A worker idle for long (about 0.75 s of empty polls at the default SQLite cap) polls at
    // IDLE_POLL_INTERVAL instead, unless an interval was configured: the first step after a
    // long pause then waits up to that much longer, and an idle process stays cheap.
    let cap = if shared.config.poll_interval.is_none() && idle_rounds > LONG_IDLE_ROUNDS {
        shared.poll_interval.max(IDLE_POLL_INTERVAL)
    } else {
        shared.poll_interval
    };
    let poll = match shared.config.dispatch_mode {
        DispatchMode::EventDriven => shared.config.lease,
        // PostgreSQL delivers NOTIFY across processes; polling there is only a safety net.
        DispatchMode::Hybrid if shared.tasker.backend() == Backend::Postgres => shared.poll_interval,
        DispatchMode::Polling | DispatchMode::Hybrid => backoff.min(cap),
    };
    let listen = shared.config.dispatch_mode != DispatchMode::Polling;
    let sleep = tokio::time::sleep(poll);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            _ = stop.wait_for(|s| *s) => return false,
            s = signals.recv(), if listen => match s {
                Ok(s) if relevant(&s) => return true,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => return true,
                Err(broadcast::error::RecvError::Closed) => return true,
            },
        }
    }
}

/// Applies completions in batches: one transaction per batch. While the database is
/// unreachable (restart, pool exhausted) a batch is held and tried again with backoff, its
/// leases still renewed by the lease loop, until it applies or the worker is fully stopped: a
/// finished result is never dropped because the database was briefly away.
async fn apply_loop(shared: Arc<Shared>, rx: flume::Receiver<CompletionJob>) {
    let max_batch = shared.config.completion_batch_size;
    let mut stopped = shared.stopped.subscribe();
    while let Ok(first) = rx.recv_async().await {
        let mut jobs: Vec<CompletionJob> = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        shared
            .tasker
            .telemetry()
            .metrics
            .observe(m::COMPLETION_BATCH, &[], jobs.len() as f64);
        let batch: Vec<Completion> = jobs
            .iter_mut()
            .map(|j| {
                // The handlers are done: their slots are free for the children they unblock.
                j.permit = None;
                j.completion.clone()
            })
            .collect();
        let mut permits = Vec::new();
        if !shared.stopping() {
            while permits.len() < 64 {
                match shared.slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
        }
        let eager = EagerClaim {
            queues: shared.config.queues.clone(),
            max: permits.len(),
            lease: shared.config.lease,
        };
        let mut failures = 0u32;
        loop {
            let eager = (!permits.is_empty()).then_some(&eager);
            match shared.tasker.apply_completions_with(batch.clone(), eager).await {
                Ok((reports, claimed)) => {
                    let refused = hand_out(&shared, claimed, &mut permits);
                    if !refused.is_empty() {
                        give_back(&shared, refused).await;
                    }
                    for r in reports {
                        if let crate::engine::CompletionReport::Fenced { step_uuid, reason } = r {
                            tracing::info!(%step_uuid, %reason, "completion fenced off");
                        }
                    }
                    break;
                }
                Err(e) if e.is_transient() && !*stopped.borrow() => {
                    failures += 1;
                    // No eager claims while the database is away: free the slots.
                    permits.clear();
                    let pause = Duration::from_millis((100 * u64::from(failures)).min(2_000));
                    tracing::warn!(error = %e, failures, ?pause, count = batch.len(), "applying completions failed; holding them");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stopped.wait_for(|s| *s) => {}
                    }
                }
                Err(e) => {
                    // Stopped, or refused for good after isolation: the leases expire and the
                    // steps run again (a lost lease does not count against them).
                    tracing::error!(error = %e, count = batch.len(), "giving up on applying completions");
                    break;
                }
            }
        }
        drop(permits);
        {
            let mut inflight = shared.inflight();
            for id in jobs.iter().filter_map(|j| j.event_id) {
                if inflight.get(&id).is_some_and(|i| i.phase == Phase::Applying) {
                    inflight.remove(&id);
                }
            }
        }
        shared.pending_jobs.fetch_sub(jobs.len(), Ordering::SeqCst);
        drop(jobs);
    }
}

/// One record per attempt's outcome: a failure at `warn` (permanent) or `info` (retryable), a
/// success at `debug`.
fn log_outcome(entry: &Inflight, outcome: &StepOutcome) {
    match outcome {
        StepOutcome::Success { .. } => step_log!(debug, entry, "step attempt succeeded"),
        StepOutcome::Failure(f) if f.retryable => step_log!(
            info,
            entry,
            error_type = %f.error_type,
            error = %f.message,
            "step attempt failed; it may be retried"
        ),
        StepOutcome::Failure(f) => step_log!(
            warn,
            entry,
            error_type = %f.error_type,
            error = %f.message,
            "step attempt failed permanently"
        ),
    }
}

/// The failure of an attempt that overran its `timeout_seconds`.
fn timeout_failure(attempt: i32) -> StepFailure {
    StepFailure::retryable(
        error_types::TIMEOUT,
        format!("attempt {attempt} exceeded its timeout_seconds"),
    )
}

/// Keeps this worker's registry row fresh (see [`Tasker::list_workers`]) until it stops. A
/// failed heartbeat is only logged: the database may be away for a moment.
async fn heartbeat_loop(shared: Arc<Shared>) {
    let every = shared
        .tasker
        .recovery_options()
        .heartbeat_interval
        .max(Duration::from_millis(10));
    let mut stopped = shared.stopped.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let in_flight = i32::try_from(shared.inflight().len()).unwrap_or(i32::MAX);
        if let Err(e) = shared
            .tasker
            .store()
            .heartbeat_worker(shared.registration_uuid, in_flight, false, Utc::now())
            .await
        {
            tracing::warn!(error = %e, "worker heartbeat failed");
        }
    }
}

/// Renews leases of attempts still in flight (queued, running, or waiting to be applied),
/// fails attempts past their deadline, and gives up handlers that overran it by a lease
/// length. Runs until the worker is fully stopped, through the whole drain.
async fn lease_loop(shared: Arc<Shared>) {
    let renew_every = shared.config.lease / 3;
    let give_up_after = shared.config.lease;
    let mut last_renewal = Instant::now();
    let mut stopped = shared.stopped.subscribe();
    loop {
        let tick = Duration::from_millis(50);
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        let mut timed_out = Vec::new();
        {
            let mut inflight = shared.inflight();
            let mut given_up = Vec::new();
            for (event_id, entry) in inflight.iter_mut() {
                let Some(deadline) = entry.deadline else { continue };
                match entry.phase {
                    Phase::Queued | Phase::Running if deadline <= now => {
                        // The entry stays, marked: a running handler keeps its slot until it
                        // returns, and its late completion is accepted and ignored.
                        entry.phase = Phase::TimedOut;
                        entry.cancel.cancel();
                        step_log!(warn, entry, event_id, "attempt timed out");
                        let outcome = StepOutcome::Failure(timeout_failure(entry.attempt));
                        entry.trace.finish(&shared.tasker, &outcome, "timeout");
                        timed_out.push(completion_of(&shared, entry, outcome));
                    }
                    Phase::TimedOut if now.duration_since(deadline) >= give_up_after => given_up.push(*event_id),
                    _ => {}
                }
            }
            for id in given_up {
                if let Some(entry) = inflight.remove(&id) {
                    step_log!(
                        warn,
                        entry,
                        event_id = id,
                        "handler still running a lease length after its timeout; freeing its slot"
                    );
                }
            }
        }
        for completion in timed_out {
            if let Err(e) = send_job(&shared, completion, None, None) {
                tracing::warn!(error = %e, "could not hand a timeout to the applier");
            }
        }
        if now.duration_since(last_renewal) >= renew_every {
            last_renewal = now;
            // A failed worker hands nothing more out: its unpolled events go back to other
            // workers through their leases, which stop being renewed here.
            let failed = shared.fatal_error().is_some();
            let renew: Vec<MessageRef> = shared
                .inflight()
                .values()
                .filter(|i| i.holds_lease() && !(failed && i.phase == Phase::Queued))
                .filter(|i| now.duration_since(i.claimed_at) >= renew_every)
                .map(|i| i.message.clone())
                .collect();
            if let Err(e) = shared.tasker.extend_leases(&renew, shared.config.lease).await {
                tracing::warn!(error = %e, "renewing leases failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDatabase;

    // Issue 18, item 15: a background task that panics is surfaced, not silently dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_background_task_fails_the_worker_visibly() {
        let db = ScratchDatabase::create(Backend::Sqlite, None).await.expect("scratch");
        let tasker = Tasker::connect(Some(&db.url)).await.expect("connect");
        let worker = Worker::start(&tasker, WorkerConfig::new(vec!["supervised".into()]))
            .await
            .expect("start");
        let _ = supervise(&worker.shared, "applier", async { panic!("boom") }).await;
        match worker.poll(Duration::from_millis(100)) {
            Poll::Failed(e) => {
                assert_eq!(e.code(), "worker_failed");
                assert!(e.to_string().contains("boom"), "{e}");
            }
            other => panic!("expected Poll::Failed, got {other:?}"),
        }
        let err = worker
            .complete(1, StepOutcome::success(serde_json::json!(1)))
            .expect_err("no applier: complete must fail, not drop the result");
        assert_eq!(err.code(), "worker_failed");
        assert!(worker.failure().is_some());
        worker.shutdown(Duration::from_secs(1)).await.expect("shutdown");
    }
}
