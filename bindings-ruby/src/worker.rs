//! `TaskerCore::Native::Worker`: a `tasker_core::Worker`. The Ruby layer
//! (`lib/tasker_core/worker.rb`) owns the handler threads; each polls here with the GVL released
//! and reports back with `complete_success` / `complete_failure`; batch workers record progress
//! with `checkpoint`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use magnus::prelude::*;
use magnus::{Error, RHash, RString, Ruby, Value};
use tasker_core::{
    config, CancelSignal as CoreCancelSignal, DispatchMode, Poll, StepEvent, StepFailure, StepOutcome,
    Worker as CoreWorker,
};

use crate::client::{duration, Client};
use crate::convert;
use crate::error::raise;
use crate::gvl;

/// `TaskerCore::Native::CancelSignal`: the cancellation signal of one step attempt, raised when
/// the attempt timed out, was given up, or shutdown's deadline passed. `cancelled?` is one
/// atomic load.
#[magnus::wrap(class = "TaskerCore::Native::CancelSignal", free_immediately, size)]
pub struct CancelSignal {
    signal: CoreCancelSignal,
}

impl CancelSignal {
    fn is_cancelled(&self) -> bool {
        self.signal.is_cancelled()
    }
}

#[magnus::wrap(class = "TaskerCore::Native::Worker", free_immediately, size)]
pub struct Worker {
    worker: CoreWorker,
    /// Events handed to Ruby, and the time spent between receiving each from the core's channel
    /// and returning it to Ruby as a Hash (GVL re-acquisition and conversion): half of the hop.
    polled: AtomicU64,
    poll_hop_ns: AtomicU64,
}

impl Worker {
    /// Starts a worker from the configuration (`worker_config(queues)` of the current
    /// configuration: files, then `TASKER_WORKER__*` variables), with every argument that is not
    /// `nil` winning over it.
    #[allow(clippy::too_many_arguments)]
    fn start(
        ruby: &Ruby,
        client: &Client,
        queues: Vec<String>,
        concurrency: Option<usize>,
        lease: Option<f64>,
        poll_interval: Option<f64>,
        dispatch_mode: Option<String>,
        embedded_orchestration: Option<bool>,
        worker_id: Option<String>,
    ) -> Result<Self, Error> {
        let loaded = config::load_current().map_err(|e| raise(ruby, e))?;
        let mut config = loaded.config.worker_config(&queues);
        // Shown by `list_workers` / `tasker worker list`.
        config.language = "ruby".into();
        if let Some(n) = concurrency {
            config.concurrency = n;
        }
        if let Some(secs) = lease {
            config.lease = duration(ruby, "lease", secs)?;
        }
        if let Some(secs) = poll_interval {
            config.poll_interval = Some(duration(ruby, "poll_interval", secs)?);
        }
        if let Some(mode) = dispatch_mode {
            config.dispatch_mode = mode.parse::<DispatchMode>().map_err(|e| raise(ruby, e))?;
        }
        if let Some(on) = embedded_orchestration {
            config.embedded_orchestration = on;
        }
        if let Some(id) = worker_id {
            config.worker_id = id;
        }
        let tasker = client.tasker.clone();
        let worker = gvl::block_on(ruby, async move { CoreWorker::start(&tasker, config).await }, || None)?
            .map_err(|e| raise(ruby, e))?;
        Ok(Self {
            worker,
            polled: AtomicU64::new(0),
            poll_hop_ns: AtomicU64::new(0),
        })
    }

    /// The settings this worker runs with (configuration and arguments merged).
    fn config(ruby: &Ruby, rb_self: &Self) -> Result<RHash, Error> {
        let c = rb_self.worker.config();
        let h = ruby.hash_new();
        h.aset("queues", c.queues.clone())?;
        h.aset("concurrency", c.concurrency)?;
        h.aset("lease", c.lease.as_secs_f64())?;
        h.aset("poll_interval", c.poll_interval.map(|d| d.as_secs_f64()))?;
        h.aset(
            "dispatch_mode",
            match c.dispatch_mode {
                DispatchMode::Polling => "polling",
                DispatchMode::EventDriven => "event_driven",
                DispatchMode::Hybrid => "hybrid",
            },
        )?;
        h.aset("embedded_orchestration", c.embedded_orchestration)?;
        h.aset("worker_id", c.worker_id.as_str())?;
        h.aset("language", c.language.as_str())?;
        Ok(h)
    }

    /// The next step event as a Hash, `nil` when none arrived within `timeout` seconds (or an
    /// interrupt was handled without raising), or `:shutdown`.
    fn poll(ruby: &Ruby, rb_self: &Self, timeout: f64) -> Result<Value, Error> {
        let timeout = duration(ruby, "timeout", timeout)?;
        let worker = &rb_self.worker;
        // Fast path: an event already waiting is taken without giving up the GVL. Under load
        // this skips a release/re-acquire (and the wait for other threads) per step.
        let ready = match worker.poll(Duration::ZERO) {
            Poll::Empty => None,
            other => Some((other, Instant::now())),
        };
        let polled = match ready {
            Some(p) => p,
            None => gvl::block_on(
                ruby,
                async {
                    let p = worker.poll_async(timeout).await;
                    (p, Instant::now())
                },
                // A trap handler ran without raising: let the Ruby loop look at its stop flag.
                || Some((Poll::Empty, Instant::now())),
            )?,
        };
        match polled {
            (Poll::Event(event), received) => {
                let hash = event_hash(ruby, &event);
                let hash = match hash {
                    Ok(h) => h,
                    Err(e) => {
                        // Never lose an event: it was handed out and must be completed.
                        let failure = StepFailure::permanent("event_not_convertible", e.to_string());
                        let _ = worker.complete(event.event_id, StepOutcome::Failure(failure));
                        return Err(e);
                    }
                };
                rb_self.polled.fetch_add(1, Ordering::Relaxed);
                let ns = u64::try_from(received.elapsed().as_nanos()).unwrap_or(u64::MAX);
                rb_self.poll_hop_ns.fetch_add(ns, Ordering::Relaxed);
                Ok(hash.as_value())
            }
            (Poll::Empty, _) => Ok(ruby.qnil().as_value()),
            (Poll::ShutDown, _) => Ok(ruby.to_symbol("shutdown").as_value()),
            (Poll::Failed(e), _) => Err(raise(ruby, e)),
        }
    }

    fn complete_success(
        ruby: &Ruby,
        rb_self: &Self,
        event_id: u64,
        result: Value,
        metadata: Value,
    ) -> Result<(), Error> {
        let result = convert::to_json(result, "result").map_err(|e| raise(ruby, e))?;
        let metadata = convert::to_json(metadata, "metadata").map_err(|e| raise(ruby, e))?;
        rb_self
            .worker
            .complete(event_id, StepOutcome::Success { result, metadata })
            .map_err(|e| raise(ruby, e))
    }

    #[allow(clippy::too_many_arguments)]
    fn complete_failure(
        ruby: &Ruby,
        rb_self: &Self,
        event_id: u64,
        message: RString,
        error_type: RString,
        retryable: bool,
        retry_after: Option<f64>,
        backtrace: Option<RString>,
        metadata: Value,
    ) -> Result<(), Error> {
        let retry_after = retry_after.map(|s| duration(ruby, "retry_after", s)).transpose()?;
        // Metadata with no JSON form never changes the failure (as in every language): it is
        // replaced by a note naming the bad value, and the error type, message and retryability
        // stay as the handler reported them.
        let metadata = convert::to_json(metadata, "metadata").unwrap_or_else(|e| {
            use tasker_core::outcome::error_types::{METADATA_NOT_SERIALIZABLE, METADATA_TOO_DEEP};
            let code = if e.too_deep {
                METADATA_TOO_DEEP
            } else {
                METADATA_NOT_SERIALIZABLE
            };
            tasker_core::outcome::dropped_metadata(code, &e.path, &e.message)
        });
        let failure = StepFailure {
            message: lossy(message),
            error_type: lossy(error_type),
            retryable,
            retry_after,
            backtrace: backtrace.map(lossy),
            metadata,
        };
        rb_self
            .worker
            .complete(event_id, StepOutcome::Failure(failure))
            .map_err(|e| raise(ruby, e))
    }

    /// Stores a checkpoint (`{"cursor" =>, "items_done" =>, "accumulated" =>}`) for the attempt of
    /// `event_id`, committed before this returns. Waits with the GVL released, like a database
    /// call: other handler threads keep running meanwhile.
    fn checkpoint(ruby: &Ruby, rb_self: &Self, event_id: u64, checkpoint: Value) -> Result<(), Error> {
        let checkpoint = convert::to_json(checkpoint, "checkpoint").map_err(|e| raise(ruby, e))?;
        let worker = &rb_self.worker;
        // A trap handler that did not raise: keep waiting for the same write (it may already be
        // committing). An interrupt that raises drops it, as it would any other wait.
        gvl::block_on(ruby, worker.checkpoint(event_id, checkpoint), || None)?.map_err(|e| raise(ruby, e))
    }

    /// Graceful shutdown; returns `{"released" => n, "abandoned" => n}`.
    fn shutdown(ruby: &Ruby, rb_self: &Self, timeout: f64) -> Result<RHash, Error> {
        let deadline = duration(ruby, "timeout", timeout)?;
        let worker = rb_self.worker.clone();
        // Not cancellable by an interrupt: a half-done shutdown would strand claimed steps. The
        // interrupt is processed once shutdown returns (at most `timeout` later).
        let report = gvl::block_on(ruby, async move { worker.shutdown(deadline).await }, || None)?
            .map_err(|e| raise(ruby, e))?;
        let h = ruby.hash_new();
        h.aset("released", report.released)?;
        h.aset("abandoned", report.abandoned)?;
        Ok(h)
    }

    fn is_shutting_down(&self) -> bool {
        self.worker.is_shutting_down()
    }

    /// The cancellation signal of a handed-out event, `nil` once it is finished (which counts as
    /// cancelled: nobody uses its result any more).
    fn cancel_signal(&self, event_id: u64) -> Option<CancelSignal> {
        self.worker
            .cancel_signal(event_id)
            .map(|signal| CancelSignal { signal })
    }

    /// Whether the handler of `event_id` should stop (see `cancel_signal`).
    fn is_cancelled(&self, event_id: u64) -> bool {
        self.worker.is_cancelled(event_id)
    }

    fn stats(ruby: &Ruby, rb_self: &Self) -> Result<RHash, Error> {
        let h = ruby.hash_new();
        h.aset("polled", rb_self.polled.load(Ordering::Relaxed))?;
        h.aset("poll_hop_ns", rb_self.poll_hop_ns.load(Ordering::Relaxed))?;
        Ok(h)
    }
}

fn lossy(s: RString) -> String {
    s.to_string().unwrap_or_else(|_| {
        // SAFETY: the bytes are copied before any Ruby code can run.
        unsafe { s.to_string_lossy() }.into_owned()
    })
}

fn event_hash(ruby: &Ruby, e: &StepEvent) -> Result<RHash, Error> {
    let h = ruby.hash_new();
    h.aset("event_id", e.event_id)?;
    h.aset("task_uuid", e.task_uuid.to_string())?;
    h.aset("step_uuid", e.step_uuid.to_string())?;
    h.aset("step_name", e.step_name.as_str())?;
    h.aset("namespace", e.namespace.as_str())?;
    h.aset("task_name", e.task_name.as_str())?;
    h.aset("task_version", e.task_version.as_str())?;
    h.aset("callable", e.handler.callable.as_str())?;
    h.aset("method", e.handler.method.as_str())?;
    h.aset("config", convert::to_ruby(ruby, &e.handler.initialization))?;
    h.aset("input", convert::to_ruby(ruby, &e.task_context))?;
    h.aset("dependency_results", convert::hash(ruby, &e.dependency_results))?;
    h.aset("attempt", e.attempt)?;
    h.aset("max_attempts", e.max_attempts)?;
    h.aset("correlation_id", e.correlation_id.to_string())?;
    h.aset("deadline", e.deadline.map(|d| d.to_rfc3339()))?;
    h.aset("batch", e.batch.as_ref().map(|b| convert::to_ruby(ruby, b)))?;
    h.aset("checkpoint", e.checkpoint.as_ref().map(|c| convert::to_ruby(ruby, c)))?;
    h.aset("trace_context", e.trace_context.as_deref())?;
    Ok(h)
}

pub fn define(ruby: &Ruby, native: magnus::RModule) -> Result<(), Error> {
    use magnus::{function, method};
    let class = native.define_class("Worker", ruby.class_object())?;
    class.define_singleton_method("start", function!(Worker::start, 8))?;
    class.define_method("config", method!(Worker::config, 0))?;
    class.define_method("poll", method!(Worker::poll, 1))?;
    class.define_method("complete_success", method!(Worker::complete_success, 3))?;
    class.define_method("complete_failure", method!(Worker::complete_failure, 7))?;
    class.define_method("checkpoint", method!(Worker::checkpoint, 2))?;
    class.define_method("shutdown", method!(Worker::shutdown, 1))?;
    class.define_method("shutting_down?", method!(Worker::is_shutting_down, 0))?;
    class.define_method("stats", method!(Worker::stats, 0))?;
    class.define_method("cancel_signal", method!(Worker::cancel_signal, 1))?;
    class.define_method("cancelled?", method!(Worker::is_cancelled, 1))?;
    let signal = native.define_class("CancelSignal", ruby.class_object())?;
    signal.define_method("cancelled?", method!(CancelSignal::is_cancelled, 0))?;
    Ok(())
}
