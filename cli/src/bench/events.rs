//! `tasker bench --events N`: the durable event log.
//!
//! * **Pipeline**: N events written by `Tasker::publish_events`, in transactions of 500 (the
//!   outbox insert a state change makes) while one subscriber group member reads and acknowledges them; the
//!   figure is N over the time from the first write to the last acknowledgement.
//! * **Cost per step**: W2 run without any subscriber group (lifecycle events are then not
//!   written), then again with one durable group consuming everything; the difference per step.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tasker_core::events::SubscriptionOptions;
use tasker_core::{Tasker, TaskerError};

use super::completion::Finished;
use super::report::Out;
use super::workloads;

#[derive(Debug, Clone, Serialize)]
pub struct EventFigures {
    pub events: usize,
    /// Writing them (the producer alone).
    pub produce_s: f64,
    /// First write to last acknowledgement.
    pub end_to_end_s: f64,
    pub events_per_s: f64,
    pub w2_tasks: usize,
    pub w2_steps_per_s_without_group: f64,
    pub w2_steps_per_s_with_group: f64,
    /// Added wall time per step with one durable group, in microseconds.
    pub added_us_per_step: f64,
    /// Lifecycle events the group received during the second W2.
    pub w2_events_delivered: usize,
}

/// A group member that acknowledges everything, counting `bench.*` and other events.
struct Drain {
    ticks: Arc<AtomicUsize>,
    others: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), TaskerError>>,
}

async fn drain(tasker: &Tasker) -> Result<Drain, TaskerError> {
    let mut options = SubscriptionOptions::new("bench_events", vec!["*".into()]);
    options.poll_interval = Duration::from_millis(10);
    options.batch_size = 2_000;
    let sub = tasker.subscribe(options).await?;
    let ticks = Arc::new(AtomicUsize::new(0));
    let others = Arc::new(AtomicUsize::new(0));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (t, o) = (ticks.clone(), others.clone());
    let task = tokio::spawn(async move {
        while !*stopped.borrow() {
            tokio::select! {
                _ = stopped.changed() => break,
                next = sub.poll_async(Duration::from_millis(100)) => {
                    if let Some(d) = next? {
                        if d.event.name == "bench.tick" { &t } else { &o }.fetch_add(1, Ordering::Relaxed);
                        sub.ack(d.delivery_id)?;
                    }
                }
            }
        }
        sub.close().await
    });
    Ok(Drain {
        ticks,
        others,
        stop,
        task,
    })
}

pub async fn run(
    tasker: &Tasker,
    finished: &Finished,
    events: usize,
    w2_tasks: usize,
    out: Out,
) -> Result<EventFigures, TaskerError> {
    out.say(format!("    events: W2 of {w2_tasks} tasks without a subscriber group"));
    let without = workloads::w2(tasker, finished, w2_tasks).await?;
    let drain = drain(tasker).await?;
    out.say("    events: W2 again with one durable group consuming every event");
    let with = workloads::w2(tasker, finished, w2_tasks).await?;
    let steps = (w2_tasks * workloads::DIAMOND_STEPS) as f64;
    // Let the group catch up, then measure the pipeline on its own.
    let settle = Instant::now();
    let mut last = usize::MAX;
    while settle.elapsed() < Duration::from_secs(60) {
        let now = drain.others.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let w2_events = drain.others.load(Ordering::Relaxed);
    out.say(format!("    events: {events} events through the log"));
    let started = Instant::now();
    tasker.publish_events("bench.tick", &json!({"n": 1}), events).await?;
    let produce_s = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    while drain.ticks.load(Ordering::Relaxed) < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let end_to_end_s = started.elapsed().as_secs_f64();
    let delivered = drain.ticks.load(Ordering::Relaxed);
    let _ = drain.stop.send(true);
    drain
        .task
        .await
        .map_err(|e| TaskerError::InvalidState(format!("event drain: {e}")))??;
    tasker.delete_event_group("bench_events").await?;
    if delivered < events {
        return Err(TaskerError::InvalidState(format!(
            "only {delivered} of {events} events were delivered within 600 s"
        )));
    }
    Ok(EventFigures {
        events,
        produce_s,
        end_to_end_s,
        events_per_s: events as f64 / end_to_end_s,
        w2_tasks,
        w2_steps_per_s_without_group: without.steps_per_s,
        w2_steps_per_s_with_group: with.steps_per_s,
        added_us_per_step: (with.wall_s - without.wall_s) / steps * 1e6,
        w2_events_delivered: w2_events,
    })
}
