//! The outbox relay: publishes visible PGMQ rows to RabbitMQ and hides them, in one PostgreSQL
//! transaction that commits only after the broker confirmed (see [`super`]).
//!
//! It wakes when this process commits a visible message, when NOTIFY says another process did,
//! when a consumer starts or the broker reconnects, and every `rabbitmq_relay_poll_ms` for rows
//! whose lease expired (a dead worker's steps) or that hid for `rabbitmq_republish_after_ms`. A
//! queue no consumer serves is left alone: its rows stay visible in PostgreSQL, where the
//! unserved-queue detector sees them, until a consumer appears.

use std::sync::Arc;
use std::time::Duration;

use super::broker::Broker;
use crate::error::Result;
use crate::store::Store;

/// The longest the relay holds rows while it waits for the broker's confirms.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs until the broker is closed. `store` is the PostgreSQL store under the RabbitMQ one.
pub(crate) async fn run(store: Arc<dyn Store>, broker: std::sync::Weak<Broker>) {
    let mut failures = 0u32;
    loop {
        let Some(b) = broker.upgrade() else { return };
        if b.is_closed() {
            return;
        }
        let poll = b.options().relay_poll;
        let pending = b.take_relay_pending();
        if pending.is_empty() {
            drop(b);
            let Some(b) = broker.upgrade() else { return };
            // `notify_one` keeps a permit when nobody waits: a wake-up since the take is not lost.
            let wake = b.relay_wake().notified();
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep(poll) => b.wake_relay_all(),
            }
            continue;
        }
        let mut failed = false;
        for queue in pending {
            match relay_queue(store.as_ref(), &b, &queue).await {
                Ok(true) => b.wake_relay([queue.as_str()]),
                Ok(false) => {}
                // Closing the engine closes the connection under a batch in flight: its rows
                // stay visible in PostgreSQL, to be published by whichever relay runs next.
                Err(_) if b.is_closed() => return,
                Err(e) => {
                    failed = true;
                    if failures == 0 || failures.is_multiple_of(20) {
                        tracing::warn!(%queue, error = %e, "relaying messages to RabbitMQ failed; retrying");
                    }
                    b.wake_relay([queue.as_str()]);
                }
            }
        }
        drop(b);
        if failed {
            failures = failures.saturating_add(1);
            let pause = Duration::from_millis(50u64 << failures.min(6)).min(Duration::from_secs(3));
            tokio::time::sleep(pause).await;
        } else {
            failures = 0;
        }
    }
}

/// Publishes one batch of `queue`'s visible rows. `Ok(true)`: a full batch went out, there may
/// be more.
async fn relay_queue(store: &dyn Store, broker: &Broker, queue: &str) -> Result<bool> {
    if broker.consumers_of(queue).await? == 0 {
        return Ok(false);
    }
    let options = broker.options();
    let mut tx = store.begin().await?;
    let rows = tx
        .read_messages(queue, options.republish_after, options.relay_batch as i64)
        .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(false);
    }
    // Bounded: claims of these rows' deliveries wait for this transaction (see pg_delivered).
    let published = match tokio::time::timeout(PUBLISH_TIMEOUT, broker.publish(queue, &rows)).await {
        Ok(r) => r,
        Err(_) => Err(crate::TaskerError::Broker(format!(
            "no publisher confirm within {} s",
            PUBLISH_TIMEOUT.as_secs()
        ))),
    };
    if let Err(e) = published {
        // The rows become visible again; nothing was confirmed, or the duplicates are harmless.
        let _ = tx.rollback().await;
        return Err(e);
    }
    // A failed commit leaves the rows visible: they are published again, and the copies
    // already in RabbitMQ are harmless (a claim takes a row once).
    tx.commit().await?;
    Ok(rows.len() >= options.relay_batch)
}
