//! Telemetry: the engine's traces and metrics, exported over OTLP/HTTP and rendered for
//! Prometheus; health (liveness and readiness).
//!
//! * [`trace`]: W3C trace context and the spans the engine emits (a span per task, a span per
//!   step attempt), and how their identities derive from stored ids.
//! * [`metrics`]: the metric catalog and the per-engine registry.
//! * `otlp`: the background exporter (off unless `telemetry.enabled`).
//!
//! Metrics are always counted (a few nanoseconds per change) so that `/metrics` works without
//! any set-up; spans are only built when tracing is enabled.

pub mod metrics;
mod otlp;
pub mod trace;

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::engine::EngineEvent;
use crate::state::{StepState, TaskState};
use metrics::{Metrics, SPANS_DROPPED};
pub(crate) use otlp::{MetricsReader, MetricsSource};
use trace::SpanRecord;

/// How the engine exports telemetry (the `[telemetry]` configuration section).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryOptions {
    /// Export spans and metrics over OTLP. Off by default; metrics are still counted for
    /// Prometheus scrapes.
    pub enabled: bool,
    /// The OTLP/HTTP receiver's base URL; `/v1/traces` and `/v1/metrics` are appended.
    pub otlp_endpoint: String,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// How often buffered spans and a metrics snapshot are sent.
    pub export_interval: Duration,
    /// Export spans (when enabled).
    pub traces: bool,
    /// Export metrics (when enabled).
    pub metrics: bool,
    /// Finished spans buffered for export; beyond it spans are dropped (and counted).
    pub max_queued_spans: usize,
    /// How long the readiness check waits for the database to answer before it reports it
    /// down.
    pub health_probe_timeout: Duration,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        Self {
            enabled: false,
            otlp_endpoint: "http://127.0.0.1:4318".into(),
            service_name: "tasker".into(),
            export_interval: Duration::from_secs(5),
            traces: true,
            metrics: true,
            max_queued_spans: 8192,
            health_probe_timeout: Duration::from_secs(2),
        }
    }
}

type ExporterInputs = (mpsc::Receiver<SpanRecord>, mpsc::UnboundedReceiver<otlp::Control>);

/// An engine's telemetry state.
#[derive(Debug)]
pub(crate) struct Telemetry {
    options: TelemetryOptions,
    pub(crate) metrics: Metrics,
    spans: Option<mpsc::Sender<SpanRecord>>,
    control: Option<mpsc::UnboundedSender<otlp::Control>>,
    /// Taken when the exporter starts.
    inputs: Mutex<Option<ExporterInputs>>,
}

impl Telemetry {
    pub(crate) fn new(options: TelemetryOptions) -> Self {
        let (spans, control, inputs) = if options.enabled {
            let (spans_tx, spans_rx) = mpsc::channel(options.max_queued_spans.max(1));
            let (control_tx, control_rx) = mpsc::unbounded_channel();
            (Some(spans_tx), Some(control_tx), Some((spans_rx, control_rx)))
        } else {
            (None, None, None)
        };
        Self {
            options,
            metrics: Metrics::default(),
            spans,
            control,
            inputs: Mutex::new(inputs),
        }
    }

    pub(crate) fn options(&self) -> &TelemetryOptions {
        &self.options
    }

    /// Whether spans are built and exported.
    pub(crate) fn tracing(&self) -> bool {
        self.spans.is_some() && self.options.traces
    }

    /// Queues a finished span for export; a full buffer drops it (counted).
    pub(crate) fn emit(&self, span: SpanRecord) {
        let Some(tx) = &self.spans else { return };
        if tx.try_send(span).is_err() {
            self.metrics.add(SPANS_DROPPED, &[], 1);
        }
    }

    /// Starts the exporter (once; a no-op when export is off).
    pub(crate) fn start_exporter(&self, source: MetricsSource) {
        let Some((spans, control)) = self.inputs.lock().ok().and_then(|mut i| i.take()) else {
            return;
        };
        tokio::spawn(otlp::run(self.options.clone(), spans, control, source));
    }

    /// Sends everything buffered now and waits (at most `timeout`) for the exporter to finish.
    pub(crate) async fn flush(&self, timeout: Duration) {
        let Some(control) = &self.control else { return };
        let (done, wait) = oneshot::channel();
        if control.send(otlp::Control::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(timeout, wait).await;
        }
    }

    /// Counts what committed lifecycle changes say: tasks created and finished, steps completed,
    /// failed, retried and timed out.
    pub(crate) fn record_lifecycle(&self, events: &[EngineEvent]) {
        use metrics::*;
        for e in events {
            match e {
                EngineEvent::Task { from: None, .. } => self.metrics.add(TASKS_CREATED, &[], 1),
                EngineEvent::Task { to, .. } if to.is_terminal() => {
                    self.metrics.add(TASKS_FINISHED, &[("state", to.as_str())], 1)
                }
                EngineEvent::Step {
                    to, trigger, details, ..
                } => {
                    let timed_out = details.get("error_type").and_then(serde_json::Value::as_str)
                        == Some(crate::outcome::error_types::TIMEOUT);
                    if timed_out {
                        self.metrics.add(STEPS_TIMED_OUT, &[], 1);
                    }
                    match (*trigger, *to) {
                        ("succeed", StepState::Complete) => self.metrics.add(STEPS_COMPLETED, &[], 1),
                        ("fail", _) => self.metrics.add(STEPS_FAILED, &[], 1),
                        ("schedule_retry", _) => self.metrics.add(STEPS_RETRIED, &[], 1),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
}

/// Whether a task event ends the task (its span can be emitted).
pub(crate) fn finished_task(e: &EngineEvent) -> Option<(uuid::Uuid, TaskState)> {
    match e {
        EngineEvent::Task { task_uuid, to, .. } if to.is_terminal() => Some((*task_uuid, *to)),
        _ => None,
    }
}
