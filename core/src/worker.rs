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
//! * Every event handed out must be completed once; the slot is held until its outcome is
//!   applied (or its deadline passes).
//!
//! # Fencing
//!
//! An outcome applies only to the attempt it was handed out for. When an attempt overruns
//! `timeout_seconds`, the worker fails it with a retryable `timeout` error and frees the slot;
//! the handler's later `complete` is accepted and ignored. If this process dies, its leases
//! expire, another worker receives the message again and fails the lost attempt with
//! `worker_lost` (then the step retries as usual). A completion for an attempt that was failed
//! or re-claimed meanwhile is rejected by the compare-and-swap and never applied.
//!
//! # Shutdown
//!
//! [`Worker::shutdown`] stops claiming, gives events nobody has polled yet back to their queue
//! (the attempt is undone), waits up to the deadline for in-flight handlers to complete, and
//! makes any still running visible to other workers at once. From the moment shutdown begins,
//! `poll` returns [`Poll::ShutDown`]; `complete` keeps working until shutdown returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::engine::{ClaimedStep, Completion, EagerClaim, Tasker};
use crate::error::{Result, TaskerError};
use crate::orchestrator;
use crate::outcome::{error_types, StepFailure, StepOutcome};
use crate::store::{Backend, MessageRef, RemoteSignal};
use crate::template::{is_valid_queue_name, HandlerSpec};

/// How a worker learns that work is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DispatchMode {
    /// Poll the queues every `poll_interval`.
    Polling,
    /// Only wake on notifications (in-process, and LISTEN/NOTIFY on PostgreSQL).
    EventDriven,
    /// Notifications, with polling as a fallback.
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
    /// polling starts at 1 ms after work and backs off to this.
    pub poll_interval: Option<Duration>,
    /// Also run the orchestrator loop (due retries, overdue attempts) in this process.
    pub embedded_orchestration: bool,
    /// Recorded in audit rows.
    pub worker_id: String,
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
        if self.lease < Duration::from_secs(1) {
            return Err(TaskerError::InvalidArgument("lease must be at least 1 second".into()));
        }
        Ok(())
    }
}

fn hostname() -> String {
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
}

impl StepEvent {
    fn from_claim(event_id: u64, c: &ClaimedStep) -> Result<Self> {
        let t = &c.template.template;
        let step = c
            .template
            .step(&c.step_name)
            .ok_or_else(|| TaskerError::Corrupt(format!("step '{}' is not in template {}", c.step_name, t.key())))?;
        Ok(Self {
            event_id,
            task_uuid: c.task_uuid,
            step_uuid: c.step_uuid,
            step_name: c.step_name.clone(),
            namespace: t.namespace_name.clone(),
            task_name: t.name.clone(),
            task_version: t.version.clone(),
            handler: step.handler.clone(),
            task_context: c.context.clone(),
            dependency_results: c.dependency_results.clone(),
            attempt: u32::try_from(c.attempt).unwrap_or(0),
            max_attempts: u32::try_from(c.max_attempts).unwrap_or(1),
            correlation_id: c.correlation_id,
            deadline: c.deadline,
        })
    }

    /// Result of the dependency called `name`.
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
}

/// Counts reported by [`Worker::shutdown`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Claimed but never polled: given back to their queue.
    pub released: usize,
    /// Still running at the deadline: made visible to other workers.
    pub abandoned: usize,
}

const RUNNING: u8 = 0;
const DRAINING: u8 = 1;
const STOPPED: u8 = 2;

struct Inflight {
    step_uuid: Uuid,
    attempt: i32,
    message: MessageRef,
    permit: Option<OwnedSemaphorePermit>,
    claimed_at: Instant,
    deadline: Option<Instant>,
    timed_out: bool,
}

struct CompletionJob {
    completion: Completion,
    /// The handler's slot, freed when its outcome is taken for applying.
    _permit: Option<OwnedSemaphorePermit>,
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
    stop: watch::Sender<bool>,
}

impl Shared {
    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Inflight>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still usable.
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
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

impl Worker {
    /// Starts claiming. Must be called within a tokio runtime (see [`crate::runtime`]).
    pub async fn start(tasker: &Tasker, config: WorkerConfig) -> Result<Worker> {
        config.validate()?;
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
        let (completions_tx, completions_rx) = flume::bounded(config.concurrency * 2 + 16);
        let (stop, _) = watch::channel(false);
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
        });
        let mut tasks = vec![
            tokio::spawn(dispatch_loop(shared.clone())),
            tokio::spawn(apply_loop(shared.clone(), completions_rx)),
            tokio::spawn(lease_loop(shared.clone())),
        ];
        if shared.config.embedded_orchestration {
            let stop = shared.stop.subscribe();
            tasks.push(tokio::spawn(orchestrator::run(tasker.clone(), stop)));
        }
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
        self.shared.state.load(Ordering::SeqCst) != RUNNING
    }

    /// Waits up to `timeout` for the next step event. Blocks the calling thread: call it with
    /// the GIL/GVL released. Returns within ~50 ms of shutdown starting.
    pub fn poll(&self, timeout: Duration) -> Poll {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_shutting_down() {
                return Poll::ShutDown;
            }
            // An event already waiting is returned even with a zero timeout.
            if let Ok(e) = self.shared.events_rx.try_recv() {
                return self.deliver(e);
            }
            let now = Instant::now();
            if now >= deadline {
                return Poll::Empty;
            }
            let slice = (deadline - now).min(Duration::from_millis(50));
            match self.shared.events_rx.recv_timeout(slice) {
                Ok(e) => return self.deliver(e),
                Err(flume::RecvTimeoutError::Timeout) => continue,
                Err(flume::RecvTimeoutError::Disconnected) => return Poll::ShutDown,
            }
        }
    }

    /// Async [`Worker::poll`].
    pub async fn poll_async(&self, timeout: Duration) -> Poll {
        if self.is_shutting_down() {
            return Poll::ShutDown;
        }
        if let Ok(e) = self.shared.events_rx.try_recv() {
            return self.deliver(e);
        }
        let mut stop = self.shared.stop.subscribe();
        tokio::select! {
            r = tokio::time::timeout(timeout, self.shared.events_rx.recv_async()) => match r {
                Ok(Ok(e)) => self.deliver(e),
                Ok(Err(_)) => Poll::ShutDown,
                Err(_) => Poll::Empty,
            },
            _ = stop.wait_for(|s| *s) => Poll::ShutDown,
        }
    }

    fn deliver(&self, event: StepEvent) -> Poll {
        if self.is_shutting_down() {
            // Raced with shutdown: give it back with the other unstarted events.
            let _ = self.shared.events_tx.try_send(event);
            return Poll::ShutDown;
        }
        Poll::Event(Box::new(event))
    }

    /// Reports the outcome of an event. Never waits for the database.
    pub fn complete(&self, event_id: u64, outcome: StepOutcome) -> Result<()> {
        if self.shared.state.load(Ordering::SeqCst) == STOPPED {
            return Err(TaskerError::ShutDown);
        }
        let mut entry = self
            .shared
            .inflight()
            .remove(&event_id)
            .ok_or(TaskerError::UnknownEvent(event_id))?;
        if entry.timed_out {
            tracing::warn!(event_id, step = %entry.step_uuid, "late completion after timeout ignored");
            return Ok(());
        }
        send_job(&self.shared, &mut entry, outcome)
    }

    /// Graceful shutdown; see the module docs. Idempotent.
    pub async fn shutdown(&self, deadline: Duration) -> Result<ShutdownReport> {
        let shared = &self.shared;
        if shared
            .state
            .compare_exchange(RUNNING, DRAINING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Ok(ShutdownReport::default());
        }
        let until = Instant::now() + deadline;
        let _ = shared.stop.send(true);
        // `start` spawns the dispatcher first; it must finish before unstarted claims are taken
        // back, so that no claim lands after the release.
        let handles: Vec<JoinHandle<()>> = self.tasks.lock().map(|mut t| t.drain(..).collect()).unwrap_or_default();
        let (dispatcher, others) = handles.split_first().map(|(d, o)| (Some(d), o)).unwrap_or((None, &[]));
        if let Some(d) = dispatcher {
            // The dispatcher exits at its next await point; wait so no claim lands afterwards.
            while !d.is_finished() {
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
                .map(|i| (i.step_uuid, i.attempt, i.message))
                .collect()
        };
        report.released = unstarted.len();
        if let Err(e) = shared.tasker.release_claims(&unstarted).await {
            tracing::warn!(error = %e, "could not release unstarted claims; their leases will expire instead");
        }
        while Instant::now() < until {
            let busy =
                shared.inflight().values().any(|i| !i.timed_out) || shared.pending_jobs.load(Ordering::SeqCst) > 0;
            if !busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let abandoned: Vec<MessageRef> = shared
            .inflight()
            .drain()
            .filter(|(_, i)| !i.timed_out)
            .map(|(_, i)| i.message)
            .collect();
        report.abandoned = abandoned.len();
        if !abandoned.is_empty() {
            if let Err(e) = shared.tasker.extend_leases(&abandoned, Duration::ZERO).await {
                tracing::warn!(error = %e, "could not expire abandoned leases; they will expire on their own");
            }
        }
        // Let the applier finish what was already handed to it.
        while shared.pending_jobs.load(Ordering::SeqCst) > 0 && Instant::now() < until + Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shared.state.store(STOPPED, Ordering::SeqCst);
        for h in others {
            h.abort();
        }
        Ok(report)
    }
}

/// Hands an attempt's outcome to the applier, with the attempt's slot (taken from `entry`).
fn send_job(shared: &Shared, entry: &mut Inflight, outcome: StepOutcome) -> Result<()> {
    let job = CompletionJob {
        completion: Completion {
            step_uuid: entry.step_uuid,
            attempt: entry.attempt,
            message: Some(entry.message.clone()),
            outcome,
            worker: Some(shared.config.worker_id.clone()),
            lost_lease: false,
        },
        _permit: entry.permit.take(),
    };
    shared.pending_jobs.fetch_add(1, Ordering::SeqCst);
    // Capacity exceeds the number of slots, so this never blocks.
    shared.completions_tx.send(job).map_err(|_| {
        shared.pending_jobs.fetch_sub(1, Ordering::SeqCst);
        TaskerError::ShutDown
    })
}

/// Claims steps whenever slots are free, and waits for work otherwise.
async fn dispatch_loop(shared: Arc<Shared>) {
    let tasker = shared.tasker.clone();
    let mut signals = tasker.subscribe_signals();
    let mut stop = shared.stop.subscribe();
    let max_batch = shared.config.concurrency.min(64);
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
            Ok(false) => Ok(Vec::new()),
            Ok(true) => {
                tasker
                    .claim(&shared.config.queues, permits.len(), shared.config.lease, rotate)
                    .await
            }
            Err(e) => Err(e),
        };
        rotate = rotate.wrapping_add(1);
        let claimed = match claimed {
            Ok(c) => {
                failures = 0;
                c
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
        for step in claimed {
            let Some(permit) = permits.pop() else { break };
            hand_out(&shared, &step, permit).await;
        }
        drop(permits);
        if got > 0 {
            idle_rounds = 0;
        } else {
            idle_rounds = idle_rounds.saturating_add(1);
            if !wait_for_work(&shared, &mut signals, &mut stop, idle_rounds).await {
                return;
            }
        }
    }
}

/// Registers a claimed step as in flight and puts its event in the channel.
async fn hand_out(shared: &Shared, step: &ClaimedStep, permit: OwnedSemaphorePermit) {
    let event_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let event = match StepEvent::from_claim(event_id, step) {
        Ok(e) => e,
        Err(e) => {
            // The lease expires and the step is recovered like a lost attempt.
            tracing::error!(error = %e, step = %step.step_uuid, "cannot build step event");
            return;
        }
    };
    let now = Instant::now();
    let deadline = step
        .deadline
        .map(|d| now + (d - Utc::now()).to_std().unwrap_or(Duration::ZERO));
    shared.inflight().insert(
        event_id,
        Inflight {
            step_uuid: step.step_uuid,
            attempt: step.attempt,
            message: step.message.clone(),
            permit: Some(permit),
            claimed_at: now,
            deadline,
            timed_out: false,
        },
    );
    // The channel holds `concurrency` events and every event owns a slot: never full.
    if shared.events_tx.try_send(event).is_err() {
        tracing::error!(event_id, "event channel full; releasing the claim");
        let removed = shared.inflight().remove(&event_id);
        if let Some(i) = removed {
            let _ = shared
                .tasker
                .release_claims(&[(i.step_uuid, i.attempt, i.message)])
                .await;
        }
    }
}

/// Cheap check before a claim transaction. On SQLite a claim takes the database write lock, so
/// idle workers in other processes must not take it every poll interval.
async fn has_work(shared: &Shared) -> Result<bool> {
    shared.tasker.store().has_visible_messages(&shared.config.queues).await
}

/// Returns false when the worker is stopping.
///
/// The polling fallback is adaptive: right after work it polls every millisecond (work tends to
/// come in bursts, and on SQLite polling is how other processes' enqueues are seen), then doubles
/// the interval with each empty round up to `poll_interval`, so idle workers stay cheap.
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
    let poll = match shared.config.dispatch_mode {
        DispatchMode::EventDriven => Duration::from_secs(3600),
        // PostgreSQL delivers NOTIFY across processes; polling there is only a safety net.
        DispatchMode::Hybrid if shared.tasker.backend() == Backend::Postgres => shared.poll_interval,
        DispatchMode::Polling | DispatchMode::Hybrid => backoff.min(shared.poll_interval),
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

/// Applies completions in batches: one transaction per batch.
async fn apply_loop(shared: Arc<Shared>, rx: flume::Receiver<CompletionJob>) {
    const MAX_BATCH: usize = 256;
    while let Ok(first) = rx.recv_async().await {
        let mut jobs: Vec<CompletionJob> = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let batch: Vec<Completion> = jobs
            .iter_mut()
            .map(|j| {
                // The handlers are done: their slots are free for the children they unblock.
                j._permit = None;
                j.completion.clone()
            })
            .collect();
        let mut permits = Vec::new();
        if shared.state.load(Ordering::SeqCst) == RUNNING {
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
        let mut attempt = 0u32;
        loop {
            let eager = (!permits.is_empty()).then_some(&eager);
            match shared.tasker.apply_completions_with(batch.clone(), eager).await {
                Ok((reports, claimed)) => {
                    for step in claimed {
                        let Some(permit) = permits.pop() else { break };
                        hand_out(&shared, &step, permit).await;
                    }
                    for r in reports {
                        if let crate::engine::CompletionReport::Fenced { step_uuid, reason } = r {
                            tracing::info!(%step_uuid, %reason, "completion fenced off");
                        }
                    }
                    break;
                }
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "applying completions failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => {
                    // The leases will expire and the steps run again: at-least-once, never lost.
                    tracing::error!(error = %e, count = batch.len(), "giving up on applying completions");
                    break;
                }
            }
        }
        drop(permits);
        shared.pending_jobs.fetch_sub(jobs.len(), Ordering::SeqCst);
        drop(jobs);
    }
}

/// Renews leases of running handlers and fails attempts past their deadline.
async fn lease_loop(shared: Arc<Shared>) {
    let renew_every = shared.config.lease / 3;
    let mut last_renewal = Instant::now();
    let mut stop = shared.stop.subscribe();
    loop {
        let tick = Duration::from_millis(50);
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        for (event_id, entry) in shared
            .inflight()
            .iter_mut()
            .filter(|(_, i)| !i.timed_out && i.deadline.is_some_and(|d| d <= now))
        {
            // The entry stays, marked, so the handler's late completion is accepted and ignored.
            entry.timed_out = true;
            tracing::warn!(event_id, step = %entry.step_uuid, "attempt timed out");
            let failure = StepFailure::retryable(
                error_types::TIMEOUT,
                format!("attempt {} exceeded its timeout_seconds", entry.attempt),
            );
            let _ = send_job(&shared, entry, StepOutcome::Failure(failure));
        }
        if now.duration_since(last_renewal) >= renew_every {
            last_renewal = now;
            let renew: Vec<MessageRef> = shared
                .inflight()
                .values()
                .filter(|i| !i.timed_out && now.duration_since(i.claimed_at) >= renew_every)
                .map(|i| i.message.clone())
                .collect();
            if let Err(e) = shared.tasker.extend_leases(&renew, shared.config.lease).await {
                tracing::warn!(error = %e, "renewing leases failed");
            }
        }
    }
}
