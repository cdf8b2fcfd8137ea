//! The workflows and the in-process workloads: W1 (latency), W2 (throughput), W3 (fan-out), W4
//! (a batchable step fanning out to batch worker instances and converging), and the history
//! fill, all with Rust no-op handlers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tasker_core::state::TaskState;
use tasker_core::template::parse_str;
use tasker_core::{TaskFilter, TaskRequest, Tasker, TaskerError, Worker, WorkerConfig};
use uuid::Uuid;

use super::completion::Finished;
use super::report::{HistoryFigures, Latency, Out, StalenessFigures};
use crate::handlers;

/// The namespace, and so the queue, of every benchmark template.
pub const NAMESPACE: &str = "bench";

/// W1 runs not measured, so connections, caches and the worker are warm.
pub const W1_WARM_UP: usize = 20;

/// Tasks created concurrently by this many client tasks (W2, history).
const CREATORS: usize = 8;

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

pub const DIAMOND_STEPS: usize = 4;

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

/// The finished tasks `--history` fills the database with: a chain of `steps` no-op steps. One
/// step is the cheapest to fill; with two or more, every table grows (a one-step task has no
/// dependency edges, so that table stays empty and its statistics say so).
fn history_template(steps: usize) -> String {
    let mut yaml = String::from("name: bench_history\nnamespace_name: bench\nversion: 1.0.0\nsteps:\n");
    for i in 0..steps.max(1) {
        let dependency = if i == 0 {
            String::new()
        } else {
            format!(", dependencies: [h{}]", i - 1)
        };
        yaml.push_str(&format!(
            "  - {{ name: h{i}{dependency}, handler: {{ callable: noop }} }}\n"
        ));
    }
    yaml
}

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

/// W4: a batchable step splitting the task's `items` into one batch per worker instance, the
/// no-op `work` batch worker, and a deferred convergence on every instance.
const BATCHES: &str = r#"
name: bench_batches
namespace_name: bench
version: 1.0.0
steps:
  - { name: split, type: batchable, handler: { callable: split_batches, initialization: { worker: work } } }
  - { name: work, type: batch_worker, dependencies: [split], handler: { callable: noop } }
  - { name: converge, type: deferred_convergence, dependencies: [work], handler: { callable: noop } }
"#;

/// `--open-tasks`: a step on a queue no worker serves, so its tasks stay unfinished.
const IDLE: &str = r#"
name: bench_idle
namespace_name: bench
version: 1.0.0
steps:
  - { name: wait, queue: bench_unserved, handler: { callable: noop } }
"#;

pub async fn register_templates(
    tasker: &Tasker,
    fan_out_width: usize,
    history_steps: usize,
) -> Result<(), TaskerError> {
    for yaml in [
        LINEAR.to_owned(),
        DIAMOND.to_owned(),
        history_template(history_steps),
        fan_out_template(fan_out_width),
        BATCHES.to_owned(),
        IDLE.to_owned(),
    ] {
        tasker.register_template(&parse_str(&yaml, None, NAMESPACE)?).await?;
    }
    Ok(())
}

pub fn request(name: &str) -> TaskRequest {
    TaskRequest {
        namespace: NAMESPACE.into(),
        name: name.into(),
        context: json!({}),
        ..Default::default()
    }
}

/// Creates `count` tasks of `template` from [`CREATORS`] concurrent client tasks; returns their
/// uuids.
pub async fn create_many(tasker: &Tasker, template: &str, count: usize) -> Result<Vec<Uuid>, TaskerError> {
    let template = template.to_owned();
    create_many_with(tasker, count, move |_| request(&template)).await
}

/// Creates `count` tasks, the `i`th from `make(i)`, from [`CREATORS`] concurrent client tasks;
/// returns their uuids.
pub async fn create_many_with<F>(tasker: &Tasker, count: usize, make: F) -> Result<Vec<Uuid>, TaskerError>
where
    F: Fn(usize) -> TaskRequest + Clone + Send + 'static,
{
    let mut creators = tokio::task::JoinSet::new();
    let per_creator = count.div_ceil(CREATORS);
    for chunk in 0..CREATORS {
        let (t, make) = (tasker.clone(), make.clone());
        let first = chunk * per_creator;
        let last = (first + per_creator).min(count);
        creators.spawn(async move {
            let mut out = Vec::with_capacity(last.saturating_sub(first));
            for i in first..last {
                out.push(t.create_task(make(i)).await?.task.task_uuid);
            }
            Ok::<_, TaskerError>(out)
        });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(created) = creators.join_next().await {
        ids.extend(created.map_err(|e| TaskerError::InvalidArgument(format!("task creator: {e}")))??);
    }
    Ok(ids)
}

/// The worker that runs the Rust no-op handlers inside the bench process.
pub struct InProcessWorker {
    worker: Worker,
    runner: tokio::task::JoinHandle<()>,
}

impl InProcessWorker {
    pub async fn start(tasker: &Tasker, concurrency: usize) -> Result<Self, TaskerError> {
        let mut config = WorkerConfig::new(vec![NAMESPACE.into()]);
        config.concurrency = concurrency;
        let worker = Worker::start(tasker, config).await?;
        let runner = tokio::spawn(tasker_core::handler::run_handlers(
            worker.clone(),
            Arc::new(handlers::registry()),
        ));
        Ok(Self { worker, runner })
    }

    pub async fn stop(self) -> Result<(), TaskerError> {
        self.worker.shutdown(Duration::from_secs(5)).await?;
        let _ = self.runner.await;
        Ok(())
    }
}

/// W1: one 4-step linear task at a time, create → terminal as the client sees it.
pub async fn w1(tasker: &Tasker, runs: usize) -> Result<Option<Latency>, TaskerError> {
    let mut latencies = Vec::with_capacity(runs);
    for i in 0..(W1_WARM_UP + runs) {
        let start = Instant::now();
        let id = tasker.create_task(request("bench_linear")).await?.task.task_uuid;
        let done = tasker.wait_for_task(id, Duration::from_secs(30)).await?;
        if done.task.state != "complete" {
            return Err(TaskerError::InvalidArgument(format!(
                "W1 task ended {}",
                done.task.state
            )));
        }
        if i >= W1_WARM_UP {
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(Latency::from_samples(latencies))
}

/// Throughput of a batch of diamonds: wall time from the first create to the last completion.
pub struct Throughput {
    pub wall_s: f64,
    pub steps_per_s: f64,
    pub commits_per_step: Option<f64>,
}

/// W2: `tasks` diamonds submitted at once by concurrent creators; completion observed through
/// `finished` (engine events or NOTIFY: no reads of the database while it runs, so the commit
/// count is the engine's own).
pub async fn w2(tasker: &Tasker, finished: &Finished, tasks: usize) -> Result<Throughput, TaskerError> {
    throughput(
        tasker,
        finished,
        tasks * DIAMOND_STEPS,
        create_many(tasker, "bench_diamond", tasks),
    )
    .await
}

/// Runs the tasks `create` submits, from its start until `finished` saw the last one finish.
/// `steps` is how many steps they have in all.
pub async fn throughput(
    tasker: &Tasker,
    finished: &Finished,
    steps: usize,
    create: impl std::future::Future<Output = Result<Vec<Uuid>, TaskerError>>,
) -> Result<Throughput, TaskerError> {
    let commits_before = tasker.store().commit_count().await?;
    let start = Instant::now();
    let ids = create.await?;
    finished.wait_all(tasker, &ids, Duration::from_secs(300)).await?;
    let wall_s = start.elapsed().as_secs_f64();
    finished.check_complete(tasker, &ids).await?;
    let steps = steps as f64;
    let commits_per_step = match commits_before {
        Some(before) => {
            // Statistics are flushed by each backend at most once per second.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            tasker
                .store()
                .commit_count()
                .await?
                .map(|after| (after - before) as f64 / steps)
        }
        None => None,
    };
    finished.forget(&ids);
    Ok(Throughput {
        wall_s,
        steps_per_s: steps / wall_s,
        commits_per_step,
    })
}

/// W3: one task fanning out to `width` parallel steps and converging. Returns the wall time.
pub async fn w3(tasker: &Tasker, finished: &Finished) -> Result<f64, TaskerError> {
    let start = Instant::now();
    let id = tasker.create_task(request("bench_fan_out")).await?.task.task_uuid;
    finished.wait_all(tasker, &[id], Duration::from_secs(300)).await?;
    Ok(start.elapsed().as_secs_f64())
}
/// W4: one task whose batchable step creates `workers` batch worker instances (one item each)
/// and converges on them. Returns the wall time, creation to completion.
pub async fn w4(tasker: &Tasker, finished: &Finished, workers: usize) -> Result<f64, TaskerError> {
    let start = Instant::now();
    let request = TaskRequest {
        context: json!({ "items": workers, "batch_size": 1 }),
        ..request("bench_batches")
    };
    let id = tasker.create_task(request).await?.task.task_uuid;
    finished.wait_all(tasker, &[id], Duration::from_secs(300)).await?;
    let task = tasker.task_summary(id).await?;
    if task.state != "complete" || task.total_steps as usize != workers + 2 {
        return Err(TaskerError::InvalidArgument(format!(
            "W4 task ended {} with {} steps (expected complete with {})",
            task.state,
            task.total_steps,
            workers + 2
        )));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Creates `open` unfinished tasks, then times the staleness report and a detector pass.
pub async fn staleness(tasker: &Tasker, open: usize, out: Out) -> Result<StalenessFigures, TaskerError> {
    let start = Instant::now();
    // Each carries one of ten tags, so a tag filter matches a tenth of them.
    create_many_with(tasker, open, |i| TaskRequest {
        tags: vec![format!("t{}", i % 10)],
        ..request("bench_idle")
    })
    .await?;
    out.say(format!(
        "    created {open} open tasks in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    let start = Instant::now();
    let report = tasker.staleness_report(0.0, 100).await?;
    let report_ms = start.elapsed().as_secs_f64() * 1000.0;
    if report.is_empty() {
        return Err(TaskerError::InvalidArgument(
            "the staleness report saw no open task".into(),
        ));
    }
    let start = Instant::now();
    tasker.detect_stale_tasks().await?;
    let detect_ms = start.elapsed().as_secs_f64() * 1000.0;
    let listing = task_list(tasker).await?;
    Ok(StalenessFigures {
        open_tasks: open,
        report_ms,
        detect_ms,
        listing,
    })
}

/// The dashboard's reads over the tasks just created: a page of 50 (the API's default) with
/// each filter the task list offers, the tenth page through cursors, and the overview. Each is
/// timed as the median of 5 runs (and the overview's first read on its own).
async fn task_list(tasker: &Tasker) -> Result<Vec<(String, f64)>, TaskerError> {
    let page = |f: TaskFilter| TaskFilter { limit: Some(51), ..f };
    let mut figures = Vec::new();
    let cases: Vec<(&str, TaskFilter)> = vec![
        ("first page", page(TaskFilter::default())),
        (
            "state",
            page(TaskFilter {
                state: Some(TaskState::StepsInProcess),
                ..Default::default()
            }),
        ),
        (
            "template",
            page(TaskFilter {
                namespace: Some(NAMESPACE.into()),
                name: Some("bench_idle".into()),
                ..Default::default()
            }),
        ),
        (
            "tag (a tenth of the tasks)",
            page(TaskFilter {
                tag: Some("t3".into()),
                ..Default::default()
            }),
        ),
        (
            "tag matching no task",
            page(TaskFilter {
                tag: Some("none".into()),
                ..Default::default()
            }),
        ),
        (
            "idempotency key matching no task",
            page(TaskFilter {
                idempotency_key: Some("none".into()),
                ..Default::default()
            }),
        ),
        (
            "created in the last minute",
            page(TaskFilter {
                created_after: Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
                ..Default::default()
            }),
        ),
    ];
    for (name, filter) in cases {
        figures.push((
            name.to_owned(),
            median_ms(|| async { tasker.list_tasks(&filter).await.map(drop) }).await?,
        ));
    }
    // The tenth page: nine cursors followed first (untimed), then the page itself.
    let mut filter = page(TaskFilter::default());
    for _ in 0..9 {
        let tasks = tasker.list_tasks(&filter).await?;
        filter.after = tasks.get(49).map(|t| (t.created_at, t.task_uuid));
    }
    figures.push((
        "tenth page (cursor)".to_owned(),
        median_ms(|| async { tasker.list_tasks(&filter).await.map(drop) }).await?,
    ));
    // The first overview after the creation also folds the task counts' deltas appended since
    // the orchestrator's last maintenance pass (PostgreSQL; at most one detector interval of
    // them), so it is timed on its own before the median of the reads that follow.
    let start = Instant::now();
    tasker.overview(chrono::Utc::now()).await?;
    figures.push((
        "overview, first read (folds the counts)".to_owned(),
        start.elapsed().as_secs_f64() * 1000.0,
    ));
    figures.push((
        "overview (/v1/stats)".to_owned(),
        median_ms(|| async { tasker.overview(chrono::Utc::now()).await.map(drop) }).await?,
    ));
    Ok(figures)
}

async fn median_ms<F, Fut>(run: F) -> Result<f64, TaskerError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), TaskerError>>,
{
    let mut times = Vec::with_capacity(5);
    for _ in 0..5 {
        let start = Instant::now();
        run().await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[2])
}

/// Tasks created per history batch: enough to keep the worker busy, few enough that progress
/// shows.
const HISTORY_BATCH: usize = 2_000;

/// Fills the database with `tasks` finished history tasks (see [`history_template`]), run by the
/// in-process worker, so W1/W2 can be measured against tables that are not empty.
pub async fn fill_history(
    tasker: &Tasker,
    finished: &Finished,
    tasks: usize,
    steps_per_task: usize,
    out: Out,
) -> Result<HistoryFigures, TaskerError> {
    let start = Instant::now();
    let mut done = 0;
    let mut last_report = Instant::now();
    while done < tasks {
        let batch = HISTORY_BATCH.min(tasks - done);
        let ids = create_many(tasker, "bench_history", batch).await?;
        finished.wait_all(tasker, &ids, Duration::from_secs(600)).await?;
        finished.forget(&ids);
        done += batch;
        if done == tasks || last_report.elapsed() >= Duration::from_secs(5) {
            let seconds = start.elapsed().as_secs_f64();
            out.say(format!(
                "    history: {done}/{tasks} tasks finished ({seconds:.1} s, {:.0} tasks/s)",
                done as f64 / seconds
            ));
            last_report = Instant::now();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(HistoryFigures {
        tasks,
        steps_per_task,
        seconds,
        tasks_per_s: tasks as f64 / seconds.max(f64::EPSILON),
        autovacuum: None,
        vacuum_analyze_s: None,
    })
}
