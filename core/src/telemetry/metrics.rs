//! The engine's metrics: one registry per engine, read by the Prometheus text rendering and the
//! OTLP exporter alike.
//!
//! Every metric is declared once in [`METRICS`] (name, kind, unit, labels, description), which is
//! also what `docs/operations.md` lists. Counters and histograms are updated where the engine
//! decides (the lifecycle changes it commits, the worker's claims and completions); gauges
//! (queue depths, pool use, breaker state) are read when a snapshot is taken. Label values are
//! bounded sets (states, queue names, outcomes), never ids.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Only goes up (cumulative since the engine connected).
    Counter,
    Histogram,
    /// A value read when the snapshot is taken.
    Gauge,
}

/// One metric's declaration.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MetricInfo {
    /// The OpenTelemetry name (dotted). Prometheus sees it with dots as underscores, the unit
    /// as a suffix (`_seconds`) and `_total` on counters.
    pub name: &'static str,
    pub kind: MetricKind,
    /// UCUM unit: `s`, `1`, `{step}`, …
    pub unit: &'static str,
    pub labels: &'static [&'static str],
    pub description: &'static str,
}

const fn metric(
    name: &'static str,
    kind: MetricKind,
    unit: &'static str,
    labels: &'static [&'static str],
    description: &'static str,
) -> MetricInfo {
    MetricInfo {
        name,
        kind,
        unit,
        labels,
        description,
    }
}

pub const TASKS_CREATED: &str = "tasker.tasks.created";
pub const TASKS_FINISHED: &str = "tasker.tasks.finished";
pub const STEPS_CLAIMED: &str = "tasker.steps.claimed";
pub const STEPS_COMPLETED: &str = "tasker.steps.completed";
pub const STEPS_FAILED: &str = "tasker.steps.failed";
pub const STEPS_RETRIED: &str = "tasker.steps.retried";
pub const STEPS_TIMED_OUT: &str = "tasker.steps.timed_out";
pub const STEP_DURATION: &str = "tasker.step.duration";
pub const CLAIM_LATENCY: &str = "tasker.step.claim_latency";
pub const COMPLETION_BATCH: &str = "tasker.completion.batch_size";
pub const QUEUE_DEPTH: &str = "tasker.queue.depth";
pub const QUEUE_OLDEST_AGE: &str = "tasker.queue.oldest_age";
pub const DB_CONNECTIONS: &str = "db.client.connection.count";
pub const BREAKER_STATE: &str = "tasker.circuit_breaker.state";
pub const BREAKER_REJECTED: &str = "tasker.circuit_breaker.rejected";
pub const BREAKER_OPENED: &str = "tasker.circuit_breaker.opened";
pub const SPANS_DROPPED: &str = "tasker.telemetry.spans_dropped";
pub const BROKER_CONNECTED: &str = "tasker.broker.connected";
pub const BROKER_PUBLISHED: &str = "tasker.broker.published";
pub const BROKER_DELIVERIES: &str = "tasker.broker.deliveries";
pub const BROKER_RECONNECTS: &str = "tasker.broker.reconnects";

/// Every metric there is.
pub const METRICS: &[MetricInfo] = &[
    metric(TASKS_CREATED, MetricKind::Counter, "{task}", &[], "tasks created"),
    metric(
        TASKS_FINISHED,
        MetricKind::Counter,
        "{task}",
        &["state"],
        "tasks that reached a final state (complete, error, cancelled, resolved_manually)",
    ),
    metric(
        STEPS_CLAIMED,
        MetricKind::Counter,
        "{step}",
        &["queue"],
        "step attempts handed to this process's handlers",
    ),
    metric(STEPS_COMPLETED, MetricKind::Counter, "{step}", &[], "steps completed"),
    metric(
        STEPS_FAILED,
        MetricKind::Counter,
        "{step}",
        &[],
        "steps failed for good (no attempt left, or not retryable)",
    ),
    metric(
        STEPS_RETRIED,
        MetricKind::Counter,
        "{step}",
        &[],
        "failed attempts scheduled for a retry",
    ),
    metric(
        STEPS_TIMED_OUT,
        MetricKind::Counter,
        "{step}",
        &[],
        "attempts that overran their timeout_seconds",
    ),
    metric(
        STEP_DURATION,
        MetricKind::Histogram,
        "s",
        &["queue", "outcome"],
        "handler time of one attempt in this process (outcome: success, failure, timeout)",
    ),
    metric(
        CLAIM_LATENCY,
        MetricKind::Histogram,
        "s",
        &["queue"],
        "from a step's message becoming visible to its claim by this process",
    ),
    metric(
        COMPLETION_BATCH,
        MetricKind::Histogram,
        "{step}",
        &[],
        "outcomes applied per completion transaction in this process",
    ),
    metric(
        QUEUE_DEPTH,
        MetricKind::Gauge,
        "{message}",
        &["queue", "visibility"],
        "messages on each queue (visibility: visible, or in_flight while leased)",
    ),
    metric(
        QUEUE_OLDEST_AGE,
        MetricKind::Gauge,
        "s",
        &["queue"],
        "age of each queue's oldest visible message",
    ),
    metric(
        DB_CONNECTIONS,
        MetricKind::Gauge,
        "{connection}",
        &["state"],
        "database connections of this engine (state: idle, used)",
    ),
    metric(
        BREAKER_STATE,
        MetricKind::Gauge,
        "1",
        &["name"],
        "circuit breaker state: 0 closed, 1 half-open, 2 open",
    ),
    metric(
        BREAKER_OPENED,
        MetricKind::Counter,
        "{open}",
        &["name"],
        "times the circuit breaker opened",
    ),
    metric(
        BREAKER_REJECTED,
        MetricKind::Counter,
        "{call}",
        &["name"],
        "calls the open circuit breaker refused with `unavailable`",
    ),
    metric(
        SPANS_DROPPED,
        MetricKind::Counter,
        "{span}",
        &[],
        "spans not exported (the export buffer was full, or the receiver refused them)",
    ),
    metric(
        BROKER_CONNECTED,
        MetricKind::Gauge,
        "1",
        &[],
        "RabbitMQ (messaging.backend = \"rabbitmq\"): 1 while connected, else 0",
    ),
    metric(
        BROKER_PUBLISHED,
        MetricKind::Counter,
        "{message}",
        &[],
        "messages the outbox relay published to RabbitMQ and the broker confirmed",
    ),
    metric(
        BROKER_DELIVERIES,
        MetricKind::Counter,
        "{message}",
        &["outcome"],
        "RabbitMQ deliveries to this process (outcome: received, or stale: a duplicate or superseded copy a claim dropped)",
    ),
    metric(
        BROKER_RECONNECTS,
        MetricKind::Counter,
        "{reconnect}",
        &[],
        "times the RabbitMQ connection was lost and opened again",
    ),
];

/// The declaration of `name`.
pub fn metric_info(name: &str) -> Option<&'static MetricInfo> {
    METRICS.iter().find(|m| m.name == name)
}

/// Upper bounds of the duration histograms, in seconds.
const SECONDS_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Upper bounds of the batch-size histogram.
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

fn bounds_of(name: &str) -> &'static [f64] {
    if name == COMPLETION_BATCH {
        BATCH_BOUNDS
    } else {
        SECONDS_BOUNDS
    }
}

/// Label pairs of one series, in declaration order.
pub type Labels = Vec<(&'static str, String)>;

/// A histogram's cumulative state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramValue {
    pub bounds: &'static [f64],
    /// One count per bound, plus the overflow bucket (not cumulative).
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl HistogramValue {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// A series' value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricValue {
    Counter(u64),
    Gauge(f64),
    Histogram(HistogramValue),
}

/// One series: a metric with one set of label values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Labels,
    pub value: MetricValue,
}

/// A point-in-time copy of every series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// When the counters started (the engine connected).
    pub start: SystemTime,
    pub taken: SystemTime,
    pub samples: Vec<Sample>,
}

impl MetricsSnapshot {
    /// The value of a counter or gauge series (`labels` must match exactly), for tests and
    /// callers that read one figure.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.find(name, labels).map(|s| match &s.value {
            MetricValue::Counter(c) => *c as f64,
            MetricValue::Gauge(g) => *g,
            MetricValue::Histogram(h) => h.count as f64,
        })
    }

    /// The series of `name` with exactly these labels.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.samples.iter().find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && s.labels.iter().zip(labels).all(|((k, v), (k2, v2))| k == k2 && v == v2)
        })
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for info in METRICS {
            let samples: Vec<&Sample> = self.samples.iter().filter(|s| s.name == info.name).collect();
            if samples.is_empty() {
                continue;
            }
            let base = prometheus_name(info);
            let (kind, exposed) = match info.kind {
                MetricKind::Counter => ("counter", format!("{base}_total")),
                MetricKind::Gauge => ("gauge", base.clone()),
                MetricKind::Histogram => ("histogram", base.clone()),
            };
            let _ = writeln!(out, "# HELP {exposed} {}", info.description);
            let _ = writeln!(out, "# TYPE {exposed} {kind}");
            for s in samples {
                match &s.value {
                    MetricValue::Counter(c) => {
                        let _ = writeln!(out, "{exposed}{} {c}", label_text(&s.labels, None));
                    }
                    MetricValue::Gauge(g) => {
                        let _ = writeln!(out, "{exposed}{} {}", label_text(&s.labels, None), number(*g));
                    }
                    MetricValue::Histogram(h) => {
                        let mut cumulative = 0;
                        for (i, bound) in h.bounds.iter().enumerate() {
                            cumulative += h.counts.get(i).copied().unwrap_or(0);
                            let le = number(*bound);
                            let _ = writeln!(out, "{base}_bucket{} {cumulative}", label_text(&s.labels, Some(&le)));
                        }
                        let _ = writeln!(out, "{base}_bucket{} {}", label_text(&s.labels, Some("+Inf")), h.count);
                        let _ = writeln!(out, "{base}_sum{} {}", label_text(&s.labels, None), number(h.sum));
                        let _ = writeln!(out, "{base}_count{} {}", label_text(&s.labels, None), h.count);
                    }
                }
            }
        }
        out
    }
}

/// `tasker.step.duration` (unit `s`) → `tasker_step_duration_seconds`.
fn prometheus_name(info: &MetricInfo) -> String {
    let base = info.name.replace('.', "_");
    match info.unit {
        "s" => format!("{base}_seconds"),
        _ => base,
    }
}

fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

fn label_text(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The registry of one engine.
#[derive(Debug)]
pub struct Metrics {
    start: SystemTime,
    series: Mutex<BTreeMap<(&'static str, Labels), MetricValue>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            start: SystemTime::now(),
            series: Mutex::default(),
        }
    }
}

fn owned(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        if let Ok(mut series) = self.series.lock() {
            let value = series.entry((name, owned(labels))).or_insert(MetricValue::Counter(0));
            if let MetricValue::Counter(c) = value {
                *c += n;
            }
        }
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Ok(mut series) = self.series.lock() {
            let value = series
                .entry((name, owned(labels)))
                .or_insert_with(|| MetricValue::Histogram(HistogramValue::new(bounds_of(name))));
            if let MetricValue::Histogram(h) = value {
                h.observe(v);
            }
        }
    }

    /// A copy of the counters and histograms, with `gauges` read just now.
    pub fn snapshot(&self, gauges: Vec<Sample>) -> MetricsSnapshot {
        let mut samples: Vec<Sample> = self
            .series
            .lock()
            .map(|series| {
                series
                    .iter()
                    .map(|((name, labels), value)| Sample {
                        name,
                        labels: labels.clone(),
                        value: value.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        samples.extend(gauges);
        MetricsSnapshot {
            start: self.start,
            taken: SystemTime::now(),
            samples,
        }
    }
}

/// A gauge sample read at snapshot time.
pub fn gauge(name: &'static str, labels: &[(&'static str, &str)], v: f64) -> Sample {
    Sample {
        name,
        labels: owned(labels),
        value: MetricValue::Gauge(v),
    }
}

/// A counter kept outside the registry (e.g. by the circuit breaker), read at snapshot time.
pub fn counter(name: &'static str, labels: &[(&'static str, &str)], n: u64) -> Sample {
    Sample {
        name,
        labels: owned(labels),
        value: MetricValue::Counter(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_a_unique_name_and_a_description() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        assert!(METRICS.iter().all(|m| !m.description.is_empty()));
    }

    #[test]
    fn prometheus_text_has_types_totals_and_cumulative_buckets() {
        let m = Metrics::default();
        m.add(TASKS_FINISHED, &[("state", "complete")], 2);
        m.observe(STEP_DURATION, &[("queue", "q\"1"), ("outcome", "success")], 0.003);
        m.observe(STEP_DURATION, &[("queue", "q\"1"), ("outcome", "success")], 0.02);
        let snap = m.snapshot(vec![gauge(
            QUEUE_DEPTH,
            &[("queue", "a"), ("visibility", "visible")],
            5.0,
        )]);
        let text = snap.prometheus();
        assert!(text.contains("# TYPE tasker_tasks_finished_total counter"), "{text}");
        assert!(
            text.contains("tasker_tasks_finished_total{state=\"complete\"} 2"),
            "{text}"
        );
        assert!(text.contains("# TYPE tasker_step_duration_seconds histogram"), "{text}");
        assert!(
            text.contains("tasker_step_duration_seconds_bucket{queue=\"q\\\"1\",outcome=\"success\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tasker_step_duration_seconds_bucket{queue=\"q\\\"1\",outcome=\"success\",le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tasker_queue_depth{queue=\"a\",visibility=\"visible\"} 5"),
            "{text}"
        );
        assert_eq!(snap.value(TASKS_FINISHED, &[("state", "complete")]), Some(2.0));
        assert_eq!(snap.value(TASKS_FINISHED, &[]), None);
    }

    #[test]
    fn non_finite_observations_are_ignored() {
        let m = Metrics::default();
        m.observe(STEP_DURATION, &[], f64::NAN);
        assert!(m.snapshot(Vec::new()).samples.is_empty());
    }
}
