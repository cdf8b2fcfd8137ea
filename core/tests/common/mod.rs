//! Shared harness of the engine integration suite: every scenario runs against SQLite (a fresh
//! file) and PostgreSQL (a fresh database on the server named by `DATABASE_URL`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tasker_core::handler::{run_handlers, HandlerRegistry};
use tasker_core::scratch::ScratchDatabase;
use tasker_core::store::Backend;
use tasker_core::{StepFailure, TaskDetail, Tasker, TaskerOptions, Worker, WorkerConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A scratch database for one test.
pub struct TestDb {
    pub url: String,
    pub kind: Db,
    scratch: ScratchDatabase,
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
            Db::Postgres => ScratchDatabase::create(Backend::Postgres, Some(&pg_admin_url())).await,
        }
        .expect("scratch database");
        Self {
            url: scratch.url.clone(),
            kind,
            scratch,
        }
    }

    pub async fn connect(&self) -> Tasker {
        Tasker::connect_with(TaskerOptions {
            database_url: Some(self.url.clone()),
            max_connections: 20,
            listen: true,
            ..TaskerOptions::default()
        })
        .await
        .expect("connect")
    }

    pub async fn cleanup(self) {
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
