//! Worker processes started by the benchmark: `tasker worker` (W2 by N processes) and the
//! Python, Ruby and TypeScript workers of the polyglot workflow.
//!
//! Each child says once that it is claiming (one line on stdout or stderr); until then the
//! benchmark waits, so no start-up time is measured. Everything else the children print is
//! passed on to this process's stderr, prefixed with the child's name, so stdout stays clean for
//! `--json`. They are stopped with SIGTERM (a graceful shutdown), and killed if they linger.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tasker_core::{Tasker, TaskerError};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::completion::Finished;
use super::report::{Out, ProcessesFigures};
use super::workloads::{self, NAMESPACE};

/// How long a child may take to connect and start claiming.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a child prints the line that says it is ready.
#[derive(Clone, Copy)]
pub enum ReadyOn {
    Stdout,
    Stderr,
}

/// Child processes started together and stopped together.
#[derive(Default)]
pub struct WorkerProcesses {
    children: Vec<(String, Child)>,
    /// Set once they are told to stop: from then on only problems are passed on, not the
    /// children's goodbyes.
    stopping: Arc<AtomicBool>,
}

impl WorkerProcesses {
    /// Starts `command` and waits for its ready line.
    pub async fn start(&mut self, name: &str, mut command: Command, ready_on: ReadyOn) -> Result<(), TaskerError> {
        for (k, v) in child_env() {
            command.env(k, v);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| TaskerError::InvalidArgument(format!("cannot start the {name} worker: {e}")))?;
        let label = format!("{name} {}", child.id().unwrap_or_default());
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        if let Some(stdout) = child.stdout.take() {
            let ready = matches!(ready_on, ReadyOn::Stdout).then(|| ready_tx.take()).flatten();
            tokio::spawn(pass_on(stdout, label.clone(), ready, self.stopping.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            let ready = matches!(ready_on, ReadyOn::Stderr).then(|| ready_tx.take()).flatten();
            tokio::spawn(pass_on(stderr, label.clone(), ready, self.stopping.clone()));
        }
        let started = tokio::time::timeout(START_TIMEOUT, ready_rx).await;
        let problem = match started {
            Ok(Ok(_line)) => None,
            Ok(Err(_)) => Some(match child.wait().await {
                Ok(status) => format!("exited before it was ready ({status}; its output is above)"),
                Err(e) => format!("exited before it was ready ({e})"),
            }),
            Err(_) => Some(format!("was not ready after {} s", START_TIMEOUT.as_secs())),
        };
        self.children.push((label.clone(), child));
        match problem {
            None => Ok(()),
            Some(p) => Err(TaskerError::InvalidArgument(format!("the {label} worker {p}"))),
        }
    }

    /// Starts `count` `tasker worker` processes (this binary) on the benchmark's queue.
    pub async fn start_tasker_workers(
        &mut self,
        url: &str,
        count: usize,
        concurrency: usize,
    ) -> Result<(), TaskerError> {
        let tasker = std::env::current_exe()
            .map_err(|e| TaskerError::InvalidArgument(format!("cannot find the tasker binary: {e}")))?;
        for _ in 0..count {
            let mut command = Command::new(&tasker);
            command.args(["--database-url", url, "worker", "--queue", NAMESPACE, "--concurrency"]);
            command.arg(concurrency.to_string());
            // `tasker worker` prints one line on stderr once it is claiming.
            self.start("tasker worker", command, ReadyOn::Stderr).await?;
        }
        Ok(())
    }

    /// SIGTERM to every child, then waits (killing what is still running after 20 s).
    pub async fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for (_, child) in &self.children {
            if let Some(pid) = child.id() {
                // By id, only the processes started here.
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (label, child) in &mut self.children {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                eprintln!("  [{label}] did not stop after SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

/// Passes a child's output on to stderr, line by line; the first line goes to `ready` instead,
/// when given.
async fn pass_on(
    stream: impl AsyncRead + Unpin,
    label: String,
    mut ready: Option<oneshot::Sender<String>>,
    stopping: Arc<AtomicBool>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(tx) = ready.take() {
            let _ = tx.send(line);
            continue;
        }
        let lower = line.to_lowercase();
        let problem = ["error", "warn", "panic", "fail"].iter().any(|w| lower.contains(w));
        if problem || !stopping.load(Ordering::SeqCst) {
            eprintln!("  [{label}] {line}");
        }
    }
}

/// W2 with the steps run by `count` separate `tasker worker` processes: this process only
/// creates the diamonds and waits for them to finish (NOTIFY on PostgreSQL; on SQLite one read
/// of the oldest unfinished task per tick).
pub async fn w2(
    tasker: &Tasker,
    url: &str,
    count: usize,
    concurrency: usize,
    tasks: usize,
    out: Out,
) -> Result<ProcessesFigures, TaskerError> {
    out.say(format!(
        "  {}: W2 by {count} `tasker worker` process(es), {concurrency} slots each",
        tasker.backend().as_str()
    ));
    let mut workers = WorkerProcesses::default();
    let started = workers.start_tasker_workers(url, count, concurrency).await;
    let result = match started {
        Ok(()) => {
            let finished = Finished::other_processes(tasker);
            workloads::w2(tasker, &finished, tasks)
                .await
                .map(|w2| (w2, finished.describe()))
        }
        Err(e) => Err(e),
    };
    workers.stop().await;
    let (w2, completion) = result?;
    Ok(ProcessesFigures {
        processes: count,
        concurrency_per_process: concurrency,
        tasks,
        wall_s: w2.wall_s,
        steps_per_s: w2.steps_per_s,
        commits_per_step: w2.commits_per_step,
        completion,
    })
}

/// Environment variables every worker process of the current run gets (which messaging
/// backend, and its queue prefix), so that they carry messages the way the bench process does.
static CHILD_ENV: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

pub fn set_child_env(vars: Vec<(String, String)>) {
    *CHILD_ENV.lock().unwrap_or_else(|p| p.into_inner()) = vars;
}

fn child_env() -> Vec<(String, String)> {
    CHILD_ENV.lock().unwrap_or_else(|p| p.into_inner()).clone()
}
