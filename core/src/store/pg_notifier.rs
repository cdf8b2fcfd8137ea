//! Wake-ups (NOTIFY) sent after commit, by a background task, instead of inside the
//! transactions that enqueue work.
//!
//! PostgreSQL serialises the commits of all transactions that NOTIFY (they take one
//! database-wide lock from pre-commit until the commit is durable), so a NOTIFY inside every
//! enqueueing transaction made concurrent task creations and completion batches queue behind
//! each other's fsync. Here a transaction only records what it would announce; once it has
//! committed, the announcements go to this task, which sends everything pending in one short
//! statement of its own (it writes nothing, so it waits for no fsync). A burst of enqueues to one
//! queue becomes one wake-up.
//!
//! Nothing depends on a wake-up arriving: a process that crashes between its commit and the
//! NOTIFY leaves the work to the listeners' polling fallback, as a lost LISTEN connection does.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlx::Executor;
use tokio::sync::mpsc;

use super::pg_connections::HotPool;

/// One announcement: a NOTIFY channel and its payload.
pub(super) type Wake = (&'static str, String);

/// Sends wake-ups in the background; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Notifier {
    tx: mpsc::UnboundedSender<Wake>,
}

impl Notifier {
    /// Starts the background task; it ends when every `Notifier` is dropped.
    pub(super) fn spawn(hot: Arc<HotPool>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Wake>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = BTreeSet::from([first]);
                while let Ok(more) = rx.try_recv() {
                    batch.insert(more);
                }
                let (channels, payloads): (Vec<&str>, Vec<String>) = batch.into_iter().unzip();
                let sent = hot
                    .read(|conn| {
                        let query =
                            sqlx::query("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)")
                                .bind(channels.clone())
                                .bind(payloads.clone());
                        Box::pin(async move { Ok(conn.execute(query).await.map(|_| ())?) })
                    })
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "could not send wake-ups; listeners will poll");
                }
            }
        });
        Self { tx }
    }

    /// Queues announcements of committed work.
    pub(super) fn send(&self, wakes: impl IntoIterator<Item = Wake>) {
        for wake in wakes {
            // Closed only when the store is going away: nobody is left to wake.
            let _ = self.tx.send(wake);
        }
    }
}
