//! The orchestrator loop: the timed duties that no completion triggers. It re-enqueues steps
//! whose retry is due and fails attempts that overran their deadline.
//!
//! `tasker serve` runs it on its own; every [`crate::worker::Worker`] also runs one by default,
//! so a single process is self-sufficient. Any number may run against one database: each duty
//! is a compare-and-swap, so two orchestrators racing for the same step cannot both act.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::{broadcast, watch};

use crate::engine::Tasker;
use crate::store::{Backend, RemoteSignal};

/// Runs until `stop` becomes true.
pub async fn run(tasker: Tasker, mut stop: watch::Receiver<bool>) {
    let mut signals = tasker.subscribe_signals();
    // Without cross-process notifications (SQLite), timers set by other processes are found by
    // this bounded sleep.
    let max_sleep = match tasker.backend() {
        Backend::Sqlite => Duration::from_millis(250),
        Backend::Postgres => Duration::from_secs(1),
    };
    let detector_every = tasker.recovery_options().detector_interval;
    // Rows handled per pass (`orchestration.batch_size`); a full pass loops again at once.
    let batch = tasker.recovery_options().maintenance_batch;
    let mut next_detection = tokio::time::Instant::now() + detector_every;
    loop {
        if *stop.borrow() {
            return;
        }
        if tokio::time::Instant::now() >= next_detection {
            next_detection = tokio::time::Instant::now() + detector_every;
            detect(&tasker).await;
        }
        let mut busy = false;
        match tasker.enqueue_due_retries(batch).await {
            Ok(n) => busy |= n as i64 >= batch,
            Err(e) => tracing::warn!(error = %e, "re-enqueueing due retries failed"),
        }
        match tasker.fail_overdue_attempts(batch).await {
            Ok(n) => busy |= n as i64 >= batch,
            Err(e) => tracing::warn!(error = %e, "failing overdue attempts failed"),
        }
        if busy {
            continue;
        }
        let sleep = match tasker.store().next_timer().await {
            Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(max_sleep),
            Ok(None) => max_sleep,
            Err(e) => {
                tracing::warn!(error = %e, "reading timers failed");
                max_sleep
            }
        }
        .min(next_detection.saturating_duration_since(tokio::time::Instant::now()));
        if !wait(&mut signals, &mut stop, sleep).await {
            return;
        }
    }
}

/// The detectors of stuck work (stale tasks, and queues no live worker serves), the event
/// log's retention and the overview's task counts. Their failures are logged; the next pass tries again.
async fn detect(tasker: &Tasker) {
    match tasker.prune_events().await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(events = n, "pruned acknowledged events past their retention"),
        Err(e) => tracing::warn!(error = %e, "pruning the event log failed"),
    }
    if let Err(e) = tasker.compact_task_counts().await {
        tracing::warn!(error = %e, "folding the overview's task counts failed");
    }
    if let Err(e) = tasker.detect_stale_tasks().await {
        tracing::warn!(error = %e, "the staleness detector failed");
    }
    if let Err(e) = tasker.detect_unavailable_workers().await {
        tracing::warn!(error = %e, "the unavailable-worker detector failed");
    }
}

/// Sleeps until `sleep` passes or timers change; false when stopping.
async fn wait(
    signals: &mut broadcast::Receiver<RemoteSignal>,
    stop: &mut watch::Receiver<bool>,
    sleep: Duration,
) -> bool {
    let timer = tokio::time::sleep(sleep);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            _ = &mut timer => return true,
            _ = stop.wait_for(|s| *s) => return false,
            s = signals.recv() => match s {
                Ok(RemoteSignal::Timers) | Ok(RemoteSignal::Reconnected) => return true,
                Err(broadcast::error::RecvError::Lagged(_)) => return true,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Closed) => return true,
            },
        }
    }
}
