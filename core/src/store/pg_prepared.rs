//! Statements the PostgreSQL store prepares by name on its connections (`PREPARE`), for the
//! hot path's statements that go out through the simple protocol.
//!
//! A transaction's first statement travels with its `BEGIN` in one round trip, and a task's
//! detail is two statements in one; both need the simple protocol, which takes no parameters,
//! so their values are inlined as literals. PostgreSQL then plans such a statement anew on every
//! call: 0.29 ms for `lock_steps`, 0.47 ms for the detail and 0.64 ms for a claim's read
//! (pg_stat_statements with `track_planning`, W1 on this machine), more than the round trip
//! saved. `EXECUTE name(…)` of a statement prepared once per connection runs its cached plan.
//!
//! A statement's name is derived from its text, so a name that exists on a connection always
//! holds the same statement. The fixed statements are prepared when the pool opens a
//! connection (best effort: before the first migration the tables are missing); any statement
//! is prepared when an `EXECUTE` finds it missing. If that fails (a pooler in transaction mode
//! hands out other server connections), the store stops using names and inlines the
//! statements as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use sqlx::{Executor, PgConnection};

use crate::error::TaskerError;

/// A store's use of names: whether it runs statements by name at all, and the statements it
/// builds per queue (a claim's reads), each built once.
#[derive(Debug)]
pub(super) struct Names {
    enabled: AtomicBool,
    per_queue: Mutex<HashMap<(&'static str, String), Arc<Prepared>>>,
}

impl Default for Names {
    fn default() -> Self {
        Self {
            enabled: AtomicBool::new(true),
            per_queue: Mutex::default(),
        }
    }
}

impl Names {
    /// Whether statements go out by name (`EXECUTE`) rather than inlined.
    pub(super) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The statement of kind `kind` for `queue`, built by `sql` the first time it is asked for.
    pub(super) fn for_queue(
        &self,
        kind: &'static str,
        queue: &str,
        params: &'static str,
        sql: impl FnOnce() -> String,
    ) -> Arc<Prepared> {
        let mut built = self.per_queue.lock().unwrap_or_else(|p| p.into_inner());
        built
            .entry((kind, queue.to_owned()))
            .or_insert_with(|| Arc::new(Prepared::new(params, sql())))
            .clone()
    }

    /// After an `EXECUTE` of one of `statements` found it missing on `conn`, `misses` times
    /// before in the same call. The first miss prepares them there (a connection opened before
    /// the first migration has none); a second one means names do not stay on the connection
    /// (a pooler in transaction mode), and so does a failure to prepare: from then on the store
    /// inlines every statement. Either way the caller runs its statement again.
    pub(super) async fn recover(&self, conn: &mut PgConnection, statements: &[&Prepared], misses: usize) {
        let why = if misses > 0 {
            "prepared statements do not stay on this PostgreSQL connection".to_owned()
        } else {
            match prepare_all(conn, statements).await {
                Ok(()) => return,
                Err(e) => format!("cannot prepare statements on this PostgreSQL connection: {e}"),
            }
        };
        tracing::info!(reason = %why, "running hot-path statements inlined from now on");
        self.enabled.store(false, Ordering::Relaxed);
    }
}

/// A statement prepared by name, whose parameters `$1`, `$2`… are given as SQL literals.
#[derive(Debug)]
pub(super) struct Prepared {
    name: String,
    /// The parameters' types, for `PREPARE`.
    params: &'static str,
    sql: String,
}

impl Prepared {
    /// `params`: the parameters' types, comma-separated, in order.
    pub(super) fn new(params: &'static str, sql: String) -> Self {
        let digest = Sha256::digest(format!("{params}\n{sql}").as_bytes());
        let name = format!("tasker_{}", hex_prefix(&digest));
        Self { name, params, sql }
    }

    /// The statement's text, `$1`… its parameters (for the extended protocol).
    pub(super) fn sql(&self) -> &str {
        &self.sql
    }

    /// The statement with its parameters bound to `literals` by name: `EXECUTE name(…)`.
    pub(super) fn execute(&self, literals: &[&str]) -> String {
        format!("EXECUTE {}({})", self.name, literals.join(", "))
    }

    /// The statement with `literals` written in place of its parameters (planned on each call).
    pub(super) fn inline(&self, literals: &[&str]) -> String {
        // From the last, so that `$1` never matches the start of `$10`.
        let mut sql = self.sql.clone();
        for (i, literal) in literals.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", i + 1), literal);
        }
        sql
    }

    fn prepare(&self) -> String {
        format!("PREPARE {} ({}) AS {}", self.name, self.params, self.sql)
    }
}

/// 16 bytes of a digest as hex: names stay well under PostgreSQL's 63-character limit.
fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Prepares every statement of `statements` that `conn` lacks. Returns the first failure.
pub(super) async fn prepare_all(conn: &mut PgConnection, statements: &[&Prepared]) -> Result<(), sqlx::Error> {
    for s in statements {
        match conn.execute(s.prepare().as_str()).await {
            // Already there: the name is derived from the text, so it is this statement.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P05") => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// Whether `e` says a prepared statement does not exist on the connection (SQLSTATE 26000).
pub(super) fn is_missing(e: &TaskerError) -> bool {
    matches!(e, TaskerError::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("26000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlining_replaces_every_parameter_and_names_follow_the_text() {
        let p = Prepared::new("int, text", "SELECT $1 + 1, $2, $1".into());
        assert_eq!(p.inline(&["7", "'x'"]), "SELECT 7 + 1, 'x', 7");
        assert_eq!(p.execute(&["7", "'x'"]), format!("EXECUTE {}(7, 'x')", p.name));
        let same = Prepared::new("int, text", "SELECT $1 + 1, $2, $1".into());
        let other = Prepared::new("int, text", "SELECT $1 + 2, $2, $1".into());
        assert_eq!(p.name, same.name);
        assert_ne!(p.name, other.name);
        assert!(p.name.len() < 63);
    }
}
