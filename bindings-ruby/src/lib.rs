//! Native part of the `tasker-core-rb` gem: a thin magnus layer over `tasker-core`.
//!
//! Only conversion and error mapping live here; the Ruby API (keyword arguments, handler
//! classes, threads, Rails) is in `lib/tasker_core/`. Modules: [`client`] (the `Tasker` handle),
//! [`recovery`] (operator actions and step reads) and [`dlq`] (the dead-letter queue, staleness,
//! workers) on the same class, [`events`] (the catalog, subscriber group members, fast readers,
//! the event operator calls), [`worker`] (poll/complete), [`logs`] (the core's log records),
//! [`convert`] (JSON <-> Ruby), [`error`] (the one error mapping), [`gvl`] (waiting without the
//! GVL).

mod client;
mod convert;
mod dlq;
mod error;
mod events;
mod gvl;
mod logs;
mod recovery;
mod worker;

use magnus::{function, prelude::*, scan_args::scan_args, Error, Ruby, Value};

/// `TaskerCore::Native.json_roundtrip(obj, root = "result")`: `obj` as the engine would store it
/// (String keys, Symbols as Strings), or `TaskerCore::SerializationError` with a path starting at
/// `root`. Used by the testing helpers so that handler results (and checkpoints) are checked
/// exactly as a worker would check them.
fn json_roundtrip(ruby: &Ruby, args: &[Value]) -> Result<Value, Error> {
    let args = scan_args::<(Value,), (Option<String>,), (), (), (), ()>(args)?;
    let (value,) = args.required;
    let (root,) = args.optional;
    let json = convert::to_json(value, root.as_deref().unwrap_or("result")).map_err(|e| error::raise(ruby, e))?;
    Ok(convert::to_ruby(ruby, &json))
}

/// `TaskerCore::Native.config`: the configuration this process would connect and start workers
/// with, as `tasker config show --json` prints it: `[{"key", "value", "origin" => {"kind", ...}}]`
/// (secrets redacted), or `TaskerCore::ConfigurationError`.
fn config(ruby: &Ruby) -> Result<Value, Error> {
    let loaded = tasker_core::config::load_current().map_err(|e| error::raise(ruby, e))?;
    client::ser(ruby, &loaded.shown())
}

/// `TaskerCore::Native.block_holding_gvl(seconds)`: test support only. Blocks the calling thread
/// WITHOUT releasing the GVL, the control case for the specs that prove `poll` releases it.
fn block_holding_gvl(seconds: f64) {
    if seconds.is_finite() && seconds > 0.0 {
        std::thread::sleep(std::time::Duration::from_secs_f64(seconds.min(60.0)));
    }
}

#[magnus::init(name = "tasker_core_native")]
fn init(ruby: &Ruby) -> Result<(), Error> {
    let root = ruby.define_module("TaskerCore")?;
    let native = root.define_module("Native")?;
    native.define_singleton_method("json_roundtrip", function!(json_roundtrip, -1))?;
    native.define_singleton_method("config", function!(config, 0))?;
    native.define_singleton_method("block_holding_gvl", function!(block_holding_gvl, 1))?;
    native.const_set("CORE_VERSION", env!("CARGO_PKG_VERSION"))?;
    client::define(ruby, native)?;
    worker::define(ruby, native)?;
    logs::define(native)?;
    Ok(())
}
