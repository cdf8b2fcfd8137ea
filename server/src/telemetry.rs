//! The metrics address: `/metrics` (the engine's Prometheus text), `/health` (liveness) and
//! `/health/ready` (readiness), with no credential. `tasker worker --metrics-addr` and
//! `tasker serve --metrics-addr` serve it on its own address, which is meant for a scraper and a
//! load balancer on the operator's network, not for clients of the API.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tasker_core::{HealthReport, Tasker};

/// This process's workers and, for each, the failure that stopped one of its loops (if any).
pub type WorkerProbe = Arc<dyn Fn() -> Vec<(String, Option<String>)> + Send + Sync>;

#[derive(Clone)]
struct ProbeState {
    tasker: Tasker,
    workers: WorkerProbe,
}

/// The router of the metrics address.
pub fn metrics_router(tasker: Tasker, workers: WorkerProbe) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(live))
        .route("/health/ready", get(ready))
        .with_state(ProbeState { tasker, workers })
}

async fn metrics(State(s): State<ProbeState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.tasker.prometheus_metrics().await,
    )
        .into_response()
}

async fn live() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

/// 200 with the checks when ready, 503 with them (and `Retry-After`) otherwise.
pub async fn readiness_response(report: HealthReport) -> Response {
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, axum::Json(report.clone())).into_response();
    if !report.ready {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
    }
    response
}

async fn ready(State(s): State<ProbeState>) -> Response {
    let workers = (s.workers)();
    readiness_response(s.tasker.health(&workers).await).await
}
