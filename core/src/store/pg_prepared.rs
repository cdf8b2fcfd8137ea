//! Statements the PostgreSQL store prepares by name on its connections (`PREPARE`), for the
//! hot path's statements that go out through the simple protocol.
//!
//! A transaction's first statement travels with its `BEGIN` in one round trip, and a task's
//! detail is two statements in one; both need the simple protocol, which takes no parameters,
//! so their values are inlined as literals. PostgreSQL then plans such a statement anew on every
//! call: 0.3 ms for `lock_steps` and 0.35 ms for the detail (pg_stat_statements with
//! `track_planning`, W1 on this machine), more than the round trip saved. `EXECUTE name(…)` of a
//! statement prepared once per connection runs its cached plan instead.
//!
//! Each connection prepares them when the pool opens it (best effort: on a database not yet
//! migrated the tables are missing), and again when an `EXECUTE` finds one missing. If a
//! connection still has none after that (a pooler in transaction mode hands out other server
//! connections), the store stops using them and inlines the statements as before.

use std::sync::LazyLock;

use sqlx::{Executor, PgConnection};

use crate::error::TaskerError;

/// A statement prepared by name, whose one parameter `$1` is given as a SQL literal.
pub(super) struct Prepared {
    name: &'static str,
    /// The parameter's type, for `PREPARE`.
    param: &'static str,
    sql: LazyLock<String>,
}

impl Prepared {
    pub(super) const fn new(name: &'static str, param: &'static str, sql: fn() -> String) -> Self {
        Self {
            name,
            param,
            sql: LazyLock::new(sql),
        }
    }

    /// The statement with its parameter bound to `literal` by name: `EXECUTE name(literal)`.
    pub(super) fn execute(&self, literal: &str) -> String {
        format!("EXECUTE {}({literal})", self.name)
    }

    /// The statement with `literal` written in place of its parameter (planned on each call).
    pub(super) fn inline(&self, literal: &str) -> String {
        self.sql.replace("$1", literal)
    }

    fn prepare(&self) -> String {
        format!("PREPARE {} ({}) AS {}", self.name, self.param, *self.sql)
    }
}

/// Prepares every statement of `statements` on `conn` that it lacks. Returns the first failure.
pub(super) async fn prepare_all(conn: &mut PgConnection, statements: &[&Prepared]) -> Result<(), sqlx::Error> {
    for s in statements {
        match conn.execute(s.prepare().as_str()).await {
            // Already there (an earlier attempt prepared some of them): the same text.
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
