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

use sha2::{Digest, Sha256};
use sqlx::{Executor, PgConnection};

use crate::error::TaskerError;

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
