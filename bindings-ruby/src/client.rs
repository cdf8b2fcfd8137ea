//! `TaskerCore::Native::Client`: a `tasker_core::Tasker` handle. Keyword arguments, defaults and
//! result objects live in the Ruby layer (`lib/tasker_core/client.rb`).

use std::time::Duration;

use magnus::prelude::*;
use magnus::{Error, RArray, Ruby, Value};
use tasker_core::state::TaskState;
use tasker_core::{config, TaskFilter, TaskRequest, Tasker};
use uuid::Uuid;

use crate::convert;
use crate::error::{self, raise};
use crate::gvl;

#[magnus::wrap(class = "TaskerCore::Native::Client", free_immediately, size)]
pub struct Client {
    pub(crate) tasker: Tasker,
}

pub(crate) fn parse_uuid(ruby: &Ruby, what: &str, s: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(s).map_err(|_| error::invalid_argument(ruby, format!("{what} '{s}' is not a UUID")))
}

pub(crate) fn duration(ruby: &Ruby, what: &str, secs: f64) -> Result<Duration, Error> {
    if secs.is_finite() && secs >= 0.0 {
        Ok(Duration::from_secs_f64(secs.min(1e9)))
    } else {
        Err(error::invalid_argument(
            ruby,
            format!("{what} must be a non-negative number of seconds, got {secs}"),
        ))
    }
}

pub(crate) fn ser<T: serde::Serialize>(ruby: &Ruby, value: &T) -> Result<Value, Error> {
    convert::serialize(ruby, value).map_err(|e| Error::new(ruby.exception_runtime_error(), e.to_string()))
}

/// Waits for a core call without the GVL and maps its error.
pub(crate) fn wait<T>(
    ruby: &Ruby,
    future: impl std::future::Future<Output = tasker_core::Result<T>>,
) -> Result<T, Error> {
    gvl::block_on(ruby, future, || None)?.map_err(|e| raise(ruby, e))
}

impl Client {
    /// `Client.connect(database_url_or_nil, max_connections_or_nil)`: the options the CLI would
    /// use (the configuration tree under `TASKER_CONFIG_ROOT` / `./config/tasker`, then
    /// `TASKER_<SECTION>__<KEY>` variables), with the arguments given here winning over them.
    fn connect(ruby: &Ruby, database_url: Option<String>, max_connections: Option<u32>) -> Result<Self, Error> {
        if max_connections == Some(0) {
            return Err(error::invalid_argument(ruby, "max_connections must be at least 1"));
        }
        let mut options = config::connect_options(database_url.as_deref()).map_err(|e| raise(ruby, e))?;
        if let Some(n) = max_connections {
            options.max_connections = n;
        }
        let tasker = gvl::block_on(ruby, Tasker::connect_with(options), || None)?.map_err(|e| raise(ruby, e))?;
        Ok(Self { tasker })
    }

    fn database(&self) -> String {
        self.tasker.database().to_owned()
    }

    fn backend(&self) -> &'static str {
        self.tasker.backend().as_str()
    }

    fn register_templates(ruby: &Ruby, rb_self: &Self, path: String) -> Result<RArray, Error> {
        let registered =
            gvl::block_on(ruby, rb_self.tasker.register_templates(&path), || None)?.map_err(|e| raise(ruby, e))?;
        let out = ruby.ary_new_capa(registered.len());
        for t in registered {
            let h = ruby.hash_new();
            h.aset("namespace", t.namespace)?;
            h.aset("name", t.name)?;
            h.aset("version", t.version)?;
            h.aset("id", t.id)?;
            h.aset("queues", t.queues)?;
            h.aset("warnings", t.warnings)?;
            out.push(h)?;
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_task(
        ruby: &Ruby,
        rb_self: &Self,
        namespace: String,
        name: String,
        version: Option<String>,
        context: Value,
        initiator: Option<String>,
        source_system: Option<String>,
        reason: Option<String>,
        tags: Vec<String>,
        priority: i32,
        idempotency_key: Option<String>,
        strict_identity: bool,
        traceparent: Option<String>,
    ) -> Result<Value, Error> {
        let context = convert::to_json(context, "context").map_err(|e| raise(ruby, e))?;
        let request = TaskRequest {
            namespace,
            name,
            version,
            context,
            initiator,
            source_system,
            reason,
            tags,
            priority,
            idempotency_key,
            strict_identity,
            traceparent,
        };
        let created = gvl::block_on(ruby, rb_self.tasker.create_task(request), || None)?.map_err(|e| raise(ruby, e))?;
        let h = ruby.hash_new();
        h.aset("task", ser(ruby, &created.task)?)?;
        h.aset("created", created.created)?;
        Ok(h.as_value())
    }

    /// Every registered template version, as Hashes (`tasker_core::TemplateInfo`).
    fn list_templates(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        let templates = wait(ruby, rb_self.tasker.list_templates())?;
        ser(ruby, &templates)
    }

    /// One registered template version (the highest without a version), as a Hash.
    fn get_template(
        ruby: &Ruby,
        rb_self: &Self,
        namespace: String,
        name: String,
        version: Option<String>,
    ) -> Result<Value, Error> {
        let info = wait(ruby, rb_self.tasker.get_template(&namespace, &name, version.as_deref()))?;
        ser(ruby, &info)
    }

    fn get_task(ruby: &Ruby, rb_self: &Self, task_uuid: String) -> Result<Value, Error> {
        let uuid = parse_uuid(ruby, "task_uuid", &task_uuid)?;
        let detail = gvl::block_on(ruby, rb_self.tasker.get_task(uuid), || None)?.map_err(|e| raise(ruby, e))?;
        ser(ruby, &detail)
    }

    fn list_tasks(
        ruby: &Ruby,
        rb_self: &Self,
        namespace: Option<String>,
        name: Option<String>,
        state: Option<String>,
        limit: Option<i64>,
    ) -> Result<Value, Error> {
        let state = match state {
            None => None,
            Some(s) => Some(
                s.parse::<TaskState>()
                    .map_err(|e| error::invalid_argument(ruby, e.to_string()))?,
            ),
        };
        if let Some(l) = limit {
            if l < 1 {
                return Err(error::invalid_argument(
                    ruby,
                    format!("limit must be at least 1, got {l}"),
                ));
            }
        }
        let filter = TaskFilter {
            namespace,
            name,
            state,
            limit,
            ..TaskFilter::default()
        };
        let tasks = gvl::block_on(ruby, rb_self.tasker.list_tasks(&filter), || None)?.map_err(|e| raise(ruby, e))?;
        ser(ruby, &tasks)
    }

    fn cancel_task(ruby: &Ruby, rb_self: &Self, task_uuid: String) -> Result<Value, Error> {
        let uuid = parse_uuid(ruby, "task_uuid", &task_uuid)?;
        let task = gvl::block_on(ruby, rb_self.tasker.cancel_task(uuid), || None)?.map_err(|e| raise(ruby, e))?;
        ser(ruby, &task)
    }

    fn wait_for_task(ruby: &Ruby, rb_self: &Self, task_uuid: String, timeout: f64) -> Result<Value, Error> {
        let uuid = parse_uuid(ruby, "task_uuid", &task_uuid)?;
        let timeout = duration(ruby, "timeout", timeout)?;
        let detail =
            gvl::block_on(ruby, rb_self.tasker.wait_for_task(uuid, timeout), || None)?.map_err(|e| raise(ruby, e))?;
        ser(ruby, &detail)
    }

    fn prometheus_metrics(ruby: &Ruby, rb_self: &Self) -> Result<String, Error> {
        gvl::block_on(ruby, rb_self.tasker.prometheus_metrics(), || None)
    }

    fn metrics(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        let snapshot = gvl::block_on(ruby, rb_self.tasker.metrics(), || None)?;
        ser(ruby, &snapshot)
    }

    fn health(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        let report = gvl::block_on(ruby, rb_self.tasker.health(&[]), || None)?;
        ser(ruby, &report)
    }

    fn close(ruby: &Ruby, rb_self: &Self) -> Result<(), Error> {
        gvl::block_on(ruby, rb_self.tasker.close(), || None)
    }
}

pub fn define(ruby: &Ruby, native: magnus::RModule) -> Result<(), Error> {
    use magnus::{function, method};
    let class = native.define_class("Client", ruby.class_object())?;
    class.define_singleton_method("connect", function!(Client::connect, 2))?;
    class.define_method("database", method!(Client::database, 0))?;
    class.define_method("backend", method!(Client::backend, 0))?;
    class.define_method("register_templates", method!(Client::register_templates, 1))?;
    class.define_method("create_task", method!(Client::create_task, 12))?;
    class.define_method("list_templates", method!(Client::list_templates, 0))?;
    class.define_method("get_template", method!(Client::get_template, 3))?;
    class.define_method("prometheus_metrics", method!(Client::prometheus_metrics, 0))?;
    class.define_method("metrics", method!(Client::metrics, 0))?;
    class.define_method("health", method!(Client::health, 0))?;
    class.define_method("get_task", method!(Client::get_task, 1))?;
    class.define_method("list_tasks", method!(Client::list_tasks, 4))?;
    class.define_method("cancel_task", method!(Client::cancel_task, 1))?;
    class.define_method("wait_for_task", method!(Client::wait_for_task, 2))?;
    class.define_method("close", method!(Client::close, 0))?;
    crate::recovery::define(class)?;
    crate::dlq::define(class)?;
    crate::events::define(ruby, native, class)?;
    Ok(())
}
