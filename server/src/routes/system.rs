//! Workers, the event catalog, health, readiness and metrics.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::model::*;
use crate::state::AppState;

/// Workers seen within the last hour, live ones first.
#[utoipa::path(get, path = "/v1/workers", tag = "workers", responses((status = 200, body = Vec<WorkerView>)))]
pub async fn workers(State(state): State<AppState>, principal: Principal) -> ApiResult<axum::Json<Vec<WorkerView>>> {
    principal.require("workers:read")?;
    let workers = state.tasker.list_workers().await?;
    Ok(axum::Json(workers.into_iter().map(Into::into).collect()))
}

/// Every system event the engine publishes, with its payload schema and an example.
#[utoipa::path(get, path = "/v1/events/catalog", tag = "events",
    responses((status = 200, body = Vec<EventInfoView>)))]
pub async fn events_catalog(principal: Principal) -> ApiResult<axum::Json<Vec<EventInfoView>>> {
    principal.require("events:read")?;
    Ok(axum::Json(
        tasker_core::events::catalog()
            .into_iter()
            .map(|e| EventInfoView {
                name: e.name,
                category: e.category,
                description: e.description,
                payload_schema: e.payload_schema,
                example: e.example,
            })
            .collect(),
    ))
}

/// Liveness: the process answers. No credential needed, no database touched.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = HealthView)))]
pub async fn health() -> axum::Json<HealthView> {
    axum::Json(HealthView { status: "ok".into() })
}

/// Readiness: the engine's own checks ([`tasker_core::Tasker::health`], the same as the metrics
/// address and every package's `health()`): the database answers within 2 s, the migrations
/// ran, and on PostgreSQL the circuit breaker is closed. 503 otherwise. No credential needed.
#[utoipa::path(get, path = "/health/ready", tag = "system",
    responses((status = 200, body = ReadyView), (status = 503, body = ReadyView)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let report = state.tasker.health(&[]).await;
    let ok = report.ready;
    let mut checks = BTreeMap::new();
    for check in report.checks {
        if !check.ok {
            tracing::warn!(check = %check.name, detail = %check.detail, "readiness: check failed");
        }
        let value = if check.ok {
            "ok".to_owned()
        } else {
            format!("failed: {}", check.detail)
        };
        checks.insert(check.name, value);
    }
    let in_flight = state.limits.max_in_flight - state.in_flight.available_permits();
    checks.insert(
        "in_flight".to_owned(),
        format!("{in_flight}/{}", state.limits.max_in_flight),
    );
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadyView {
        status: if ok { "ready" } else { "not_ready" }.into(),
        checks,
    };
    let mut response = (status, axum::Json(body)).into_response();
    if !ok {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
    }
    response
}

/// Prometheus metrics of the API (requests by route and status, latency, auth failures,
/// overload, rate-limit and timeout rejections), then the engine's (tasks, steps, queues,
/// connections: see docs/operations.md).
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>, principal: Principal) -> ApiResult<Response> {
    principal.require("system:read")?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::render() + &state.tasker.prometheus_metrics().await,
    )
        .into_response())
}

/// Who the credential is and what it may do (the dashboard shows only the actions it allows).
/// Any valid credential may ask.
#[utoipa::path(get, path = "/v1/auth/whoami", tag = "system", responses((status = 200, body = WhoamiView)))]
pub async fn whoami(State(state): State<AppState>, principal: Principal) -> axum::Json<WhoamiView> {
    let method = match principal.method {
        crate::auth::Method::Anonymous => "anonymous",
        crate::auth::Method::ApiKey => "api_key",
        crate::auth::Method::Jwt => "jwt",
    };
    axum::Json(WhoamiView {
        permissions: crate::auth::expand(&principal.permissions)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        subject: principal.subject,
        method: method.to_owned(),
        auth_enabled: state.auth.enabled(),
    })
}

/// Task counts by state, the last hour of tasks in 5-minute buckets, throughput, and queue
/// depths with the age of each queue's oldest message: the dashboard's overview.
#[utoipa::path(get, path = "/v1/stats", tag = "system", responses((status = 200, body = StatsView)))]
pub async fn stats(State(state): State<AppState>, principal: Principal) -> ApiResult<axum::Json<StatsView>> {
    principal.require("tasks:list")?;
    let now = chrono::Utc::now();
    let overview = state.tasker.overview(now).await?;
    Ok(axum::Json(StatsView::new(overview, now)))
}
