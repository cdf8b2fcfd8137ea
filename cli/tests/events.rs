//! A subscriber group spread over several `tasker events tail --group` processes, one of them
//! SIGKILLed mid-stream and replaced: every event of every task reaches the group at least
//! once, each process sees a task's events in order, and a consumer that dedupes by `event_id`
//! sees each exactly once. PostgreSQL runs it over more than 10,000 events; SQLite over fewer.
//! `TASKER_EVENT_TASKS=N` changes the number of tasks (9 events each).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tasker_core::handler::{run_handlers, HandlerRegistry};
use tasker_core::scratch::ScratchDatabase;
use tasker_core::store::Backend;
use tasker_core::{TaskRequest, Tasker, TaskerOptions, Worker, WorkerConfig};

const TEMPLATE: &str = r#"
name: pair
namespace_name: cli_events
version: 1.0.0
steps:
  - { name: a, handler: { callable: noop } }
  - { name: b, depends_on: [a], handler: { callable: noop } }
"#;

/// Events of one `pair` task: task.created, task.started, 3 per step, task.completed.
const PER_TASK: usize = 9;

fn tail(db: &str, out: &Path) -> Child {
    let file = std::fs::File::create(out).expect("output file");
    Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args(["--database-url", db, "events", "tail", "--group", "shared", "--json"])
        .stdout(Stdio::from(file))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tasker events tail")
}

fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The distinct events of tasks the processes printed.
fn distinct(files: &[PathBuf]) -> HashSet<String> {
    files
        .iter()
        .flat_map(|f| read_events(f))
        .filter(|e| e["task_uuid"].is_string())
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect()
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn a_group_over_processes_gets_every_event_despite_a_kill(backend: Backend, default_tasks: usize) {
    let tasks: usize = std::env::var("TASKER_EVENT_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_tasks);
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
        let tasker = Tasker::connect_with(TaskerOptions {
            database_url: Some(db.url.clone()),
            ..TaskerOptions::default()
        })
        .await
        .expect("connect");
        let loaded = tasker_core::template::parse_str(TEMPLATE, None, "test").expect("template");
        tasker.register_template(&loaded).await.expect("register");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files: Vec<PathBuf> = (0..4).map(|i| dir.path().join(format!("tail-{i}.jsonl"))).collect();
        let mut children: Vec<Child> = files[..3].iter().map(|f| tail(&db.url, f)).collect();
        // The group exists (so lifecycle events are written) and has its members.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let groups = tasker.event_groups().await.expect("groups");
            if groups.iter().any(|g| g.group == "shared" && g.live_members == 3) {
                break;
            }
            assert!(Instant::now() < deadline, "the tails did not join: {groups:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let worker = Worker::start(&tasker, WorkerConfig::new(vec!["cli_events".into()]))
            .await
            .expect("worker");
        let mut registry = HandlerRegistry::new();
        registry.register_fn("noop", |_| async { Ok(json!({})) });
        let running = tokio::spawn(run_handlers(worker.clone(), Arc::new(registry)));
        let started = Instant::now();
        let mut created = Vec::with_capacity(tasks);
        let mut killed = 0usize;
        for i in 0..tasks {
            let t = tasker
                .create_task(TaskRequest {
                    namespace: "cli_events".into(),
                    name: "pair".into(),
                    context: json!({ "i": i }),
                    ..TaskRequest::default()
                })
                .await
                .expect("create");
            created.push(t.task.task_uuid);
            // Kill the busiest tail once the group is well into the stream, and replace it.
            if i == tasks / 3 {
                let wait_until = Instant::now() + Duration::from_secs(60);
                while files[..3].iter().map(|f| read_events(f).len()).sum::<usize>() < 50 && Instant::now() < wait_until
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                killed = (0..3).max_by_key(|&k| read_events(&files[k]).len()).unwrap_or(0);
                let _ = children[killed].kill();
                let _ = children[killed].wait();
                children.push(tail(&db.url, &files[3]));
            }
        }
        let expected = PER_TASK * tasks;
        let deadline = Instant::now() + Duration::from_secs(300);
        while distinct(&files).len() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let elapsed = started.elapsed();
        for (i, c) in children.iter_mut().enumerate() {
            if i != killed {
                terminate(c);
            }
        }
        let _ = worker.shutdown(Duration::from_secs(10)).await;
        let _ = running.await;

        let all: Vec<(usize, Value)> = files
            .iter_mut()
            .enumerate()
            .flat_map(|(i, f)| read_events(f).into_iter().map(move |e| (i, e)))
            .collect();
        // The tasks' events (the worker's own worker.registered / worker.stopped aside).
        let all: Vec<(usize, Value)> = all.into_iter().filter(|(_, e)| e["task_uuid"].is_string()).collect();
        let ids: HashSet<&str> = all.iter().filter_map(|(_, e)| e["event_id"].as_str()).collect();
        let mut per_task: HashMap<String, HashSet<String>> = HashMap::new();
        for (_, e) in &all {
            if let (Some(t), Some(id)) = (e["task_uuid"].as_str(), e["event_id"].as_str()) {
                per_task.entry(t.to_owned()).or_default().insert(id.to_owned());
            }
        }
        let duplicates = all.len() - ids.len();
        eprintln!(
            "{backend:?}: {} events of {tasks} tasks over 4 processes (one SIGKILLed) in {elapsed:?}; \
             {duplicates} redelivered",
            ids.len()
        );
        assert_eq!(
            ids.len(),
            expected,
            "every event reached the group (deduped by event_id)"
        );
        for t in &created {
            assert_eq!(
                per_task.get(&t.to_string()).map(HashSet::len),
                Some(PER_TASK),
                "task {t}"
            );
        }
        // Only the killed process's unrecorded events came again: no event was handled by two
        // live members (their partitions change hands only after their positions are recorded).
        let mut copies: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, e) in &all {
            if let Some(id) = e["event_id"].as_str() {
                copies.entry(id).or_default().push(*i);
            }
        }
        for (id, by) in &copies {
            let live = by.iter().filter(|&&i| i != killed).count();
            assert!(live <= 1, "event {id} handled by live processes {by:?}");
        }
        // Each process saw each task's events in log order.
        for (i, file) in files.iter().enumerate() {
            let mut last: BTreeMap<String, i64> = BTreeMap::new();
            for e in read_events(file) {
                let (Some(t), Some(p)) = (e["task_uuid"].as_str(), e["position"].as_i64()) else {
                    continue;
                };
                let prev = last.insert(t.to_owned(), p);
                assert!(
                    prev.is_none_or(|q| q <= p),
                    "process {i}: task {t} went from {prev:?} to {p}"
                );
            }
        }
        tasker.close().await;
        db.drop_database().await;
    });
}

#[test]
fn a_group_over_processes_gets_every_event_despite_a_kill_sqlite() {
    a_group_over_processes_gets_every_event_despite_a_kill(Backend::Sqlite, 300);
}

#[test]
fn a_group_over_processes_gets_every_event_despite_a_kill_postgres() {
    a_group_over_processes_gets_every_event_despite_a_kill(Backend::Postgres, 1_112);
}
