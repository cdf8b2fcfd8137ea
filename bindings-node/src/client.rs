//! `NativeClient`: the engine's client API (`tasker_core::Tasker`).

use std::time::Duration;

use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use serde::Deserialize;
use serde_json::Value;
use tasker_core::state::TaskState;
use tasker_core::{TaskFilter, TaskRequest, Tasker, TaskerOptions};
use uuid::Uuid;

use crate::error::{from_core, invalid_argument};
use crate::promise::{spawn, to_json};

/// A connection to the engine's database.
#[napi]
pub struct NativeClient {
    pub(crate) tasker: Tasker,
}

/// `createTask` arguments, as the TypeScript layer sends them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTaskArgs {
    namespace: String,
    name: String,
    version: Option<String>,
    #[serde(default)]
    context: Value,
    initiator: Option<String>,
    source_system: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    priority: i32,
    idempotency_key: Option<String>,
    #[serde(default)]
    strict_identity: bool,
    traceparent: Option<String>,
}

/// `listTasks` filter.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListTasksArgs {
    namespace: Option<String>,
    name: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

fn parse<'a, T: Deserialize<'a>>(what: &str, json: &'a str) -> napi::Result<T> {
    serde_json::from_str(json).map_err(|e| invalid_argument(what, e))
}

pub(crate) fn parse_uuid(what: &str, s: &str) -> napi::Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| invalid_argument(what, format!("'{s}' is not a UUID ({e})")))
}

#[napi]
impl NativeClient {
    /// Connects (running migrations) with the options the configuration gives
    /// (`tasker_core::config::connect_options`, as the CLI does): built-in defaults < config
    /// files < `TASKER_<SECTION>__<KEY>` variables < the explicit arguments here. `databaseUrl`
    /// resolves like the CLI's when absent.
    ///
    /// The configuration is read here, synchronously: an invalid one throws (`config_invalid`)
    /// before any promise exists, and the environment read is the one at the time of the call.
    #[napi(ts_return_type = "Promise<NativeClient>")]
    pub fn connect<'e>(
        env: &'e Env,
        database_url: Option<String>,
        max_connections: Option<u32>,
    ) -> napi::Result<Object<'e>> {
        let mut options: TaskerOptions =
            tasker_core::config::connect_options(database_url.as_deref()).map_err(from_core)?;
        if let Some(n) = max_connections {
            options.max_connections = n;
        }
        spawn(env, async move {
            // rustc cannot prove `Tasker::connect_with`'s future `Send` (the sqlx pool setup
            // trips rust-lang/rust#102211), so it cannot be spawned; drive it on a blocking
            // thread of the same runtime instead. Connecting happens once per client.
            let connecting = tokio::task::spawn_blocking(move || {
                tokio::runtime::Handle::current().block_on(Tasker::connect_with(options))
            });
            let tasker = connecting
                .await
                .map_err(|e| crate::error::internal(format!("connecting failed: {e}")))?;
            let tasker = tasker.map_err(from_core)?;
            Ok(NativeClient { tasker })
        })
    }

    /// The database, without credentials.
    #[napi(getter)]
    pub fn database(&self) -> String {
        self.tasker.database().to_owned()
    }

    /// `"sqlite"` or `"postgres"`.
    #[napi(getter)]
    pub fn backend(&self) -> String {
        self.tasker.backend().as_str().to_owned()
    }

    /// Every registered template version; resolves to a JSON list of template infos.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn list_templates<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.list_templates().await.map_err(from_core)?)
        })
    }

    /// One registered template version (the highest without `version`); resolves to JSON.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn get_template<'e>(
        &self,
        env: &'e Env,
        namespace: String,
        name: String,
        version: Option<String>,
    ) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(env, async move {
            let info = tasker
                .get_template(&namespace, &name, version.as_deref())
                .await
                .map_err(from_core)?;
            to_json(&info)
        })
    }

    /// Registers every template in a file or directory; resolves to JSON of what was registered.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn register_templates<'e>(&self, env: &'e Env, path: String) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(env, async move {
            let registered = tasker.register_templates(&path).await.map_err(from_core)?;
            to_json(&registered)
        })
    }

    /// Creates a task from JSON arguments; resolves to `{"task": TaskSummary, "created": bool}`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn create_task<'e>(&self, env: &'e Env, args_json: String) -> napi::Result<Object<'e>> {
        let args: CreateTaskArgs = parse("createTask", &args_json)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            let request = TaskRequest {
                namespace: args.namespace,
                name: args.name,
                version: args.version,
                context: args.context,
                initiator: args.initiator,
                source_system: args.source_system,
                reason: args.reason,
                tags: args.tags,
                priority: args.priority,
                idempotency_key: args.idempotency_key,
                strict_identity: args.strict_identity,
                traceparent: args.traceparent,
            };
            let created = tasker.create_task(request).await.map_err(from_core)?;
            to_json(&created)
        })
    }

    /// Resolves to JSON of the task's `TaskDetail` (task, steps, transitions).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn get_task<'e>(&self, env: &'e Env, task_uuid: String) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("taskUuid", &task_uuid)?;
        let tasker = self.tasker.clone();
        spawn(
            env,
            async move { to_json(&tasker.get_task(uuid).await.map_err(from_core)?) },
        )
    }

    /// Resolves to JSON of `TaskSummary[]`, newest first.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn list_tasks<'e>(&self, env: &'e Env, filter_json: String) -> napi::Result<Object<'e>> {
        let args: ListTasksArgs = parse("listTasks", &filter_json)?;
        let state = match args.state.as_deref() {
            None => None,
            Some(s) => Some(
                s.parse::<TaskState>()
                    .map_err(|e| invalid_argument("state", e.to_string()))?,
            ),
        };
        if let Some(limit) = args.limit {
            if limit < 1 {
                return Err(invalid_argument("limit", format!("must be at least 1, got {limit}")));
            }
        }
        let filter = TaskFilter {
            namespace: args.namespace,
            name: args.name,
            state,
            limit: args.limit,
            ..TaskFilter::default()
        };
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.list_tasks(&filter).await.map_err(from_core)?)
        })
    }

    /// Cancels a task; resolves to JSON of its `TaskSummary`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn cancel_task<'e>(&self, env: &'e Env, task_uuid: String) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("taskUuid", &task_uuid)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.cancel_task(uuid).await.map_err(from_core)?)
        })
    }

    /// Waits for a terminal state; resolves to JSON of the `TaskDetail`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn wait_for_task<'e>(&self, env: &'e Env, task_uuid: String, timeout_ms: f64) -> napi::Result<Object<'e>> {
        let uuid = parse_uuid("taskUuid", &task_uuid)?;
        let timeout = millis("timeoutMs", timeout_ms)?;
        let tasker = self.tasker.clone();
        spawn(env, async move {
            to_json(&tasker.wait_for_task(uuid, timeout).await.map_err(from_core)?)
        })
    }

    /// The engine's metrics in the Prometheus text format.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn prometheus_metrics<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(env, async move { Ok(tasker.prometheus_metrics().await) })
    }

    /// Resolves to JSON of the engine's metrics snapshot.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn metrics<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(env, async move { to_json(&tasker.metrics().await) })
    }

    /// Resolves to JSON of the health report (liveness, readiness, checks).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn health<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(env, async move { to_json(&tasker.health(&[]).await) })
    }

    /// Closes the connection pool.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let tasker = self.tasker.clone();
        spawn(env, async move {
            tasker.close().await;
            Ok(())
        })
    }
}

/// A non-negative, finite number of milliseconds.
pub(crate) fn millis(what: &str, ms: f64) -> napi::Result<Duration> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(invalid_argument(
            what,
            format!("must be a non-negative number of milliseconds, got {ms}"),
        ));
    }
    Ok(Duration::from_secs_f64(ms.min(1e12) / 1000.0))
}
