//! Hot connections for the PostgreSQL store.
//!
//! sqlx's pool checks every connection with a round trip when it is taken (`test_before_acquire`)
//! and again, unconditionally, when it is given back. On the hot path that doubled the
//! requests of a short transaction. The store therefore keeps the connections it just used in
//! a small LIFO list of its own and hands them out again without a check: a connection used a
//! moment ago is as good as a checked one. One idle for longer than [`TRUST_IDLE`] goes back
//! through the pool, which checks it.
//!
//! Transactions begin lazily: `BEGIN` goes out in the same round trip as the transaction's
//! first statement (see `PgTx` in `postgres.rs`), and a transaction that never ran one ends
//! without a round trip at all.
//!
//! A leased connection is in one of three conditions when it is dropped:
//! * **clean** (its work finished): it joins the idle list (or the pool, when the list is full);
//! * **in a transaction** (a `PgTx` dropped before commit or rollback, e.g. on an error): a
//!   `ROLLBACK` is sent from a spawned task, and the connection is kept once it succeeds;
//! * **unknown** (a statement failed or was cancelled half-way): it goes back to the pool, whose
//!   check on return drains or closes it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Executor, PgConnection, PgPool, Postgres};

/// What a read run by [`HotPool::read`] returns.
pub(super) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A connection idle for longer than this is checked by the pool before it is used again.
const TRUST_IDLE: Duration = Duration::from_secs(1);

/// The store's pool and the idle list in front of it.
#[derive(Debug)]
pub(super) struct HotPool {
    pool: PgPool,
    idle: Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
    /// Idle connections kept at most; the rest of the pool stays available to everyone else.
    keep: usize,
    /// Set when the store closes: from then on nothing is kept (the pool's close waits for
    /// every connection to come back).
    closed: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Clean,
    InTransaction,
    Unknown,
}

/// A connection taken from a [`HotPool`]; dereferences to the connection.
pub(super) struct Leased {
    conn: Option<PoolConnection<Postgres>>,
    home: Arc<HotPool>,
    condition: Condition,
    /// Whether it came from the idle list unchecked (see [`HotPool::begin`]).
    reused: bool,
}

impl HotPool {
    /// Connections kept idle here (the pool counts them as in use).
    pub(super) fn kept(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
    }

    pub(super) fn new(pool: PgPool, max_connections: u32) -> Arc<Self> {
        // Half the pool at most, so that idle connections kept here never starve the listener
        // or a reader that goes to the pool directly.
        let keep = usize::try_from(max_connections / 2).unwrap_or(1).max(1);
        Arc::new(Self {
            pool,
            idle: Mutex::new(Vec::new()),
            keep,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A connection: the most recently used idle one, else one from the pool (checked).
    pub(super) async fn lease(self: &Arc<Self>) -> sqlx::Result<Leased> {
        let reused = self.take_idle();
        let reused_some = reused.is_some();
        let conn = match reused {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(Leased {
            conn: Some(conn),
            home: self.clone(),
            condition: Condition::Unknown,
            reused: reused_some,
        })
    }

    /// Runs a read on a leased connection. A reused connection may have died while idle (the
    /// server restarted, or terminated it): a transient failure on one empties the idle list
    /// and the read runs once more, on a connection the pool checked.
    pub(super) async fn read<T, F>(self: &Arc<Self>, mut run: F) -> crate::error::Result<T>
    where
        F: for<'c> FnMut(&'c mut PgConnection) -> BoxFuture<'c, crate::error::Result<T>>,
    {
        let mut leased = self.lease().await?;
        match run(&mut leased).await {
            Ok(value) => {
                leased.release();
                Ok(value)
            }
            Err(e) if leased.reused && e.is_transient() => {
                drop(leased);
                self.clear_idle();
                let mut fresh = Leased {
                    conn: Some(self.pool.acquire().await?),
                    home: self.clone(),
                    condition: Condition::Unknown,
                    reused: false,
                };
                let value = run(&mut fresh).await?;
                fresh.release();
                Ok(value)
            }
            Err(e) => Err(e),
        }
    }

    fn take_idle(&self) -> Option<PoolConnection<Postgres>> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() <= TRUST_IDLE {
                return Some(conn);
            }
            // Stale ones go back to the pool (dropping returns them), which checks them.
            drop(conn);
        }
        None
    }

    fn put_idle(&self, conn: PoolConnection<Postgres>) {
        if let Ok(mut idle) = self.idle.lock() {
            // Read under the lock `close_idle` sets it under: nothing slips in after the close.
            if !self.closed.load(std::sync::atomic::Ordering::SeqCst) && idle.len() < self.keep {
                idle.push((conn, Instant::now()));
            }
        }
    }

    fn clear_idle(&self) {
        let stale = self.idle.lock().map(|mut idle| std::mem::take(&mut *idle));
        drop(stale);
    }

    /// Drops every kept connection and keeps none from now on (the store is closing).
    pub(super) fn close_idle(&self) {
        let kept = self.idle.lock().map(|mut idle| {
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            std::mem::take(&mut *idle)
        });
        drop(kept);
    }
}

impl Leased {
    /// The work on this connection finished cleanly (outside any transaction): it may be kept.
    pub(super) fn release(mut self) {
        self.condition = Condition::Clean;
    }

    /// The transaction was committed or rolled back.
    pub(super) fn transaction_ended(&mut self) {
        self.condition = Condition::Clean;
    }

    /// A transaction was begun on it: rolled back if dropped before it ends.
    pub(super) fn transaction_begun(&mut self) {
        self.condition = Condition::InTransaction;
    }

    /// Whether it came from the idle list unchecked.
    pub(super) fn reused(&self) -> bool {
        self.reused
    }

    /// A reused connection failed as if the server went away: the other idle ones were
    /// connected to the same server, so none of them is trusted any more.
    pub(super) fn distrust_idle(&self) {
        self.home.clear_idle();
    }

    /// A statement failed: the connection's state is not known any more.
    pub(super) fn mark_unknown(&mut self) {
        self.condition = Condition::Unknown;
    }
}

impl std::ops::Deref for Leased {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        // `conn` is only taken in `drop`.
        self.conn
            .as_deref()
            .expect("a leased connection is present until dropped")
    }
}

impl std::ops::DerefMut for Leased {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .expect("a leased connection is present until dropped")
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        match self.condition {
            Condition::Clean => self.home.put_idle(conn),
            Condition::Unknown => drop(conn),
            Condition::InTransaction => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let home = self.home.clone();
                    runtime.spawn(async move {
                        // sqlx drains any response still pending before sending this.
                        if conn.execute("ROLLBACK").await.is_ok() {
                            home.put_idle(conn);
                        }
                    });
                }
                // No runtime to roll back on: closing the connection rolls back on the server.
                Err(_) => {
                    conn.close_on_drop();
                }
            },
        }
    }
}
