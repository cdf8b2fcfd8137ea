//! Telemetry on both backends, against a real OTLP/HTTP receiver (a minimal one, below, that
//! decodes the protobuf requests): the span tree of a task (caller → task → step attempts), the
//! handler's trace context, the metric values after a known workload, the Prometheus text, and
//! health.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use tasker_core::handler::HandlerRegistry;
use tasker_core::telemetry::metrics as m;
use tasker_core::telemetry::trace::TraceContext;
use tasker_core::telemetry::TelemetryOptions;
use tasker_core::{TaskRequest, Tasker, TaskerError, TaskerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

on_both_backends!(
    a_task_and_its_attempts_make_one_span_tree_under_the_caller,
    metrics_count_a_known_workload,
);

const NS: &str = "event_tests";
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What the receiver got.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
}

impl Received {
    fn spans(&self) -> Vec<Span> {
        self.traces
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }
}

/// A minimal OTLP/HTTP receiver: HTTP/1.1 POSTs to /v1/traces and /v1/metrics, protobuf bodies.
async fn otlp_receiver() -> (String, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let received = Arc::new(Mutex::new(Received::default()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request per loop turn (reqwest keeps connections alive).
                    let header_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 8192];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < header_end + length {
                        let mut chunk = [0u8; 65536];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buf.drain(..header_end + length).skip(header_end).collect();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    {
                        let mut r = store.lock().expect("lock");
                        match path.as_str() {
                            "/v1/traces" => r
                                .traces
                                .push(ExportTraceServiceRequest::decode(&body[..]).expect("trace protobuf")),
                            "/v1/metrics" => r
                                .metrics
                                .push(ExportMetricsServiceRequest::decode(&body[..]).expect("metrics protobuf")),
                            other => panic!("unexpected OTLP path {other}"),
                        }
                    }
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, received)
}

fn pair_template() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/pair.yaml")
}

async fn connect_traced(db: &TestDb, endpoint: &str) -> Tasker {
    Tasker::connect_with(TaskerOptions {
        database_url: Some(db.url.clone()),
        max_connections: 20,
        telemetry: TelemetryOptions {
            enabled: true,
            otlp_endpoint: endpoint.to_owned(),
            service_name: "telemetry-tests".into(),
            export_interval: Duration::from_millis(100),
            ..TelemetryOptions::default()
        },
        ..TaskerOptions::default()
    })
    .await
    .expect("connect")
}

/// (step name, trace context) of each attempt a handler ran.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn registry(seen: Seen) -> HandlerRegistry {
    let mut r = HandlerRegistry::new();
    r.register_fn("work", move |e| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .expect("lock")
                .push((e.step_name.clone(), e.trace_context.clone()));
            Ok(json!({"value": e.step_name}))
        }
    });
    r
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            any_value::Value::BoolValue(b) => Some(b.to_string()),
            _ => None,
        })
}

async fn wait_for(received: &Arc<Mutex<Received>>, what: impl Fn(&Received) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if what(&received.lock().expect("lock")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the receiver did not get what was expected in time");
}

async fn a_task_and_its_attempts_make_one_span_tree_under_the_caller(db: Db) {
    let (endpoint, received) = otlp_receiver().await;
    let test_db = TestDb::new(db).await;
    let tasker = connect_traced(&test_db, &endpoint).await;
    tasker.register_templates(pair_template()).await.expect("register");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker = RunningWorker::start(&tasker, &[NS], 2, registry(seen.clone())).await;

    // A bad traceparent is refused, naming the field.
    let bad = tasker
        .create_task(TaskRequest {
            namespace: NS.into(),
            name: "pair".into(),
            traceparent: Some("00-nope".into()),
            ..Default::default()
        })
        .await
        .expect_err("bad traceparent");
    assert!(
        matches!(bad, TaskerError::InvalidArgument(ref m) if m.contains("traceparent")),
        "{bad}"
    );

    let created = tasker
        .create_task(TaskRequest {
            namespace: NS.into(),
            name: "pair".into(),
            context: json!({}),
            traceparent: Some(CALLER.into()),
            ..Default::default()
        })
        .await
        .expect("create");
    let task = created.task.task_uuid;
    let caller = TraceContext::parse(CALLER).expect("caller");
    assert_eq!(
        created.task.correlation_id.as_bytes(),
        &caller.trace_id,
        "the task joins the caller's trace"
    );
    assert_eq!(created.task.trace_parent.as_deref(), Some(CALLER));
    wait(&tasker, task).await;
    wait_for(&received, |r| r.spans().iter().any(|s| s.name.starts_with("task "))).await;
    tasker.flush_telemetry(Duration::from_secs(5)).await;

    let spans = received.lock().expect("lock").spans();
    let task_span = spans
        .iter()
        .find(|s| s.name == "task event_tests/pair")
        .expect("task span");
    assert_eq!(task_span.trace_id, caller.trace_id.to_vec());
    assert_eq!(
        task_span.parent_span_id,
        caller.span_id.to_vec(),
        "under the caller's span"
    );
    assert_eq!(attr(task_span, "tasker.task.uuid"), Some(task.to_string()));
    assert_eq!(attr(task_span, "tasker.task.state").as_deref(), Some("complete"));
    let steps: Vec<&Span> = spans.iter().filter(|s| s.name.starts_with("step ")).collect();
    assert_eq!(steps.len(), 2, "{steps:#?}");
    for s in &steps {
        assert_eq!(s.trace_id, caller.trace_id.to_vec());
        assert_eq!(s.parent_span_id, task_span.span_id, "attempts nest under the task span");
        assert_eq!(attr(s, "tasker.task.uuid"), Some(task.to_string()));
        assert_eq!(attr(s, "tasker.step.attempt").as_deref(), Some("1"));
        assert_eq!(attr(s, "tasker.step.outcome").as_deref(), Some("success"));
        assert_eq!(attr(s, "messaging.destination.name").as_deref(), Some(NS));
        assert!(attr(s, "tasker.worker.id").is_some());
        assert!(attr(s, "tasker.correlation_id").is_some());
        assert!(s.start_time_unix_nano >= task_span.start_time_unix_nano);
        assert!(s.end_time_unix_nano <= task_span.end_time_unix_nano);
    }
    // Each handler got its attempt's span as its trace context.
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    for (step, context) in seen {
        let context = TraceContext::parse(context.as_deref().expect("trace context")).expect("valid");
        let span = steps
            .iter()
            .find(|s| attr(s, "tasker.step.name").as_deref() == Some(step.as_str()))
            .expect("span of the step");
        assert_eq!(span.span_id, context.span_id.to_vec());
        assert_eq!(span.trace_id, context.trace_id.to_vec());
    }
    let service = {
        let received = received.lock().expect("lock");
        received.traces[0].resource_spans[0]
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref()?.value.clone())
    };
    assert_eq!(service, Some(any_value::Value::StringValue("telemetry-tests".into())));
    worker.stop().await;
    test_db.cleanup().await;
}

fn sum_of(requests: &[ExportMetricsServiceRequest], name: &str, label: Option<(&str, &str)>) -> Option<i64> {
    // The newest snapshot holds the cumulative values.
    let last = requests.last()?;
    let metric = last
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)?;
    let Some(metric::Data::Sum(sum)) = &metric.data else {
        return None;
    };
    sum.data_points
        .iter()
        .filter(|p| {
            label.is_none_or(|(k, v)| {
                p.attributes.iter().any(|kv| {
                    kv.key == k
                        && kv.value.as_ref().and_then(|a| a.value.clone())
                            == Some(any_value::Value::StringValue(v.into()))
                })
            })
        })
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(i)) => i,
            _ => 0,
        })
        .reduce(|a, b| a + b)
}

async fn metrics_count_a_known_workload(db: Db) {
    let (endpoint, received) = otlp_receiver().await;
    let test_db = TestDb::new(db).await;
    let tasker = connect_traced(&test_db, &endpoint).await;
    tasker.register_templates(pair_template()).await.expect("register");
    let worker = RunningWorker::start(&tasker, &[NS], 4, registry(Arc::default())).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        tasks.push(create(&tasker, NS, "pair", json!({})).await);
    }
    for t in tasks {
        wait(&tasker, t).await;
    }
    let snapshot = tasker.metrics().await;
    assert_eq!(snapshot.value(m::TASKS_CREATED, &[]), Some(5.0));
    assert_eq!(snapshot.value(m::TASKS_FINISHED, &[("state", "complete")]), Some(5.0));
    assert_eq!(snapshot.value(m::STEPS_COMPLETED, &[]), Some(10.0));
    assert_eq!(snapshot.value(m::STEPS_CLAIMED, &[("queue", NS)]), Some(10.0));
    assert_eq!(
        snapshot.value(m::STEP_DURATION, &[("queue", NS), ("outcome", "success")]),
        Some(10.0),
        "one duration per attempt"
    );
    // Every root step went through the queue; a second step may have been claimed in the
    // transaction that completed its parent, without a message to wait on.
    let claims_through_the_queue = snapshot.value(m::CLAIM_LATENCY, &[("queue", NS)]).unwrap_or(0.0);
    assert!(
        (5.0..=10.0).contains(&claims_through_the_queue),
        "{claims_through_the_queue}"
    );
    // Drained. (SQLite has no queue registry: a queue without messages has no series there.)
    let depth = snapshot.value(m::QUEUE_DEPTH, &[("queue", NS), ("visibility", "visible")]);
    assert_eq!(depth.unwrap_or(0.0), 0.0);
    assert!(snapshot.value(m::DB_CONNECTIONS, &[("state", "idle")]).is_some());

    // The same figures reach the OTLP receiver.
    tasker.flush_telemetry(Duration::from_secs(5)).await;
    wait_for(&received, |r| sum_of(&r.metrics, m::STEPS_COMPLETED, None) == Some(10)).await;
    {
        let r = received.lock().expect("lock");
        assert_eq!(sum_of(&r.metrics, m::TASKS_CREATED, None), Some(5));
        assert_eq!(
            sum_of(&r.metrics, m::TASKS_FINISHED, Some(("state", "complete"))),
            Some(5)
        );
    }

    // And the Prometheus text.
    let text = tasker.prometheus_metrics().await;
    assert!(text.contains("# TYPE tasker_steps_completed_total counter"), "{text}");
    assert!(text.contains("tasker_steps_completed_total 10"), "{text}");
    assert!(
        text.contains("tasker_tasks_finished_total{state=\"complete\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("tasker_step_duration_seconds_count{queue=\"event_tests\",outcome=\"success\"} 10"),
        "{text}"
    );

    let health = tasker.health(&[("w1".into(), None)]).await;
    assert!(health.live && health.ready, "{health:?}");
    let unhealthy = tasker.health(&[("w2".into(), Some("the applier died".into()))]).await;
    assert!(!unhealthy.ready);
    worker.stop().await;
    test_db.cleanup().await;
}

#[tokio::test]
async fn prometheus_text_parses_line_by_line() {
    // Every non-comment line is `name{labels} value`.
    let test_db = TestDb::new(Db::Sqlite).await;
    let tasker = test_db.connect().await;
    let text = tasker.prometheus_metrics().await;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("name value");
        assert!(
            series.starts_with("tasker_") || series.starts_with("db_client_"),
            "{line}"
        );
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    test_db.cleanup().await;
}
