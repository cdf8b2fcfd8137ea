//! `tasker`: register templates, create and inspect tasks, recover failed work (step actions,
//! the dead-letter queue, workers), run orchestration and Rust workers, the demo, and the
//! benchmark.
//!
//! Exit status: 0 success; 1 the command failed (not found, a state that does not allow the
//! action, the database unreachable; stderr says why and usually what to run next); 2 bad usage.

mod bench;
mod demo;
mod failure;
mod handlers;
mod output;
mod recovery;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tasker_core::config;
use tasker_core::state::TaskState;
use tasker_core::template::{current_env, load_path};
use tasker_core::{DispatchMode, TaskFilter, TaskRequest, Tasker, TaskerError, Worker};
use uuid::Uuid;

use failure::{Context, Failure};

#[derive(Parser)]
#[command(
    name = "tasker",
    version,
    about = "Workflow orchestration: templates, tasks, workers"
)]
struct Cli {
    /// Database: sqlite://PATH or postgres://… [default: $TASKER_DATABASE_URL, $DATABASE_URL,
    /// else sqlite://./tasker.db]
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate, register and list task templates.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Create, inspect, cancel, retry and resolve tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Inspect a task's steps; reset, resolve, complete or cancel one by hand.
    #[command(subcommand)]
    Step(recovery::StepCommand),
    /// The dead-letter queue: tasks that need a human, their investigation, staleness.
    #[command(subcommand)]
    Dlq(recovery::DlqCommand),
    /// Check, show (with each value's origin) or create the configuration tree.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The event catalog: every system event, its payload schema and an example.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Run orchestration (due retries, attempt timeouts, staleness detection) until Ctrl-C.
    Serve,
    /// Run a worker with the built-in Rust handlers until Ctrl-C / SIGTERM; `tasker worker list`
    /// lists the workers.
    Worker(WorkerCommand),
    /// Register the bundled example templates and run them with Rust handlers, live.
    Demo(demo::DemoArgs),
    /// Measure latency and throughput on SQLite and PostgreSQL.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration tree (exit 1 and one line per problem).
    Validate {
        /// The environment [default: $TASKER_ENV, else development].
        #[arg(long)]
        env: Option<String>,
        /// The tree's root [default: $TASKER_CONFIG_ROOT, else ./config/tasker].
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Print the merged configuration, each value with where it came from (secrets redacted).
    Show {
        #[arg(long)]
        env: Option<String>,
        #[arg(long)]
        root: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a commented starter tree (every key at its default); never overwrites.
    Init {
        /// Where [default: ./config/tasker].
        #[arg(default_value = "config/tasker")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// List the catalog (one line per event), or one event in full with its name.
    Catalog {
        /// Show this event's description, payload schema and example.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Check templates without storing them (exit 1 and one line per problem if invalid).
    Validate { paths: Vec<PathBuf> },
    /// Validate and store templates (files or directories).
    Register { paths: Vec<PathBuf> },
    /// List registered templates.
    List,
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Create a task.
    Create(CreateArgs),
    /// Show a task with its steps.
    Get {
        task_uuid: Uuid,
        /// Print JSON (steps and transitions included).
        #[arg(long)]
        json: bool,
    },
    /// List tasks, newest first.
    List {
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a task.
    Cancel { task_uuid: Uuid },
    /// Reset every failed step of a task in `error`, so the task runs again.
    Retry(recovery::TaskAction),
    /// Close a task by hand as `resolved_manually` (its open steps are cancelled, its DLQ entry
    /// closed).
    Resolve(recovery::TaskAction),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct WorkerCommand {
    #[command(subcommand)]
    command: Option<WorkerSubcommand>,
    #[command(flatten)]
    run: WorkerArgs,
}

#[derive(Subcommand)]
enum WorkerSubcommand {
    /// List live workers and those seen in the last hour: language, queues, in-flight steps,
    /// last heartbeat.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct CreateArgs {
    #[arg(long)]
    namespace: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    version: Option<String>,
    /// Task context as JSON, or @FILE.
    #[arg(long, default_value = "{}")]
    context: String,
    #[arg(long)]
    initiator: Option<String>,
    #[arg(long)]
    source_system: Option<String>,
    #[arg(long)]
    reason: Option<String>,
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long, default_value_t = 0)]
    priority: i32,
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Wait up to this many seconds for the task to finish, then show it.
    #[arg(long)]
    wait: Option<u64>,
}

#[derive(Args)]
struct WorkerArgs {
    /// Queue to claim from (repeatable).
    #[arg(long = "queue", required = true)]
    queues: Vec<String>,
    /// Handler slots [default: worker.concurrency when configured, else 16].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Seconds a claimed step stays hidden from other workers (renewed while running)
    /// [default: worker.lease_ms].
    #[arg(long)]
    lease_seconds: Option<u64>,
    /// polling | event_driven | hybrid [default: worker.dispatch_mode].
    #[arg(long)]
    dispatch_mode: Option<String>,
    /// Do not run the orchestration loop in this process.
    #[arg(long)]
    no_orchestration: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

/// `tasker dlq list | head -1`: when the reader of stdout goes away, stop as a Unix tool killed
/// by SIGPIPE does (status 141, nothing on stderr) instead of panicking in `println!`.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Logs go to stderr, filtered by `TASKER_LOG` (a full `tracing` filter), else the configured
/// `logging.level`, else `warn` (the CLI's own default: its output is for people). With
/// `logging.format = "json"` (or `TASKER_LOG_FORMAT=json`) each line is one JSON object,
/// carrying the event's fields (task and step uuids, step name, attempt, error).
/// A configuration that does not load is reported by the command itself, not here.
fn init_logging() {
    let loaded = load_config().ok();
    let configured = |k: &str| {
        loaded
            .as_ref()
            .and_then(|l| l.values.get(k))
            .filter(|(_, origin)| *origin != config::Origin::Default)
            .and_then(|(v, _)| v.as_str().map(str::to_owned))
    };
    let level = configured("logging.level").unwrap_or_else(|| "warn".into());
    let filter = tracing_subscriber::EnvFilter::try_from_env("TASKER_LOG").unwrap_or_else(|_| level.into());
    let json = std::env::var("TASKER_LOG_FORMAT")
        .ok()
        .or_else(|| configured("logging.format"))
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).with_current_span(true).init();
    } else {
        builder.init();
    }
}

/// The configuration of `TASKER_ENV` under `TASKER_CONFIG_ROOT` (or `./config/tasker`), or
/// the built-in defaults when there is none.
///
/// Read once per process: logging, connecting and starting a worker all use this copy.
fn load_config() -> Result<&'static config::LoadedConfig, TaskerError> {
    static LOADED: std::sync::OnceLock<Result<config::LoadedConfig, Vec<config::ConfigProblem>>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            config::load_current().map_err(|e| match e {
                TaskerError::Config(problems) => problems,
                other => vec![config::ConfigProblem {
                    source: "configuration".into(),
                    key: "-".into(),
                    message: other.to_string(),
                }],
            })
        })
        .as_ref()
        .map_err(|problems| TaskerError::Config(problems.clone()))
}

/// Connects with the configuration's options (see [`config::TaskerConfig::connect_options`] for
/// which database: `--database-url` comes first).
async fn connect(url: &Option<String>) -> Result<Tasker, TaskerError> {
    Tasker::connect_with(load_config()?.config.connect_options(url.as_deref())).await
}

/// `tasker config validate|show|init`.
fn config_command(cmd: ConfigCommand) -> ExitCode {
    let env_of = |e: Option<String>| e.unwrap_or_else(config::config_env);
    match cmd {
        ConfigCommand::Validate { env, root } => {
            let env = env_of(env);
            let root = config::config_root(root.as_deref());
            match config::load(&env, root.as_deref()) {
                Ok(loaded) => {
                    match &loaded.root {
                        Some(r) => println!(
                            "configuration for '{env}' under {} is valid ({} file(s))",
                            r.display(),
                            loaded.files.len()
                        ),
                        None => println!("no configuration tree: the built-in defaults apply (and they are valid)"),
                    }
                    ExitCode::SUCCESS
                }
                Err(TaskerError::Config(problems)) => {
                    for p in &problems {
                        eprintln!("{p}");
                    }
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ConfigCommand::Show { env, root, json } => {
            let env = env_of(env);
            let root = config::config_root(root.as_deref());
            let loaded = match config::load(&env, root.as_deref()) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let shown = loaded.shown();
            if json {
                match serde_json::to_string_pretty(&shown) {
                    Ok(t) => println!("{t}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                let width = shown.iter().map(|s| s.key.len()).max().unwrap_or(0);
                for s in &shown {
                    println!(
                        "{:width$}  {:<24}  {}",
                        s.key,
                        s.value.to_string(),
                        s.origin,
                        width = width
                    );
                }
            }
            ExitCode::SUCCESS
        }
        ConfigCommand::Init { dir } => match config::write_starter_tree(&dir) {
            Ok(files) => {
                for f in files {
                    println!("wrote {}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn no_hint(_: &TaskerError) -> Option<String> {
    None
}

/// `tasker events catalog [NAME] [--json]`: no database needed.
fn events_catalog(name: Option<&str>, json: bool) -> ExitCode {
    use tasker_core::events;
    let chosen = match name {
        None => events::catalog(),
        Some(n) => match events::event_info(n) {
            Some(e) => vec![e],
            None => {
                let names: Vec<String> = events::catalog().into_iter().map(|e| e.name).collect();
                eprintln!(
                    "error: no event '{n}' in the catalog; the events are: {}",
                    names.join(", ")
                );
                return ExitCode::FAILURE;
            }
        },
    };
    if json {
        let doc = if name.is_some() {
            serde_json::to_string_pretty(&chosen[0])
        } else {
            serde_json::to_string_pretty(&chosen)
        };
        match doc {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else if name.is_some() {
        let e = &chosen[0];
        println!("{} ({})\n  {}", e.name, e.category, e.description);
        println!("  payload schema: {}", e.payload_schema);
        println!("  example: {}", e.example);
    } else {
        let width = chosen.iter().map(|e| e.name.len()).max().unwrap_or(0);
        for e in &chosen {
            println!("{:width$}  {:<8} {}", e.name, e.category, e.description, width = width);
        }
    }
    ExitCode::SUCCESS
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Template(TemplateCommand::Validate { paths }) => Ok(validate(&paths)),
        Command::Template(TemplateCommand::Register { paths }) => {
            // Validate everything first, so nothing is stored when any file is invalid.
            if validate(&paths) != ExitCode::SUCCESS {
                return Ok(ExitCode::FAILURE);
            }
            let tasker = connect(&cli.database_url).await?;
            for path in &paths {
                for t in tasker.register_templates(path).await? {
                    println!(
                        "registered {}/{}@{} (queues: {})",
                        t.namespace,
                        t.name,
                        t.version,
                        t.queues.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Template(TemplateCommand::List) => {
            let tasker = connect(&cli.database_url).await?;
            for t in tasker.list_templates().await? {
                println!(
                    "{}/{}@{}  {}",
                    t.namespace,
                    t.name,
                    t.version,
                    t.source_path.unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Task(cmd) => task_command(&cli.database_url, cmd).await,
        Command::Step(cmd) => {
            let json = cmd.json();
            let tasker = connect(&cli.database_url).await.context(json, no_hint)?;
            let code = recovery::step_command(&tasker, cmd).await.context(json, no_hint);
            tasker.close().await;
            code
        }
        Command::Dlq(cmd) => {
            let json = cmd.json();
            let tasker = connect(&cli.database_url).await.context(json, no_hint)?;
            let code = recovery::dlq_command(&tasker, cmd).await.context(json, no_hint);
            tasker.close().await;
            code
        }
        Command::Worker(WorkerCommand {
            command: Some(WorkerSubcommand::List { json }),
            ..
        }) => {
            let tasker = connect(&cli.database_url).await.context(json, no_hint)?;
            let code = recovery::worker_list(&tasker, json).await;
            tasker.close().await;
            code
        }
        Command::Config(cmd) => Ok(config_command(cmd)),
        Command::Events(EventsCommand::Catalog { name, json }) => Ok(events_catalog(name.as_deref(), json)),
        Command::Serve => {
            let tasker = connect(&cli.database_url).await?;
            eprintln!("tasker serve: orchestrating {} (Ctrl-C to stop)", tasker.database());
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let loop_task = tokio::spawn(tasker_core::orchestrator::run(tasker.clone(), stop_rx));
            wait_for_signal().await;
            let _ = stop_tx.send(true);
            let _ = loop_task.await;
            tasker.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(WorkerCommand {
            command: None,
            run: args,
        }) => {
            let tasker = connect(&cli.database_url).await?;
            // Flags win over the configuration; the configuration over the CLI's own defaults.
            let loaded = load_config()?;
            let mut config = loaded.config.worker_config(&args.queues);
            let configured = |k: &str| loaded.values.get(k).is_some_and(|(_, o)| *o != config::Origin::Default);
            config.concurrency = match args.concurrency {
                Some(n) => n,
                None if configured("worker.concurrency") => config.concurrency,
                None => 16,
            };
            if let Some(secs) = args.lease_seconds {
                config.lease = Duration::from_secs(secs);
            }
            if let Some(mode) = &args.dispatch_mode {
                config.dispatch_mode = mode.parse::<DispatchMode>()?;
            }
            if args.no_orchestration {
                config.embedded_orchestration = false;
            }
            let worker = Worker::start(&tasker, config).await?;
            eprintln!(
                "tasker worker {}: queues {:?} on {}",
                std::process::id(),
                worker.config().queues,
                tasker.database()
            );
            let runner = tokio::spawn(tasker_core::handler::run_handlers(
                worker.clone(),
                Arc::new(handlers::registry()),
            ));
            wait_for_signal().await;
            let report = worker.shutdown(Duration::from_secs(10)).await?;
            let _ = runner.await;
            eprintln!("tasker worker stopped: {report:?}");
            tasker.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => Ok(demo::run(cli.database_url, args).await?),
        Command::Bench(args) => Ok(bench::run(args).await?),
    }
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    if paths.is_empty() {
        eprintln!("error: give at least one template file or directory");
        return ExitCode::FAILURE;
    }
    let env = current_env();
    let mut ok = true;
    for path in paths {
        match load_path(path, &env) {
            Ok(templates) => {
                for t in templates {
                    for w in &t.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("ok {} ({})", t.template.key(), path.display());
                }
            }
            Err(TaskerError::Template(problems)) => {
                ok = false;
                for p in problems {
                    eprintln!("error: {p}");
                }
            }
            Err(e) => {
                ok = false;
                eprintln!("error: {e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn task_command(url: &Option<String>, cmd: TaskCommand) -> Result<ExitCode, Failure> {
    let json = match &cmd {
        TaskCommand::Get { json, .. } | TaskCommand::List { json, .. } => *json,
        TaskCommand::Retry(a) | TaskCommand::Resolve(a) => a.op.json,
        TaskCommand::Create(_) | TaskCommand::Cancel { .. } => false,
    };
    let tasker = connect(url).await.context(json, no_hint)?;
    let result = task_command_on(&tasker, cmd).await.context(json, no_hint);
    tasker.close().await;
    result
}

async fn task_command_on(tasker: &Tasker, cmd: TaskCommand) -> Result<ExitCode, Failure> {
    match cmd {
        TaskCommand::Create(args) => {
            let context_text = match args.context.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| TaskerError::InvalidArgument(format!("--context @{file}: {e}")))?,
                None => args.context.clone(),
            };
            let context = serde_json::from_str(&context_text)
                .map_err(|e| TaskerError::InvalidArgument(format!("--context is not valid JSON: {e}")))?;
            let created = tasker
                .create_task(TaskRequest {
                    namespace: args.namespace,
                    name: args.name,
                    version: args.version,
                    context,
                    initiator: args.initiator,
                    source_system: args.source_system,
                    reason: args.reason,
                    tags: args.tags,
                    priority: args.priority,
                    idempotency_key: args.idempotency_key,
                })
                .await?;
            let id = created.task.task_uuid;
            println!(
                "{id}{}",
                if created.created {
                    ""
                } else {
                    " (existing task for this idempotency key)"
                }
            );
            if let Some(secs) = args.wait {
                let detail = tasker.wait_for_task(id, Duration::from_secs(secs)).await?;
                output::print_task(&detail);
            }
        }
        TaskCommand::Get { task_uuid, json } => {
            let detail = tasker.get_task(task_uuid).await?;
            if json {
                output::print_json(&detail)?;
            } else {
                output::print_task(&detail);
            }
        }
        TaskCommand::List {
            namespace,
            state,
            limit,
            json,
        } => {
            let state = state.map(|s| s.parse::<TaskState>()).transpose()?;
            let tasks = tasker
                .list_tasks(&TaskFilter {
                    namespace,
                    name: None,
                    state,
                    limit: Some(limit),
                })
                .await?;
            if json {
                output::print_json(&tasks)?;
            } else {
                output::print_task_list(&tasks);
            }
        }
        TaskCommand::Cancel { task_uuid } => {
            let task = tasker.cancel_task(task_uuid).await?;
            println!("{} {}", task.task_uuid, task.state);
        }
        TaskCommand::Retry(action) => return recovery::task_retry(tasker, action).await,
        TaskCommand::Resolve(action) => return recovery::task_resolve(tasker, action).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
