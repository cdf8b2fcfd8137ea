//! Shared harness of the engine integration suite: every scenario runs against SQLite (a fresh
//! file) and PostgreSQL (a fresh database on the server named by `DATABASE_URL`).
#![allow(dead_code)]

pub mod ledger;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tasker_core::handler::{run_handlers, HandlerRegistry};
use tasker_core::scratch::ScratchDatabase;
use tasker_core::store::Backend;
use tasker_core::{StepFailure, TaskDetail, Tasker, TaskerOptions, Worker, WorkerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
    /// PostgreSQL for every state, RabbitMQ for the messages (`messaging.backend = "rabbitmq"`).
    PostgresRabbitmq,
}

/// A scratch database for one test.
pub struct TestDb {
    pub url: String,
    pub kind: Db,
    scratch: ScratchDatabase,
    /// With RabbitMQ: this test's queue prefix, and the engines to clean up after.
    rabbit_prefix: String,
    engines: std::sync::Mutex<Vec<Tasker>>,
}

/// The RabbitMQ server for tests: `RABBITMQ_URL`, else the local default. RabbitMQ tests are
/// never skipped: `scripts/test-all.sh` starts a server when none answers.
pub fn rabbitmq_url() -> String {
    std::env::var("RABBITMQ_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| tasker_core::messaging::DEFAULT_RABBITMQ_URL.to_owned())
}

/// The PostgreSQL server for tests. PostgreSQL tests are never skipped silently.
pub fn pg_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .expect("PostgreSQL tests need DATABASE_URL=postgres://… (scripts/test-all.sh starts a throwaway server)")
}

impl TestDb {
    pub async fn new(kind: Db) -> Self {
        let scratch = match kind {
            Db::Sqlite => ScratchDatabase::create(Backend::Sqlite, None).await,
            Db::Postgres | Db::PostgresRabbitmq => {
                ScratchDatabase::create(Backend::Postgres, Some(&pg_admin_url())).await
            }
        }
        .expect("scratch database");
        Self {
            url: scratch.url.clone(),
            kind,
            scratch,
            rabbit_prefix: format!("t{}.", uuid::Uuid::now_v7().simple()),
            engines: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The options every engine of this test connects with (RabbitMQ queues get a prefix of
    /// their own, so that tests running at once never share one).
    pub fn options(&self) -> TaskerOptions {
        let mut options = TaskerOptions {
            database_url: Some(self.url.clone()),
            max_connections: 20,
            listen: true,
            ..TaskerOptions::default()
        };
        if self.kind == Db::PostgresRabbitmq {
            let mut messaging = tasker_core::messaging::MessagingOptions::rabbitmq(Some(rabbitmq_url()));
            messaging.rabbitmq.queue_prefix = self.rabbit_prefix.clone();
            options.messaging = messaging;
        }
        options
    }

    pub async fn connect(&self) -> Tasker {
        self.connect_with(self.options()).await
    }

    pub async fn connect_with(&self, options: TaskerOptions) -> Tasker {
        let tasker = Tasker::connect_with(options).await.expect("connect");
        if let Some(broker) = tasker.broker() {
            // Connected before the test goes on, so that a slow broker start is not a slow step.
            for _ in 0..500 {
                if broker.status().connected {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                broker.status().connected,
                "RabbitMQ at {} does not answer: {:?} (scripts/test-all.sh starts one)",
                broker.status().target,
                broker.status().last_error
            );
            self.engines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(tasker.clone());
        }
        tasker
    }

    pub async fn cleanup(self) {
        let engines = std::mem::take(&mut *self.engines.lock().unwrap_or_else(|p| p.into_inner()));
        for tasker in engines {
            if let Some(broker) = tasker.broker() {
                let _ = broker.delete_declared_queues().await;
            }
            tasker.close().await;
        }
        self.scratch.drop_database().await;
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/engine")
}

/// The value a step computes: (sum of its dependencies' `value`, or the task's `value` for a
/// root) * `mul` + `add`, from its `initialization`.
pub async fn math(step: &tasker_core::StepEvent) -> Result<Value, StepFailure> {
    let base: i64 = if step.dependency_results.is_empty() {
        step.task_context["value"]
            .as_i64()
            .ok_or_else(|| StepFailure::permanent("bad_input", "context.value missing"))?
    } else {
        step.dependency_results
            .values()
            .map(|r| r["value"].as_i64().unwrap_or(0))
            .sum()
    };
    let mul = step.config()["mul"].as_i64().unwrap_or(1);
    let add = step.config()["add"].as_i64().unwrap_or(0);
    Ok(json!({ "value": base * mul + add, "attempt": step.attempt }))
}

pub fn math_registry() -> HandlerRegistry {
    let mut r = HandlerRegistry::new();
    r.register_fn("math", |step| async move { math(&step).await });
    r
}

/// A worker running `registry` on `queues` in this process.
pub struct RunningWorker {
    pub worker: Worker,
    runner: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    pub async fn start(tasker: &Tasker, queues: &[&str], concurrency: usize, registry: HandlerRegistry) -> Self {
        let mut config = WorkerConfig::new(queues.iter().map(|q| q.to_string()).collect());
        config.concurrency = concurrency;
        config.lease = Duration::from_secs(5);
        Self::start_with(tasker, config, registry).await
    }

    pub async fn start_with(tasker: &Tasker, config: WorkerConfig, registry: HandlerRegistry) -> Self {
        let worker = Worker::start(tasker, config).await.expect("start worker");
        let runner = tokio::spawn(run_handlers(worker.clone(), Arc::new(registry)));
        Self { worker, runner }
    }

    pub async fn stop(self) {
        self.worker.shutdown(Duration::from_secs(5)).await.expect("shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(10), self.runner).await;
    }
}

pub async fn create(tasker: &Tasker, namespace: &str, name: &str, context: Value) -> uuid::Uuid {
    tasker
        .create_task(tasker_core::TaskRequest {
            namespace: namespace.into(),
            name: name.into(),
            context,
            initiator: Some("tests".into()),
            ..Default::default()
        })
        .await
        .expect("create task")
        .task
        .task_uuid
}

pub async fn wait(tasker: &Tasker, task: uuid::Uuid) -> TaskDetail {
    tasker
        .wait_for_task(task, Duration::from_secs(60))
        .await
        .expect("task finishes in time")
}

pub fn result_of(detail: &TaskDetail, step: &str) -> i64 {
    detail
        .step(step)
        .and_then(|s| s.results.as_ref())
        .and_then(|r| r["value"].as_i64())
        .unwrap_or_else(|| panic!("step {step} has no value: {:#?}", detail.step(step)))
}

/// Defines `mod $name { sqlite, postgres, postgres_rabbitmq }` running `$name(Db)` on each
/// backend, RabbitMQ messaging included: the backend-agnostic scenario suites use it.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::common::Db::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_rabbitmq() {
                super::$name(super::common::Db::PostgresRabbitmq).await
            }
        }
    )*};
}

/// Defines `mod $name { sqlite, postgres }` running `$name(Db)` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::common::Db::Postgres).await
            }
        }
    )*};
}

/// A TCP proxy to `upstream` that can be cut (connections closed, new ones dropped at once) and
/// restored.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (up, links) = (Arc::clone(&up), Arc::clone(&links));
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !up.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().expect("links").push(link);
                }
            })
        };
        Self {
            port,
            up,
            links,
            acceptor,
        }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

/// The `host:port` of the server `url` names.
pub fn server_of(url: &str) -> String {
    let u = url::Url::parse(url).expect("database url");
    format!(
        "{}:{}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port_or_known_default().unwrap_or(5432)
    )
}

/// `url` with its host and port replaced by the proxy's.
pub fn through_proxy(url: &str, proxy: &Proxy) -> String {
    let mut u = url::Url::parse(url).expect("database url");
    u.set_host(Some("127.0.0.1")).expect("host");
    u.set_port(Some(proxy.port)).expect("port");
    u.to_string()
}
