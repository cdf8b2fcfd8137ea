//! The core's log records (`tasker_core::logging`), for the Ruby layer to write to
//! `TaskerCore.logger` (`lib/tasker_core/logging.rb` runs the thread that polls).

use std::time::{Duration, Instant};

use magnus::{function, prelude::*, Error, RModule, Ruby, Value};
use tasker_core::logging::{self, LogRecord};

use crate::error::{invalid_argument, raise};
use crate::gvl;

/// The longest a poll waits in the channel before looking whether Ruby wants the thread back
/// (`Thread#kill`, interpreter exit): the delay such an interrupt can see.
const SLICE: Duration = Duration::from_millis(50);

/// `Native.forward_logs`: starts forwarding the core's records at the configured `logging.level`
/// (`TASKER_LOG` wins), once per process; later calls change nothing. Returns the filter in force.
/// Raises `TaskerCore::ConfigurationError` when the configuration does not load and
/// `TaskerCore::InvalidArgumentError` when the level is no filter or the process already has
/// another `tracing` subscriber.
fn forward_logs(ruby: &Ruby) -> Result<String, Error> {
    logging::forward_configured()
        .map(|f| f.filter().to_owned())
        .map_err(|e| raise(ruby, e))
}

/// `Native.poll_log(timeout_ms)`: the next record as a Hash (`"level"`, `"target"`, `"message"`,
/// `"fields"` (String => String), `"timestamp"` (a UTC Time)), or `nil` when none came within
/// `timeout_ms`, forwarding was never started, or an interrupt was handled without raising.
/// Waits with the GVL released.
fn poll_log(ruby: &Ruby, timeout_ms: i64) -> Result<Value, Error> {
    let timeout = u64::try_from(timeout_ms).map(Duration::from_millis).map_err(|_| {
        invalid_argument(
            ruby,
            format!("timeout_ms must be a non-negative Integer, got {timeout_ms}"),
        )
    })?;
    let Some(forwarder) = logging::installed() else {
        return Ok(ruby.qnil().as_value());
    };
    // Fast path: a record already waiting is taken without giving up the GVL.
    let record = match forwarder.poll(Duration::ZERO) {
        Some(r) => Some(r),
        None if timeout.is_zero() => None,
        None => {
            let deadline = Instant::now() + timeout;
            gvl::blocking(
                ruby,
                |cancel| loop {
                    if cancel.is_cancelled() {
                        return None;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Some(None);
                    }
                    // A record taken here is returned even if an interrupt came meanwhile.
                    if let Some(r) = forwarder.poll(left.min(SLICE)) {
                        return Some(Some(r));
                    }
                },
                // A trap handler ran without raising: let the Ruby loop go round.
                || Some(None),
            )?
        }
    };
    match record {
        Some(r) => record_hash(ruby, r),
        None => Ok(ruby.qnil().as_value()),
    }
}

fn record_hash(ruby: &Ruby, r: LogRecord) -> Result<Value, Error> {
    let fields = ruby.hash_new();
    for (k, v) in &r.fields {
        fields.aset(k.as_str(), v.as_str())?;
    }
    let nanos = i64::from(r.timestamp.timestamp_subsec_nanos());
    let time = ruby.time_nano_new(r.timestamp.timestamp(), nanos)?;
    // `Time#utc` converts in place and returns the receiver: the record's instant, shown in UTC.
    let time: Value = time.funcall("utc", ())?;
    let h = ruby.hash_new();
    h.aset("level", r.level.as_str())?;
    h.aset("target", r.target)?;
    h.aset("message", r.message)?;
    h.aset("fields", fields)?;
    h.aset("timestamp", time)?;
    Ok(h.as_value())
}

pub fn define(native: RModule) -> Result<(), Error> {
    native.define_singleton_method("forward_logs", function!(forward_logs, 0))?;
    native.define_singleton_method("poll_log", function!(poll_log, 1))?;
    Ok(())
}
