//! The engine's side of telemetry: announcing committed changes (metrics, the task span, the
//! fast broadcast, in-process subscribers), reading gauges, and health.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{EngineEvent, Inner, Tasker};
use crate::state::TaskState;
use crate::store::NewEvent;
use crate::telemetry::metrics::{self, counter, gauge, MetricsSnapshot, Sample};
use crate::telemetry::trace::{AttributeValue, SpanKind, SpanRecord, TraceContext};
use crate::telemetry::{finished_task, MetricsReader, TelemetryOptions};

/// What a worker of this process reports to [`Tasker::health`]: its id and, if one of its loops
/// died, why; `None` once the worker is gone or stopped on purpose.
pub(crate) type WorkerProbe = Box<dyn Fn() -> Option<(String, Option<String>)> + Send + Sync>;

/// The workers started in this process on one engine (see [`Tasker::health`]).
#[derive(Default)]
pub(crate) struct LocalWorkers(std::sync::Mutex<Vec<WorkerProbe>>);

impl std::fmt::Debug for LocalWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|p| p.len()).unwrap_or_default();
        write!(f, "LocalWorkers({n})")
    }
}

impl LocalWorkers {
    pub(crate) fn add(&self, probe: WorkerProbe) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(probe);
    }

    /// The live workers' states; forgets the ones that are gone.
    fn read(&self) -> Vec<(String, Option<String>)> {
        let mut probes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut states = Vec::new();
        probes.retain(|probe| match probe() {
            Some(state) => {
                states.push(state);
                true
            }
            None => false,
        });
        states
    }
}

/// One check of a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    /// `ok`, or what is wrong.
    pub detail: String,
}

/// Liveness and readiness of an engine (and of the workers it runs in this process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// The runtime answers (always true when this could be built).
    pub live: bool,
    /// Every check passed: the database answers, the migrations ran, no worker loop died.
    pub ready: bool,
    pub checks: Vec<HealthCheck>,
}

#[async_trait::async_trait]
impl MetricsReader for Inner {
    async fn read_metrics(&self) -> MetricsSnapshot {
        let gauges = gauges_of(self).await;
        self.telemetry.metrics.snapshot(gauges)
    }

    fn spans_dropped(&self, n: u64) {
        self.telemetry.metrics.add(metrics::SPANS_DROPPED, &[], n);
    }
}

async fn gauges_of(inner: &Inner) -> Vec<Sample> {
    let mut out = Vec::new();
    match inner.store.queue_stats().await {
        Ok(queues) => {
            let now = chrono::Utc::now();
            for q in queues {
                out.push(gauge(
                    metrics::QUEUE_DEPTH,
                    &[("queue", &q.queue), ("visibility", "visible")],
                    q.visible as f64,
                ));
                out.push(gauge(
                    metrics::QUEUE_DEPTH,
                    &[("queue", &q.queue), ("visibility", "hidden")],
                    q.hidden as f64,
                ));
                let age = q
                    .oldest_visible_at
                    .map_or(0.0, |at| (now - at).num_milliseconds().max(0) as f64 / 1000.0);
                out.push(gauge(metrics::QUEUE_OLDEST_AGE, &[("queue", &q.queue)], age));
            }
        }
        Err(e) => tracing::debug!(error = %e, "queue gauges unavailable"),
    }
    if let Some(breaker) = &inner.breaker {
        let status = breaker.status(std::time::Instant::now());
        let name = [("name", status.name)];
        out.push(gauge(metrics::BREAKER_STATE, &name, status.state.gauge()));
        out.push(counter(metrics::BREAKER_OPENED, &name, status.opened));
        out.push(counter(metrics::BREAKER_REJECTED, &name, status.rejected));
    }
    if let Some(broker) = &inner.broker {
        let status = broker.breaker().status(std::time::Instant::now());
        let name = [("name", status.name)];
        out.push(gauge(metrics::BREAKER_STATE, &name, status.state.gauge()));
        out.push(counter(metrics::BREAKER_OPENED, &name, status.opened));
        out.push(counter(metrics::BREAKER_REJECTED, &name, status.rejected));
        let b = broker.status();
        out.push(gauge(
            metrics::BROKER_CONNECTED,
            &[],
            if b.connected { 1.0 } else { 0.0 },
        ));
        out.push(counter(metrics::BROKER_PUBLISHED, &[], b.published));
        out.push(counter(
            metrics::BROKER_DELIVERIES,
            &[("outcome", "received")],
            b.delivered,
        ));
        out.push(counter(metrics::BROKER_DELIVERIES, &[("outcome", "stale")], b.stale));
        out.push(counter(metrics::BROKER_RECONNECTS, &[], b.reconnects));
    }
    let (idle, used) = inner.store.connection_stats();
    out.push(gauge(metrics::DB_CONNECTIONS, &[("state", "idle")], f64::from(idle)));
    out.push(gauge(metrics::DB_CONNECTIONS, &[("state", "used")], f64::from(used)));
    out
}

impl Tasker {
    /// Announces changes that committed: counts them, emits the spans of tasks they finished,
    /// broadcasts them to fast readers and to [`Tasker::subscribe`]rs.
    pub(super) fn announce(&self, lifecycle: Vec<EngineEvent>, domain: Vec<NewEvent>) {
        let telemetry = &self.inner.telemetry;
        telemetry.record_lifecycle(&lifecycle);
        if telemetry.tracing() {
            // The span ends now, when this process saw the finishing commit: the stored
            // `completed_at` is cut to milliseconds on SQLite, which could end the task span
            // before the last attempt's span inside it.
            let finished_at = SystemTime::now();
            for (task_uuid, state) in lifecycle.iter().filter_map(finished_task) {
                let me = self.clone();
                tokio::spawn(async move { me.emit_task_span(task_uuid, state, finished_at).await });
            }
        }
        self.broadcast_fast(&lifecycle, domain);
        for e in lifecycle {
            self.emit(|| e);
        }
    }

    /// The span of a finished task: from its creation to now, under the caller's span when it
    /// was created with a `traceparent`.
    async fn emit_task_span(&self, task_uuid: uuid::Uuid, state: TaskState, finished_at: SystemTime) {
        let task = match self.inner.store.task_summary(task_uuid).await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%task_uuid, error = %e, "task span not emitted");
                return;
            }
        };
        let parent = task
            .trace_parent
            .as_deref()
            .and_then(|tp| TraceContext::parse(tp).ok())
            .map(|c| c.span_id);
        let context = TraceContext::of_task(task_uuid, task.correlation_id, true);
        let mut attributes: Vec<(&'static str, AttributeValue)> = vec![
            ("tasker.task.uuid", task_uuid.to_string().into()),
            ("tasker.task.namespace", task.namespace.clone().into()),
            ("tasker.task.name", task.name.clone().into()),
            ("tasker.task.version", task.version.clone().into()),
            ("tasker.task.state", state.as_str().into()),
            ("tasker.task.total_steps", i64::from(task.total_steps).into()),
            ("tasker.correlation_id", task.correlation_id.to_string().into()),
        ];
        if let Some(initiator) = &task.initiator {
            attributes.push(("tasker.task.initiator", initiator.clone().into()));
        }
        let start: SystemTime = task.created_at.into();
        self.inner.telemetry.emit(SpanRecord {
            context,
            parent_span_id: parent,
            name: format!("task {}/{}", task.namespace, task.name),
            kind: SpanKind::Internal,
            start,
            end: finished_at.max(start),
            attributes,
            error: (state == TaskState::Error).then(|| "the task failed".to_owned()),
        });
    }

    /// Counters, histograms and gauges (queue depths, connections) as of now.
    pub async fn metrics(&self) -> MetricsSnapshot {
        self.inner.read_metrics().await
    }

    /// [`Tasker::metrics`] in the Prometheus text format, for a `/metrics` endpoint.
    pub async fn prometheus_metrics(&self) -> String {
        self.metrics().await.prometheus()
    }

    /// How this engine exports telemetry.
    pub fn telemetry_options(&self) -> &TelemetryOptions {
        self.inner.telemetry.options()
    }

    /// Whether step attempts get spans (and handlers a `trace_context`).
    pub fn tracing_enabled(&self) -> bool {
        self.inner.telemetry.tracing()
    }

    /// Sends buffered spans and a metrics snapshot to the OTLP receiver now, waiting at most
    /// `timeout`. Call before a process exits; a no-op when export is off.
    pub async fn flush_telemetry(&self, timeout: Duration) {
        self.inner.telemetry.flush(timeout).await;
    }

    /// Adds a worker of this process to what [`Tasker::health`] reports.
    pub(crate) fn add_local_worker(&self, probe: WorkerProbe) {
        self.inner.local_workers.add(probe);
    }

    pub(crate) fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.inner.telemetry
    }

    /// Liveness and readiness: the database answers within `telemetry.health_probe_timeout`
    /// (2 s by default; the migrations ran when this engine connected, so a connected engine has
    /// them), the circuit breaker is closed, and every worker this process started on this
    /// engine is alive (a `worker <id>` check each, failed with the reason when one of its loops
    /// died), plus any `workers` the caller adds.
    pub async fn health(&self, workers: &[(String, Option<String>)]) -> HealthReport {
        let probe_timeout = self.telemetry_options().health_probe_timeout;
        let database = match tokio::time::timeout(probe_timeout, self.inner.store.ping()).await {
            Ok(Ok(())) => HealthCheck {
                name: "database".into(),
                ok: true,
                detail: "ok".into(),
            },
            Ok(Err(e)) => HealthCheck {
                name: "database".into(),
                ok: false,
                detail: format!("{}: {e}", e.code()),
            },
            Err(_) => HealthCheck {
                name: "database".into(),
                ok: false,
                detail: format!("no answer within {} ms", probe_timeout.as_millis()),
            },
        };
        let mut checks = vec![
            HealthCheck {
                name: "migrations".into(),
                ok: true,
                detail: "applied when this engine connected".into(),
            },
            database,
        ];
        if let Some(status) = self.breaker_status() {
            checks.push(HealthCheck {
                name: "circuit_breaker".into(),
                ok: status.state == crate::breaker::BreakerState::Closed,
                detail: match (status.state, &status.last_failure) {
                    (crate::breaker::BreakerState::Closed, _) => "closed".into(),
                    (state, failure) => format!(
                        "{} for {} ms after: {}",
                        state.as_str(),
                        status.open_for.unwrap_or_default().as_millis(),
                        failure.as_deref().unwrap_or("unreachable")
                    ),
                },
            });
        }
        if let Some(broker) = &self.inner.broker {
            let status = broker.status();
            checks.push(HealthCheck {
                name: "broker".into(),
                ok: status.connected,
                detail: if status.connected {
                    format!("connected to {}", status.target)
                } else {
                    format!(
                        "{}: {}",
                        status.target,
                        status.last_error.as_deref().unwrap_or("not connected")
                    )
                },
            });
        }
        let mut all: Vec<(String, Option<String>)> = workers.to_vec();
        for local in self.inner.local_workers.read() {
            if !all.iter().any(|(id, _)| *id == local.0) {
                all.push(local);
            }
        }
        for (id, failure) in &all {
            checks.push(HealthCheck {
                name: format!("worker {id}"),
                ok: failure.is_none(),
                detail: failure.clone().unwrap_or_else(|| "ok".into()),
            });
        }
        HealthReport {
            live: true,
            ready: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}
