//! OTLP/HTTP (protobuf) export of the engine's spans and metrics.
//!
//! One background task per engine: it batches finished spans and sends them to
//! `<endpoint>/v1/traces` every export interval (or as soon as a batch is full), and sends a
//! cumulative snapshot of the metrics to `<endpoint>/v1/metrics` every interval. A receiver that
//! is down costs a warning (at most one a minute) and the batch; the engine never waits for it.

use std::sync::Weak;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as pt;
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use super::metrics::{metric_info, MetricValue, MetricsSnapshot};
use super::trace::{AttributeValue, SpanKind, SpanRecord};
use super::TelemetryOptions;

/// Most spans sent in one request.
const SPAN_BATCH: usize = 512;
/// The name of the engine's instrumentation scope.
const SCOPE: &str = "tasker-core";

pub(crate) enum Control {
    /// Export everything buffered now, and answer when done.
    Flush(oneshot::Sender<()>),
}

/// What the exporter reads metrics from: the engine, weakly (the exporter must not keep it
/// alive).
pub(crate) type MetricsSource = Weak<dyn MetricsReader>;

#[async_trait::async_trait]
pub(crate) trait MetricsReader: Send + Sync {
    async fn read_metrics(&self) -> MetricsSnapshot;
    /// Counts spans that could not be exported.
    fn spans_dropped(&self, n: u64);
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn kv(key: &str, value: AttributeValue) -> KeyValue {
    let value = match value {
        AttributeValue::Str(s) => any_value::Value::StringValue(s),
        AttributeValue::Int(i) => any_value::Value::IntValue(i),
        AttributeValue::Bool(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource(options: &TelemetryOptions) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", options.service_name.clone().into()),
            kv(
                "service.instance.id",
                format!("{}-{}", crate::worker::hostname(), std::process::id()).into(),
            ),
            kv("process.pid", i64::from(std::process::id()).into()),
            kv("telemetry.sdk.name", SCOPE.into()),
            kv("telemetry.sdk.language", "rust".into()),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// The OTLP request for some spans.
pub(crate) fn trace_request(options: &TelemetryOptions, spans: Vec<SpanRecord>) -> ExportTraceServiceRequest {
    let spans = spans
        .into_iter()
        .map(|s| pt::Span {
            trace_id: s.context.trace_id.to_vec(),
            span_id: s.context.span_id.to_vec(),
            parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: u32::from(s.context.sampled) | 0x100,
            name: s.name,
            kind: match s.kind {
                SpanKind::Internal => pt::span::SpanKind::Internal as i32,
                SpanKind::Consumer => pt::span::SpanKind::Consumer as i32,
            },
            start_time_unix_nano: nanos(s.start),
            end_time_unix_nano: nanos(s.end),
            attributes: s.attributes.into_iter().map(|(k, v)| kv(k, v)).collect(),
            status: Some(match s.error {
                Some(message) => pt::Status {
                    message,
                    code: pt::status::StatusCode::Error as i32,
                },
                None => pt::Status {
                    message: String::new(),
                    code: pt::status::StatusCode::Unset as i32,
                },
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: Some(resource(options)),
            scope_spans: vec![pt::ScopeSpans {
                scope: Some(scope()),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The OTLP request for a metrics snapshot (cumulative temporality).
pub(crate) fn metrics_request(options: &TelemetryOptions, snapshot: &MetricsSnapshot) -> ExportMetricsServiceRequest {
    let start = nanos(snapshot.start);
    let now = nanos(snapshot.taken);
    let cumulative = pm::AggregationTemporality::Cumulative as i32;
    let mut metrics: Vec<pm::Metric> = Vec::new();
    for sample in &snapshot.samples {
        let Some(info) = metric_info(sample.name) else {
            continue;
        };
        let attributes: Vec<KeyValue> = sample.labels.iter().map(|(k, v)| kv(k, v.clone().into())).collect();
        let number = |v: pm::number_data_point::Value| pm::NumberDataPoint {
            attributes: attributes.clone(),
            start_time_unix_nano: start,
            time_unix_nano: now,
            value: Some(v),
            ..Default::default()
        };
        let data = match &sample.value {
            MetricValue::Counter(c) => pm::metric::Data::Sum(pm::Sum {
                data_points: vec![number(pm::number_data_point::Value::AsInt(
                    i64::try_from(*c).unwrap_or(i64::MAX),
                ))],
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
            MetricValue::Gauge(g) => pm::metric::Data::Gauge(pm::Gauge {
                data_points: vec![number(pm::number_data_point::Value::AsDouble(*g))],
            }),
            MetricValue::Histogram(h) => pm::metric::Data::Histogram(pm::Histogram {
                data_points: vec![pm::HistogramDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: h.count,
                    sum: Some(h.sum),
                    bucket_counts: h.counts.clone(),
                    explicit_bounds: h.bounds.to_vec(),
                    ..Default::default()
                }],
                aggregation_temporality: cumulative,
            }),
        };
        // One Metric per name, its series as data points.
        match metrics.iter_mut().find(|m| m.name == info.name) {
            Some(existing) => match (&mut existing.data, data) {
                (Some(pm::metric::Data::Sum(a)), pm::metric::Data::Sum(b)) => a.data_points.extend(b.data_points),
                (Some(pm::metric::Data::Gauge(a)), pm::metric::Data::Gauge(b)) => a.data_points.extend(b.data_points),
                (Some(pm::metric::Data::Histogram(a)), pm::metric::Data::Histogram(b)) => {
                    a.data_points.extend(b.data_points)
                }
                _ => {}
            },
            None => metrics.push(pm::Metric {
                name: info.name.into(),
                description: info.description.into(),
                unit: info.unit.into(),
                data: Some(data),
                ..Default::default()
            }),
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource: Some(resource(options)),
            scope_metrics: vec![pm::ScopeMetrics {
                scope: Some(scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

struct Sender {
    client: reqwest::Client,
    endpoint: String,
    warned_at: Option<Instant>,
}

impl Sender {
    async fn post(&mut self, path: &str, body: Vec<u8>) -> bool {
        let url = format!("{}{path}", self.endpoint);
        let sent = self
            .client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await;
        let problem = match sent {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => format!("the receiver answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        if self.warned_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            self.warned_at = Some(Instant::now());
            tracing::warn!(url, %problem, "could not export telemetry (repeats are silenced for a minute)");
        }
        false
    }
}

/// The exporter task: runs until the engine is dropped.
pub(crate) async fn run(
    options: TelemetryOptions,
    mut spans: mpsc::Receiver<SpanRecord>,
    mut control: mpsc::UnboundedReceiver<Control>,
    source: MetricsSource,
) {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "telemetry export is off: no HTTP client");
            return;
        }
    };
    let mut sender = Sender {
        client,
        endpoint: options.otlp_endpoint.trim_end_matches('/').to_owned(),
        warned_at: None,
    };
    let mut buffer: Vec<SpanRecord> = Vec::new();
    let mut tick = tokio::time::interval(options.export_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut flush = None;
        let mut closed = false;
        tokio::select! {
            span = spans.recv() => match span {
                Some(s) => {
                    buffer.push(s);
                    if buffer.len() < SPAN_BATCH {
                        continue;
                    }
                }
                None => closed = true,
            },
            c = control.recv() => match c {
                Some(Control::Flush(done)) => {
                    while let Ok(s) = spans.try_recv() {
                        buffer.push(s);
                    }
                    flush = Some(done);
                }
                None => closed = true,
            },
            _ = tick.tick() => {}
        }
        let send_metrics = flush.is_some() || closed || buffer.len() < SPAN_BATCH;
        while !buffer.is_empty() {
            let batch: Vec<SpanRecord> = buffer.drain(..buffer.len().min(SPAN_BATCH)).collect();
            let n = batch.len() as u64;
            if options.traces
                && !sender
                    .post("/v1/traces", trace_request(&options, batch).encode_to_vec())
                    .await
            {
                if let Some(s) = source.upgrade() {
                    s.spans_dropped(n);
                }
            }
        }
        if options.metrics && send_metrics {
            let Some(s) = source.upgrade() else { break };
            let snapshot = s.read_metrics().await;
            drop(s);
            sender
                .post("/v1/metrics", metrics_request(&options, &snapshot).encode_to_vec())
                .await;
        }
        if let Some(done) = flush {
            let _ = done.send(());
        }
        if closed || source.strong_count() == 0 {
            break;
        }
    }
}
