//! Layered configuration: built-in defaults < `base/*.toml` < `environments/<env>/*.toml` <
//! `TASKER_<SECTION>__<KEY>` environment variables < explicit arguments from code or CLI flags.
//!
//! The tree is role-based: `common.toml` (database, step types, events, staleness, logging, telemetry),
//! `orchestration.toml` (the orchestrator loop and its detectors), `worker.toml` (workers). Its
//! root is `TASKER_CONFIG_ROOT`, else `./config/tasker` when it exists; without one, the
//! built-in defaults alone apply, so the zero-setup SQLite path needs no file.
//!
//! Every key is declared once, in [`KEYS`], with its type, range, default and description:
//! loading checks files and environment variables against it (unknown keys and sections, wrong
//! types and out-of-range values are errors naming the file or variable, the key, the value and
//! what is allowed, with a "did you mean" for near-misses), `tasker config show` prints each
//! value with its origin, and `tasker config init` writes a commented starter tree from it.
//! String values in files may use `${VAR}` and `${VAR:-default}`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::breaker::BreakerOptions;
use crate::engine::BackpressureOptions;
use crate::engine::{RecoveryOptions, StalenessThresholds, StepTypeLimits, TaskerOptions};
use crate::error::{Result, TaskerError};
use crate::events::{EventOptions, LifecycleEvents};
use crate::messaging::{MessagingBackend, MessagingOptions, QueueType, RabbitOptions};
use crate::store::SqliteSettings;
use crate::telemetry::TelemetryOptions;
use crate::worker::{DispatchMode, WorkerConfig};

/// The role files, and the sections each may hold.
pub const ROLES: &[(&str, &[&str])] = &[
    (
        "common",
        &[
            "database",
            "step_types",
            "events",
            "staleness",
            "logging",
            "telemetry",
            "circuit_breaker",
            "backpressure",
            "messaging",
        ],
    ),
    ("orchestration", &["orchestration"]),
    ("worker", &["worker"]),
];

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    Str,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A list of strings (comma-separated in an environment variable).
    StrList,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub section: &'static str,
    pub key: &'static str,
    pub kind: Kind,
    /// The built-in default as TOML (`None`: unset unless given).
    pub default: Option<&'static str>,
    /// A secret: redacted when shown.
    pub secret: bool,
    pub doc: &'static str,
}

const fn key(
    section: &'static str,
    key: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    doc: &'static str,
) -> KeySpec {
    KeySpec {
        section,
        key,
        kind,
        default,
        secret: false,
        doc,
    }
}

const DAY_MS: i64 = 86_400_000;

/// Every key there is.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        secret: true,
        ..key(
            "database",
            "url",
            Kind::Str,
            None,
            "sqlite://PATH or postgres://… (TASKER_DATABASE_URL and DATABASE_URL still win over it)",
        )
    },
    key(
        "database",
        "max_connections",
        Kind::Int { min: 2, max: 1_000 },
        Some("10"),
        "PostgreSQL pool size (LISTEN holds one)",
    ),
    key(
        "database",
        "listen",
        Kind::Bool,
        Some("true"),
        "PostgreSQL: wake idle workers with LISTEN/NOTIFY",
    ),
    key(
        "database",
        "acquire_timeout_ms",
        Kind::Int {
            min: 100,
            max: 600_000,
        },
        Some("10000"),
        "PostgreSQL: how long a call waits for a pooled connection before it fails (and counts against the circuit breaker)",
    ),
    key(
        "database",
        "statement_timeout_ms",
        Kind::Int {
            min: 100,
            max: DAY_MS,
        },
        Some("30000"),
        "PostgreSQL statement_timeout of engine connections (a statement this long is stuck; it fails and is retried)",
    ),
    key(
        "database",
        "lock_timeout_ms",
        Kind::Int {
            min: 100,
            max: DAY_MS,
        },
        Some("10000"),
        "PostgreSQL lock_timeout of engine connections",
    ),
    key(
        "database",
        "idle_in_transaction_timeout_ms",
        Kind::Int {
            min: 100,
            max: DAY_MS,
        },
        Some("60000"),
        "PostgreSQL idle_in_transaction_session_timeout: a stalled process's transaction is ended and its locks freed",
    ),
    key(
        "database",
        "sqlite_readers",
        Kind::Int { min: 1, max: 64 },
        Some("4"),
        "SQLite: read-only connections beside the one writer",
    ),
    key(
        "database",
        "sqlite_writer_wait_ms",
        Kind::Int {
            min: 100,
            max: DAY_MS,
        },
        Some("60000"),
        "SQLite: how long a transaction waits for this process's writer connection before it fails (transiently)",
    ),
    key(
        "database",
        "sqlite_busy_timeout_ms",
        Kind::Int { min: 0, max: DAY_MS },
        Some("30000"),
        "SQLite busy_timeout: how long a statement waits for another process's write lock",
    ),
    key(
        "step_types",
        "max_batch_workers",
        Kind::Int { min: 1, max: 100_000 },
        Some("1000"),
        "most instances one create_batches outcome may ask for",
    ),
    key(
        "step_types",
        "max_decision_depth",
        Kind::Int { min: 1, max: 100 },
        Some("8"),
        "most decision steps on one path",
    ),
    key(
        "events",
        "lifecycle",
        Kind::Choice(&["when_subscribed", "always", "never"]),
        Some("\"when_subscribed\""),
        "which task/step lifecycle events go to the durable event log",
    ),
    key(
        "events",
        "retention_hours",
        Kind::Float {
            min: 0.0,
            max: 87_600.0,
        },
        Some("168.0"),
        "events every subscriber group acknowledged are deleted after this long",
    ),
    key(
        "events",
        "group_check_ms",
        Kind::Int {
            min: 10,
            max: 3_600_000,
        },
        Some("1000"),
        "how often a process re-checks whether subscriber groups exist",
    ),
    key(
        "events",
        "fast_buffer",
        Kind::Int {
            min: 16,
            max: 1_000_000,
        },
        Some("8192"),
        "fast (in-process) events a reader may fall behind before it skips the oldest",
    ),
    key(
        "staleness",
        "steps_in_process_minutes",
        Kind::Float {
            min: 1e-6,
            max: 525_600.0,
        },
        Some("60.0"),
        "no progress for this long while steps run: stale",
    ),
    key(
        "staleness",
        "waiting_for_dependencies_minutes",
        Kind::Float {
            min: 1e-6,
            max: 525_600.0,
        },
        Some("60.0"),
        "no progress for this long while waiting on dependencies: stale",
    ),
    key(
        "staleness",
        "waiting_for_retry_minutes",
        Kind::Float {
            min: 1e-6,
            max: 525_600.0,
        },
        Some("60.0"),
        "no progress for this long while waiting for retries: stale",
    ),
    key(
        "staleness",
        "max_duration_minutes",
        Kind::Float {
            min: 1e-6,
            max: 5_256_000.0,
        },
        Some("1440.0"),
        "this long since creation: stale",
    ),
    key(
        "logging",
        "level",
        Kind::Choice(&["trace", "debug", "info", "warn", "error"]),
        Some("\"info\""),
        "log level (TASKER_LOG, a full filter, wins)",
    ),
    key(
        "logging",
        "format",
        Kind::Choice(&["text", "json"]),
        Some("\"text\""),
        "log format",
    ),
    key(
        "logging",
        "buffer",
        Kind::Int {
            min: 100,
            max: 10_000_000,
        },
        Some("10000"),
        "Python, Ruby, TypeScript: records waiting for the host logger before new ones are dropped (and counted)",
    ),
    key(
        "telemetry",
        "enabled",
        Kind::Bool,
        Some("false"),
        "export spans and metrics over OTLP/HTTP (metrics are counted for /metrics either way)",
    ),
    key(
        "telemetry",
        "otlp_endpoint",
        Kind::Str,
        Some("\"http://127.0.0.1:4318\""),
        "the OTLP/HTTP receiver's base URL (/v1/traces and /v1/metrics are appended)",
    ),
    key(
        "telemetry",
        "service_name",
        Kind::Str,
        Some("\"tasker\""),
        "service.name of the exported spans and metrics",
    ),
    key(
        "telemetry",
        "export_interval_ms",
        Kind::Int {
            min: 10,
            max: 3_600_000,
        },
        Some("5000"),
        "how often buffered spans and a metrics snapshot are sent",
    ),
    key(
        "telemetry",
        "traces",
        Kind::Bool,
        Some("true"),
        "export spans (when enabled)",
    ),
    key(
        "telemetry",
        "metrics",
        Kind::Bool,
        Some("true"),
        "export metrics (when enabled)",
    ),
    key(
        "telemetry",
        "max_queued_spans",
        Kind::Int {
            min: 1,
            max: 10_000_000,
        },
        Some("8192"),
        "finished spans buffered for export; beyond it they are dropped and counted",
    ),
    key(
        "telemetry",
        "health_probe_timeout_ms",
        Kind::Int {
            min: 10,
            max: 600_000,
        },
        Some("2000"),
        "readiness: how long the database has to answer before it is reported down",
    ),
    key(
        "circuit_breaker",
        "enabled",
        Kind::Bool,
        Some("true"),
        "fail calls at once with `unavailable` while PostgreSQL is unreachable (SQLite has no breaker)",
    ),
    key(
        "circuit_breaker",
        "failure_threshold",
        Kind::Int { min: 1, max: 10_000 },
        Some("5"),
        "consecutive unreachable-database failures that open the breaker",
    ),
    key(
        "circuit_breaker",
        "failure_rate",
        Kind::Float { min: 0.01, max: 1.0 },
        Some("0.5"),
        "failure rate over window_ms that opens the breaker (once min_calls calls were made)",
    ),
    key(
        "circuit_breaker",
        "min_calls",
        Kind::Int { min: 1, max: 1_000_000 },
        Some("20"),
        "calls in a window before its failure rate counts",
    ),
    key(
        "circuit_breaker",
        "window_ms",
        Kind::Int { min: 100, max: DAY_MS },
        Some("10000"),
        "the failure-rate window",
    ),
    key(
        "circuit_breaker",
        "cool_down_ms",
        Kind::Int { min: 10, max: DAY_MS },
        Some("2000"),
        "how long the breaker stays open before one probe call is let through",
    ),
    key(
        "backpressure",
        "max_queue_depth",
        Kind::Int {
            min: 0,
            max: 1_000_000_000_000,
        },
        Some("1000000"),
        "steps waiting on a queue beyond which creating a task that sends to it fails with `backpressure` (0: no limit)",
    ),
    key(
        "backpressure",
        "refresh_ms",
        Kind::Int { min: 10, max: 60_000 },
        Some("1000"),
        "how often the queue depths backpressure compares against are read",
    ),
    key(
        "messaging",
        "backend",
        Kind::Choice(&["database", "rabbitmq"]),
        Some("\"database\""),
        "where step messages travel: the database's own queue (PGMQ on PostgreSQL, a table on SQLite), or RabbitMQ with PostgreSQL keeping every state and the outbox (not with SQLite)",
    ),
    KeySpec {
        secret: true,
        ..key(
            "messaging",
            "rabbitmq_url",
            Kind::Str,
            None,
            "amqp://user:password@host:5672/vhost (default: RABBITMQ_URL, else amqp://guest:guest@127.0.0.1:5672/%2f)",
        )
    },
    key(
        "messaging",
        "rabbitmq_prefetch",
        Kind::Int { min: 0, max: 65_535 },
        Some("0"),
        "deliveries a consumer buffers beyond what it claimed (0: twice the concurrency of this process's workers on the queue)",
    ),
    key(
        "messaging",
        "rabbitmq_exchange",
        Kind::Str,
        Some("\"tasker\""),
        "the durable direct exchange steps are published to",
    ),
    key(
        "messaging",
        "rabbitmq_queue_prefix",
        Kind::Str,
        Some("\"tasker.\""),
        "prepended to a Tasker queue's name to name its RabbitMQ queue and routing key",
    ),
    key(
        "messaging",
        "rabbitmq_queue_type",
        Kind::Choice(&["classic", "quorum"]),
        Some("\"classic\""),
        "durable classic queues, or quorum queues (replicated; no priorities on RabbitMQ 3.x)",
    ),
    key(
        "messaging",
        "rabbitmq_max_priority",
        Kind::Int { min: 0, max: 255 },
        Some("9"),
        "x-max-priority of classic queues; task priorities map onto 0..=this around its middle (0: no priorities)",
    ),
    key(
        "messaging",
        "rabbitmq_republish_after_ms",
        Kind::Int {
            min: 10_000,
            max: 7 * DAY_MS,
        },
        Some("900000"),
        "a published message stays hidden in PostgreSQL this long before it is published again (in case the broker lost it)",
    ),
    key(
        "messaging",
        "rabbitmq_relay_batch",
        Kind::Int { min: 1, max: 10_000 },
        Some("256"),
        "most messages one relay transaction publishes",
    ),
    key(
        "messaging",
        "rabbitmq_relay_poll_ms",
        Kind::Int { min: 10, max: 60_000 },
        Some("1000"),
        "the relay's fallback poll for messages whose lease expired (a dead worker's steps) or whose notification was missed",
    ),
    key(
        "messaging",
        "rabbitmq_heartbeat_s",
        Kind::Int { min: 0, max: 600 },
        Some("10"),
        "AMQP heartbeat: how soon a dead connection is noticed (0: none)",
    ),
    key(
        "orchestration",
        "detector_interval_ms",
        Kind::Int { min: 10, max: DAY_MS },
        Some("30000"),
        "how often the staleness and unserved-queue detectors run",
    ),
    key(
        "orchestration",
        "batch_size",
        Kind::Int {
            min: 1,
            max: 100_000,
        },
        Some("500"),
        "rows one maintenance statement handles (due retries, overdue attempts, timers); a full batch runs again at once",
    ),
    key(
        "orchestration",
        "worker_unavailable_after_ms",
        Kind::Int {
            min: 10,
            max: 7 * DAY_MS,
        },
        Some("600000"),
        "steps waiting this long on a queue no live worker serves: DLQ",
    ),
    key(
        "worker",
        "queues",
        Kind::StrList,
        Some("[]"),
        "queues to claim from (the CLI's --queue adds to them)",
    ),
    key(
        "worker",
        "concurrency",
        Kind::Int { min: 1, max: 10_000 },
        Some("8"),
        "handler slots",
    ),
    key(
        "worker",
        "lease_ms",
        Kind::Int {
            min: 1_000,
            max: DAY_MS,
        },
        Some("30000"),
        "how long a claimed step stays hidden; renewed while it runs",
    ),
    key(
        "worker",
        "dispatch_mode",
        Kind::Choice(&["hybrid", "polling", "event_driven"]),
        Some("\"hybrid\""),
        "how idle workers learn of new steps",
    ),
    key(
        "worker",
        "poll_interval_ms",
        Kind::Int { min: 1, max: 60_000 },
        None,
        "longest fallback polling interval (default: 3 ms on SQLite, 1 s on PostgreSQL)",
    ),
    key(
        "worker",
        "heartbeat_interval_ms",
        Kind::Int {
            min: 10,
            max: 3_600_000,
        },
        Some("10000"),
        "how often workers heartbeat (three missed: not live)",
    ),
    key(
        "worker",
        "embedded_orchestration",
        Kind::Bool,
        Some("true"),
        "also run the orchestrator loop in each worker process",
    ),
    key(
        "worker",
        "claim_batch_size",
        Kind::Int { min: 1, max: 10_000 },
        Some("64"),
        "most steps one claim transaction takes (never more than the free handler slots)",
    ),
    key(
        "worker",
        "completion_batch_size",
        Kind::Int { min: 1, max: 10_000 },
        Some("256"),
        "most outcomes one completion transaction applies",
    ),
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    Default,
    File { path: PathBuf },
    Env { var: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path } => write!(f, "{}", path.display()),
            Origin::Env { var } => write!(f, "${var}"),
        }
    }
}

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file or environment variable at fault.
    pub source: String,
    /// `section.key`, or the section.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.source, self.key, self.message)
    }
}

/// The merged configuration, typed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskerConfig {
    pub database_url: Option<String>,
    pub max_connections: u32,
    pub listen: bool,
    pub step_types: StepTypeLimitsConfig,
    pub events: EventOptions,
    pub staleness_minutes: [f64; 4],
    pub log_level: String,
    pub log_format: String,
    pub log_buffer: usize,
    pub telemetry: TelemetryOptions,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub idle_in_transaction_timeout: Duration,
    pub sqlite: SqliteSettings,
    pub circuit_breaker: BreakerOptions,
    pub backpressure: BackpressureOptions,
    pub messaging: MessagingOptions,
    pub detector_interval: Duration,
    pub maintenance_batch: i64,
    pub worker_unavailable_after: Duration,
    pub worker_queues: Vec<String>,
    pub worker_concurrency: usize,
    pub lease: Duration,
    pub dispatch_mode: String,
    pub poll_interval: Option<Duration>,
    pub heartbeat_interval: Duration,
    pub embedded_orchestration: bool,
    pub claim_batch_size: usize,
    pub completion_batch_size: usize,
}

/// [`StepTypeLimits`] as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StepTypeLimitsConfig {
    pub max_batch_workers: usize,
    pub max_decision_depth: usize,
}

/// A loaded configuration: the values, where each came from, and the files read.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: TaskerConfig,
    /// `section.key` → (TOML value, origin), for every key that has a value.
    pub values: BTreeMap<String, (toml::Value, Origin)>,
    pub files: Vec<PathBuf>,
    pub env: String,
    pub root: Option<PathBuf>,
}

/// A shown value: the key, its value (secrets redacted) and its origin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownValue {
    pub key: String,
    pub value: serde_json::Value,
    pub origin: Origin,
}

impl LoadedConfig {
    /// Every key with a value, secrets redacted.
    pub fn shown(&self) -> Vec<ShownValue> {
        self.values
            .iter()
            .map(|(k, (v, origin))| {
                let secret = spec(k).is_some_and(|s| s.secret);
                let value = if secret {
                    match v {
                        toml::Value::String(s) => serde_json::Value::String(crate::engine::describe_database(s)),
                        _ => serde_json::Value::String("***".into()),
                    }
                } else {
                    toml_to_json(v)
                };
                ShownValue {
                    key: k.clone(),
                    value,
                    origin: origin.clone(),
                }
            })
            .collect()
    }
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn spec(dotted: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| format!("{}.{}", s.section, s.key) == dotted)
}

/// The configuration root: `explicit`, else `TASKER_CONFIG_ROOT`, else `./config/tasker` if it
/// exists, else none.
pub fn config_root(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("TASKER_CONFIG_ROOT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| {
            let local = PathBuf::from("config/tasker");
            local.is_dir().then_some(local)
        })
}

/// `TASKER_ENV`, default `development`.
pub fn config_env() -> String {
    std::env::var("TASKER_ENV")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "development".into())
}

/// The configuration this process runs with: `TASKER_ENV` under [`config_root`], with this
/// process's environment variables (the built-in defaults when there is no tree).
pub fn load_current() -> Result<LoadedConfig> {
    load(&config_env(), config_root(None).as_deref())
}

/// The engine options every entry point (CLI, bindings) connects with: the current
/// configuration, with the database `explicit`, else `TASKER_DATABASE_URL`, else
/// `DATABASE_URL`, else `database.url`, else [`crate::DEFAULT_DATABASE_URL`].
pub fn connect_options(explicit_url: Option<&str>) -> Result<TaskerOptions> {
    Ok(load_current()?.config.connect_options(explicit_url))
}

/// Loads the configuration of `env` under `root` (see [`config_root`]), with this process's
/// environment variables.
pub fn load(env: &str, root: Option<&Path>) -> Result<LoadedConfig> {
    let vars: BTreeMap<String, String> = std::env::vars().collect();
    load_with(env, root, &vars)
}

/// [`load`] with the environment given (for tests and `tasker config validate`).
pub fn load_with(env: &str, root: Option<&Path>, vars: &BTreeMap<String, String>) -> Result<LoadedConfig> {
    let mut problems = Vec::new();
    let mut values: BTreeMap<String, (toml::Value, Origin)> = BTreeMap::new();
    for s in KEYS {
        if let Some(default) = s.default {
            match default.parse::<toml::Value>() {
                Ok(v) => {
                    values.insert(format!("{}.{}", s.section, s.key), (v, Origin::Default));
                }
                Err(_) => {
                    // `"x"` parses as a document, not a value: read it through a key.
                    if let Some(v) = format!("v = {default}")
                        .parse::<toml::Table>()
                        .ok()
                        .and_then(|t| t.get("v").cloned())
                    {
                        values.insert(format!("{}.{}", s.section, s.key), (v, Origin::Default));
                    }
                }
            }
        }
    }
    let mut files = Vec::new();
    if let Some(root) = root {
        if !root.is_dir() {
            problems.push(ConfigProblem {
                source: root.display().to_string(),
                key: "-".into(),
                message: "the configuration root is not a directory".into(),
            });
        }
        let env_dir = root.join("environments").join(env);
        if root.join("environments").is_dir() && !env_dir.is_dir() && env != "development" {
            problems.push(ConfigProblem {
                source: env_dir.display().to_string(),
                key: "-".into(),
                message: format!("no environment '{env}' under {}", root.join("environments").display()),
            });
        }
        for dir in [root.join("base"), env_dir] {
            for (role, sections) in ROLES {
                let path = dir.join(format!("{role}.toml"));
                if !path.is_file() {
                    continue;
                }
                files.push(path.clone());
                read_file(&path, sections, vars, &mut values, &mut problems);
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(stem) = name.strip_suffix(".toml") {
                        if !ROLES.iter().any(|(r, _)| *r == stem) {
                            problems.push(ConfigProblem {
                                source: e.path().display().to_string(),
                                key: "-".into(),
                                message: format!(
                                    "unknown configuration file: the files are {}",
                                    ROLES
                                        .iter()
                                        .map(|(r, _)| format!("{r}.toml"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            });
                        }
                    }
                }
            }
        }
    }
    read_env(vars, &mut values, &mut problems);
    if !problems.is_empty() {
        return Err(TaskerError::Config(problems));
    }
    let config = typed(&values)?;
    Ok(LoadedConfig {
        config,
        values,
        files,
        env: env.to_owned(),
        root: root.map(Path::to_path_buf),
    })
}

fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (crate::template::edit_distance(word, c), c))
        .filter(|(d, c)| *d <= if c.len() <= 4 { 1 } else { 2 })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn did_you_mean(word: &str, candidates: impl Iterator<Item = &'static str>) -> String {
    closest(word, candidates)
        .map(|c| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

fn read_file(
    path: &Path,
    sections: &[&'static str],
    vars: &BTreeMap<String, String>,
    values: &mut BTreeMap<String, (toml::Value, Origin)>,
    problems: &mut Vec<ConfigProblem>,
) {
    let source = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(ConfigProblem {
                source,
                key: "-".into(),
                message: format!("cannot be read: {e}"),
            });
            return;
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problems.push(ConfigProblem {
                source,
                key: "-".into(),
                message: format!("is not valid TOML: {}", e.to_string().trim()),
            });
            return;
        }
    };
    for (section, body) in table {
        let Some(&section) = sections.iter().find(|s| **s == section) else {
            let elsewhere = ROLES
                .iter()
                .find(|(_, ss)| ss.contains(&section.as_str()))
                .map(|(r, _)| *r);
            let message = match elsewhere {
                Some(role) => format!("section [{section}] belongs in {role}.toml"),
                None => format!(
                    "unknown section [{section}]{}; this file holds [{}]",
                    did_you_mean(&section, ROLES.iter().flat_map(|(_, ss)| ss.iter().copied())),
                    sections.join("], [")
                ),
            };
            problems.push(ConfigProblem {
                source: source.clone(),
                key: section,
                message,
            });
            continue;
        };
        let toml::Value::Table(body) = body else {
            problems.push(ConfigProblem {
                source: source.clone(),
                key: section.into(),
                message: "must be a table ([section] with keys)".into(),
            });
            continue;
        };
        for (k, v) in body {
            let dotted = format!("{section}.{k}");
            let Some(s) = spec(&dotted) else {
                problems.push(ConfigProblem {
                    source: source.clone(),
                    key: dotted,
                    message: format!(
                        "unknown key{}",
                        did_you_mean(&k, KEYS.iter().filter(|s| s.section == section).map(|s| s.key))
                    ),
                });
                continue;
            };
            let v = match substitute(v, vars) {
                Ok(v) => v,
                Err(message) => {
                    problems.push(ConfigProblem {
                        source: source.clone(),
                        key: dotted,
                        message,
                    });
                    continue;
                }
            };
            match check(s, v) {
                Ok(v) => {
                    values.insert(
                        dotted,
                        (
                            v,
                            Origin::File {
                                path: path.to_path_buf(),
                            },
                        ),
                    );
                }
                Err(message) => problems.push(ConfigProblem {
                    source: source.clone(),
                    key: dotted,
                    message,
                }),
            }
        }
    }
}

/// `${VAR}` and `${VAR:-default}` in a string (or in the strings of a list).
fn substitute(v: toml::Value, vars: &BTreeMap<String, String>) -> std::result::Result<toml::Value, String> {
    match v {
        toml::Value::String(s) => expand(&s, |name| vars.get(name).cloned()).map(toml::Value::String),
        toml::Value::Array(items) => items
            .into_iter()
            .map(|i| substitute(i, vars))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(toml::Value::Array),
        other => Ok(other),
    }
}

/// `s` with each `${VAR}` / `${VAR:-default}` replaced by `lookup(VAR)` (an empty value counts
/// as unset), else the default; a variable with neither is an error naming it.
pub(crate) fn expand(s: &str, lookup: impl Fn(&str) -> Option<String>) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("'${{' without a closing '}}' in \"{s}\""))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a value against its key, turning integer-valued floats and numbers written where a
/// float is expected into the right TOML type.
fn check(s: &KeySpec, v: toml::Value) -> std::result::Result<toml::Value, String> {
    let shown = v.to_string();
    match (s.kind, v) {
        (Kind::Int { min, max }, toml::Value::Integer(i)) if (min..=max).contains(&i) => Ok(toml::Value::Integer(i)),
        (Kind::Int { min, max }, toml::Value::Integer(_)) => {
            Err(format!("{shown} is out of range: allowed {min} to {max}"))
        }
        (Kind::Int { .. }, _) => Err(format!("expected an integer, got {shown}")),
        (Kind::Float { min, max }, toml::Value::Float(f)) if f.is_finite() && f >= min && f <= max => {
            Ok(toml::Value::Float(f))
        }
        (Kind::Float { min, max }, toml::Value::Integer(i)) if (i as f64) >= min && (i as f64) <= max => {
            Ok(toml::Value::Float(i as f64))
        }
        (Kind::Float { min, max }, toml::Value::Float(_) | toml::Value::Integer(_)) => {
            Err(format!("{shown} is out of range: allowed {min} to {max}"))
        }
        (Kind::Float { .. }, _) => Err(format!("expected a number, got {shown}")),
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(toml::Value::Boolean(b)),
        (Kind::Bool, _) => Err(format!("expected true or false, got {shown}")),
        (Kind::Str, toml::Value::String(x)) => Ok(toml::Value::String(x)),
        (Kind::Str, _) => Err(format!("expected a string, got {shown}")),
        (Kind::Choice(words), toml::Value::String(x)) if words.contains(&x.as_str()) => Ok(toml::Value::String(x)),
        (Kind::Choice(words), toml::Value::String(x)) => Err(format!(
            "'{x}' is not one of {}{}",
            words.join(", "),
            did_you_mean(&x, words.iter().copied())
        )),
        (Kind::Choice(words), _) => Err(format!("expected one of {}, got {shown}", words.join(", "))),
        (Kind::StrList, toml::Value::Array(items)) if items.iter().all(toml::Value::is_str) => {
            Ok(toml::Value::Array(items))
        }
        (Kind::StrList, _) => Err(format!("expected a list of strings, got {shown}")),
    }
}

/// `TASKER_<SECTION>__<KEY>` variables.
fn read_env(
    vars: &BTreeMap<String, String>,
    values: &mut BTreeMap<String, (toml::Value, Origin)>,
    problems: &mut Vec<ConfigProblem>,
) {
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix("TASKER_") else {
            continue;
        };
        let Some((section, k)) = rest.split_once("__") else {
            continue;
        };
        let (section, k) = (section.to_ascii_lowercase(), k.to_ascii_lowercase());
        let dotted = format!("{section}.{k}");
        let Some(s) = spec(&dotted) else {
            let known_section = KEYS.iter().any(|s| s.section == section);
            let hint = if known_section {
                did_you_mean(&k, KEYS.iter().filter(|s| s.section == section).map(|s| s.key))
            } else {
                did_you_mean(&section, KEYS.iter().map(|s| s.section))
            };
            problems.push(ConfigProblem {
                source: format!("${var}"),
                key: dotted,
                message: format!("no such configuration key{hint}"),
            });
            continue;
        };
        let parsed = match s.kind {
            Kind::Int { .. } => raw.trim().parse::<i64>().map(toml::Value::Integer).map_err(|_| ()),
            Kind::Float { .. } => raw.trim().parse::<f64>().map(toml::Value::Float).map_err(|_| ()),
            Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
                "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
                _ => Err(()),
            },
            Kind::Str | Kind::Choice(_) => Ok(toml::Value::String(raw.clone())),
            Kind::StrList => Ok(toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|x| toml::Value::String(x.to_owned()))
                    .collect(),
            )),
        };
        let checked = match parsed {
            Ok(v) => check(s, v),
            Err(()) => Err(format!("'{raw}' is not a valid {}", kind_name(s.kind))),
        };
        match checked {
            Ok(v) => {
                values.insert(dotted, (v, Origin::Env { var: var.clone() }));
            }
            Err(message) => problems.push(ConfigProblem {
                source: format!("${var}"),
                key: dotted,
                message,
            }),
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Int { .. } => "integer",
        Kind::Float { .. } => "number",
        Kind::Bool => "boolean (true/false)",
        Kind::Str | Kind::Choice(_) => "string",
        Kind::StrList => "comma-separated list",
    }
}

fn typed(values: &BTreeMap<String, (toml::Value, Origin)>) -> Result<TaskerConfig> {
    let get = |k: &str| values.get(k).map(|(v, _)| v);
    let int = |k: &str| get(k).and_then(toml::Value::as_integer);
    let float = |k: &str| get(k).and_then(toml::Value::as_float);
    let string = |k: &str| get(k).and_then(toml::Value::as_str).map(str::to_owned);
    let boolean = |k: &str| get(k).and_then(toml::Value::as_bool);
    let ms = |k: &str| int(k).map(|v| Duration::from_millis(u64::try_from(v).unwrap_or(0)));
    let missing = |k: &str| TaskerError::Corrupt(format!("configuration key {k} has no value"));
    Ok(TaskerConfig {
        database_url: string("database.url"),
        max_connections: int("database.max_connections")
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| missing("database.max_connections"))?,
        listen: boolean("database.listen").ok_or_else(|| missing("database.listen"))?,
        acquire_timeout: ms("database.acquire_timeout_ms").ok_or_else(|| missing("database.acquire_timeout_ms"))?,
        statement_timeout: ms("database.statement_timeout_ms")
            .ok_or_else(|| missing("database.statement_timeout_ms"))?,
        lock_timeout: ms("database.lock_timeout_ms").ok_or_else(|| missing("database.lock_timeout_ms"))?,
        idle_in_transaction_timeout: ms("database.idle_in_transaction_timeout_ms")
            .ok_or_else(|| missing("database.idle_in_transaction_timeout_ms"))?,
        sqlite: SqliteSettings {
            readers: int("database.sqlite_readers")
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| missing("database.sqlite_readers"))?,
            writer_wait: ms("database.sqlite_writer_wait_ms")
                .ok_or_else(|| missing("database.sqlite_writer_wait_ms"))?,
            busy_timeout: ms("database.sqlite_busy_timeout_ms")
                .ok_or_else(|| missing("database.sqlite_busy_timeout_ms"))?,
        },
        step_types: StepTypeLimitsConfig {
            max_batch_workers: int("step_types.max_batch_workers")
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| missing("step_types.max_batch_workers"))?,
            max_decision_depth: int("step_types.max_decision_depth")
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| missing("step_types.max_decision_depth"))?,
        },
        events: EventOptions {
            lifecycle: match string("events.lifecycle").as_deref() {
                Some("always") => LifecycleEvents::Always,
                Some("never") => LifecycleEvents::Never,
                _ => LifecycleEvents::WhenSubscribed,
            },
            retention: Duration::from_secs_f64(
                float("events.retention_hours").ok_or_else(|| missing("events.retention_hours"))? * 3600.0,
            ),
            group_check: ms("events.group_check_ms").ok_or_else(|| missing("events.group_check_ms"))?,
            fast_buffer: int("events.fast_buffer")
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| missing("events.fast_buffer"))?,
        },
        staleness_minutes: [
            float("staleness.steps_in_process_minutes").ok_or_else(|| missing("staleness.steps_in_process_minutes"))?,
            float("staleness.waiting_for_dependencies_minutes")
                .ok_or_else(|| missing("staleness.waiting_for_dependencies_minutes"))?,
            float("staleness.waiting_for_retry_minutes")
                .ok_or_else(|| missing("staleness.waiting_for_retry_minutes"))?,
            float("staleness.max_duration_minutes").ok_or_else(|| missing("staleness.max_duration_minutes"))?,
        ],
        log_level: string("logging.level").ok_or_else(|| missing("logging.level"))?,
        log_format: string("logging.format").ok_or_else(|| missing("logging.format"))?,
        log_buffer: int("logging.buffer")
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| missing("logging.buffer"))?,
        telemetry: TelemetryOptions {
            enabled: boolean("telemetry.enabled").ok_or_else(|| missing("telemetry.enabled"))?,
            otlp_endpoint: string("telemetry.otlp_endpoint").ok_or_else(|| missing("telemetry.otlp_endpoint"))?,
            service_name: string("telemetry.service_name").ok_or_else(|| missing("telemetry.service_name"))?,
            export_interval: ms("telemetry.export_interval_ms")
                .ok_or_else(|| missing("telemetry.export_interval_ms"))?,
            traces: boolean("telemetry.traces").ok_or_else(|| missing("telemetry.traces"))?,
            metrics: boolean("telemetry.metrics").ok_or_else(|| missing("telemetry.metrics"))?,
            max_queued_spans: int("telemetry.max_queued_spans")
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| missing("telemetry.max_queued_spans"))?,
            health_probe_timeout: ms("telemetry.health_probe_timeout_ms")
                .ok_or_else(|| missing("telemetry.health_probe_timeout_ms"))?,
        },
        circuit_breaker: BreakerOptions {
            enabled: boolean("circuit_breaker.enabled").ok_or_else(|| missing("circuit_breaker.enabled"))?,
            failure_threshold: int("circuit_breaker.failure_threshold")
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| missing("circuit_breaker.failure_threshold"))?,
            failure_rate: float("circuit_breaker.failure_rate")
                .ok_or_else(|| missing("circuit_breaker.failure_rate"))?,
            min_calls: int("circuit_breaker.min_calls")
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| missing("circuit_breaker.min_calls"))?,
            window: ms("circuit_breaker.window_ms").ok_or_else(|| missing("circuit_breaker.window_ms"))?,
            cool_down: ms("circuit_breaker.cool_down_ms").ok_or_else(|| missing("circuit_breaker.cool_down_ms"))?,
        },
        backpressure: BackpressureOptions {
            max_queue_depth: int("backpressure.max_queue_depth")
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| missing("backpressure.max_queue_depth"))?,
            refresh: ms("backpressure.refresh_ms").ok_or_else(|| missing("backpressure.refresh_ms"))?,
        },
        messaging: MessagingOptions {
            // Checked against the key's allowed values above; parsed by the one `FromStr`.
            backend: string("messaging.backend")
                .map(|b| b.parse::<MessagingBackend>())
                .transpose()?
                .unwrap_or_default(),
            rabbitmq: RabbitOptions {
                url: string("messaging.rabbitmq_url"),
                prefetch: int("messaging.rabbitmq_prefetch")
                    .and_then(|v| u16::try_from(v).ok())
                    .ok_or_else(|| missing("messaging.rabbitmq_prefetch"))?,
                exchange: string("messaging.rabbitmq_exchange")
                    .ok_or_else(|| missing("messaging.rabbitmq_exchange"))?,
                queue_prefix: string("messaging.rabbitmq_queue_prefix")
                    .ok_or_else(|| missing("messaging.rabbitmq_queue_prefix"))?,
                queue_type: match string("messaging.rabbitmq_queue_type").as_deref() {
                    Some("quorum") => QueueType::Quorum,
                    _ => QueueType::Classic,
                },
                max_priority: int("messaging.rabbitmq_max_priority")
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| missing("messaging.rabbitmq_max_priority"))?,
                republish_after: ms("messaging.rabbitmq_republish_after_ms")
                    .ok_or_else(|| missing("messaging.rabbitmq_republish_after_ms"))?,
                relay_batch: int("messaging.rabbitmq_relay_batch")
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| missing("messaging.rabbitmq_relay_batch"))?,
                relay_poll: ms("messaging.rabbitmq_relay_poll_ms")
                    .ok_or_else(|| missing("messaging.rabbitmq_relay_poll_ms"))?,
                heartbeat: Duration::from_secs(
                    int("messaging.rabbitmq_heartbeat_s")
                        .and_then(|v| u64::try_from(v).ok())
                        .ok_or_else(|| missing("messaging.rabbitmq_heartbeat_s"))?,
                ),
            },
        },
        detector_interval: ms("orchestration.detector_interval_ms")
            .ok_or_else(|| missing("orchestration.detector_interval_ms"))?,
        maintenance_batch: int("orchestration.batch_size").ok_or_else(|| missing("orchestration.batch_size"))?,
        worker_unavailable_after: ms("orchestration.worker_unavailable_after_ms")
            .ok_or_else(|| missing("orchestration.worker_unavailable_after_ms"))?,
        worker_queues: get("worker.queues")
            .and_then(toml::Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        worker_concurrency: int("worker.concurrency")
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| missing("worker.concurrency"))?,
        lease: ms("worker.lease_ms").ok_or_else(|| missing("worker.lease_ms"))?,
        dispatch_mode: string("worker.dispatch_mode").ok_or_else(|| missing("worker.dispatch_mode"))?,
        poll_interval: ms("worker.poll_interval_ms"),
        heartbeat_interval: ms("worker.heartbeat_interval_ms")
            .ok_or_else(|| missing("worker.heartbeat_interval_ms"))?,
        embedded_orchestration: boolean("worker.embedded_orchestration")
            .ok_or_else(|| missing("worker.embedded_orchestration"))?,
        claim_batch_size: int("worker.claim_batch_size")
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| missing("worker.claim_batch_size"))?,
        completion_batch_size: int("worker.completion_batch_size")
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| missing("worker.completion_batch_size"))?,
    })
}

impl TaskerConfig {
    /// The engine options this configuration asks for (the database URL is still resolved by
    /// [`crate::resolve_database_url`], which puts `TASKER_DATABASE_URL`/`DATABASE_URL` first).
    pub fn tasker_options(&self) -> TaskerOptions {
        let minutes = |m: f64| Duration::from_secs_f64(m * 60.0);
        TaskerOptions {
            database_url: self.database_url.clone(),
            max_connections: self.max_connections,
            listen: self.listen,
            acquire_timeout: self.acquire_timeout,
            statement_timeout: self.statement_timeout,
            lock_timeout: self.lock_timeout,
            idle_in_transaction_timeout: self.idle_in_transaction_timeout,
            sqlite: self.sqlite.clone(),
            step_type_limits: StepTypeLimits {
                max_batch_workers: self.step_types.max_batch_workers,
                max_decision_depth: self.step_types.max_decision_depth,
            },
            recovery: RecoveryOptions {
                staleness: StalenessThresholds {
                    steps_in_process: minutes(self.staleness_minutes[0]),
                    waiting_for_dependencies: minutes(self.staleness_minutes[1]),
                    waiting_for_retry: minutes(self.staleness_minutes[2]),
                    max_duration: minutes(self.staleness_minutes[3]),
                },
                detector_interval: self.detector_interval,
                worker_unavailable_after: self.worker_unavailable_after,
                heartbeat_interval: self.heartbeat_interval,
                maintenance_batch: self.maintenance_batch,
            },
            events: self.events.clone(),
            telemetry: self.telemetry.clone(),
            circuit_breaker: self.circuit_breaker.clone(),
            backpressure: self.backpressure.clone(),
            messaging: self.messaging.clone(),
        }
    }

    /// [`TaskerConfig::tasker_options`] with the database resolved: `explicit_url`, else
    /// `TASKER_DATABASE_URL`, else `DATABASE_URL`, else `database.url`, else the default.
    pub fn connect_options(&self, explicit_url: Option<&str>) -> TaskerOptions {
        let mut options = self.tasker_options();
        options.database_url = Some(crate::engine::resolve_database_url_with(
            explicit_url,
            self.database_url.as_deref(),
        ));
        options
    }

    /// A worker's configuration for `queues` (added to the configured ones).
    pub fn worker_config(&self, queues: &[String]) -> WorkerConfig {
        let mut all = self.worker_queues.clone();
        for q in queues {
            if !all.contains(q) {
                all.push(q.clone());
            }
        }
        let mut w = WorkerConfig::new(all);
        w.concurrency = self.worker_concurrency;
        w.lease = self.lease;
        w.dispatch_mode = match self.dispatch_mode.as_str() {
            "polling" => DispatchMode::Polling,
            "event_driven" => DispatchMode::EventDriven,
            _ => DispatchMode::Hybrid,
        };
        w.poll_interval = self.poll_interval;
        w.embedded_orchestration = self.embedded_orchestration;
        w.claim_batch_size = self.claim_batch_size;
        w.completion_batch_size = self.completion_batch_size;
        w
    }
}

/// A commented starter tree: `base/{common,orchestration,worker}.toml` with every key at its
/// default, and empty `environments/{development,test,production}/` overrides. Returns the
/// files written; refuses to overwrite.
pub fn write_starter_tree(root: &Path) -> Result<Vec<PathBuf>> {
    let io = |e: std::io::Error, p: &Path| TaskerError::InvalidArgument(format!("{}: {e}", p.display()));
    let mut written = Vec::new();
    let base = root.join("base");
    std::fs::create_dir_all(&base).map_err(|e| io(e, &base))?;
    for (role, sections) in ROLES {
        let path = base.join(format!("{role}.toml"));
        if path.exists() {
            return Err(TaskerError::InvalidArgument(format!(
                "{} exists; not overwriting it",
                path.display()
            )));
        }
        let mut text = format!("# Tasker configuration: {role} settings. Every key is shown at its default.\n");
        for section in *sections {
            text.push_str(&format!("\n[{section}]\n"));
            for s in KEYS.iter().filter(|s| s.section == *section) {
                text.push_str(&format!("# {}\n", s.doc));
                match s.default {
                    Some(d) => text.push_str(&format!("# {} = {d}\n", s.key)),
                    None => text.push_str(&format!("# {} = (unset)\n", s.key)),
                }
            }
        }
        std::fs::write(&path, text).map_err(|e| io(e, &path))?;
        written.push(path);
    }
    for env in ["development", "test", "production"] {
        let dir = root.join("environments").join(env);
        std::fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
        let path = dir.join("common.toml");
        if !path.exists() {
            std::fs::write(
                &path,
                format!("# Overrides for TASKER_ENV={env}: any key of base/common.toml.\n"),
            )
            .map_err(|e| io(e, &path))?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn problems(err: TaskerError) -> Vec<ConfigProblem> {
        match err {
            TaskerError::Config(p) => p,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn defaults_alone_give_todays_values() {
        let loaded = load_with("development", None, &vars(&[])).expect("defaults");
        let o = loaded.config.tasker_options();
        assert_eq!(o.max_connections, 10);
        assert_eq!(o.step_type_limits, StepTypeLimits::default());
        assert_eq!(o.recovery, RecoveryOptions::default());
        let w = loaded.config.worker_config(&["q".into()]);
        assert_eq!((w.concurrency, w.lease), (8, Duration::from_secs(30)));
        assert!(loaded.values.values().all(|(_, o)| *o == Origin::Default));
        assert_eq!(o.sqlite, crate::store::SqliteSettings::default());
        assert_eq!(o.events, EventOptions::default());
        assert_eq!(o.telemetry, TelemetryOptions::default());
        assert_eq!(loaded.config.log_buffer, crate::logging::DEFAULT_BUFFER);
    }

    #[test]
    fn the_tunables_that_were_constants_reach_the_engine() {
        let loaded = load_with(
            "development",
            None,
            &vars(&[
                ("TASKER_DATABASE__SQLITE_READERS", "2"),
                ("TASKER_DATABASE__SQLITE_WRITER_WAIT_MS", "1500"),
                ("TASKER_DATABASE__SQLITE_BUSY_TIMEOUT_MS", "250"),
                ("TASKER_EVENTS__FAST_BUFFER", "64"),
                ("TASKER_TELEMETRY__HEALTH_PROBE_TIMEOUT_MS", "300"),
                ("TASKER_ORCHESTRATION__BATCH_SIZE", "50"),
                ("TASKER_LOGGING__BUFFER", "500"),
            ]),
        )
        .expect("load");
        let o = loaded.config.tasker_options();
        assert_eq!(
            o.sqlite,
            crate::store::SqliteSettings {
                readers: 2,
                writer_wait: Duration::from_millis(1500),
                busy_timeout: Duration::from_millis(250),
            }
        );
        assert_eq!(o.events.fast_buffer, 64);
        assert_eq!(o.telemetry.health_probe_timeout, Duration::from_millis(300));
        assert_eq!(o.recovery.maintenance_batch, 50);
        assert_eq!(loaded.config.log_buffer, 500);
        let too_many = load_with("development", None, &vars(&[("TASKER_DATABASE__SQLITE_READERS", "65")]));
        let p = problems(too_many.expect_err("65 readers"));
        assert!(p[0].to_string().contains("database.sqlite_readers"), "{}", p[0]);
    }

    #[test]
    fn layers_merge_in_order_with_origins() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        std::fs::create_dir_all(root.join("base")).expect("base");
        std::fs::create_dir_all(root.join("environments/test")).expect("env");
        std::fs::write(
            root.join("base/common.toml"),
            "[database]\nmax_connections = 20\nurl = \"${DB_URL:-sqlite://./x.db}\"\n[step_types]\nmax_batch_workers = 50\n",
        )
        .expect("write");
        std::fs::write(
            root.join("base/worker.toml"),
            "[worker]\nconcurrency = 4\nqueues = [\"a\"]\n",
        )
        .expect("write");
        std::fs::write(
            root.join("environments/test/common.toml"),
            "[database]\nmax_connections = 30\n",
        )
        .expect("write");
        let loaded = load_with(
            "test",
            Some(root),
            &vars(&[
                ("TASKER_WORKER__CONCURRENCY", "16"),
                ("DB_URL", "postgres://u:secret@h/db"),
            ]),
        )
        .expect("load");
        assert_eq!(loaded.config.max_connections, 30);
        assert_eq!(loaded.config.worker_concurrency, 16);
        assert_eq!(loaded.config.step_types.max_batch_workers, 50);
        assert_eq!(loaded.config.database_url.as_deref(), Some("postgres://u:secret@h/db"));
        assert_eq!(loaded.config.worker_config(&["b".into()]).queues, ["a", "b"]);
        let origin = |k: &str| loaded.values[k].1.clone();
        assert_eq!(
            origin("database.max_connections"),
            Origin::File {
                path: root.join("environments/test/common.toml")
            }
        );
        assert_eq!(
            origin("worker.concurrency"),
            Origin::Env {
                var: "TASKER_WORKER__CONCURRENCY".into()
            }
        );
        assert_eq!(origin("database.listen"), Origin::Default);
        let shown = loaded.shown();
        let url = shown.iter().find(|s| s.key == "database.url").expect("url");
        assert!(!url.value.to_string().contains("secret"), "{}", url.value);
    }

    #[test]
    fn mistakes_name_the_file_key_value_and_what_is_allowed() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        std::fs::create_dir_all(root.join("base")).expect("base");
        std::fs::write(
            root.join("base/common.toml"),
            "[database]\nmax_conections = 3\nlisten = \"yes\"\n[worker]\nconcurrency = 2\n[databse]\nurl = \"x\"\n",
        )
        .expect("write");
        std::fs::write(
            root.join("base/worker.toml"),
            "[worker]\nconcurrency = 0\ndispatch_mode = \"hybird\"\nlease_ms = \"${NOPE}\"\n",
        )
        .expect("write");
        std::fs::write(root.join("base/extra.toml"), "").expect("write");
        let err = load_with(
            "development",
            Some(root),
            &vars(&[("TASKER_WORKER__CONCURENCY", "3"), ("TASKER_DATABASE__LISTEN", "maybe")]),
        )
        .expect_err("refused");
        let p = problems(err);
        let find = |key: &str, text: &str| {
            assert!(
                p.iter().any(|x| x.key == key && x.message.contains(text)),
                "{key} / {text}: {p:#?}"
            )
        };
        find("database.max_conections", "did you mean 'max_connections'");
        find("database.listen", "expected true or false");
        find("worker", "belongs in worker.toml");
        find("databse", "did you mean 'database'");
        find("worker.concurrency", "0 is out of range: allowed 1 to 10000");
        find("worker.dispatch_mode", "did you mean 'hybrid'");
        find("worker.lease_ms", "NOPE is not set");
        find("worker.concurency", "did you mean 'concurrency'");
        find("-", "unknown configuration file");
        assert!(p.iter().any(|x| x.source == "$TASKER_DATABASE__LISTEN"), "{p:#?}");
        assert!(p.iter().any(|x| x.source.ends_with("common.toml")));
    }

    #[test]
    fn the_starter_tree_loads_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let written = write_starter_tree(dir.path()).expect("init");
        assert!(written.len() >= 3);
        let loaded = load_with("production", Some(dir.path()), &vars(&[])).expect("loads");
        assert_eq!(
            loaded.config,
            load_with("development", None, &vars(&[])).expect("defaults").config
        );
        assert!(write_starter_tree(dir.path()).is_err(), "never overwrites");
    }
}
