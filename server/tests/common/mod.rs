//! The harness of the HTTP suite: a real server bound on 127.0.0.1:0 over a scratch database
//! (a SQLite file, or a fresh database on the PostgreSQL server named by `DATABASE_URL`),
//! spoken to over TCP with an HTTP client.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{json, Value};
use tasker_core::scratch::ScratchDatabase;
use tasker_core::store::Backend;
use tasker_core::{Tasker, TaskerOptions};
use tasker_server::ServerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server for tests. PostgreSQL tests are never skipped silently.
pub fn pg_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .expect("PostgreSQL tests need DATABASE_URL=postgres://… (scripts/test-all.sh starts a throwaway server)")
}

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub tasker: Tasker,
    scratch: ScratchDatabase,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture")
}

impl TestServer {
    pub async fn start(kind: Db, config: ServerConfig) -> Self {
        let scratch = match kind {
            Db::Sqlite => ScratchDatabase::create(Backend::Sqlite, None).await,
            Db::Postgres => ScratchDatabase::create(Backend::Postgres, Some(&pg_admin_url())).await,
        }
        .expect("scratch database");
        let tasker = Tasker::connect_with(TaskerOptions {
            database_url: Some(scratch.url.clone()),
            max_connections: 20,
            ..TaskerOptions::default()
        })
        .await
        .expect("connect");
        let router = tasker_server::router(tasker.clone(), config).expect("router");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = tasker_server::serve(listener, router, async move {
                let _ = stopped.await;
            })
            .await;
        });
        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            tasker,
            scratch,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers the fixture template through the engine (not the API).
    pub async fn register_fixture(&self) {
        self.tasker
            .register_templates(fixture("orders.yaml"))
            .await
            .expect("register fixture");
    }

    /// Creates a checkout task through the engine.
    pub async fn create_task(&self, order_id: i64) -> uuid::Uuid {
        self.tasker
            .create_task(tasker_core::TaskRequest {
                namespace: "shop".into(),
                name: "checkout".into(),
                context: json!({ "order_id": order_id }),
                tags: vec![format!("order-{order_id}")],
                ..Default::default()
            })
            .await
            .expect("create")
            .task
            .task_uuid
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        self.tasker.close().await;
        self.scratch.drop_database().await;
    }
}

/// Sends a request and returns (status, headers, JSON body or `Value::String` of the text).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// Defines `mod $name { sqlite, postgres }` running `$name(Db)` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$name(super::common::Db::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$name(super::common::Db::Postgres).await;
                }
            }
        )*
    };
}
