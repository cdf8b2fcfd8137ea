//! `/v1/dlq`: the dead-letter queue, its investigation, and the staleness report.

use axum::extract::State;
use serde::Deserialize;
use tasker_core::DlqFilter;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::model::*;
use crate::state::AppState;

fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    let limit = limit.unwrap_or(50);
    if (1..=500).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(format!("limit must be 1–500, got {limit}")))
    }
}

/// DLQ entries, newest first.
#[utoipa::path(get, path = "/v1/dlq", tag = "dlq", params(DlqQuery),
    responses((status = 200, body = Vec<DlqEntryView>)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<DlqQuery>,
) -> ApiResult<axum::Json<Vec<DlqEntryView>>> {
    principal.require("dlq:read")?;
    let offset = q.offset.unwrap_or(0);
    if !(0..=1_000_000).contains(&offset) {
        return Err(ApiError::bad_request("offset must be 0–1000000"));
    }
    let entries = state
        .tasker
        .list_dlq(&DlqFilter {
            status: q.status.map(DlqStatusName::core),
            open_only: q.open_only,
            reason: q.reason.map(DlqReasonName::core),
            task_uuid: None,
            limit: Some(page_limit(q.limit)?),
            offset: Some(offset),
        })
        .await?;
    let reads = principal.reads_context();
    Ok(axum::Json(
        entries.into_iter().map(|e| DlqEntryView::new(e, reads)).collect(),
    ))
}

/// Every DLQ entry of a task (at most one open), newest first.
#[utoipa::path(get, path = "/v1/dlq/task/{task_uuid}", tag = "dlq",
    params(("task_uuid" = Uuid, Path)), responses((status = 200, body = Vec<DlqEntryView>)))]
pub async fn of_task(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_uuid): Path<Uuid>,
) -> ApiResult<axum::Json<Vec<DlqEntryView>>> {
    principal.require("dlq:read")?;
    // 404 for a task that does not exist, an empty list for one never dead-lettered.
    state.tasker.task_summary(task_uuid).await?;
    let entries = state
        .tasker
        .list_dlq(&DlqFilter {
            task_uuid: Some(task_uuid),
            limit: Some(500),
            ..DlqFilter::default()
        })
        .await?;
    let reads = principal.reads_context();
    Ok(axum::Json(
        entries.into_iter().map(|e| DlqEntryView::new(e, reads)).collect(),
    ))
}

/// One DLQ entry.
#[utoipa::path(get, path = "/v1/dlq/entry/{entry_uuid}", tag = "dlq",
    params(("entry_uuid" = Uuid, Path)), responses((status = 200, body = DlqEntryView)))]
pub async fn entry(
    State(state): State<AppState>,
    principal: Principal,
    Path(entry_uuid): Path<Uuid>,
) -> ApiResult<axum::Json<DlqEntryView>> {
    principal.require("dlq:read")?;
    let entry = state.tasker.get_dlq_entry(entry_uuid).await?;
    Ok(axum::Json(DlqEntryView::new(entry, principal.reads_context())))
}

/// Record an investigation note and optionally move the entry's status; the note's author is
/// the credential's subject.
#[utoipa::path(patch, path = "/v1/dlq/entry/{entry_uuid}", tag = "dlq",
    params(("entry_uuid" = Uuid, Path)), request_body = DlqUpdateBody,
    responses((status = 200, body = DlqEntryView)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(entry_uuid): Path<Uuid>,
    Json(body): Json<DlqUpdateBody>,
) -> ApiResult<axum::Json<DlqEntryView>> {
    principal.require("dlq:update")?;
    let entry = state
        .tasker
        .update_dlq_entry(
            entry_uuid,
            body.status.map(DlqStatusName::core),
            &body.note,
            &principal.subject,
        )
        .await?;
    Ok(axum::Json(DlqEntryView::new(entry, principal.reads_context())))
}

/// Entries counted by reason and status.
#[utoipa::path(get, path = "/v1/dlq/stats", tag = "dlq", responses((status = 200, body = DlqStatsView)))]
pub async fn stats(State(state): State<AppState>, principal: Principal) -> ApiResult<axum::Json<DlqStatsView>> {
    principal.require("dlq:stats")?;
    Ok(axum::Json(state.tasker.dlq_stats().await?.into()))
}

/// `limit` only.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// The open entries, most urgent first.
#[utoipa::path(get, path = "/v1/dlq/investigation-queue", tag = "dlq", params(LimitQuery),
    responses((status = 200, body = Vec<QueuedDlqView>)))]
pub async fn queue(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<LimitQuery>,
) -> ApiResult<axum::Json<Vec<QueuedDlqView>>> {
    principal.require("dlq:read")?;
    let limit = usize::try_from(page_limit(q.limit)?).unwrap_or(50);
    let reads = principal.reads_context();
    let queued = state.tasker.dlq_queue(limit).await?;
    Ok(axum::Json(
        queued.into_iter().map(|e| QueuedDlqView::new(e, reads)).collect(),
    ))
}

/// `GET /v1/dlq/staleness` options.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StalenessQuery {
    /// Only tasks idle for at least this share of their threshold, 0–1 (default 0: all).
    #[param(minimum = 0, maximum = 1)]
    pub min_ratio: Option<f64>,
    /// 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Unfinished tasks by how close they are to their staleness threshold, most overdue first.
#[utoipa::path(get, path = "/v1/dlq/staleness", tag = "dlq", params(StalenessQuery),
    responses((status = 200, body = Vec<TaskHealthView>)))]
pub async fn staleness(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<StalenessQuery>,
) -> ApiResult<axum::Json<Vec<TaskHealthView>>> {
    principal.require("dlq:read")?;
    let ratio = q.min_ratio.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(ApiError::bad_request("min_ratio must be between 0 and 1"));
    }
    let limit = usize::try_from(page_limit(q.limit)?).unwrap_or(50);
    let report = state.tasker.staleness_report(ratio, limit).await?;
    Ok(axum::Json(report.into_iter().map(Into::into).collect()))
}
