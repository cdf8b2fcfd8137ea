//! The OpenAPI 3.1 document, generated from the handlers' annotations and the body types.
//!
//! Every operation also documents the error answers any request may get (400 malformed input,
//! 401/403 auth, 404, 409 state conflicts, 413 body too large, 422 invalid template or
//! context, 429 rate limit, 503 saturation with `Retry-After`), added here once rather than at
//! each handler.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::model::*;
use crate::routes::{dlq, events, steps, system, tasks, templates};

#[derive(OpenApi)]
#[openapi(
    info(title = "Tasker REST API", description = "Tasks, workflow steps, templates, the dead-letter queue and workers of a Tasker engine."),
    paths(
        tasks::create_task, tasks::list_tasks, tasks::get_task, tasks::cancel_task, tasks::retry_task, tasks::diagram,
        steps::list_steps, steps::get_step, steps::step_action,
        templates::list_templates, templates::get_latest, templates::get_version, templates::register, templates::validate,
        dlq::list, dlq::of_task, dlq::entry, dlq::update, dlq::stats, dlq::queue, dlq::staleness,
        system::workers, system::whoami, system::stats, system::events_catalog, events::stream_events, system::health, system::ready, system::metrics,
    ),
    components(schemas(ErrorBody, TaskView, TaskPage, StepView, TransitionView, DiagramView, StepActionBody, StepActionType,
        CreateTaskBody, RetryBody, TemplateSummaryView, TemplateView, RegisteredView, ValidationView, DlqEntryView,
        DlqNoteView, QueuedDlqView, DlqUpdateBody, DlqStatusName, DlqReasonName, DlqStatsView, DlqCountView,
        TaskHealthView, WorkerView, EventInfoView, HealthView, ReadyView, WhoamiView, StatsView, StatsBucketView,
        QueueStatsView, tasks::DiagramFormat)),
    modifiers(&Common),
)]
pub struct ApiDoc;

struct Common;

fn error_response(description: &str, retry_after: bool) -> RefOr<Response> {
    let mut b = ResponseBuilder::new().description(description).content(
        "application/json",
        utoipa::openapi::ContentBuilder::new()
            .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if retry_after {
        b = b.header(
            "Retry-After",
            utoipa::openapi::HeaderBuilder::new()
                .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Integer))
                .description(Some("seconds to wait before retrying"))
                .build(),
        );
    }
    RefOr::T(b.build())
}

fn add_errors(op: &mut Operation, authenticated: bool) {
    let mut errors = vec![
        ("400", "malformed request (path, query or body)", false),
        ("404", "not found", false),
        ("409", "the current state does not allow it", false),
        ("413", "body over the size limit", false),
        ("415", "unsupported content type", false),
        ("422", "invalid template or task context", false),
        ("500", "internal error (details only in the server log)", false),
        (
            "503",
            "saturated (`backpressure` on task creation) or the database is unavailable (`unavailable`): retry after Retry-After",
            true,
        ),
    ];
    if authenticated {
        errors.extend([
            ("401", "missing or invalid credential", false),
            ("403", "the credential lacks the permission named in details", false),
            ("429", "this credential's rate limit: retry after Retry-After", true),
        ]);
    }
    for (code, description, retry) in errors {
        op.responses
            .responses
            .entry(code.to_owned())
            .or_insert_with(|| error_response(description, retry));
    }
    if authenticated {
        op.security = Some(vec![
            SecurityRequirement::new("api_key", Vec::<String>::new()),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]);
    }
}

impl Modify for Common {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let authenticated = path.starts_with("/v1") || path == "/metrics";
            for op in [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.patch.as_mut(),
                item.delete.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                add_errors(op, authenticated);
            }
        }
    }
}

/// The document as JSON text.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
