//! `/v1/tasks`: create (idempotent), list (cursor pages), get, cancel, retry, diagram.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use tasker_core::state::TaskState;
use tasker_core::{TaskFilter, TaskRequest};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, OptionalJson, Path, Query};
use crate::model::*;
use crate::state::AppState;

/// Most tasks one page may hold.
pub const MAX_PAGE: i64 = 500;

/// Create a task. 201 with the new task; 200 with the existing one when the idempotency key
/// matched a task of the same template.
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = CreateTaskBody,
    responses((status = 201, description = "created", body = TaskView),
              (status = 200, description = "the task this idempotency key created before", body = TaskView)))]
pub async fn create_task(
    State(state): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    Json(body): Json<CreateTaskBody>,
) -> ApiResult<(StatusCode, axum::Json<TaskView>)> {
    principal.require("tasks:create")?;
    let traceparent = body.traceparent.or_else(|| {
        headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let created = state
        .tasker
        .create_task(TaskRequest {
            namespace: body.namespace,
            name: body.name,
            version: body.version,
            context: body.context,
            initiator: body.initiator,
            source_system: body.source_system,
            reason: body.reason,
            tags: body.tags,
            priority: body.priority,
            idempotency_key: body.idempotency_key,
            traceparent,
            ..Default::default()
        })
        .await?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(TaskView::new(created.task, principal.reads_context())),
    ))
}

/// `GET /v1/tasks` filters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListTasksQuery {
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// A task state, e.g. `complete`.
    pub state: Option<String>,
    /// Only tasks carrying this tag.
    pub tag: Option<String>,
    /// RFC 3339; inclusive.
    pub created_after: Option<DateTime<Utc>>,
    /// RFC 3339; exclusive.
    pub created_before: Option<DateTime<Utc>>,
    /// 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only the tasks created with this idempotency key.
    pub idempotency_key: Option<String>,
}

fn encode_cursor(at: DateTime<Utc>, uuid: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{uuid}", at.timestamp_micros()))
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bad = || ApiError::bad_request("cursor is not one this server issued");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (micros, uuid) = text.split_once(':').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = Utc.timestamp_micros(micros).single().ok_or_else(bad)?;
    Ok((at, uuid.parse().map_err(|_| bad())?))
}

/// List tasks, newest first, a page at a time. Pages follow `next_cursor`; tasks created
/// meanwhile sort before the first page, so following the cursors neither repeats nor skips.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(ListTasksQuery),
    responses((status = 200, body = TaskPage)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ListTasksQuery>,
) -> ApiResult<axum::Json<TaskPage>> {
    principal.require("tasks:list")?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1–{MAX_PAGE}, got {limit}"
        )));
    }
    let task_state = q
        .state
        .as_deref()
        .map(|s| s.parse::<TaskState>())
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut tasks = state
        .tasker
        .list_tasks(&TaskFilter {
            namespace: q.namespace,
            name: q.name,
            state: task_state,
            limit: Some(limit + 1),
            tag: q.tag,
            created_after: q.created_after,
            created_before: q.created_before,
            after,
            idempotency_key: q.idempotency_key,
        })
        .await?;
    let more = tasks.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    tasks.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more
        .then(|| tasks.last().map(|t| encode_cursor(t.created_at, t.task_uuid)))
        .flatten();
    let reads = principal.reads_context();
    Ok(axum::Json(TaskPage {
        tasks: tasks.into_iter().map(|t| TaskView::new(t, reads)).collect(),
        next_cursor,
    }))
}

/// `GET /v1/tasks/{task_uuid}` options.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetTaskQuery {
    /// Comma-separated: `steps` (with results and errors), `transitions`.
    pub include: Option<String>,
}

/// A task; with `?include=steps,transitions`, its steps and its audit trail.
#[utoipa::path(get, path = "/v1/tasks/{task_uuid}", tag = "tasks",
    params(("task_uuid" = Uuid, Path), GetTaskQuery),
    responses((status = 200, body = TaskView)))]
pub async fn get_task(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_uuid): Path<Uuid>,
    Query(q): Query<GetTaskQuery>,
) -> ApiResult<axum::Json<TaskView>> {
    principal.require("tasks:read")?;
    let mut steps = false;
    let mut transitions = false;
    for part in q.include.as_deref().unwrap_or("").split(',').map(str::trim) {
        match part {
            "" => {}
            "steps" => steps = true,
            "transitions" => transitions = true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "include: unknown part '{other}' (use steps, transitions)"
                )))
            }
        }
    }
    let reads = principal.reads_context();
    let mut view = if transitions {
        let detail = state.tasker.get_task(task_uuid).await?;
        let mut v = TaskView::new(detail.task, reads);
        v.transitions = Some(detail.task_transitions.into_iter().map(Into::into).collect());
        v
    } else {
        TaskView::new(state.tasker.task_summary(task_uuid).await?, reads)
    };
    if steps {
        let list = state.tasker.list_steps(task_uuid).await?;
        view.steps = Some(list.into_iter().map(|s| StepView::new(s, reads)).collect());
    }
    Ok(axum::Json(view))
}

/// Cancel a task (its open steps are cancelled; late results are ignored).
#[utoipa::path(delete, path = "/v1/tasks/{task_uuid}", tag = "tasks",
    params(("task_uuid" = Uuid, Path)),
    responses((status = 200, description = "cancelled", body = TaskView)))]
pub async fn cancel_task(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_uuid): Path<Uuid>,
) -> ApiResult<axum::Json<TaskView>> {
    principal.require("tasks:cancel")?;
    let task = state.tasker.cancel_task(task_uuid).await?;
    Ok(axum::Json(TaskView::new(task, principal.reads_context())))
}

/// Retry a task in `error`: every failed step is reset; the operator is the credential.
#[utoipa::path(post, path = "/v1/tasks/{task_uuid}/retry", tag = "tasks",
    params(("task_uuid" = Uuid, Path)), request_body(content = Option<RetryBody>),
    responses((status = 200, body = TaskView)))]
pub async fn retry_task(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_uuid): Path<Uuid>,
    OptionalJson(body): OptionalJson<RetryBody>,
) -> ApiResult<axum::Json<TaskView>> {
    principal.require("tasks:retry")?;
    let reason = body
        .and_then(|b| b.reason)
        .unwrap_or_else(|| "retried through the API".into());
    let task = state.tasker.retry_task(task_uuid, &principal.subject, &reason).await?;
    Ok(axum::Json(TaskView::new(task, principal.reads_context())))
}

/// `GET /v1/tasks/{task_uuid}/diagram` options.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiagramQuery {
    /// `json` (default: nodes, edges and the Mermaid text) or `mermaid` (text only).
    pub format: Option<DiagramFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiagramFormat {
    Json,
    Mermaid,
}

/// The task's DAG with each step's state, as a JSON graph or as Mermaid text.
#[utoipa::path(get, path = "/v1/tasks/{task_uuid}/diagram", tag = "tasks",
    params(("task_uuid" = Uuid, Path), DiagramQuery),
    responses((status = 200, content((DiagramView = "application/json"), (String = "text/plain")))))]
pub async fn diagram(
    State(state): State<AppState>,
    principal: Principal,
    Path(task_uuid): Path<Uuid>,
    Query(q): Query<DiagramQuery>,
) -> ApiResult<Response> {
    principal.require("tasks:read")?;
    let detail = state.tasker.get_task(task_uuid).await?;
    let id_of: std::collections::HashMap<&str, String> = detail
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), format!("s{i}")))
        .collect();
    let nodes: Vec<DiagramNode> = detail
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| DiagramNode {
            id: format!("s{i}"),
            step_uuid: s.step_uuid,
            name: s.name.clone(),
            state: s.state.clone(),
            attempts: s.attempts,
        })
        .collect();
    let mut edges = Vec::new();
    for s in &detail.steps {
        for d in &s.dependencies {
            if let (Some(from), Some(to)) = (id_of.get(d.as_str()), id_of.get(s.name.as_str())) {
                edges.push(DiagramEdge {
                    from: from.clone(),
                    to: to.clone(),
                });
            }
        }
    }
    // The one renderer the CLI's `tasker task diagram` uses too.
    let mermaid = tasker_core::diagram::task_mermaid(&detail);
    if q.format == Some(DiagramFormat::Mermaid) {
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], mermaid).into_response());
    }
    Ok(axum::Json(DiagramView {
        task_uuid,
        state: detail.task.state,
        nodes,
        edges,
        mermaid,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let at = Utc.timestamp_micros(1_700_000_000_123_456).single().unwrap();
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(at, id)).unwrap(), (at, id));
        for bad in ["", "!!", "bm9wZQ", "MTox"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
