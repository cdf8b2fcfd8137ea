//! Mounting Tasker's REST API inside your own axum application.
//!
//! The API is an ordinary `axum::Router` (the engine handle is its state), so it nests under a
//! prefix beside your own routes and middleware:
//!
//! ```sh
//! cargo run -p tasker-server --example embed_axum
//! curl -s localhost:3000/hello
//! curl -s localhost:3000/tasker/v1/templates
//! curl -s localhost:3000/tasker/health/ready
//! ```
//!
//! `TASKER_EXAMPLE_ADDR` picks the address (default 127.0.0.1:3000); the database is the usual
//! default (`TASKER_DATABASE_URL`, `DATABASE_URL`, else `./tasker.db`).

use axum::routing::get;
use axum::Router;
use tasker_server::ServerConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasker = tasker_core::Tasker::connect(None).await?;
    tasker
        .register_templates(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/templates"))
        .await?;
    // Auth off: fine on loopback. Load a file with `ServerConfig::load(path)` to turn it on.
    let api = tasker_server::router(tasker.clone(), ServerConfig::default())?;
    let app = Router::new()
        .route("/hello", get(|| async { "your own route\n" }))
        .nest("/tasker", api);
    let addr = std::env::var("TASKER_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    tasker.close().await;
    Ok(())
}
