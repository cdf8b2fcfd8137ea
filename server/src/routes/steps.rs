//! `/v1/tasks/{uuid}/workflow_steps`: a task's steps, and the operator actions on one.

use axum::extract::State;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::model::*;
use crate::state::AppState;

/// Every step of a task, in template order, with its attempts' errors.
#[utoipa::path(get, path = "/v1/tasks/{task_uuid}/workflow_steps", tag = "steps",
    params(("task_uuid" = Uuid, Path)), responses((status = 200, body = Vec<StepView>)))]
pub async fn list_steps(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_uuid): Path<Uuid>,
) -> ApiResult<axum::Json<Vec<StepView>>> {
    principal.require("steps:read")?;
    let reads = principal.reads_context();
    let steps = state.tasker.list_steps(task_uuid).await?;
    Ok(axum::Json(steps.into_iter().map(|s| StepView::new(s, reads)).collect()))
}

/// One step, by name or uuid.
#[utoipa::path(get, path = "/v1/tasks/{task_uuid}/workflow_steps/{step}", tag = "steps",
    params(("task_uuid" = Uuid, Path), ("step" = String, Path, description = "step name or uuid")),
    responses((status = 200, body = StepView)))]
pub async fn get_step(
    State(state): State<AppState>,
    principal: Principal,
    Path((task_uuid, step)): Path<(Uuid, String)>,
) -> ApiResult<axum::Json<StepView>> {
    principal.require("steps:read")?;
    let detail = state.tasker.get_step(task_uuid, &step).await?;
    Ok(axum::Json(StepView::new(detail, principal.reads_context())))
}

/// An operator action on a step: `reset_for_retry`, `resolve_manually`, `complete_manually`
/// (with `completion_data` as the step's result) or `cancel`. The operator recorded in the
/// audit trail is the credential's subject, never a field of the body.
#[utoipa::path(patch, path = "/v1/tasks/{task_uuid}/workflow_steps/{step}", tag = "steps",
    params(("task_uuid" = Uuid, Path), ("step" = String, Path, description = "step name or uuid")),
    request_body = StepActionBody, responses((status = 200, body = StepView)))]
pub async fn step_action(
    State(state): State<AppState>,
    principal: Principal,
    Path((task_uuid, step)): Path<(Uuid, String)>,
    Json(body): Json<StepActionBody>,
) -> ApiResult<axum::Json<StepView>> {
    principal.require("steps:resolve")?;
    let t = &state.tasker;
    let by = principal.subject.as_str();
    let reason = body.reason.as_str();
    let detail = match body.action_type {
        StepActionType::ResetForRetry => t.reset_step(task_uuid, &step, by, reason).await?,
        StepActionType::ResolveManually => t.resolve_step_manually(task_uuid, &step, by, reason).await?,
        StepActionType::CompleteManually => {
            let result = body
                .completion_data
                .ok_or_else(|| ApiError::bad_request("complete_manually needs completion_data (the step's result)"))?;
            let metadata = serde_json::json!({ "completed_by": by });
            t.complete_step_manually(task_uuid, &step, result, metadata, by, reason)
                .await?
        }
        StepActionType::Cancel => t.cancel_step(task_uuid, &step, by, reason).await?,
    };
    Ok(axum::Json(StepView::new(detail, principal.reads_context())))
}
