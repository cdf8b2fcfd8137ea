//! `forwardLogs` / `drainLogs`: the core's `tracing` records (`tasker_core::logging`), for the
//! TypeScript layer to hand to the application's logger (`ts/logging.ts`).
//!
//! Nothing here blocks: the TypeScript layer drains from a timer on the event loop's thread,
//! where `LogForwarder::poll` (which waits) must never run.

use napi_derive::napi;

use crate::error::from_core;
use crate::promise::to_json;

/// Starts forwarding the core's log records at the configured `logging.level` (`TASKER_LOG`
/// wins): once per process, later calls return at once. Returns the filter in force. Throws
/// when the level is not a valid filter or the process already has a `tracing` subscriber.
#[napi]
pub fn forward_logs() -> napi::Result<String> {
    let forwarder = tasker_core::logging::forward_configured().map_err(from_core)?;
    Ok(forwarder.filter().to_owned())
}

/// JSON of at most `max` records waiting now (`[{level, target, message, fields, timestamp}]`),
/// without blocking; `[]` before `forwardLogs` was called. Reads the installed forwarder only:
/// a drain every 100 ms must never read the configuration files.
#[napi]
pub fn drain_logs(max: u32) -> napi::Result<String> {
    match tasker_core::logging::installed() {
        // `u32` always fits a `usize` on the 32- and 64-bit targets Node runs on.
        Some(forwarder) => to_json(&forwarder.drain(usize::try_from(max).unwrap_or(usize::MAX))),
        None => Ok("[]".to_owned()),
    }
}
