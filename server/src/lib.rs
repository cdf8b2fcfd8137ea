//! # tasker-server
//!
//! Tasker's REST API as a library: [`router`] returns an axum [`Router`] over a
//! [`tasker_core::Tasker`] that `tasker serve --http ADDR` serves and that a Rust application
//! can `nest` inside its own axum app:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let tasker = tasker_core::Tasker::connect(None).await?;
//! let api = tasker_server::router(tasker, tasker_server::ServerConfig::default())?;
//! let app = axum::Router::new().nest("/tasker", api);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Routes live under `/v1` (tasks, workflow steps, templates, DLQ, workers, the event
//! catalog, overview statistics), the web dashboard at `/` ([`dashboard`]), beside `/health`, `/health/ready`, `/metrics` and `/openapi.json`. Errors are
//! `{"error", "message", "details"}` with the engine's stable codes ([`error`]). Credentials,
//! permissions and redaction: [`auth`]. What keeps a saturated server answering: [`guard`].

pub mod auth;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod guard;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tasker_core::Tasker;
use tokio::sync::Semaphore;

pub use config::{ApiKeyConfig, AuthConfig, ConfigError, JwtConfig, LimitsConfig, ServerConfig};
pub use error::{ApiError, ErrorBody};
pub use telemetry::{metrics_router, WorkerProbe};

use routes::{dlq, events, steps, system, tasks, templates};
use state::AppState;

/// The API over `tasker`, configured by `config`. Fails when the auth configuration is
/// inconsistent (an unknown permission, a key file that does not load, auth on with no way to
/// authenticate), so a server never starts half-secured.
pub fn router(tasker: Tasker, config: ServerConfig) -> Result<Router, ConfigError> {
    let auth = Arc::new(auth::Authenticator::new(&config.auth)?);
    let limits = config.limits.clone();
    if limits.max_in_flight == 0 {
        return Err(ConfigError::Auth("limits.max_in_flight must be at least 1".into()));
    }
    let state = AppState {
        tasker,
        auth,
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        rate: Arc::new(guard::RateLimiter::new(
            limits.rate_limit_per_second,
            limits.rate_limit_burst,
        )),
        limits,
    };
    let guarded = Router::new()
        .route("/v1/tasks", post(tasks::create_task).get(tasks::list_tasks))
        .route("/v1/tasks/{task_uuid}", get(tasks::get_task).delete(tasks::cancel_task))
        .route("/v1/tasks/{task_uuid}/retry", post(tasks::retry_task))
        .route("/v1/tasks/{task_uuid}/diagram", get(tasks::diagram))
        .route("/v1/tasks/{task_uuid}/workflow_steps", get(steps::list_steps))
        .route(
            "/v1/tasks/{task_uuid}/workflow_steps/{step}",
            get(steps::get_step).patch(steps::step_action),
        )
        .route(
            "/v1/templates",
            get(templates::list_templates).post(templates::register),
        )
        .route("/v1/templates/validate", post(templates::validate))
        .route("/v1/templates/{namespace}/{name}", get(templates::get_latest))
        .route(
            "/v1/templates/{namespace}/{name}/{version}",
            get(templates::get_version),
        )
        .route("/v1/dlq", get(dlq::list))
        .route("/v1/dlq/task/{task_uuid}", get(dlq::of_task))
        .route("/v1/dlq/entry/{entry_uuid}", get(dlq::entry).patch(dlq::update))
        .route("/v1/dlq/stats", get(dlq::stats))
        .route("/v1/dlq/investigation-queue", get(dlq::queue))
        .route("/v1/dlq/staleness", get(dlq::staleness))
        .route("/v1/workers", get(system::workers))
        .route("/v1/auth/whoami", get(system::whoami))
        .route("/v1/stats", get(system::stats))
        .route("/v1/events/catalog", get(system::events_catalog))
        // The guard's timeout and in-flight bound cover opening the stream (joining its group),
        // not the body it then streams.
        .route("/v1/events/stream", get(events::stream_events))
        .route("/metrics", get(system::metrics))
        .route_layer(from_fn_with_state(state.clone(), guard::guard));
    let body_limit = state.limits.max_body_bytes;
    let app = Router::new()
        .route("/health", get(system::health))
        .route("/health/ready", get(system::ready))
        .route("/openapi.json", get(openapi_json))
        // The dashboard's files are public; everything they show comes through the API.
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .merge(guarded)
        .route_layer(from_fn(guard::count))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state);
    Ok(app)
}

async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi::document())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// A panic in a handler is a bug: it is logged, and the client gets the generic 500 — never
/// the panic's message.
fn panicked(err: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic)");
    tracing::error!(panic = message, "handler panicked");
    ApiError::internal().into_response()
}

/// Whether `addr` only accepts connections from this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes the requests under
/// way (graceful shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
