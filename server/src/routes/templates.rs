//! `/v1/templates`: list, show, register (YAML or JSON), validate without storing.

use axum::extract::State;
use axum::http::StatusCode;
use tasker_core::template::{current_env, parse_str, LoadedTemplate};
use tasker_core::TaskerError;

use crate::auth::Principal;
use crate::error::{problem_json, ApiError, ApiResult};
use crate::extract::{Body, Path};
use crate::model::*;
use crate::state::AppState;

/// Every registered template version.
#[utoipa::path(get, path = "/v1/templates", tag = "templates",
    responses((status = 200, body = Vec<TemplateSummaryView>)))]
pub async fn list_templates(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<TemplateSummaryView>>> {
    principal.require("templates:read")?;
    let rows = state.tasker.list_templates().await?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}

async fn show(state: &AppState, namespace: &str, name: &str, version: Option<&str>) -> ApiResult<TemplateView> {
    let compiled = state.tasker.template(namespace, name, version).await?;
    let t = &compiled.template;
    let definition = serde_json::to_value(t).map_err(|e| {
        tracing::error!(error = %e, "template does not serialise");
        ApiError::internal()
    })?;
    let mut queues: Vec<String> = t.steps.iter().map(|s| compiled.queue_of(s)).collect();
    queues.sort();
    queues.dedup();
    Ok(TemplateView {
        namespace: t.namespace_name.clone(),
        name: t.name.clone(),
        version: t.version.clone(),
        definition,
        queues,
    })
}

/// The highest version of a template.
#[utoipa::path(get, path = "/v1/templates/{namespace}/{name}", tag = "templates",
    params(("namespace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = TemplateView)))]
pub async fn get_latest(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<TemplateView>> {
    principal.require("templates:read")?;
    Ok(axum::Json(show(&state, &namespace, &name, None).await?))
}

/// One version of a template.
#[utoipa::path(get, path = "/v1/templates/{namespace}/{name}/{version}", tag = "templates",
    params(("namespace" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = TemplateView)))]
pub async fn get_version(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, name, version)): Path<(String, String, String)>,
) -> ApiResult<axum::Json<TemplateView>> {
    principal.require("templates:read")?;
    Ok(axum::Json(show(&state, &namespace, &name, Some(&version)).await?))
}

/// The body as a template: YAML or JSON text (JSON is YAML), environment overrides merged.
fn parse(body: &[u8]) -> Result<LoadedTemplate, TaskerError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| TaskerError::InvalidArgument("the template must be UTF-8 text (YAML or JSON)".into()))?;
    parse_str(text, None, &current_env())
}

/// Register a template (YAML or JSON). 201; 409 when that version exists with other content;
/// 422 with every problem when it is invalid. Registering identical content again is a no-op.
#[utoipa::path(post, path = "/v1/templates", tag = "templates",
    request_body(content((Object = "application/json"), (String = "application/yaml"))),
    responses((status = 201, body = RegisteredView)))]
pub async fn register(
    State(state): State<AppState>,
    principal: Principal,
    Body(body): Body,
) -> ApiResult<(StatusCode, axum::Json<RegisteredView>)> {
    principal.require("templates:write")?;
    let loaded = parse(&body)?;
    let r = state.tasker.register_template(&loaded).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(RegisteredView {
            namespace: r.namespace,
            name: r.name,
            version: r.version,
            queues: r.queues,
            warnings: r.warnings,
        }),
    ))
}

/// Check a template (YAML or JSON) without storing it: 200 with `valid` and every problem.
#[utoipa::path(post, path = "/v1/templates/validate", tag = "templates",
    request_body(content((Object = "application/json"), (String = "application/yaml"))),
    responses((status = 200, body = ValidationView)))]
pub async fn validate(
    State(_state): State<AppState>,
    principal: Principal,
    Body(body): Body,
) -> ApiResult<axum::Json<ValidationView>> {
    principal.require("templates:validate")?;
    Ok(axum::Json(match parse(&body) {
        Ok(t) => ValidationView {
            valid: true,
            template: Some(t.template.key()),
            problems: Vec::new(),
            warnings: t.warnings.iter().map(problem_json).collect(),
        },
        Err(TaskerError::Template(problems)) => ValidationView {
            valid: false,
            template: problems.iter().find_map(|p| p.template.clone()),
            problems: problems.iter().map(problem_json).collect(),
            warnings: Vec::new(),
        },
        Err(other) => ValidationView {
            valid: false,
            template: None,
            problems: vec![serde_json::json!({ "message": other.to_string() })],
            warnings: Vec::new(),
        },
    }))
}
