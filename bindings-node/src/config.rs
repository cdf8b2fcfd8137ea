//! `loadConfig`: the configuration this process runs with, read-only.

use napi_derive::napi;

use crate::error::from_core;
use crate::promise::to_json;

/// The values `tasker config show` prints: JSON of `[{key, value, origin}]` for every key with
/// a value, secrets redacted. Read now (files and environment), synchronously: it is a few
/// small files.
#[napi]
pub fn load_config() -> napi::Result<String> {
    let loaded = tasker_core::config::load_current().map_err(from_core)?;
    to_json(&loaded.shown())
}
