//! Backpressure on task creation: a task whose first steps go to a queue that already has
//! `max_queue_depth` steps waiting is refused with [`TaskerError::Backpressure`], instead of
//! growing the queue without bound while workers cannot keep up.
//!
//! The depths come from [`Store::queue_stats`], read at most once per `refresh` and shared by
//! every creation in between: the limit is approximate (a burst inside one refresh may pass it
//! by what that burst creates). The cost is one read per `refresh`, not per task; it counts the
//! waiting messages, so one caller makes it while the others go on with the previous read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::error::{Result, TaskerError};
use crate::store::{OutgoingMessage, Store};

/// The creation limit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackpressureOptions {
    /// Steps waiting on one queue (visible, not yet claimed) beyond which creating a task that
    /// sends to that queue is refused. `0`: no limit.
    pub max_queue_depth: u64,
    /// How long a read of the queue depths is used before it is read again.
    pub refresh: Duration,
}

impl Default for BackpressureOptions {
    fn default() -> Self {
        Self {
            max_queue_depth: 1_000_000,
            refresh: Duration::from_secs(1),
        }
    }
}

/// One read of the queue depths: when, and the visible messages of each queue then.
type Depths = (Instant, Arc<HashMap<String, u64>>);

#[derive(Debug)]
pub(super) struct Backpressure {
    options: BackpressureOptions,
    last_read: std::sync::Mutex<Option<Depths>>,
    /// Held by the one caller reading the depths again. The others go on with the previous
    /// read meanwhile instead of queueing behind a statement that counts every waiting message
    /// (tens of milliseconds with 100,000 queued): creation never waits for it but the first.
    reading: Mutex<()>,
}

impl Backpressure {
    pub(super) fn new(options: BackpressureOptions) -> Self {
        Self {
            options,
            last_read: std::sync::Mutex::new(None),
            reading: Mutex::new(()),
        }
    }

    fn last_read(&self) -> Option<Depths> {
        self.last_read.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn read(&self, store: &dyn Store) -> Result<Depths> {
        let stats = store.queue_stats().await?;
        let depths: HashMap<String, u64> = stats
            .into_iter()
            .map(|q| (q.queue, u64::try_from(q.visible).unwrap_or(0)))
            .collect();
        let read = (Instant::now(), Arc::new(depths));
        *self.last_read.lock().unwrap_or_else(|p| p.into_inner()) = Some(read.clone());
        Ok(read)
    }

    /// The depths to compare against: the last read while it is fresh; else a new read by this
    /// caller, or the last read while another caller is reading.
    async fn depths(&self, store: &dyn Store) -> Result<Depths> {
        let last = self.last_read();
        if let Some(read) = last.as_ref().filter(|(at, _)| at.elapsed() < self.options.refresh) {
            return Ok(read.clone());
        }
        match (self.reading.try_lock(), last) {
            (Ok(_reading), _) => self.read(store).await,
            (Err(_), Some(previous)) => Ok(previous),
            (Err(_), None) => {
                // Nothing read yet: wait for the first read, or make it if that one failed.
                let _reading = self.reading.lock().await;
                match self.last_read() {
                    Some(read) => Ok(read),
                    None => self.read(store).await,
                }
            }
        }
    }

    /// `Err(Backpressure)` when one of the queues `messages` go to is at its limit.
    pub(super) async fn check(&self, store: &dyn Store, messages: &[OutgoingMessage]) -> Result<()> {
        let limit = self.options.max_queue_depth;
        if limit == 0 || messages.is_empty() {
            return Ok(());
        }
        let (read_at, depths) = self.depths(store).await?;
        for m in messages {
            let depth = depths.get(&m.queue).copied().unwrap_or(0);
            if depth >= limit {
                return Err(TaskerError::Backpressure {
                    queue: m.queue.clone(),
                    depth,
                    limit,
                    retry_after: self
                        .options
                        .refresh
                        .saturating_sub(read_at.elapsed())
                        .max(Duration::from_millis(100)),
                });
            }
        }
        Ok(())
    }
}
