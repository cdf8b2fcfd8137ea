//! Node.js bindings for the Tasker engine (napi-rs).
//!
//! This crate only converts values and errors; everything else lives in `tasker-core`. The
//! TypeScript layer (`bindings-node/ts/`) wraps these classes into the public API.
//!
//! * Values cross as JSON strings (one `serde_json` serialization each way, `JSON.parse` /
//!   `JSON.stringify` on the JavaScript side): V8's JSON codec is faster than building objects
//!   property by property through N-API.
//! * Every call that touches the database or waits runs on the core's tokio runtime and settles
//!   a JavaScript promise from there ([`promise::spawn`]), so the event loop never blocks.
//! * Errors are mapped in one place, [`error`].

// napi-derive registers exported functions and constants with the addon only outside `cfg(test)`:
// in the test build (`cargo clippy --all-targets`) nothing calls them, and they would all be
// reported as dead code.
#![cfg_attr(test, allow(dead_code))]

mod client;
mod config;
mod error;
mod events;
mod logging;
mod promise;
mod recovery;
mod worker;

pub use client::NativeClient;
pub use events::{NativeFastSubscription, NativeSubscription};
pub use worker::NativeWorker;
