//! A `tasker worker` process SIGKILLed while it is the only one serving its queue: it stops
//! heartbeating, is listed as not live, and the task that then waits on its queue gets one
//! `worker_unavailable` DLQ entry. On SQLite and PostgreSQL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tasker_core::engine::RecoveryOptions;
use tasker_core::scratch::ScratchDatabase;
use tasker_core::store::Backend;
use tasker_core::{DlqFilter, TaskRequest, Tasker, TaskerOptions};

const TEMPLATE: &str = r#"
name: lonely
namespace_name: cli_kill
version: 1.0.0
steps:
  - { name: only, handler: { callable: noop } }
"#;

fn killed_worker_makes_its_queue_unavailable(backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(std::env::var("DATABASE_URL").expect("PostgreSQL tests need DATABASE_URL")),
        };
        let db = ScratchDatabase::create(backend, server.as_deref())
            .await
            .expect("scratch");
        // The observer: heartbeats every 100 ms count, and 200 ms of waiting is too long.
        let tasker = Tasker::connect_with(TaskerOptions {
            database_url: Some(db.url.clone()),
            recovery: RecoveryOptions {
                heartbeat_interval: Duration::from_millis(100),
                worker_unavailable_after: Duration::from_millis(200),
                ..RecoveryOptions::default()
            },
            ..TaskerOptions::default()
        })
        .await
        .expect("connect");
        let loaded = tasker_core::template::parse_str(TEMPLATE, None, "test").expect("template");
        tasker.register_template(&loaded).await.expect("register");

        // The worker heartbeats every 100 ms, configured through its environment.
        let mut child = Command::new(env!("CARGO_BIN_EXE_tasker"))
            .args([
                "--database-url",
                &db.url,
                "worker",
                "--queue",
                "cli_kill",
                "--concurrency",
                "1",
            ])
            .env("TASKER_WORKER__HEARTBEAT_INTERVAL_MS", "100")
            .env("TASKER_LOG", "error")
            .env_remove("TASKER_CONFIG_ROOT")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn worker");
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let workers = tasker.list_workers().await.expect("workers");
            if workers.iter().any(|w| w.record.pid == pid && w.live) {
                break;
            }
            assert!(Instant::now() < deadline, "the worker never registered: {workers:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();

        let task = tasker
            .create_task(TaskRequest {
                namespace: "cli_kill".into(),
                name: "lonely".into(),
                ..Default::default()
            })
            .await
            .expect("create")
            .task
            .task_uuid;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let workers = tasker.list_workers().await.expect("workers");
        let dead = workers.iter().find(|w| w.record.pid == pid).expect("still listed");
        assert!(
            !dead.live && dead.record.stopped_at.is_none(),
            "killed, not stopped: {dead:?}"
        );

        assert_eq!(tasker.detect_unavailable_workers().await.expect("detect"), 1);
        assert_eq!(
            tasker.detect_unavailable_workers().await.expect("again"),
            0,
            "once per task"
        );
        let entries = tasker
            .list_dlq(&DlqFilter {
                task_uuid: Some(task),
                ..DlqFilter::default()
            })
            .await
            .expect("dlq");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].reason, "worker_unavailable");
        assert!(entries[0].notes[0].text.contains("cli_kill"), "{:?}", entries[0].notes);
        tasker.close().await;
        db.drop_database().await;
    });
}

#[test]
fn killed_worker_makes_its_queue_unavailable_sqlite() {
    killed_worker_makes_its_queue_unavailable(Backend::Sqlite);
}

#[test]
fn killed_worker_makes_its_queue_unavailable_postgres() {
    killed_worker_makes_its_queue_unavailable(Backend::Postgres);
}
