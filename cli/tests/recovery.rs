//! Recovering failed work through the `tasker` binary, on SQLite and PostgreSQL: a step that
//! fails permanently puts its task in the DLQ, an operator inspects it and completes the step by
//! hand, the task completes and the DLQ entry is closed; reset, resolve, cancel, task retry and
//! resolve; illegal actions exit 1 with the engine's message; usage errors exit 2; every
//! `--json` output parses.
//!
//! The failing step's callable has no handler in the CLI's worker, so it fails permanently with
//! `handler_not_found` on every attempt; the other steps use the built-in `math` handler.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tasker_core::scratch::ScratchDatabase;
use tasker_core::store::Backend;

const QUEUE: &str = "cli_recovery";

const BROKEN_CHAIN: &str = r#"
name: broken_chain
namespace_name: cli_recovery
version: 1.0.0
steps:
  - { name: a, handler: { callable: math, initialization: { add: 1 } } }
  - { name: b, dependencies: [a], handler: { callable: no.such.handler } }
  - { name: c, dependencies: [b], handler: { callable: math, initialization: { mul: 10 } } }
"#;

/// A task that stays in `steps_in_process` for a few seconds, with a 30 s staleness threshold.
const SLOW: &str = r#"
name: slow
namespace_name: cli_recovery
version: 1.0.0
lifecycle: { max_steps_in_process_minutes: 0.5 }
steps:
  - { name: nap, handler: { callable: sleep, initialization: { ms: 3000 } } }
"#;

fn tasker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tasker")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn scratch(backend: Backend) -> ScratchDatabase {
    let server = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(
            std::env::var("DATABASE_URL")
                .ok()
                .filter(|u| u.starts_with("postgres"))
                .expect("PostgreSQL tests need DATABASE_URL"),
        ),
    };
    runtime()
        .block_on(ScratchDatabase::create(backend, server.as_deref()))
        .expect("scratch database")
}

/// The `tasker` binary against one database.
struct Cli {
    url: String,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tasker_bin());
        cmd.arg("--database-url")
            .arg(&self.url)
            .args(args)
            .env_remove("TASKER_DATABASE_URL")
            .env("TASKER_LOG", "error")
            .env("USER", "test-operator");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run tasker")
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tasker {args:?} failed ({:?}):\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a `--json` command that must succeed; its parsed stdout.
    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("tasker {args:?}: not JSON ({e}):\n{text}"))
    }

    /// Runs a command that must fail with `code`; its stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "tasker {args:?}: stdout {}\nstderr {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// Creates a broken_chain task and waits for it to fail; its uuid.
    fn failed_task(&self) -> String {
        let out = self.ok(&[
            "task",
            "create",
            "--namespace",
            "cli_recovery",
            "--name",
            "broken_chain",
            "--context",
            r#"{"value": 4}"#,
            "--wait",
            "60",
        ]);
        let task = out.lines().next().expect("task uuid").trim().to_owned();
        let detail = self.json(&["task", "get", &task, "--json"]);
        assert_eq!(detail["task"]["state"], "error", "{detail:#}");
        task
    }

    /// The task's one DLQ entry.
    fn dlq_entry_of(&self, task: &str) -> Value {
        let entries = self.json(&["dlq", "list", "--task", task, "--json"]);
        let entries = entries.as_array().expect("array");
        assert_eq!(entries.len(), 1, "{entries:#?}");
        entries[0].clone()
    }
}

/// A `tasker worker` child process, killed when dropped.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn spawn(cli: &Cli) -> Self {
        let child = cli
            .command(&["worker", "--queue", QUEUE, "--concurrency", "4"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tasker worker");
        Self(child)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn step<'a>(detail: &'a Value, name: &str) -> &'a Value {
    detail["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {detail:#}"))
}

/// Polls `tasker task get --json` until the task is in `state`.
fn wait_for_state(cli: &Cli, task: &str, state: &str) {
    for _ in 0..600 {
        let detail = cli.json(&["task", "get", task, "--json"]);
        if detail["task"]["state"] == state {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("task {task} never reached {state}");
}

fn recovering_failed_work(backend: Backend) {
    let db = scratch(backend);
    let cli = Cli { url: db.url.clone() };
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("broken_chain.yaml"), BROKEN_CHAIN).expect("write template");
    std::fs::write(dir.path().join("slow.yaml"), SLOW).expect("write template");
    cli.ok(&["template", "register", &dir.path().display().to_string()]);
    let worker = WorkerProcess::spawn(&cli);

    // A permanent failure: the task is in error and in the DLQ, with a snapshot of its steps.
    let task = cli.failed_task();
    let entry = cli.dlq_entry_of(&task);
    assert_eq!(entry["reason"], "permanent_failure");
    assert_eq!(entry["status"], "pending");
    assert_eq!(entry["task_state"], "error");
    let b = step(&entry["snapshot"], "b");
    assert_eq!(b["state"], "error");
    assert_eq!(b["last_error"]["error_type"], "handler_not_found");
    let entry_uuid = entry["entry_uuid"].as_str().expect("entry uuid").to_owned();
    let human = cli.ok(&["dlq", "list"]);
    assert!(
        human.contains(&entry_uuid) && human.contains("permanent_failure"),
        "{human}"
    );

    // What the operator sees.
    let b = cli.json(&["step", "get", &task, "b", "--json"]);
    assert_eq!(b["state"], "error");
    assert_eq!(b["retry_possible"], false);
    assert_eq!(b["dependencies_satisfied"], true);
    assert_eq!(b["errors"].as_array().map(Vec::len), Some(1), "{b:#}");
    assert_eq!(b["errors"][0]["error_type"], "handler_not_found");
    let steps = cli.json(&["step", "list", &task, "--json"]);
    let states: Vec<&str> = steps
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    assert_eq!(states, ["complete", "error", "pending"]);
    let human = cli.ok(&["step", "get", &task, "b"]);
    assert!(
        human.contains("handler_not_found") && human.contains("tasker step complete"),
        "{human}"
    );
    let human = cli.ok(&["step", "list", &task]);
    assert!(human.contains("STEP") && human.contains("error"), "{human}");

    // Illegal actions exit 1 with the engine's message; with --json the error is JSON.
    let stderr = cli.fails(1, &["step", "reset", &task, "a"]);
    assert!(
        stderr.contains("step 'a' is complete; only error, waiting_for_retry, enqueued steps can be reset"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("tasker step get {task} a")), "{stderr}");
    let stderr = cli.fails(1, &["step", "resolve", &task, "a", "--json"]);
    let error: Value = serde_json::from_str(stderr.trim()).expect("JSON error");
    assert_eq!(error["error"], "invalid_state");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("step 'a' is complete; only ")),
        "{error}"
    );
    let stderr = cli.fails(1, &["step", "get", &task, "zz"]);
    assert!(
        stderr.contains("has no step 'zz'") && stderr.contains(&format!("tasker step list {task}")),
        "{stderr}"
    );
    let stderr = cli.fails(1, &["task", "retry", "01234567-89ab-7def-8123-456789abcdef"]);
    assert!(stderr.contains("task not found"), "{stderr}");
    let stderr = cli.fails(1, &["dlq", "show", "01234567-89ab-7def-8123-456789abcdef", "--json"]);
    let error: Value = serde_json::from_str(stderr.trim()).expect("JSON error");
    assert_eq!(error["error"], "dlq_entry_not_found");
    // Bad usage exits 2 (clap), and changes nothing.
    cli.fails(2, &["step", "complete", &task, "b"]);
    cli.fails(2, &["step", "complete", &task, "b", "--result", "{not json"]);
    cli.fails(
        2,
        &[
            "step",
            "complete",
            &task,
            "b",
            "--result",
            "1",
            "--result-file",
            "x.json",
        ],
    );
    cli.fails(2, &["dlq", "list", "--status", "bogus"]);
    cli.fails(2, &["dlq", "update", &entry_uuid]);
    cli.fails(2, &["step", "frobnicate"]);

    // Reset: it runs again (and fails again: the handler is still missing); every attempt's
    // error is kept. The audit row names who and why.
    cli.ok(&[
        "step",
        "reset",
        &task,
        "b",
        "--by",
        "ops",
        "--reason",
        "after deploy",
        "--wait",
        "60",
    ]);
    let b = cli.json(&["step", "get", &task, "b", "--json"]);
    assert_eq!(b["state"], "error");
    assert_eq!(b["errors"].as_array().map(Vec::len), Some(2), "{b:#}");
    let reset = b["transitions"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["event"] == "reset"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(reset["metadata"], json!({"by": "ops", "reason": "after deploy"}));

    // Complete it by hand: c receives the operator's result, the task completes, the DLQ entry
    // is closed. --by defaults to $USER.
    let done = cli.json(&[
        "step",
        "complete",
        &task,
        "b",
        "--result",
        r#"{"value": 7}"#,
        "--metadata",
        r#"{"ticket": "OPS-1"}"#,
        "--reason",
        "computed by hand",
        "--wait",
        "60",
        "--json",
    ]);
    assert_eq!(done["task"]["state"], "complete", "{done:#}");
    assert_eq!(step(&done, "b")["results"], json!({"value": 7}));
    assert_eq!(step(&done, "c")["results"]["value"], 70);
    let manual = done["step_transitions"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["step_name"] == "b" && t["to_state"] == "complete"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(manual["metadata"]["by"], "test-operator");
    assert_eq!(manual["metadata"]["reason"], "computed by hand");
    let entry = cli.json(&["dlq", "show", &entry_uuid, "--json"]);
    assert_eq!(entry["status"], "manually_resolved", "{entry:#}");
    let human = cli.ok(&["dlq", "show", &entry_uuid]);
    assert!(
        human.contains("manually_resolved") && human.contains("handler_not_found"),
        "{human}"
    );
    // A finished task's steps no longer change.
    let stderr = cli.fails(1, &["step", "complete", &task, "b", "--result", "{}"]);
    assert!(
        stderr.contains("is complete; its steps can no longer change"),
        "{stderr}"
    );

    // Resolve: c runs without a result from b; the result comes from a file here.
    let task = cli.failed_task();
    let result_file = dir.path().join("result.json");
    std::fs::write(&result_file, r#"{"value": 2}"#).expect("write result");
    let human = cli.ok(&["step", "resolve", &task, "b", "--reason", "not needed"]);
    assert!(human.contains("now resolved_manually"), "{human}");
    let detail = cli.json(&["task", "get", &task, "--json"]);
    assert_eq!(step(&detail, "b")["state"], "resolved_manually");
    let waited = cli.json(&["step", "get", &task, "c", "--json"]);
    assert_eq!(waited["dependencies_satisfied"], true, "{waited:#}");
    wait_for_state(&cli, &task, "complete");
    assert_eq!(cli.dlq_entry_of(&task)["status"], "manually_resolved");

    // --result-file, on a step of another failed task.
    let task = cli.failed_task();
    let done = cli.json(&[
        "step",
        "complete",
        &task,
        "b",
        "--result-file",
        &result_file.display().to_string(),
        "--wait",
        "60",
        "--json",
    ]);
    assert_eq!(step(&done, "c")["results"]["value"], 20);

    // Cancel a pending step; cancelling it again is refused.
    let task = cli.failed_task();
    let c = cli.json(&["step", "cancel", &task, "c", "--reason", "not wanted", "--json"]);
    assert_eq!(c["state"], "cancelled");
    let stderr = cli.fails(1, &["step", "cancel", &task, "c"]);
    assert!(stderr.contains("step 'c' is cancelled; only "), "{stderr}");

    // Task retry (fails again), then task resolve; a resolved task cannot be retried.
    let task = cli.failed_task();
    let retried = cli.json(&[
        "task",
        "retry",
        &task,
        "--reason",
        "once more",
        "--wait",
        "60",
        "--json",
    ]);
    assert_eq!(retried["task"]["state"], "error");
    assert_eq!(step(&retried, "b")["attempts"], 2);
    let resolved = cli.json(&["task", "resolve", &task, "--reason", "handled elsewhere", "--json"]);
    assert_eq!(resolved["state"], "resolved_manually");
    let stderr = cli.fails(1, &["task", "retry", &task]);
    assert!(stderr.contains("only a task in error can be retried"), "{stderr}");
    assert_eq!(cli.dlq_entry_of(&task)["status"], "manually_resolved");

    // DLQ investigation: a manual entry, a note, a status; stats and the queue.
    let entry = cli.json(&["dlq", "add", &task, "--reason", "audit this one", "--json"]);
    assert_eq!(
        (entry["reason"].as_str(), entry["status"].as_str()),
        (Some("manual"), Some("pending"))
    );
    let manual_uuid = entry["entry_uuid"].as_str().expect("uuid").to_owned();
    let stderr = cli.fails(1, &["dlq", "add", &task]);
    assert!(stderr.contains("already has an open DLQ entry"), "{stderr}");
    let queue = cli.json(&["dlq", "queue", "--json"]);
    let queued: Vec<&str> = queue
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|q| q["entry_uuid"].as_str())
        .collect();
    assert!(queued.contains(&manual_uuid.as_str()), "{queue:#}");
    assert!(queue[0]["score"].is_number(), "{queue:#}");
    let updated = cli.json(&[
        "dlq",
        "update",
        &manual_uuid,
        "--status",
        "investigating",
        "--note",
        "looking",
        "--by",
        "bob",
        "--json",
    ]);
    assert_eq!(updated["status"], "investigating");
    cli.ok(&[
        "dlq",
        "update",
        &manual_uuid,
        "--status",
        "cancelled",
        "--reason",
        "nothing wrong",
    ]);
    let cancelled = cli.json(&["dlq", "list", "--status", "cancelled", "--json"]);
    assert_eq!(cancelled.as_array().map(Vec::len), Some(1), "{cancelled:#}");
    let notes: Vec<(&str, &str)> = cancelled[0]["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| Some((n["by"].as_str()?, n["text"].as_str()?)))
        .collect();
    assert_eq!(
        notes,
        [
            ("test-operator", "audit this one"),
            ("bob", "looking"),
            ("test-operator", "nothing wrong")
        ]
    );
    let stats = cli.json(&["dlq", "stats", "--json"]);
    assert_eq!(stats["total"], 6, "{stats:#}");
    assert_eq!(stats["open"], 1, "{stats:#}"); // the cancelled-step task's entry
    assert_eq!(stats["by_reason"]["permanent_failure"], 5);
    assert_eq!(stats["by_status"]["cancelled"], 1);
    assert!(cli.ok(&["dlq", "stats"]).contains("6 entries, 1 open"));
    assert_eq!(
        cli.json(&["dlq", "list", "--open", "--json"]).as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        cli.json(&["dlq", "list", "--limit", "2", "--offset", "5", "--json"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    cli.ok(&["dlq", "queue"]);

    // The staleness report (with the template's threshold) and the workers.
    let out = cli.ok(&["task", "create", "--namespace", "cli_recovery", "--name", "slow"]);
    let slow = out.trim().to_owned();
    let report = cli.json(&["dlq", "staleness", "--json"]);
    let health = report
        .as_array()
        .and_then(|r| r.iter().find(|h| h["task_uuid"] == slow.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("{slow} not in {report:#}"));
    assert_eq!(health["health"], "healthy", "{health:#}");
    assert_eq!(health["threshold_ms"], 30_000, "{health:#}");
    let human = cli.ok(&["dlq", "staleness"]);
    assert!(human.contains(&slow) && human.contains("healthy"), "{human}");
    let near = cli.json(&["dlq", "staleness", "--min-ratio", "0.8", "--json"]);
    assert!(
        near.as_array()
            .is_some_and(|r| r.iter().all(|h| h["task_uuid"] != slow.as_str())),
        "{near:#}"
    );
    wait_for_state(&cli, &slow, "complete");
    let workers = cli.json(&["worker", "list", "--json"]);
    let ours = workers
        .as_array()
        .and_then(|w| w.iter().find(|w| w["pid"] == json!(worker.0.id())))
        .cloned()
        .unwrap_or_else(|| panic!("worker {} not listed: {workers:#}", worker.0.id()));
    assert_eq!(ours["live"], true);
    assert_eq!(ours["language"], "rust");
    assert_eq!(ours["queues"], json!([QUEUE]));
    let human = cli.ok(&["worker", "list"]);
    assert!(human.contains("live") && human.contains(QUEUE), "{human}");

    drop(worker);
    runtime().block_on(db.drop_database());
}

#[test]
fn recovering_failed_work_sqlite() {
    recovering_failed_work(Backend::Sqlite);
}

#[test]
fn recovering_failed_work_postgres() {
    recovering_failed_work(Backend::Postgres);
}

#[test]
fn usage_errors_exit_2_before_touching_a_database() {
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}", dir.path().join("never.db").display());
    let cli = Cli { url };
    cli.fails(2, &["step", "reset"]);
    cli.fails(2, &["dlq", "staleness", "--min-ratio", "lots"]);
    cli.fails(2, &["task", "retry", "not-a-uuid"]);
    cli.fails(2, &["worker", "list", "--queue", "x"]);
    assert!(!dir.path().join("never.db").exists());
    // `tasker worker --help` names both forms.
    let help = cli.ok(&["worker", "--help"]);
    assert!(help.contains("--queue") && help.contains("list"), "{help}");
}
