//! PostgreSQL housekeeping around `--history`, through `psql` (the engine has no API for it, and
//! the CLI no SQL connection of its own).
//!
//! A database filled with history in a minute or two has never been analyzed unless autovacuum
//! got to it: the planner then has no statistics, and updated rows leave dead tuples behind. So
//! the report says whether the server runs autovacuum, and `--vacuum` runs `VACUUM ANALYZE`
//! after the fill, as autovacuum would in time.

use std::time::Instant;

use tasker_core::TaskerError;
use tokio::process::Command;

async fn psql(url: &str, sql: &str) -> Result<String, TaskerError> {
    let output = Command::new("psql")
        .args([url, "-X", "-Atqc", sql])
        .output()
        .await
        .map_err(|e| TaskerError::InvalidArgument(format!("--vacuum needs psql on PATH ({e})")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(TaskerError::InvalidArgument(format!(
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The server's `autovacuum` setting (`on`/`off`), when psql can tell.
pub async fn autovacuum(url: &str) -> Option<String> {
    psql(url, "SHOW autovacuum").await.ok()
}

/// `VACUUM ANALYZE` of the whole database; returns the seconds it took.
pub async fn vacuum_analyze(url: &str) -> Result<f64, TaskerError> {
    let start = Instant::now();
    psql(url, "VACUUM ANALYZE").await?;
    Ok(start.elapsed().as_secs_f64())
}
