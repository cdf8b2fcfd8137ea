//! `NativeWorker`: the poll/complete protocol of `tasker_core::Worker`.

use std::time::Duration;

use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use serde::Deserialize;
use tasker_core::worker::DispatchMode;
use tasker_core::{CancelSignal, Poll, StepEvent, StepOutcome, Worker, WorkerConfig};

use crate::client::{millis, NativeClient};
use crate::error::{from_core, invalid_argument};
use crate::promise::{spawn, to_json};

/// Worker settings, as the TypeScript layer sends them: only what the caller passed
/// explicitly; everything absent comes from the configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerArgs {
    queues: Vec<String>,
    concurrency: Option<usize>,
    lease_seconds: Option<f64>,
    dispatch_mode: Option<String>,
    poll_interval_ms: Option<f64>,
    embedded_orchestration: Option<bool>,
    worker_id: Option<String>,
}

impl WorkerArgs {
    /// The worker's configuration, as the CLI's worker builds it: the configured one
    /// (`[worker]` of the config files, `TASKER_WORKER__*` variables, else the core's defaults)
    /// for these queues (added to `worker.queues`), then every option given here on top.
    fn into_config(self) -> napi::Result<WorkerConfig> {
        let loaded = tasker_core::config::load_current().map_err(from_core)?;
        let mut config = loaded.config.worker_config(&self.queues);
        // Shown by `list_workers`: this package's handlers are TypeScript (or JavaScript).
        config.language = "typescript".into();
        if let Some(c) = self.concurrency {
            config.concurrency = c;
        }
        if let Some(s) = self.lease_seconds {
            config.lease = millis("leaseSeconds", s * 1000.0)?;
        }
        if let Some(mode) = self.dispatch_mode {
            config.dispatch_mode = mode
                .parse::<DispatchMode>()
                .map_err(|e| invalid_argument("dispatchMode", e))?;
        }
        if let Some(ms) = self.poll_interval_ms {
            config.poll_interval = Some(millis("pollIntervalMs", ms)?);
        }
        if let Some(e) = self.embedded_orchestration {
            config.embedded_orchestration = e;
        }
        if let Some(id) = self.worker_id {
            config.worker_id = id;
        }
        Ok(config)
    }
}

/// The engine's nesting limit for stored JSON values (results, metadata, contexts).
#[napi]
pub const MAX_JSON_DEPTH: u32 = tasker_core::limits::MAX_JSON_DEPTH as u32;

/// The engine's size limit for stored JSON values, in bytes (serialized, compact).
#[napi]
pub const MAX_JSON_BYTES: u32 = tasker_core::limits::MAX_JSON_BYTES as u32;

/// The cancellation signal of one step attempt: raised when the attempt timed out, was given
/// up, or shutdown's deadline passed. Reading it is one atomic load.
#[napi]
pub struct NativeCancelSignal {
    signal: CancelSignal,
}

#[napi]
impl NativeCancelSignal {
    /// Whether the attempt has been cancelled.
    #[napi(getter)]
    pub fn is_cancelled(&self) -> bool {
        self.signal.is_cancelled()
    }
}

/// A running worker of the core. Every event handed out by `poll` must be completed once.
#[napi]
pub struct NativeWorker {
    worker: Worker,
}

#[napi]
impl NativeWorker {
    /// Starts claiming steps from the configured queues. The configuration is read here,
    /// synchronously: an invalid one throws (`config_invalid`).
    #[napi(ts_return_type = "Promise<NativeWorker>")]
    pub fn start<'e>(env: &'e Env, client: &NativeClient, config_json: String) -> napi::Result<Object<'e>> {
        let args: WorkerArgs = serde_json::from_str(&config_json).map_err(|e| invalid_argument("worker options", e))?;
        let config = args.into_config()?;
        let tasker = client.tasker.clone();
        spawn(env, async move {
            let worker = Worker::start(&tasker, config).await.map_err(from_core)?;
            Ok(NativeWorker { worker })
        })
    }

    /// Waits up to `timeoutMs` for step events and resolves to a JSON array of at most `max`
    /// of them (`[]` when none arrived), or to `null` once the worker is shutting down. Rejects
    /// with a `worker_failed` error once a background task of the worker died (fatal).
    #[napi(ts_return_type = "Promise<string | null>")]
    pub fn poll<'e>(&self, env: &'e Env, max: u32, timeout_ms: f64) -> napi::Result<Object<'e>> {
        let timeout = millis("timeoutMs", timeout_ms)?;
        let max = usize::try_from(max.max(1)).unwrap_or(1);
        let worker = self.worker.clone();
        spawn(env, async move {
            let mut events: Vec<StepEvent> = Vec::new();
            match worker.poll_async(timeout).await {
                Poll::Event(e) => events.push(*e),
                Poll::Empty => return Ok(Some("[]".to_owned())),
                Poll::ShutDown => return Ok(None),
                Poll::Failed(e) => return Err(from_core(e)),
            }
            // Take whatever else is ready now: one promise for a burst of events.
            while events.len() < max {
                match worker.poll_async(Duration::ZERO).await {
                    Poll::Event(e) => events.push(*e),
                    Poll::Empty | Poll::ShutDown | Poll::Failed(_) => break,
                }
            }
            to_json(&events).map(Some)
        })
    }

    /// Reports the outcome of an event (`StepOutcome` JSON). Never waits for the database.
    #[napi]
    pub fn complete(&self, event_id: i64, outcome_json: String) -> napi::Result<()> {
        let id = u64::try_from(event_id).map_err(|_| invalid_argument("eventId", format!("{event_id} is negative")))?;
        let outcome = StepOutcome::from_json(&outcome_json).map_err(from_core)?;
        self.worker.complete(id, outcome).map_err(from_core)
    }

    /// Records the progress of a running event's attempt, from JSON `{"cursor": …,
    /// "items_done": n, "accumulated": …}`; resolves once it is committed. Rejects with
    /// `invalid_argument` (bad shape), `unknown_event`, or `fenced` when the attempt no longer
    /// holds its step (it timed out, was re-claimed or cancelled).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn checkpoint<'e>(&self, env: &'e Env, event_id: i64, checkpoint_json: String) -> napi::Result<Object<'e>> {
        let id = u64::try_from(event_id).map_err(|_| invalid_argument("eventId", format!("{event_id} is negative")))?;
        let checkpoint: serde_json::Value =
            serde_json::from_str(&checkpoint_json).map_err(|e| invalid_argument("checkpoint", e))?;
        let worker = self.worker.clone();
        spawn(env, async move {
            worker.checkpoint(id, checkpoint).await.map_err(from_core)
        })
    }

    /// The cancellation signal of a handed-out event; `null` once the event is finished (which
    /// counts as cancelled: nobody uses its result any more).
    #[napi]
    pub fn cancel_signal(&self, event_id: i64) -> Option<NativeCancelSignal> {
        let id = u64::try_from(event_id).ok()?;
        self.worker
            .cancel_signal(id)
            .map(|signal| NativeCancelSignal { signal })
    }

    /// Whether the handler of `eventId` should stop (see `cancelSignal`).
    #[napi]
    pub fn is_cancelled(&self, event_id: i64) -> bool {
        u64::try_from(event_id).map_or(true, |id| self.worker.is_cancelled(id))
    }

    /// Handler slots: the explicit `concurrency`, else the configured one. The TypeScript layer
    /// runs at most this many handlers at once.
    #[napi(getter)]
    pub fn concurrency(&self) -> u32 {
        u32::try_from(self.worker.config().concurrency).unwrap_or(u32::MAX)
    }

    /// Whether shutdown has begun.
    #[napi(getter)]
    pub fn shutting_down(&self) -> bool {
        self.worker.is_shutting_down()
    }

    /// Graceful shutdown: stop claiming, wait up to `timeoutMs` for in-flight events to be
    /// completed, release the rest. Resolves to JSON `{"released": n, "abandoned": n}`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn shutdown<'e>(&self, env: &'e Env, timeout_ms: f64) -> napi::Result<Object<'e>> {
        let deadline = millis("timeoutMs", timeout_ms)?;
        let worker = self.worker.clone();
        spawn(env, async move {
            to_json(&worker.shutdown(deadline).await.map_err(from_core)?)
        })
    }
}

/// Diagnostics for the benchmark: the binding hop of one step without the queue and the
/// database. Parses `outcomeJson` as `complete` does, then, on the core's runtime, parses and
/// re-serializes `eventJson` (as `poll` serializes an event) and settles the promise with it
/// — the same thread hops, conversions and promise settlement as one poll plus one complete.
#[napi(ts_return_type = "Promise<string>")]
pub fn hop_probe<'e>(env: &'e Env, event_json: String, outcome_json: String) -> napi::Result<Object<'e>> {
    let outcome = StepOutcome::from_json(&outcome_json).map_err(from_core)?;
    spawn(env, async move {
        let event: serde_json::Value = serde_json::from_str(&event_json).map_err(|e| invalid_argument("event", e))?;
        drop(outcome);
        to_json(&[event])
    })
}
