//! `tasker`: register templates, create and inspect tasks, recover failed work (step actions,
//! the dead-letter queue, workers), run orchestration and Rust workers, the demo, and the
//! benchmark.
//!
//! Exit status: 0 success; 1 the command failed (not found, a state that does not allow the
//! action, the database unreachable; stderr says why and usually what to run next); 2 bad usage.

mod auth;
mod bench;
mod demo;
mod events;
mod failure;
mod handlers;
mod output;
mod progress;
mod recovery;
mod remote;
mod scaffold;
mod template_tools;

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
    about = "Workflow orchestration: templates, tasks, workers",
    after_help = "Examples:
  tasker init orders --language python          a runnable project: template, handler, test, worker
  tasker template register templates/           validate and store templates
  tasker task create --namespace orders --name process_order --context '{\"id\": 7}' --wait 60
  tasker task watch 0190d1c6-…                  live progress of a task
  tasker template diagram templates/order.yaml  a Mermaid flowchart
  tasker completions bash > ~/.local/share/bash-completion/completions/tasker

Every read command takes --json. `tasker COMMAND --help` shows each command's options and examples."
)]
struct Cli {
    /// Database: sqlite://PATH or postgres://… [default: $TASKER_DATABASE_URL, $DATABASE_URL,
    /// else sqlite://./tasker.db]
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Talk to a Tasker REST API instead of the database (task, step, template, dlq and worker
    /// commands), e.g. http://tasker.internal:8080.
    #[arg(long, global = true, env = "TASKER_API_URL")]
    api_url: Option<String>,
    /// Bearer token for --api-url.
    #[arg(long, global = true, env = "TASKER_AUTH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// API key for --api-url.
    #[arg(long, global = true, env = "TASKER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate, register, list, draw and document task templates.
    #[command(
        subcommand,
        after_help = "Examples:
  tasker template validate templates/
  tasker template register templates/
  tasker template list --json
  tasker template diagram templates/order.yaml
  tasker template docs orders/process_order"
    )]
    Template(TemplateCommand),
    /// Create, follow, inspect, draw, cancel, retry and resolve tasks.
    #[command(
        subcommand,
        after_help = "Examples:
  tasker task create --namespace orders --name process_order --context '{\"order_id\": 7}' --wait 60
  tasker task watch 0190d1c6-7e1f-7a52-9a6c-3f0c2a1b9e42
  tasker task list --state error --json
  tasker task diagram 0190d1c6-7e1f-7a52-9a6c-3f0c2a1b9e42"
    )]
    Task(TaskCommand),
    /// Inspect a task's steps; reset, resolve, complete or cancel one by hand.
    #[command(
        subcommand,
        after_help = "Examples:
  tasker step list 0190d1c6-7e1f-7a52-9a6c-3f0c2a1b9e42 --json
  tasker step reset 0190d1c6-7e1f-7a52-9a6c-3f0c2a1b9e42 charge_payment --by ops --reason \"card fixed\""
    )]
    Step(recovery::StepCommand),
    /// The dead-letter queue: tasks that need a human, their investigation, staleness.
    #[command(
        subcommand,
        after_help = "Examples:
  tasker dlq list --json
  tasker dlq stats"
    )]
    Dlq(recovery::DlqCommand),
    /// Check, show (with each value's origin) or create the configuration tree.
    #[command(
        subcommand,
        after_help = "Examples:
  tasker config init
  tasker config validate --env production
  tasker config show --json"
    )]
    Config(ConfigCommand),
    /// The event catalog: every system event, its payload schema and an example.
    #[command(
        subcommand,
        after_help = "Examples:
  tasker events catalog
  tasker events catalog task.completed --json"
    )]
    Events(events::EventsCommand),
    /// Run orchestration (due retries, attempt timeouts, staleness detection) until Ctrl-C;
    /// with `--http ADDR`, the REST API beside it.
    #[command(after_help = "Examples:
  tasker serve
  tasker serve --http 127.0.0.1:8080
  tasker serve --http 0.0.0.0:8080 --api-config api.toml")]
    Serve(ServeArgs),
    /// Keys and tokens for the REST API, and the permission vocabulary.
    #[command(
        subcommand,
        after_help = "Examples:
  tasker auth show-permissions --json
  tasker auth hash-key \"$API_KEY\""
    )]
    Auth(auth::AuthCommand),
    /// Run a worker with the built-in Rust handlers until Ctrl-C / SIGTERM; `tasker worker list`
    /// lists the workers.
    #[command(after_help = "Examples:
  tasker worker --queue orders --concurrency 8
  tasker worker list --json")]
    Worker(WorkerCommand),
    /// Register the bundled example templates and run them with Rust handlers, live.
    #[command(after_help = "Examples:\n  tasker --database-url sqlite://./demo.db demo")]
    Demo(demo::DemoArgs),
    /// Measure latency and throughput on SQLite and PostgreSQL.
    Bench(bench::BenchArgs),
    /// Create a runnable project: a template, a handler with its test, configuration, a worker.
    Init(scaffold::InitArgs),
    /// Write a step handler with its test, or a task template, into a project.
    #[command(subcommand)]
    Generate(scaffold::GenerateCommand),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  tasker completions bash > ~/.local/share/bash-completion/completions/tasker
  tasker completions zsh > \"${fpath[1]}/_tasker\"
  tasker completions fish > ~/.config/fish/completions/tasker.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
enum TemplateCommand {
    /// Check templates without storing them (exit 1 and one line per problem if invalid).
    #[command(
        after_help = "Examples:\n  tasker template validate templates/\n  tasker template validate a.yaml b.yaml"
    )]
    Validate { paths: Vec<PathBuf> },
    /// Validate and store templates (files or directories); nothing is stored if any is invalid.
    #[command(after_help = "Examples:\n  tasker template register templates/")]
    Register { paths: Vec<PathBuf> },
    /// List registered templates.
    #[command(after_help = "Examples:\n  tasker template list\n  tasker template list --json")]
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a template's DAG as a Mermaid flowchart (step types as shapes).
    #[command(after_help = "Examples:
  tasker template diagram templates/order.yaml          a file (every template of a directory)
  tasker template diagram orders/process_order@1.0.0    a registered template
  tasker template diagram templates/order.yaml --json   [{\"template\", \"mermaid\"}]")]
    Diagram {
        /// A template file or directory, or a registered template's namespace/name[@version].
        target: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a Markdown summary of a template: steps, handlers, dependencies, retry policies,
    /// input schema, diagram.
    #[command(after_help = "Examples:
  tasker template docs templates/order.yaml > docs/order.md
  tasker template docs orders/process_order")]
    Docs {
        /// A template file or directory, or a registered template's namespace/name[@version].
        target: String,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Create a task.
    #[command(after_help = "Examples:
  tasker task create --namespace orders --name process_order --context '{\"order_id\": 7}'
  tasker task create --namespace orders --name process_order --context @order.json --wait 60

With --wait, progress (steps done/total, running steps, elapsed) goes to stderr: redrawn in place
on a terminal, a line per change (and at least every 5 s) otherwise; stdout gets the task uuid,
then the finished task.")]
    Create(CreateArgs),
    /// Follow a task until it finishes, showing its progress; exit 0 when it completes (or was
    /// resolved by hand), 1 when it ends in error or cancelled, or at --timeout.
    #[command(after_help = "Examples:
  tasker task watch 0190d1c6-7e1f-7a52-9a6c-3f0c2a1b9e42
  tasker task watch $(tasker task list --state steps_in_process --json | jq -r '.[0].task_uuid') --timeout 300")]
    Watch {
        task_uuid: Uuid,
        /// Give up after this many seconds [default: wait until it finishes].
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Print a task's steps as a Mermaid flowchart, coloured by state.
    #[command(after_help = "Examples:
  tasker task diagram 0190d1c6-7e1f-7a52-9a6c-3f0c2a1b9e42 > task.mmd
  tasker task diagram 0190d1c6-7e1f-7a52-9a6c-3f0c2a1b9e42 --json")]
    Diagram {
        task_uuid: Uuid,
        /// Print JSON ({"task_uuid", "state", "mermaid"}).
        #[arg(long)]
        json: bool,
    },
    /// Show a task with its steps.
    #[command(after_help = "Examples:\n  tasker task get 0190d1c6-7e1f-7a52-9a6c-3f0c2a1b9e42 --json")]
    Get {
        task_uuid: Uuid,
        /// Print JSON (steps and transitions included).
        #[arg(long)]
        json: bool,
    },
    /// List tasks, newest first.
    #[command(
        after_help = "Examples:\n  tasker task list --namespace orders --state error --limit 10\n  tasker task list --json"
    )]
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
struct ServeArgs {
    /// Serve the REST API on this address, e.g. 127.0.0.1:8080 (port 0 picks a free one).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// The API configuration (auth, limits) [default: $TASKER_API_CONFIG; none: auth off,
    /// which only a loopback address allows].
    #[arg(long, env = "TASKER_API_CONFIG")]
    api_config: Option<PathBuf>,
    /// Serve a non-loopback address with auth off (anyone who reaches it may do anything).
    #[arg(long)]
    insecure: bool,
    /// Serve /metrics (Prometheus), /health and /health/ready, without credentials, on this
    /// address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
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
    /// A W3C traceparent: the task joins that trace [default: $TRACEPARENT].
    #[arg(long, env = "TRACEPARENT")]
    traceparent: Option<String>,
    /// Wait up to this many seconds for the task to finish, showing its progress on stderr,
    /// then show it.
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
    /// Serve /metrics (Prometheus), /health and /health/ready on this address, e.g.
    /// 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
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
async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    if let Some(url) = cli.api_url.as_deref().filter(|u| !u.is_empty()) {
        // A template file's diagram or docs needs no server.
        let local_file = matches!(
            &cli.command,
            Command::Template(TemplateCommand::Diagram { target, .. } | TemplateCommand::Docs { target })
                if std::path::Path::new(target).exists()
        );
        let remote_command = !local_file
            && matches!(
                cli.command,
                Command::Template(_) | Command::Task(_) | Command::Step(_) | Command::Dlq(_) | Command::Worker(_)
            );
        if remote_command {
            let remote = match remote::Remote::new(url, cli.token.clone(), cli.api_key.clone()) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            return Ok(match cli.command {
                Command::Template(cmd) => remote.template(cmd).await,
                Command::Task(cmd) => remote.task(cmd).await,
                Command::Step(cmd) => remote.step(cmd).await,
                Command::Dlq(cmd) => remote.dlq(cmd).await,
                Command::Worker(cmd) => remote.worker(cmd).await,
                _ => ExitCode::from(2),
            });
        }
    }
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
        Command::Template(TemplateCommand::List { json }) => {
            let tasker = connect(&cli.database_url).await.context(json, no_hint)?;
            let templates = tasker.list_templates().await.context(json, no_hint)?;
            tasker.close().await;
            if json {
                // The fields of the REST API's template summaries; the definition is
                // `tasker template docs`' business.
                let rows: Vec<serde_json::Value> = templates
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "namespace": t.namespace, "name": t.name, "version": t.version,
                            "description": t.description,
                            "step_count": t.steps.len(),
                            "content_hash": t.content_hash, "source_path": t.source_path,
                            "created_at": t.registered_at,
                        })
                    })
                    .collect();
                output::print_json(&rows)?;
                return Ok(ExitCode::SUCCESS);
            }
            for t in templates {
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
        Command::Template(TemplateCommand::Diagram { target, json }) => {
            let templates = template_tools::resolve(&target, connect(&cli.database_url))
                .await
                .context(json, no_hint)?;
            Ok(template_tools::print_diagrams(&templates, json))
        }
        Command::Template(TemplateCommand::Docs { target }) => {
            let templates = template_tools::resolve(&target, connect(&cli.database_url)).await?;
            Ok(template_tools::print_docs(&templates))
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
        Command::Events(events::EventsCommand::Catalog { name, json }) => Ok(events::catalog(name.as_deref(), json)),
        Command::Events(cmd) => {
            let json = cmd.json();
            let tasker = connect(&cli.database_url).await.context(json, no_hint)?;
            let code = events::events_command(&tasker, cmd).await.context(json, no_hint);
            tasker.close().await;
            code
        }
        Command::Serve(args) => serve(&cli.database_url, args).await,
        Command::Auth(cmd) => Ok(auth::run(cmd)),
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
            if let Some(addr) = args.metrics_addr {
                let probed = worker.clone();
                let probe: tasker_server::WorkerProbe = Arc::new(move || {
                    vec![(
                        probed.config().worker_id.clone(),
                        probed.failure().map(|e| e.to_string()),
                    )]
                });
                serve_metrics(addr, tasker.clone(), probe).await?;
            }
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
        Command::Init(args) => Ok(scaffold::init(args)?),
        Command::Generate(cmd) => Ok(scaffold::generate(cmd)?),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Into a buffer first: clap_complete panics when it cannot write (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tasker", &mut script);
            let mut out = std::io::stdout().lock();
            match out.write_all(&script).and_then(|()| out.flush()) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                // The reader went away: stop as a Unix tool killed by SIGPIPE does.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::from(141)),
                Err(e) => Err(TaskerError::InvalidArgument(format!("cannot write the completion script: {e}")).into()),
            }
        }
    }
}

/// Serves the metrics address ([`tasker_server::metrics_router`]) in the background.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    tasker: tasker_core::Tasker,
    probe: tasker_server::WorkerProbe,
) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| TaskerError::InvalidArgument(format!("--metrics-addr: cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    eprintln!("tasker: metrics and health on http://{bound}/metrics");
    let router = tasker_server::metrics_router(tasker, probe);
    tokio::spawn(async move {
        if let Err(e) = tasker_server::serve(listener, router, std::future::pending()).await {
            tracing::error!(error = %e, "the metrics address stopped");
        }
    });
    Ok(())
}

/// `tasker serve [--http ADDR]`: the orchestrator loop, and the REST API when asked. The API
/// refuses a non-loopback address with auth off unless `--insecure` says so.
async fn serve(url: &Option<String>, args: ServeArgs) -> Result<ExitCode, Failure> {
    let api = match args.http {
        None => None,
        Some(addr) => {
            let config = match &args.api_config {
                Some(path) => match tasker_server::ServerConfig::load(path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Ok(ExitCode::from(2));
                    }
                },
                None => tasker_server::ServerConfig::default(),
            };
            if !config.auth_enabled() && !tasker_server::is_loopback(&addr) && !args.insecure {
                eprintln!(
                    "error: refusing to serve {addr} with auth off: enable [auth] in an --api-config file, \
                     bind a loopback address, or pass --insecure"
                );
                return Ok(ExitCode::from(2));
            }
            Some((addr, config))
        }
    };
    let tasker = connect(url).await?;
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr, tasker.clone(), Arc::new(Vec::new)).await?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loop_task = tokio::spawn(tasker_core::orchestrator::run(tasker.clone(), stop_rx));
    let mut server = None;
    if let Some((addr, config)) = api {
        let auth_on = config.auth_enabled();
        let router = match tasker_server::router(tasker.clone(), config) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                let _ = stop_tx.send(true);
                return Ok(ExitCode::from(2));
            }
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| TaskerError::InvalidArgument(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| TaskerError::InvalidArgument(format!("cannot listen on {addr}: {e}")))?;
        eprintln!(
            "tasker serve: REST API on http://{bound} (auth {})",
            if auth_on { "on" } else { "off" }
        );
        let mut stop = stop_rx_for_server(&stop_tx);
        server = Some(tokio::spawn(tasker_server::serve(listener, router, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    eprintln!("tasker serve: orchestrating {} (Ctrl-C to stop)", tasker.database());
    wait_for_signal().await;
    let _ = stop_tx.send(true);
    if let Some(server) = server {
        match server.await {
            Ok(Err(e)) => eprintln!("error: REST API: {e}"),
            Err(e) => eprintln!("error: REST API task: {e}"),
            Ok(Ok(())) => {}
        }
    }
    let _ = loop_task.await;
    tasker.close().await;
    Ok(ExitCode::SUCCESS)
}

fn stop_rx_for_server(tx: &tokio::sync::watch::Sender<bool>) -> tokio::sync::watch::Receiver<bool> {
    tx.subscribe()
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
        TaskCommand::Get { json, .. } | TaskCommand::List { json, .. } | TaskCommand::Diagram { json, .. } => *json,
        TaskCommand::Retry(a) | TaskCommand::Resolve(a) => a.op.json,
        TaskCommand::Create(_) | TaskCommand::Cancel { .. } | TaskCommand::Watch { .. } => false,
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
                    traceparent: args.traceparent,
                    ..Default::default()
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
                let detail = progress::wait_with_progress(tasker, id, Some(Duration::from_secs(secs))).await?;
                output::print_task(&detail);
            }
        }
        TaskCommand::Watch { task_uuid, timeout } => {
            let detail = progress::wait_with_progress(tasker, task_uuid, timeout.map(Duration::from_secs)).await?;
            output::print_task(&detail);
            let succeeded = matches!(detail.task.state.as_str(), "complete" | "resolved_manually");
            return Ok(if succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        TaskCommand::Diagram { task_uuid, json } => {
            let detail = tasker.get_task(task_uuid).await?;
            let mermaid = tasker_core::diagram::task_mermaid(&detail);
            if json {
                output::print_json(&serde_json::json!({
                    "task_uuid": task_uuid,
                    "state": detail.task.state,
                    "mermaid": mermaid,
                }))?;
            } else {
                print!("{mermaid}");
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
                    ..TaskFilter::default()
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
pub(crate) async fn wait_for_signal() {
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
