//! How the benchmark learns that its tasks finished, without reading the database in a tight
//! loop while they run:
//!
//! * tasks run by this process: the engine's own events (`Tasker::subscribe_events`);
//! * tasks run by other processes on PostgreSQL: the NOTIFY the engine sends when a task
//!   finishes (`Store::subscribe_remote`);
//! * tasks run by other processes on SQLite, which has no cross-process notification: one read
//!   of the oldest unfinished task's row per tick.
//!
//! Collectors start before the tasks are created, so nothing is missed while they are submitted.
//! Should a stream lag (or the LISTEN connection reconnect), the tasks not seen yet are looked up
//! once, so a lost event costs one read instead of a hang.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tasker_core::store::RemoteSignal;
use tasker_core::{EngineEvent, Tasker, TaskerError};
use tokio::sync::{broadcast, Notify};
use uuid::Uuid;

/// How often the SQLite fallback reads the oldest unfinished task.
pub const POLL_TICK: Duration = Duration::from_millis(10);

/// Task → its terminal state, when the source tells it (NOTIFY does not).
type DoneMap = HashMap<Uuid, Option<String>>;

/// Finished tasks, as one of the sources above reports them.
pub struct Finished {
    recorder: Recorder,
    collector: Option<tokio::task::JoinHandle<()>>,
    source: Source,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    EngineEvents,
    Notifications,
    Polling,
}

/// The collector's side: records finished tasks and wakes the waiter.
#[derive(Clone, Default)]
struct Recorder {
    done: Arc<Mutex<DoneMap>>,
    notify: Arc<Notify>,
    /// Set when the source lost messages: the next wait looks the missing tasks up.
    lagged: Arc<AtomicBool>,
}

impl Recorder {
    fn finished(&self, task_uuid: Uuid, state: Option<String>) {
        if let Ok(mut done) = self.done.lock() {
            done.insert(task_uuid, state);
        }
        self.notify.notify_one();
    }

    fn lost_some(&self) {
        tracing::warn!("benchmark completion stream lagged; looking up the tasks not seen yet");
        self.lagged.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

impl Finished {
    /// Tasks whose steps run in this process (the in-process worker).
    pub fn in_process(tasker: &Tasker) -> Self {
        let mut events = tasker.subscribe_events();
        let recorder = Recorder::default();
        let r = recorder.clone();
        let collector = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(EngineEvent::Task { task_uuid, to, .. }) if to.is_terminal() => {
                        r.finished(task_uuid, Some(to.as_str().to_owned()))
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => r.lost_some(),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Self {
            recorder,
            collector: Some(collector),
            source: Source::EngineEvents,
        }
    }

    /// Tasks whose steps run in other processes: NOTIFY on PostgreSQL, polling on SQLite.
    pub fn other_processes(tasker: &Tasker) -> Self {
        let recorder = Recorder::default();
        let Some(mut signals) = tasker.store().subscribe_remote() else {
            return Self {
                recorder,
                collector: None,
                source: Source::Polling,
            };
        };
        let r = recorder.clone();
        let collector = tokio::spawn(async move {
            loop {
                match signals.recv().await {
                    Ok(RemoteSignal::TaskFinished(task_uuid)) => r.finished(task_uuid, None),
                    Ok(RemoteSignal::Reconnected) | Err(broadcast::error::RecvError::Lagged(_)) => r.lost_some(),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Self {
            recorder,
            collector: Some(collector),
            source: Source::Notifications,
        }
    }

    /// `notify` (PostgreSQL LISTEN), `poll` or `events`, for the report.
    pub fn describe(&self) -> &'static str {
        match self.source {
            Source::EngineEvents => "events",
            Source::Notifications => "notify",
            Source::Polling => "poll",
        }
    }

    /// Waits until every task in `ids` finished. Fails at once when one of them ended in another
    /// state than `complete` (where the source tells the state; see [`Self::check_complete`]).
    pub async fn wait_all(&self, tasker: &Tasker, ids: &[Uuid], timeout: Duration) -> Result<(), TaskerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if self.source == Source::Polling {
            return self.poll_all(tasker, ids, deadline, timeout).await;
        }
        loop {
            let notified = self.recorder.notify.notified();
            if self.recorder.lagged.swap(false, Ordering::SeqCst) {
                self.look_up_missing(tasker, ids).await?;
            }
            let missing = {
                let done = self.lock()?;
                if let Some((id, state)) = ids
                    .iter()
                    .filter_map(|id| done.get(id).and_then(|s| s.as_ref()).map(|s| (id, s)))
                    .find(|(_, s)| *s != "complete")
                {
                    return Err(failed(*id, state));
                }
                ids.iter().filter(|id| !done.contains_key(id)).count()
            };
            if missing == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(TaskerError::Timeout(timeout));
            }
        }
    }

    /// SQLite, other processes: the tasks are in creation order (v7 uuids sort by time) and
    /// finish roughly in that order, so each tick reads the oldest unfinished task's row and,
    /// once it is done, the next ones: about one read per task plus one per tick in all.
    async fn poll_all(
        &self,
        tasker: &Tasker,
        ids: &[Uuid],
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<(), TaskerError> {
        let mut pending: Vec<Uuid> = ids.to_vec();
        pending.sort();
        let mut next = 0;
        while next < pending.len() {
            let task = tasker.task_summary(pending[next]).await?;
            if task.is_terminal() {
                if task.state != "complete" {
                    return Err(failed(task.task_uuid, &task.state));
                }
                self.lock()?.insert(task.task_uuid, Some(task.state));
                next += 1;
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TaskerError::Timeout(timeout));
            }
            tokio::time::sleep(POLL_TICK).await;
        }
        Ok(())
    }

    /// After a lag: reads the tasks not seen yet, once.
    async fn look_up_missing(&self, tasker: &Tasker, ids: &[Uuid]) -> Result<(), TaskerError> {
        let missing: Vec<Uuid> = {
            let done = self.lock()?;
            ids.iter().filter(|id| !done.contains_key(id)).copied().collect()
        };
        for id in missing {
            let task = tasker.task_summary(id).await?;
            if task.is_terminal() {
                self.lock()?.insert(id, Some(task.state));
            }
        }
        Ok(())
    }

    /// Reads the state of every task the source reported without one (NOTIFY) and fails if one
    /// did not complete. Run after the clock stopped.
    pub async fn check_complete(&self, tasker: &Tasker, ids: &[Uuid]) -> Result<(), TaskerError> {
        let unknown: Vec<Uuid> = {
            let done = self.lock()?;
            ids.iter()
                .filter(|id| done.get(id).is_none_or(|s| s.is_none()))
                .copied()
                .collect()
        };
        for id in unknown {
            let task = tasker.task_summary(id).await?;
            if task.state != "complete" {
                return Err(failed(id, &task.state));
            }
        }
        Ok(())
    }

    /// Drops what is known about these tasks (the history fill creates many).
    pub fn forget(&self, ids: &[Uuid]) {
        if let Ok(mut done) = self.recorder.done.lock() {
            for id in ids {
                done.remove(id);
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, DoneMap>, TaskerError> {
        self.recorder
            .done
            .lock()
            .map_err(|_| TaskerError::InvalidArgument("benchmark completion collector panicked".into()))
    }
}

fn failed(id: Uuid, state: &str) -> TaskerError {
    TaskerError::InvalidArgument(format!("benchmark task {id} ended {state}"))
}

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(c) = &self.collector {
            c.abort();
        }
    }
}
