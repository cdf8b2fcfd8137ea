//! `tasker bench`: end-to-end figures with Rust no-op handlers, as a client sees them.
//!
//! * W1 — one 4-step linear workflow at a time: latency from create to terminal state.
//! * W2 — 1,000 diamond workflows submitted at once: wall time and steps/s.
//! * W3 — one task fanning out to 1,000 parallel steps and converging: steps/s.
//! * PostgreSQL only — commits per step during W2 (`pg_stat_database.xact_commit`).
//!
//! Each backend gets a fresh database (a temp SQLite file; a new PostgreSQL database created on
//! the server given by `--postgres-url`/`DATABASE_URL` and dropped afterwards).

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tasker_core::scratch::ScratchDatabase;
use tasker_core::store::Backend;
use tasker_core::template::parse_str;
use tasker_core::{EngineEvent, TaskRequest, Tasker, TaskerError, Worker, WorkerConfig};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::handlers;

#[derive(Args)]
pub struct BenchArgs {
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    backend: String,
    /// PostgreSQL server to create the benchmark database on [default: $DATABASE_URL].
    #[arg(long)]
    postgres_url: Option<String>,
    /// W1 measured runs (after 20 warm-up runs).
    #[arg(long, default_value_t = 200)]
    w1_runs: usize,
    /// W2 workflows.
    #[arg(long, default_value_t = 1000)]
    w2_tasks: usize,
    /// W3 parallel steps.
    #[arg(long, default_value_t = 1000)]
    w3_steps: usize,
    /// Worker slots.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Also print the figures as JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, serde::Serialize)]
struct Figures {
    backend: &'static str,
    w1_p50_ms: f64,
    w1_p95_ms: f64,
    w1_p99_ms: f64,
    w2_wall_s: f64,
    w2_steps_per_s: f64,
    w3_wall_s: f64,
    w3_steps_per_s: f64,
    commits_per_step: Option<f64>,
}

const LINEAR: &str = r#"
name: bench_linear
namespace_name: bench
version: 1.0.0
steps:
  - { name: s1, handler: { callable: noop } }
  - { name: s2, dependencies: [s1], handler: { callable: noop } }
  - { name: s3, dependencies: [s2], handler: { callable: noop } }
  - { name: s4, dependencies: [s3], handler: { callable: noop } }
"#;

const DIAMOND: &str = r#"
name: bench_diamond
namespace_name: bench
version: 1.0.0
steps:
  - { name: a, handler: { callable: noop } }
  - { name: b, dependencies: [a], handler: { callable: noop } }
  - { name: c, dependencies: [a], handler: { callable: noop } }
  - { name: d, dependencies: [b, c], handler: { callable: noop } }
"#;

fn fan_out_template(width: usize) -> String {
    let mut yaml = String::from(
        "name: bench_fan_out\nnamespace_name: bench\nversion: 1.0.0\nsteps:\n  - { name: start, handler: { callable: noop } }\n",
    );
    for i in 0..width {
        yaml.push_str(&format!(
            "  - {{ name: p{i}, dependencies: [start], handler: {{ callable: noop }} }}\n"
        ));
    }
    let deps: Vec<String> = (0..width).map(|i| format!("p{i}")).collect();
    yaml.push_str(&format!(
        "  - {{ name: finish, dependencies: [{}], handler: {{ callable: noop }} }}\n",
        deps.join(", ")
    ));
    yaml
}

pub async fn run(args: BenchArgs) -> Result<ExitCode, TaskerError> {
    let backends: Vec<Backend> = match args.backend.as_str() {
        "sqlite" => vec![Backend::Sqlite],
        "postgres" => vec![Backend::Postgres],
        "both" => vec![Backend::Sqlite, Backend::Postgres],
        other => {
            return Err(TaskerError::InvalidArgument(format!(
                "--backend '{other}' is not one of sqlite, postgres, both"
            )))
        }
    };
    println!(
        "tasker bench: W1 {} runs, W2 {} diamonds, W3 fan-out {} — Rust no-op handlers, concurrency {}",
        args.w1_runs, args.w2_tasks, args.w3_steps, args.concurrency
    );
    let mut all = Vec::new();
    for backend in backends {
        let server = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                args.postgres_url
                    .clone()
                    .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres")))
                    .ok_or_else(|| {
                        TaskerError::InvalidArgument("PostgreSQL benchmark needs --postgres-url or DATABASE_URL".into())
                    })?,
            ),
        };
        let scratch = ScratchDatabase::create(backend, server.as_deref()).await?;
        let result = bench_backend(&scratch.url, &args).await;
        scratch.drop_database().await;
        let figures = result?;
        print_row(&figures);
        all.push(figures);
    }
    print_table(&all);
    if args.json {
        for f in &all {
            println!("{}", serde_json::to_string(f).unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench_backend(url: &str, args: &BenchArgs) -> Result<Figures, TaskerError> {
    let tasker = Tasker::connect_with(tasker_core::TaskerOptions {
        database_url: Some(url.to_owned()),
        max_connections: 16,
        listen: true,
    })
    .await?;
    let backend = tasker.backend();
    for yaml in [LINEAR.to_owned(), DIAMOND.to_owned(), fan_out_template(args.w3_steps)] {
        tasker.register_template(&parse_str(&yaml, None, "bench")?).await?;
    }
    let mut config = WorkerConfig::new(vec!["bench".into()]);
    config.concurrency = args.concurrency;
    let worker = Worker::start(&tasker, config).await?;
    let runner = tokio::spawn(tasker_core::handler::run_handlers(
        worker.clone(),
        Arc::new(handlers::registry()),
    ));
    let finished = Finished::start(tasker.subscribe_events());
    let request = |name: &str| TaskRequest {
        namespace: "bench".into(),
        name: name.into(),
        context: json!({}),
        ..Default::default()
    };

    // W1: create → terminal, one at a time, as seen by the client.
    let mut latencies = Vec::with_capacity(args.w1_runs);
    for i in 0..(20 + args.w1_runs) {
        let start = Instant::now();
        let id = tasker.create_task(request("bench_linear")).await?.task.task_uuid;
        let done = tasker.wait_for_task(id, Duration::from_secs(30)).await?;
        if done.task.state != "complete" {
            return Err(TaskerError::InvalidArgument(format!(
                "W1 task ended {}",
                done.task.state
            )));
        }
        if i >= 20 {
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(latencies.len() - 1)]
    };

    // W2: many diamonds at once; completion observed through engine events (no polling reads,
    // so the commit count is the engine's own).
    let commits_before = tasker.store().commit_count().await?;
    let start = Instant::now();
    let mut ids = HashSet::with_capacity(args.w2_tasks);
    let mut creators = tokio::task::JoinSet::new();
    let per = args.w2_tasks.div_ceil(8);
    for chunk in 0..8 {
        let t = tasker.clone();
        let n = per.min(args.w2_tasks.saturating_sub(chunk * per));
        creators.spawn(async move {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(t.create_task(request("bench_diamond")).await?.task.task_uuid);
            }
            Ok::<_, TaskerError>(out)
        });
    }
    while let Some(r) = creators.join_next().await {
        ids.extend(r.map_err(|e| TaskerError::InvalidArgument(e.to_string()))??);
    }
    finished.wait_all(&ids, Duration::from_secs(300)).await?;
    let w2_wall = start.elapsed().as_secs_f64();
    let w2_steps = (args.w2_tasks * 4) as f64;
    // Statistics are flushed by each backend at most once per second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let commits_after = tasker.store().commit_count().await?;
    let commits_per_step = match (commits_before, commits_after) {
        (Some(a), Some(b)) => Some((b - a) as f64 / w2_steps),
        _ => None,
    };

    // W3: one wide fan-out.
    let start = Instant::now();
    let id = tasker.create_task(request("bench_fan_out")).await?.task.task_uuid;
    finished
        .wait_all(&HashSet::from([id]), Duration::from_secs(300))
        .await?;
    let w3_wall = start.elapsed().as_secs_f64();

    worker.shutdown(Duration::from_secs(5)).await?;
    let _ = runner.await;
    tasker.close().await;
    Ok(Figures {
        backend: backend.as_str(),
        w1_p50_ms: pct(0.50),
        w1_p95_ms: pct(0.95),
        w1_p99_ms: pct(0.99),
        w2_wall_s: w2_wall,
        w2_steps_per_s: w2_steps / w2_wall,
        w3_wall_s: w3_wall,
        w3_steps_per_s: (args.w3_steps + 2) as f64 / w3_wall,
        commits_per_step,
    })
}

/// Collects the terminal states of tasks from the engine's event stream, as they happen, so
/// nothing lags behind while tasks are still being submitted.
struct Finished {
    done: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, String>>>,
    notify: Arc<tokio::sync::Notify>,
    collector: tokio::task::JoinHandle<()>,
}

impl Finished {
    fn start(mut events: broadcast::Receiver<EngineEvent>) -> Self {
        let done: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, String>>> = Arc::default();
        let notify = Arc::new(tokio::sync::Notify::new());
        let (d, n) = (done.clone(), notify.clone());
        let collector = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(EngineEvent::Task { task_uuid, to, .. }) if to.is_terminal() => {
                        if let Ok(mut m) = d.lock() {
                            m.insert(task_uuid, to.as_str().to_owned());
                        }
                        n.notify_one();
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::error!(missed, "benchmark event collector lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Self {
            done,
            notify,
            collector,
        }
    }

    async fn wait_all(&self, ids: &HashSet<Uuid>, timeout: Duration) -> Result<(), TaskerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            {
                let done = self
                    .done
                    .lock()
                    .map_err(|_| TaskerError::InvalidArgument("collector panicked".into()))?;
                if let Some((id, state)) = ids
                    .iter()
                    .filter_map(|id| done.get(id).map(|s| (id, s)))
                    .find(|(_, s)| *s != "complete")
                {
                    return Err(TaskerError::InvalidArgument(format!(
                        "benchmark task {id} ended {state}"
                    )));
                }
                if ids.iter().all(|id| done.contains_key(id)) {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(TaskerError::Timeout(timeout));
            }
        }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.collector.abort();
    }
}

fn print_row(f: &Figures) {
    println!(
        "  {:<8} W1 p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms | W2 {:.2} s {:.0} steps/s | W3 {:.2} s {:.0} steps/s{}",
        f.backend,
        f.w1_p50_ms,
        f.w1_p95_ms,
        f.w1_p99_ms,
        f.w2_wall_s,
        f.w2_steps_per_s,
        f.w3_wall_s,
        f.w3_steps_per_s,
        f.commits_per_step
            .map(|c| format!(" | {c:.2} commits/step"))
            .unwrap_or_default()
    );
}

fn print_table(all: &[Figures]) {
    println!();
    println!("| backend  | W1 p50 ms | W1 p95 ms | W1 p99 ms | W2 wall s | W2 steps/s | W3 wall s | W3 steps/s | commits/step |");
    println!("|----------|-----------|-----------|-----------|-----------|------------|-----------|------------|--------------|");
    for f in all {
        println!(
            "| {:<8} | {:>9.2} | {:>9.2} | {:>9.2} | {:>9.2} | {:>10.0} | {:>9.2} | {:>10.0} | {:>12} |",
            f.backend,
            f.w1_p50_ms,
            f.w1_p95_ms,
            f.w1_p99_ms,
            f.w2_wall_s,
            f.w2_steps_per_s,
            f.w3_wall_s,
            f.w3_steps_per_s,
            f.commits_per_step
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "n/a".into())
        );
    }
}
