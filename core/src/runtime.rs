//! The one tokio runtime a process uses when the caller has none (language bindings, sync
//! code). Created on first use; refuses to run in a child after `fork()`, where its threads do
//! not exist.

use std::future::Future;
use std::sync::OnceLock;

use crate::error::{Result, TaskerError};

struct Owned {
    runtime: tokio::runtime::Runtime,
    pid: u32,
}

static RUNTIME: OnceLock<std::result::Result<Owned, String>> = OnceLock::new();

/// The process-wide runtime.
pub fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    let owned = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("tasker-core")
                .enable_all()
                .build()
                .map(|runtime| Owned {
                    runtime,
                    pid: std::process::id(),
                })
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| TaskerError::InvalidArgument(format!("cannot start the tasker runtime: {e}")))?;
    if owned.pid != std::process::id() {
        return Err(TaskerError::InvalidArgument(
            "tasker was used before fork(); connect again in the child process is not possible — \
             create clients and workers after forking"
                .into(),
        ));
    }
    Ok(&owned.runtime)
}

/// Runs `future` to completion on the process-wide runtime, blocking this thread. Must not be
/// called from inside the runtime.
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    Ok(runtime()?.block_on(future))
}
