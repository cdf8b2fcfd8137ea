//! `tasker bench`: end-to-end figures, as a client sees them.
//!
//! In-process, with Rust no-op handlers (`--workloads`, all by default):
//! * W1 — one 4-step linear workflow at a time: latency from create to terminal state.
//! * W2 — 1,000 diamond workflows submitted at once: wall time and steps/s.
//! * W3 — one task fanning out to 1,000 parallel steps and converging: steps/s.
//! * W4 — one batchable step creating 1,000 batch worker instances at run time, and a deferred
//!   convergence on them: steps/s.
//! * PostgreSQL only — commits per step during W2 (`pg_stat_database.xact_commit`).
//!
//! Optional phases, after those:
//! * `--processes 1,3` — W2 with the steps run by N separate `tasker worker` processes.
//! * `--polyglot` — the mixed-language workflow across Python, Ruby and TypeScript workers.
//!
//! `--history N` first fills the database with N finished tasks. Each backend gets a fresh
//! database (a temp SQLite file; a new PostgreSQL database created on the server given by
//! `--postgres-url`/`DATABASE_URL` and dropped afterwards). The human tables are the default
//! output; `--json` prints one JSON document instead (see [`report::json_document`]).

mod completion;
mod events;
mod maintenance;
mod polyglot;
mod processes;
mod report;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use tasker_core::scratch::ScratchDatabase;
use tasker_core::store::Backend;
use tasker_core::{Tasker, TaskerError, TaskerOptions};

use completion::Finished;
use report::{BackendReport, Out};
use workloads::InProcessWorker;

#[derive(Args)]
pub struct BenchArgs {
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    backend: String,
    /// What carries step messages: database (PGMQ on PostgreSQL, the queue table on SQLite),
    /// rabbitmq (PostgreSQL + RabbitMQ at messaging.rabbitmq_url / $RABBITMQ_URL), or both
    /// (PostgreSQL runs on each, side by side).
    #[arg(long = "queue", default_value = "database")]
    queue: String,
    /// PostgreSQL server to create the benchmark database on [default: $DATABASE_URL].
    #[arg(long)]
    postgres_url: Option<String>,
    /// The in-process workloads to run, comma-separated: w1, w2, w3, w4, or none.
    #[arg(long, value_delimiter = ',', default_value = "w1,w2,w3,w4")]
    workloads: Vec<String>,
    /// W1 measured runs (after 20 warm-up runs).
    #[arg(long, default_value_t = 200)]
    w1_runs: usize,
    /// W2 workflows.
    #[arg(long, default_value_t = 1000)]
    w2_tasks: usize,
    /// W3 parallel steps.
    #[arg(long, default_value_t = 1000)]
    w3_steps: usize,
    /// W4 batch worker instances.
    #[arg(long, default_value_t = 1000)]
    w4_workers: usize,
    /// Worker slots.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Before measuring, fill each backend's fresh database with this many finished tasks (run by
    /// the in-process worker), to compare W1/W2 on an empty database with one that has history.
    #[arg(long, default_value_t = 0)]
    history: usize,
    /// Steps of each history task, a chain of no-ops. With 1 the dependency-edge table stays
    /// empty; 2 or more make every table grow.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    history_steps: u16,
    /// After the history fill, run VACUUM ANALYZE on the PostgreSQL database (through psql), as
    /// autovacuum would in time; without it, a server with autovacuum off measures tables its
    /// planner has no statistics for.
    #[arg(long)]
    vacuum: bool,
    /// Also measure the staleness detector with this many unfinished tasks in the database
    /// (their steps wait on a queue no worker serves): the monitoring report and a detector pass.
    #[arg(long, default_value_t = 0)]
    open_tasks: usize,
    /// Also run W2 with its steps run by N separate `tasker worker` processes (`--concurrency`
    /// slots each), the bench process only creating the tasks and waiting for them, once for
    /// each N of this comma-separated list: `--processes 1,3` compares one process with three.
    #[arg(long, value_delimiter = ',')]
    processes: Vec<usize>,
    /// Also run the mixed-language workflow (Python, Ruby and TypeScript worker processes; needs
    /// the three packages built: scripts/build-packages.sh).
    #[arg(long)]
    polyglot: bool,
    /// Polyglot W1 measured runs (after 20 warm-up runs).
    #[arg(long, default_value_t = 200)]
    polyglot_runs: usize,
    /// Polyglot W2 orders submitted at once (0: no W2).
    #[arg(long, default_value_t = 500)]
    polyglot_tasks: usize,
    /// Slots of each polyglot worker process.
    #[arg(long, default_value_t = 32)]
    polyglot_concurrency: usize,
    /// The checkout holding tests/workers and the built packages, for --polyglot [default: the
    /// one this binary was built from].
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Also measure the durable event log: this many events written and consumed by one
    /// subscriber group, and W2 with and without a group (0: not measured).
    #[arg(long, default_value_t = 0)]
    events: usize,
    /// Keep each backend's database afterwards (its URL is printed), to look into it; by default
    /// it is dropped (PostgreSQL) or deleted (SQLite).
    #[arg(long)]
    keep_database: bool,
    /// Print the figures as one JSON document on stdout (progress and tables go to stderr).
    #[arg(long)]
    json: bool,
}

/// Which in-process workloads run.
#[derive(Debug, Clone, Copy, Default)]
struct Workloads {
    w1: bool,
    w2: bool,
    w3: bool,
    w4: bool,
}

impl Workloads {
    fn parse(names: &[String]) -> Result<Self, TaskerError> {
        let mut chosen = Self::default();
        for name in names.iter().map(|n| n.trim()) {
            match name {
                "w1" => chosen.w1 = true,
                "w2" => chosen.w2 = true,
                "w3" => chosen.w3 = true,
                "w4" => chosen.w4 = true,
                "none" | "" => {}
                other => {
                    return Err(TaskerError::InvalidArgument(format!(
                        "--workloads: '{other}' is not one of w1, w2, w3, w4, none"
                    )))
                }
            }
        }
        Ok(chosen)
    }

    fn any(&self) -> bool {
        self.w1 || self.w2 || self.w3 || self.w4
    }

    fn names(&self) -> Vec<&'static str> {
        [(self.w1, "w1"), (self.w2, "w2"), (self.w3, "w3"), (self.w4, "w4")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect()
    }
}

/// The checkout the binary was built from: its git commit goes in the report, and `--polyglot`
/// finds the worker programs and packages there (unless `--repo` says otherwise).
fn checkout() -> PathBuf {
    let built_from = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    if built_from.join("Cargo.toml").exists() {
        built_from
    } else {
        std::env::current_dir().unwrap_or(built_from)
    }
}

/// The first line of the output: what will be measured.
fn describe_plan(args: &BenchArgs, workloads: Workloads) -> String {
    let mut parts = Vec::new();
    if workloads.any() {
        let mut sizes = Vec::new();
        if workloads.w1 {
            sizes.push(format!("W1 {} runs", args.w1_runs));
        }
        if workloads.w2 {
            sizes.push(format!("W2 {} diamonds", args.w2_tasks));
        }
        if workloads.w3 {
            sizes.push(format!("W3 fan-out {}", args.w3_steps));
        }
        if workloads.w4 {
            sizes.push(format!("W4 {} batch workers", args.w4_workers));
        }
        parts.push(format!(
            "{} with an in-process worker ({} slots, Rust no-op handlers)",
            sizes.join(", "),
            args.concurrency
        ));
    }
    if !args.processes.is_empty() {
        let counts: Vec<String> = args.processes.iter().map(|n| n.to_string()).collect();
        parts.push(format!(
            "W2 {} diamonds by {} `tasker worker` process(es) ({} slots each, Rust no-op handlers)",
            args.w2_tasks,
            counts.join(" / "),
            args.concurrency
        ));
    }
    if args.polyglot {
        parts.push(format!(
            "polyglot workflow W1 {} runs, W2 {} orders (Python/Ruby/TypeScript worker processes, {} slots each)",
            args.polyglot_runs, args.polyglot_tasks, args.polyglot_concurrency
        ));
    }
    let history = if args.history > 0 {
        format!(
            ", after {} history tasks of {} step(s)",
            args.history, args.history_steps
        )
    } else {
        String::new()
    };
    format!(
        "tasker bench ({} build): {}{history}",
        report::build_profile(),
        if parts.is_empty() {
            "nothing to run".into()
        } else {
            parts.join("; ")
        },
    )
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
    let (on_database, on_rabbitmq) = match args.queue.as_str() {
        "database" | "pgmq" => (true, false),
        "rabbitmq" => (false, true),
        "both" => (true, true),
        other => {
            return Err(TaskerError::InvalidArgument(format!(
                "--queue '{other}' is not one of database, rabbitmq, both"
            )))
        }
    };
    if on_rabbitmq && !backends.contains(&Backend::Postgres) {
        return Err(TaskerError::InvalidArgument(
            "--queue rabbitmq needs PostgreSQL (--backend postgres or both): RabbitMQ's outbox is in PostgreSQL".into(),
        ));
    }
    // (backend, over RabbitMQ)
    let mut runs: Vec<(Backend, bool)> = Vec::new();
    for &b in &backends {
        if on_database {
            runs.push((b, false));
        }
        if on_rabbitmq && b == Backend::Postgres {
            runs.push((b, true));
        }
    }
    let workloads = Workloads::parse(&args.workloads)?;
    if args.processes.contains(&0) {
        return Err(TaskerError::InvalidArgument(
            "--processes: each count must be at least 1".into(),
        ));
    }
    let out = Out { json: args.json };
    let postgres_server = args
        .postgres_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres")));
    if backends.contains(&Backend::Postgres) && postgres_server.is_none() {
        return Err(TaskerError::InvalidArgument(
            "PostgreSQL benchmark needs --postgres-url or DATABASE_URL".into(),
        ));
    }
    let packages = if args.polyglot {
        Some(polyglot::find_packages(&args.repo.clone().unwrap_or_else(checkout))?)
    } else {
        None
    };
    out.say(describe_plan(&args, workloads));
    // The process's configuration applies (so `TASKER_TELEMETRY__ENABLED=true` or
    // `TASKER_CIRCUIT_BREAKER__ENABLED=false` measure their cost), with the bench's own database
    // and pool; read once, through the CLI's copy.
    let configured = &crate::load_config()?.config;
    let options = configured.tasker_options();
    out.say(format!(
        "  telemetry export {} (traces {}, metrics {}); circuit breaker {} (PostgreSQL)",
        if configured.telemetry.enabled { "on" } else { "off" },
        configured.telemetry.traces,
        configured.telemetry.metrics,
        if configured.circuit_breaker.enabled {
            "on"
        } else {
            "off"
        },
    ));
    if report::build_profile() == "debug" {
        out.say("  (a debug build: figures are not comparable with release ones)");
    }
    let load_start = report::load_average();
    let mut reports = Vec::new();
    for (backend, rabbit) in runs {
        let scratch = ScratchDatabase::create(backend, postgres_server.as_deref()).await?;
        let mut options = options.clone();
        if rabbit {
            // Queues of their own, also for the worker processes --processes starts.
            let prefix = format!("bench{}.", uuid::Uuid::now_v7().simple());
            options.messaging.backend = tasker_core::messaging::MessagingBackend::Rabbitmq;
            options.messaging.rabbitmq.queue_prefix = prefix.clone();
            processes::set_child_env(vec![
                ("TASKER_MESSAGING__BACKEND".into(), "rabbitmq".into()),
                ("TASKER_MESSAGING__RABBITMQ_QUEUE_PREFIX".into(), prefix),
            ]);
        } else {
            options.messaging.backend = tasker_core::messaging::MessagingBackend::Database;
            processes::set_child_env(vec![("TASKER_MESSAGING__BACKEND".into(), "database".into())]);
        }
        let result = bench_backend(&scratch.url, &options, &args, workloads, packages.as_ref(), out).await;
        if args.keep_database {
            keep(scratch, out);
        } else {
            scratch.drop_database().await;
        }
        let report = result?;
        out.say(report::backend_line(&report));
        reports.push(report);
    }
    for line in report::tables(&reports) {
        out.say(line);
    }
    if args.json {
        let options = json!({
            "backend": args.backend,
            "queue": args.queue,
            "postgres_server": postgres_server.as_deref().map(tasker_core::describe_database),
            "workloads": workloads.names(),
            "w1_runs": args.w1_runs,
            "w1_warm_up": workloads::W1_WARM_UP,
            "w2_tasks": args.w2_tasks,
            "w3_steps": args.w3_steps,
            "concurrency": args.concurrency,
            "history": args.history,
            "events": args.events,
            "history_steps": args.history_steps,
            "vacuum": args.vacuum,
            "processes": args.processes,
            "polyglot": args.polyglot.then(|| json!({
                "runs": args.polyglot_runs,
                "tasks": args.polyglot_tasks,
                "concurrency": args.polyglot_concurrency,
            })),
        });
        let header = report::json_header(options, &checkout(), load_start, report::load_average());
        println!("{}", report::json_document(&header, &reports));
    }
    Ok(ExitCode::SUCCESS)
}

/// Leaves the scratch database in place and says where it is.
fn keep(scratch: ScratchDatabase, out: Out) {
    out.say(format!(
        "  kept the database: {}",
        tasker_core::describe_database(&scratch.url)
    ));
    // A SQLite scratch file lives in a temporary directory removed on drop.
    std::mem::forget(scratch);
}

async fn bench_backend(
    url: &str,
    configured: &TaskerOptions,
    args: &BenchArgs,
    workloads: Workloads,
    packages: Option<&polyglot::Packages>,
    out: Out,
) -> Result<BackendReport, TaskerError> {
    let mut report = BackendReport {
        load_average_start: report::load_average(),
        ..Default::default()
    };
    let tasker = Tasker::connect_with(TaskerOptions {
        database_url: Some(url.to_owned()),
        max_connections: 16,
        listen: true,
        ..configured.clone()
    })
    .await?;
    report.backend = if tasker.broker().is_some() {
        "postgres+rabbitmq"
    } else {
        tasker.backend().as_str()
    };
    workloads::register_templates(&tasker, args.w3_steps, usize::from(args.history_steps)).await?;

    if workloads.any() || args.history > 0 {
        let worker = InProcessWorker::start(&tasker, args.concurrency).await?;
        let finished = Finished::in_process(&tasker);
        if args.history > 0 {
            out.say(format!(
                "  {}: filling the database with {} finished tasks of {} step(s)",
                report.backend, args.history, args.history_steps
            ));
            let mut history =
                workloads::fill_history(&tasker, &finished, args.history, usize::from(args.history_steps), out).await?;
            if tasker.backend() == Backend::Postgres {
                history.autovacuum = maintenance::autovacuum(url).await;
                if args.vacuum {
                    let seconds = maintenance::vacuum_analyze(url).await?;
                    out.say(format!("    VACUUM ANALYZE took {seconds:.1} s"));
                    history.vacuum_analyze_s = Some(seconds);
                } else if history.autovacuum.as_deref() == Some("off") {
                    out.say(
                        "    (autovacuum is off on this server: the history is neither analyzed nor vacuumed; \
                         --vacuum runs VACUUM ANALYZE after the fill)",
                    );
                }
            }
            report.history = Some(history);
        }
        if workloads.w1 {
            report.set_w1(workloads::w1(&tasker, args.w1_runs).await?);
        }
        if workloads.w2 {
            let w2 = workloads::w2(&tasker, &finished, args.w2_tasks).await?;
            report.w2_tasks = Some(args.w2_tasks);
            report.w2_wall_s = Some(w2.wall_s);
            report.w2_steps_per_s = Some(w2.steps_per_s);
            report.commits_per_step = w2.commits_per_step;
        }
        if workloads.w3 {
            let wall = workloads::w3(&tasker, &finished).await?;
            report.w3_steps = Some(args.w3_steps + 2);
            report.w3_wall_s = Some(wall);
            report.w3_steps_per_s = Some((args.w3_steps + 2) as f64 / wall);
        }
        if workloads.w4 {
            let wall = workloads::w4(&tasker, &finished, args.w4_workers).await?;
            report.w4_steps = Some(args.w4_workers + 2);
            report.w4_wall_s = Some(wall);
            report.w4_steps_per_s = Some((args.w4_workers + 2) as f64 / wall);
        }
        worker.stop().await?;
    }
    if args.events > 0 {
        let worker = InProcessWorker::start(&tasker, args.concurrency).await?;
        let finished = Finished::in_process(&tasker);
        let figures = events::run(&tasker, &finished, args.events, args.w2_tasks, out).await?;
        worker.stop().await?;
        out.say(format!(
            "    events: {} through the log in {:.2} s end to end ({:.0} events/s; writing alone {:.2} s) | \
             W2 {:.0} steps/s without a group, {:.0} with one ({:+.0} us/step, {} lifecycle events delivered)",
            figures.events,
            figures.end_to_end_s,
            figures.events_per_s,
            figures.produce_s,
            figures.w2_steps_per_s_without_group,
            figures.w2_steps_per_s_with_group,
            figures.added_us_per_step,
            figures.w2_events_delivered
        ));
        report.events = Some(figures);
    }
    if args.open_tasks > 0 {
        let figures = workloads::staleness(&tasker, args.open_tasks, out).await?;
        out.say(format!(
            "    staleness with {} open tasks: report {:.1} ms, detector pass {:.1} ms",
            figures.open_tasks, figures.report_ms, figures.detect_ms
        ));
        for (what, ms) in &figures.listing {
            out.say(format!("    task list, {what}: {ms:.1} ms"));
        }
        report.staleness = Some(figures);
    }
    for &count in &args.processes {
        let figures = processes::w2(&tasker, url, count, args.concurrency, args.w2_tasks, out).await?;
        out.say(format!(
            "    {count} process(es): W2 {:.2} s, {:.0} steps/s{}",
            figures.wall_s,
            figures.steps_per_s,
            figures
                .commits_per_step
                .map(|c| format!(", {c:.2} commits/step"))
                .unwrap_or_default()
        ));
        report.processes.push(figures);
    }
    if let Some(packages) = packages {
        let options = polyglot::PolyglotOptions {
            runs: args.polyglot_runs,
            tasks: args.polyglot_tasks,
            concurrency: args.polyglot_concurrency,
        };
        let figures = polyglot::run(&tasker, url, packages, &options, out).await?;
        out.say(format!(
            "    polyglot: W1 p50 {} ms p95 {} ms p99 {} ms | W2 {} orders {} steps/s",
            figures
                .w1
                .map(|l| format!("{:.2}", l.p50_ms))
                .unwrap_or_else(|| "-".into()),
            figures
                .w1
                .map(|l| format!("{:.2}", l.p95_ms))
                .unwrap_or_else(|| "-".into()),
            figures
                .w1
                .map(|l| format!("{:.2}", l.p99_ms))
                .unwrap_or_else(|| "-".into()),
            figures.w2_tasks,
            figures
                .w2_steps_per_s
                .map(|s| format!("{s:.0}"))
                .unwrap_or_else(|| "-".into()),
        ));
        report.polyglot = Some(figures);
    }

    if let Some(broker) = tasker.broker() {
        if let Err(e) = broker.delete_declared_queues().await {
            out.say(format!("  could not delete the benchmark's RabbitMQ queues: {e}"));
        }
    }
    tasker.close().await;
    report.load_average_end = report::load_average();
    Ok(report)
}
