//! Several OS processes sharing one database: `tasker worker` processes competing for steps, and
//! a worker killed with SIGKILL mid-step whose work is recovered after its lease expires.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tasker_core::scratch::ScratchDatabase;
use tasker_core::store::Backend;
use tasker_core::template::parse_str;
use tasker_core::{TaskRequest, Tasker};

fn tasker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tasker")
}

async fn scratch(backend: Backend) -> ScratchDatabase {
    let server = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(
            std::env::var("DATABASE_URL")
                .ok()
                .filter(|u| u.starts_with("postgres"))
                .expect("PostgreSQL tests need DATABASE_URL"),
        ),
    };
    ScratchDatabase::create(backend, server.as_deref())
        .await
        .expect("scratch database")
}

/// A `tasker worker` child process, killed when dropped.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn spawn(url: &str, queue: &str, extra: &[&str]) -> Self {
        let child = Command::new(tasker_bin())
            .args(["--database-url", url, "worker", "--queue", queue])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tasker worker");
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn sigkill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn terminate(mut self) {
        // SIGTERM for a graceful stop, then make sure.
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.sigkill();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn register(tasker: &Tasker, yaml: &str) {
    tasker
        .register_template(&parse_str(yaml, Some(Path::new("inline.yaml")), "test").expect("template"))
        .await
        .expect("register");
}

const DIAMOND: &str = r#"
name: diamond
namespace_name: procs
version: 1.0.0
steps:
  - { name: a, handler: { callable: math, initialization: { add: 1 } } }
  - { name: b, dependencies: [a], handler: { callable: math, initialization: { mul: 2 } } }
  - { name: c, dependencies: [a], handler: { callable: math, initialization: { mul: 3 } } }
  - { name: d, dependencies: [b, c], handler: { callable: math } }
"#;

async fn two_processes_share_the_work(backend: Backend) {
    let db = scratch(backend).await;
    let tasker = Tasker::connect(Some(&db.url)).await.expect("connect");
    register(&tasker, DIAMOND).await;
    let workers = [
        WorkerProcess::spawn(&db.url, "procs", &["--concurrency", "8"]),
        WorkerProcess::spawn(&db.url, "procs", &["--concurrency", "8"]),
    ];
    let pids: Vec<u64> = workers.iter().map(|w| u64::from(w.pid())).collect();
    let mut ids = Vec::new();
    for i in 0..150 {
        let req = TaskRequest {
            namespace: "procs".into(),
            name: "diamond".into(),
            context: json!({ "value": i }),
            ..Default::default()
        };
        ids.push((i, tasker.create_task(req).await.expect("create").task.task_uuid));
    }
    let mut ran_in = std::collections::HashSet::new();
    for (i, id) in ids {
        let d = tasker
            .wait_for_task(id, Duration::from_secs(120))
            .await
            .expect("finish");
        assert_eq!(d.task.state, "complete");
        assert_eq!(
            d.step("d").and_then(|s| s.results.as_ref()).map(|r| r["value"].clone()),
            Some(json!(5 * (i + 1)))
        );
        for step in &d.steps {
            // Exactly one claim per step: no handler ran twice.
            let claims = d
                .step_transitions
                .iter()
                .filter(|t| t.step_name.as_deref() == Some(&step.name) && t.event == "claim")
                .count();
            assert_eq!((claims, step.attempts), (1, 1), "step {} of task {id}", step.name);
            if let Some(pid) = step.results.as_ref().and_then(|r| r["pid"].as_u64()) {
                assert!(pids.contains(&pid));
                ran_in.insert(pid);
            }
        }
    }
    assert_eq!(ran_in.len(), 2, "both processes should have run steps: {ran_in:?}");
    for w in workers {
        w.terminate();
    }
    tasker.close().await;
    db.drop_database().await;
}

async fn killed_worker_step_is_rerun_after_its_lease(backend: Backend) {
    let db = scratch(backend).await;
    let tasker = Tasker::connect(Some(&db.url)).await.expect("connect");
    register(
        &tasker,
        r#"
name: slow
namespace_name: crash
version: 1.0.0
steps:
  - name: slow
    handler: { callable: sleep, initialization: { ms: 2500 } }
    retry: { max_attempts: 3, backoff: none }
  - { name: after, dependencies: [slow], handler: { callable: noop } }
"#,
    )
    .await;
    // The same behind a quick first step: the worker that completes `first` claims `slow` in
    // that same transaction (eager dispatch), so that path's crash recovery is covered too.
    register(
        &tasker,
        r#"
name: chained
namespace_name: crash
version: 1.0.0
steps:
  - { name: first, handler: { callable: noop } }
  - name: slow
    dependencies: [first]
    handler: { callable: sleep, initialization: { ms: 2500 } }
    retry: { max_attempts: 3, backoff: none }
  - { name: after, dependencies: [slow], handler: { callable: noop } }
"#,
    )
    .await;
    let mut doomed = WorkerProcess::spawn(&db.url, "crash", &["--lease-seconds", "2"]);
    let mut ids = Vec::new();
    for name in ["slow", "chained"] {
        let created = tasker
            .create_task(TaskRequest {
                namespace: "crash".into(),
                name: name.into(),
                context: json!({}),
                ..Default::default()
            })
            .await
            .expect("create");
        ids.push(created.task.task_uuid);
    }
    let mut running = 0;
    for _ in 0..500 {
        running = 0;
        for id in &ids {
            let d = tasker.get_task(*id).await.expect("get");
            if d.step("slow").is_some_and(|s| s.state == "in_progress") {
                running += 1;
            }
        }
        if running == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(running, ids.len(), "the first worker never started both slow steps");
    doomed.sigkill();
    let rescuer = WorkerProcess::spawn(&db.url, "crash", &["--lease-seconds", "5"]);
    for id in ids {
        let d = tasker
            .wait_for_task(id, Duration::from_secs(60))
            .await
            .expect("task completes after the crash");
        assert_eq!(d.task.state, "complete");
        let slow = d.step("slow").expect("slow");
        assert_eq!(slow.attempts, 2, "{slow:?}");
        assert_eq!(
            slow.last_error.as_ref().map(|e| e["error_type"].clone()),
            Some(json!("worker_lost"))
        );
        assert_eq!(
            slow.results.as_ref().and_then(|r| r["pid"].as_u64()),
            Some(u64::from(rescuer.pid()))
        );
        assert_eq!(d.step("after").map(|s| s.state.as_str()), Some("complete"));
        if d.task.name == "chained" {
            let first_claim = d
                .step_transitions
                .iter()
                .find(|t| t.step_name.as_deref() == Some("slow") && t.event == "claim")
                .expect("claimed");
            assert_eq!(
                first_claim.metadata["eager"],
                json!(true),
                "slow should have been claimed eagerly"
            );
        }
    }
    rescuer.terminate();
    tasker.close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_work_sqlite() {
    two_processes_share_the_work(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_work_postgres() {
    two_processes_share_the_work(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_step_is_rerun_after_its_lease_sqlite() {
    killed_worker_step_is_rerun_after_its_lease(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_step_is_rerun_after_its_lease_postgres() {
    killed_worker_step_is_rerun_after_its_lease(Backend::Postgres).await;
}

#[test]
fn template_validate_reports_each_problem_and_fails() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("broken.yaml"),
        "name: broken\nnamespace_name: x\nversion: one\nsteps:\n  - { name: a, dependencies: [zz], handler: { callable: noop } }\n",
    )
    .expect("write");
    let out = Command::new(tasker_bin())
        .args(["template", "validate"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    assert!(stderr.contains("'one'") || stderr.contains("one"), "{stderr}");
    assert!(stderr.contains("zz"), "{stderr}");
    let good = Command::new(tasker_bin())
        .args([
            "template",
            "validate",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/templates"),
        ])
        .output()
        .expect("run");
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
}
