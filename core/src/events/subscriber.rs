//! Subscribers: a member of a durable subscriber group ([`EventSubscription`]) and a reader of
//! the in-process broadcast ([`FastSubscription`]). Both are pull-based, like workers: a
//! binding calls `poll`, handles the event, and (durable) calls `ack` or `fail`.
//!
//! # How a group member works
//!
//! The log has [`EVENT_PARTITIONS`] partitions; a task's events all go to one. A member holds
//! a lease on its fair share of the group's partitions (renewed every third of the lease; a
//! member that dies loses them when the lease runs out and the others take them over). Within
//! a partition the member hands out **one event at a time**: the next only after the previous
//! was acknowledged, failed for good, or skipped (not matching the group's patterns). That is
//! what keeps one task's events in order for a handler, whatever it does. Events of different
//! partitions are in flight together, so throughput does not hinge on one slow task.
//!
//! Acknowledged positions are recorded every [`COMMIT_EVERY`] and on close, fenced by the lease:
//! a member that lost a partition cannot move its cursor. Delivery is therefore at least once:
//! a crash redelivers what was handled since the last record. Consumers dedupe by `event_id`.
//!
//! A failed event is retried with exponential backoff (holding its partition), up to
//! `max_attempts`; then it goes to the group's dead letters and the partition moves on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

use super::{pattern_matches, Event};
use crate::error::{Result, TaskerError};
use crate::store::{EventCursor, EventStore, Fence, StoredEvent, EVENT_PARTITIONS};
use crate::Tasker;

/// How often acknowledged positions are recorded.
pub const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// How a member joins its group.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionOptions {
    /// Members of one group share its events; every group gets all of them.
    pub group: String,
    /// Event names to handle (`task.completed`, `payment.*`, `*`); other events are skipped.
    pub patterns: Vec<String>,
    /// This member's name in the group; default `<host>:<pid>:<random>`.
    pub member_id: Option<String>,
    /// A group created by this join starts at the log's start instead of its end.
    pub from_start: bool,
    /// A group created by this join starts after this position (an event's `position`: what a
    /// reconnecting stream reader last saw); wins over `from_start`.
    pub start_after: Option<i64>,
    /// Attempts at one event before it goes to the dead letters.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt, up to [`Self::max_backoff`].
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long a member's hold on its partitions outlives its last renewal.
    pub lease: Duration,
    /// How often an idle member looks for new events.
    pub poll_interval: Duration,
    /// Events read per partition at once.
    pub batch_size: i64,
}

impl SubscriptionOptions {
    pub fn new(group: impl Into<String>, patterns: Vec<String>) -> Self {
        SubscriptionOptions {
            group: group.into(),
            patterns,
            member_id: None,
            from_start: false,
            start_after: None,
            max_attempts: 5,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            lease: Duration::from_secs(15),
            poll_interval: Duration::from_millis(50),
            batch_size: 500,
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(TaskerError::InvalidArgument(m));
        if self.group.trim().is_empty() || self.group.len() > 200 {
            return bad(format!(
                "subscriber group name '{}' must be 1 to 200 characters",
                self.group
            ));
        }
        if self.patterns.is_empty() || self.patterns.iter().any(|p| p.is_empty()) {
            return bad(format!(
                "subscriber group '{}' needs at least one non-empty event pattern (e.g. \"task.*\" or \"*\")",
                self.group
            ));
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1".into());
        }
        if self.lease < Duration::from_millis(300) {
            return bad(format!("lease must be at least 300 ms, got {:?}", self.lease));
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return bad(format!("batch_size must be 1..=10000, got {}", self.batch_size));
        }
        Ok(())
    }

    fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| pattern_matches(p, name))
    }

    fn backoff_for(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// An event handed to a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// What `ack` and `fail` name.
    pub delivery_id: u64,
    /// 1 on first delivery, then 2, 3 … after failures.
    pub attempt: u32,
    pub event: Event,
}

enum Control {
    Ack(u64),
    Fail(u64, String),
    Close(oneshot::Sender<()>),
    /// Stop as a killed process would: nothing recorded, nothing released.
    Abandon,
}

/// A member of a durable subscriber group.
pub struct EventSubscription {
    deliveries: flume::Receiver<Delivery>,
    control: flume::Sender<Control>,
    group: String,
    member: String,
    failure: Arc<std::sync::Mutex<Option<TaskerError>>>,
}

impl std::fmt::Debug for EventSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSubscription")
            .field("group", &self.group)
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

static MEMBER_SEQ: AtomicU64 = AtomicU64::new(0);

fn default_member() -> String {
    let host = crate::worker::hostname();
    format!(
        "{host}:{}:{}",
        std::process::id(),
        MEMBER_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl EventSubscription {
    /// Joins (creating if needed) the group and starts handing out its events.
    pub async fn join(tasker: &Tasker, options: SubscriptionOptions) -> Result<EventSubscription> {
        options.check()?;
        let member = options.member_id.clone().unwrap_or_else(default_member);
        let store = tasker.store().clone();
        store
            .events()
            .join_event_group(
                Fence {
                    group: &options.group,
                    member: &member,
                },
                &options.patterns,
                options.start_after.or(options.from_start.then_some(0)),
                Utc::now(),
            )
            .await?;
        // This process writes lifecycle events from now on, without waiting for its next check.
        tasker.note_event_group_exists();
        let (delivery_tx, deliveries) = flume::bounded(EVENT_PARTITIONS as usize + 1);
        let (control, control_rx) = flume::unbounded();
        let failure = Arc::new(std::sync::Mutex::new(None));
        let group = options.group.clone();
        let member_loop = MemberLoop {
            store,
            options,
            member: member.clone(),
            partitions: BTreeMap::new(),
            in_flight: HashMap::new(),
            next_delivery: 1,
            deliveries: delivery_tx,
            failure: failure.clone(),
        };
        tokio::spawn(member_loop.run(control_rx));
        Ok(EventSubscription {
            deliveries,
            control,
            group,
            member,
            failure,
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn member_id(&self) -> &str {
        &self.member
    }

    /// The next event, waiting up to `timeout`; blocks the calling thread (bindings call it
    /// with the GIL/GVL released). `None` when nothing came.
    pub fn poll(&self, timeout: Duration) -> Result<Option<Delivery>> {
        match self.deliveries.recv_timeout(timeout) {
            Ok(d) => Ok(Some(d)),
            Err(flume::RecvTimeoutError::Timeout) => Ok(None),
            Err(flume::RecvTimeoutError::Disconnected) => Err(self.stopped()),
        }
    }

    /// [`Self::poll`] for async callers.
    pub async fn poll_async(&self, timeout: Duration) -> Result<Option<Delivery>> {
        match tokio::time::timeout(timeout, self.deliveries.recv_async()).await {
            Ok(Ok(d)) => Ok(Some(d)),
            Err(_) => Ok(None),
            Ok(Err(_)) => Err(self.stopped()),
        }
    }

    /// The event was handled: the group will not get it again (once the position is recorded).
    pub fn ack(&self, delivery_id: u64) -> Result<()> {
        self.control.send(Control::Ack(delivery_id)).map_err(|_| self.stopped())
    }

    /// The handler failed: the event is retried after a backoff, or set aside after
    /// `max_attempts`.
    pub fn fail(&self, delivery_id: u64, error: &str) -> Result<()> {
        self.control
            .send(Control::Fail(delivery_id, crate::limits::clean_text(error)))
            .map_err(|_| self.stopped())
    }

    /// Records what was acknowledged, gives the partitions back and leaves the group. Events
    /// delivered but not acknowledged go to another member (or the next one to join).
    pub async fn close(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        match self.failure.lock().map(|mut f| f.take()) {
            Ok(Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Stops this member the way a crash would: acknowledged positions not yet recorded are
    /// lost and its partitions stay leased until the lease runs out. For fault tests.
    #[doc(hidden)]
    pub fn abandon(self) {
        let _ = self.control.send(Control::Abandon);
    }

    fn stopped(&self) -> TaskerError {
        let cause = self
            .failure
            .lock()
            .ok()
            .and_then(|f| f.as_ref().map(ToString::to_string));
        match cause {
            Some(e) => TaskerError::InvalidState(format!("the subscription to group '{}' stopped: {e}", self.group)),
            None => TaskerError::InvalidState(format!(
                "the subscription of '{}' to group '{}' is closed",
                self.member, self.group
            )),
        }
    }
}

impl Drop for EventSubscription {
    fn drop(&mut self) {
        let (tx, _) = oneshot::channel();
        let _ = self.control.send(Control::Close(tx));
    }
}

/// One partition this member holds.
struct Partition {
    /// The last position read from the log.
    read_to: i64,
    /// The last position handled (acknowledged, skipped or dead-lettered).
    handled: i64,
    /// The last position recorded in the group's cursor.
    recorded: i64,
    /// Read, not yet handed out.
    buffer: VecDeque<StoredEvent>,
    /// The event handed out (or waiting for its retry), if any.
    current: Option<Current>,
    /// The last read filled a whole batch: read again as soon as the buffer runs dry.
    more: bool,
}

struct Current {
    event: StoredEvent,
    delivery_id: Option<u64>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

struct MemberLoop {
    store: Arc<dyn crate::store::Store>,
    options: SubscriptionOptions,
    member: String,
    partitions: BTreeMap<i16, Partition>,
    /// Delivery id → partition.
    in_flight: HashMap<u64, i16>,
    next_delivery: u64,
    deliveries: flume::Sender<Delivery>,
    failure: Arc<std::sync::Mutex<Option<TaskerError>>>,
}

impl MemberLoop {
    fn events(&self) -> &dyn EventStore {
        self.store.events()
    }

    fn fence(&self) -> Fence<'_> {
        Fence {
            group: &self.options.group,
            member: &self.member,
        }
    }

    async fn run(mut self, control: flume::Receiver<Control>) {
        let lease_every = self.options.lease / 3;
        let mut next_lease = Instant::now();
        let mut next_commit = Instant::now() + COMMIT_EVERY;
        let mut next_read = Instant::now();
        let mut closing: Option<oneshot::Sender<()>> = None;
        let mut abandoned = false;
        let mut transient_errors = 0u32;
        loop {
            let now = Instant::now();
            let step: Result<()> = async {
                if now >= next_lease {
                    self.hold_partitions().await?;
                    next_lease = now + lease_every;
                }
                let dry = self
                    .partitions
                    .values()
                    .any(|p| p.more && p.buffer.is_empty() && p.current.is_none());
                if now >= next_read || dry {
                    let _ = self.events().sequence_events(10_000).await?;
                    self.read().await?;
                    next_read = now + self.options.poll_interval;
                }
                self.dispatch().await?;
                if now >= next_commit {
                    self.record().await?;
                    next_commit = now + COMMIT_EVERY;
                }
                Ok(())
            }
            .await;
            match step {
                Ok(()) => transient_errors = 0,
                Err(e) if e.is_transient() && transient_errors < 50 => {
                    transient_errors += 1;
                    tracing::warn!(group = %self.options.group, error = %e, "event subscription: retrying after a database error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    tracing::error!(group = %self.options.group, error = %e, "event subscription stopped");
                    if let Ok(mut f) = self.failure.lock() {
                        *f = Some(e);
                    }
                    break;
                }
            }
            // Wait for the next thing to do: a control message or the earliest deadline.
            let retry_due = self
                .partitions
                .values()
                .filter_map(|p| p.current.as_ref().and_then(|c| c.retry_at))
                .min();
            // A partition with events left in its buffer is dispatched on the next ack, so only
            // empty ones wait for the next read.
            let mut deadline = next_lease.min(next_commit).min(next_read);
            if let Some(r) = retry_due {
                deadline = deadline.min(r);
            }
            let message = tokio::select! {
                m = control.recv_async() => Some(m),
                _ = tokio::time::sleep_until(deadline) => None,
            };
            match message {
                None => {}
                Some(Err(_)) => break,
                Some(Ok(m)) => {
                    let mut batch = vec![m];
                    batch.extend(control.drain());
                    for m in batch {
                        match m {
                            Control::Ack(id) => self.handled(id),
                            Control::Fail(id, error) => self.failed(id, error),
                            Control::Close(reply) => closing = Some(reply),
                            Control::Abandon => abandoned = true,
                        }
                    }
                    if closing.is_some() || abandoned {
                        break;
                    }
                }
            }
        }
        if abandoned {
            return;
        }
        // Leaving: record what was handled, then give everything back.
        let _ = self.record().await;
        let _ = self.events().leave_event_group(self.fence(), Utc::now()).await;
        if let Some(reply) = closing {
            let _ = reply.send(());
        }
    }

    /// Heartbeats, renews this member's leases, and takes or gives back partitions so each live
    /// member holds its fair share.
    async fn hold_partitions(&mut self) -> Result<()> {
        let now = Utc::now();
        let lease = chrono::Duration::from_std(self.options.lease).unwrap_or(chrono::Duration::seconds(15));
        let live = self
            .events()
            .event_member_heartbeat(self.fence(), now, now - lease)
            .await?;
        let held = self
            .events()
            .renew_event_partitions(self.fence(), now + lease, now)
            .await?;
        // Partitions lost to another member (our lease ran out): forget them; their events are
        // the new holder's, from the group's recorded position.
        let lost: Vec<i16> = self.partitions.keys().copied().filter(|p| !held.contains(p)).collect();
        for p in lost {
            self.drop_partition(p);
        }
        let share = (i64::from(EVENT_PARTITIONS) + live - 1) / live.max(1);
        let mine = i64::try_from(self.partitions.len()).unwrap_or(i64::MAX);
        if mine < share {
            for c in self
                .events()
                .claim_event_partitions(self.fence(), share - mine, now + lease, now)
                .await?
            {
                self.partitions.insert(
                    c.partition,
                    Partition {
                        read_to: c.position,
                        handled: c.position,
                        recorded: c.position,
                        buffer: VecDeque::new(),
                        current: None,
                        more: true,
                    },
                );
            }
        } else if mine > share {
            // Give back the idle ones first, recording where they are.
            let extra = usize::try_from(mine - share).unwrap_or(0);
            let give: Vec<i16> = self
                .partitions
                .iter()
                .filter(|(_, p)| p.current.is_none())
                .map(|(&k, _)| k)
                .take(extra)
                .collect();
            self.record().await?;
            self.events().release_event_partitions(self.fence(), &give, now).await?;
            for p in give {
                self.drop_partition(p);
            }
        }
        Ok(())
    }

    fn drop_partition(&mut self, partition: i16) {
        if let Some(p) = self.partitions.remove(&partition) {
            if let Some(id) = p.current.and_then(|c| c.delivery_id) {
                self.in_flight.remove(&id);
            }
        }
    }

    /// Reads more events for every held partition whose buffer ran dry, in one statement each.
    async fn read(&mut self) -> Result<()> {
        let wanted: Vec<(i16, i64)> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.buffer.is_empty())
            .map(|(&k, p)| (k, p.read_to))
            .collect();
        for (partition, after) in wanted {
            let events = self
                .events()
                .read_events(partition, after, self.options.batch_size)
                .await?;
            if let Some(p) = self.partitions.get_mut(&partition) {
                p.more = i64::try_from(events.len()).unwrap_or(0) >= self.options.batch_size;
                if let Some(last) = events.last() {
                    p.read_to = last.position;
                }
                p.buffer.extend(events);
            }
        }
        Ok(())
    }

    /// Hands out the next event of every partition that has none out, skipping events the
    /// group does not subscribe to; sets aside events that failed too often.
    async fn dispatch(&mut self) -> Result<()> {
        let now = Instant::now();
        let keys: Vec<i16> = self.partitions.keys().copied().collect();
        for key in keys {
            while let Some(p) = self.partitions.get_mut(&key) {
                match &mut p.current {
                    Some(c) if c.delivery_id.is_some() => break,
                    Some(c) if c.retry_at.is_some_and(|at| at > now) => break,
                    Some(c) if c.failures >= self.options.max_attempts => {
                        let (event, error, failures) = (c.event.clone(), c.last_error.clone(), c.failures);
                        let at = EventCursor {
                            partition: key,
                            position: event.position,
                        };
                        let envelope = Event::from_stored(event.clone()).to_json();
                        let kept = self
                            .store
                            .events()
                            .dead_letter_event(
                                Fence {
                                    group: &self.options.group,
                                    member: &self.member,
                                },
                                at,
                                &event,
                                &envelope,
                                &error,
                                i32::try_from(failures).unwrap_or(i32::MAX),
                                Utc::now(),
                            )
                            .await?;
                        if !kept {
                            self.drop_partition(key);
                            break;
                        }
                        tracing::warn!(group = %self.options.group, event = %event.event_id, name = %event.name, error = %error, "event set aside after {failures} failed attempts");
                        if let Some(p) = self.partitions.get_mut(&key) {
                            p.current = None;
                            p.handled = p.handled.max(at.position);
                            p.recorded = p.recorded.max(at.position);
                        }
                    }
                    Some(c) => {
                        // Due for another attempt.
                        let id = self.next_delivery;
                        self.next_delivery += 1;
                        c.delivery_id = Some(id);
                        c.retry_at = None;
                        let delivery = Delivery {
                            delivery_id: id,
                            attempt: c.failures + 1,
                            event: Event::from_stored(c.event.clone()),
                        };
                        self.in_flight.insert(id, key);
                        if self.deliveries.send_async(delivery).await.is_err() {
                            return Ok(());
                        }
                        break;
                    }
                    None => {
                        let Some(next) = p.buffer.pop_front() else { break };
                        if !self.options.matches(&next.name) {
                            p.handled = next.position;
                            continue;
                        }
                        let id = self.next_delivery;
                        self.next_delivery += 1;
                        let delivery = Delivery {
                            delivery_id: id,
                            attempt: 1,
                            event: Event::from_stored(next.clone()),
                        };
                        p.current = Some(Current {
                            event: next,
                            delivery_id: Some(id),
                            failures: 0,
                            retry_at: None,
                            last_error: String::new(),
                        });
                        self.in_flight.insert(id, key);
                        if self.deliveries.send_async(delivery).await.is_err() {
                            return Ok(());
                        }
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn handled(&mut self, delivery_id: u64) {
        let Some(key) = self.in_flight.remove(&delivery_id) else {
            return;
        };
        if let Some(p) = self.partitions.get_mut(&key) {
            if let Some(c) = p.current.take() {
                p.handled = p.handled.max(c.event.position);
            }
        }
    }

    fn failed(&mut self, delivery_id: u64, error: String) {
        let Some(key) = self.in_flight.remove(&delivery_id) else {
            return;
        };
        let Some(c) = self.partitions.get_mut(&key).and_then(|p| p.current.as_mut()) else {
            return;
        };
        c.failures += 1;
        c.delivery_id = None;
        c.last_error = error;
        c.retry_at =
            (c.failures < self.options.max_attempts).then(|| Instant::now() + self.options.backoff_for(c.failures));
    }

    /// Records handled positions that moved; partitions whose lease was lost are dropped.
    async fn record(&mut self) -> Result<()> {
        let moved: Vec<EventCursor> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.handled > p.recorded)
            .map(|(&k, p)| EventCursor {
                partition: k,
                position: p.handled,
            })
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        let done = self
            .events()
            .commit_event_positions(self.fence(), &moved, Utc::now())
            .await?;
        for c in moved {
            if done.contains(&c.partition) {
                if let Some(p) = self.partitions.get_mut(&c.partition) {
                    p.recorded = c.position;
                }
            } else {
                self.drop_partition(c.partition);
            }
        }
        Ok(())
    }
}

/// A reader of the in-process broadcast: lifecycle events of the changes this process commits
/// and the fast domain events of its completions. Nothing is stored or retried; a reader that
/// falls more than the buffer behind skips ahead (see [`FastSubscription::missed`]).
pub struct FastSubscription {
    receiver: tokio::sync::Mutex<broadcast::Receiver<Arc<Event>>>,
    patterns: Vec<String>,
    tasker: Tasker,
    missed: AtomicU64,
}

impl FastSubscription {
    pub(crate) fn new(tasker: Tasker, receiver: broadcast::Receiver<Arc<Event>>, patterns: Vec<String>) -> Self {
        FastSubscription {
            receiver: tokio::sync::Mutex::new(receiver),
            patterns,
            tasker,
            missed: AtomicU64::new(0),
        }
    }

    /// Events skipped because this reader fell behind.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// The next matching event, waiting up to `timeout`.
    pub async fn next(&self, timeout: Duration) -> Result<Option<Event>> {
        let deadline = Instant::now() + timeout;
        let mut receiver = self.receiver.lock().await;
        loop {
            let got = tokio::time::timeout_at(deadline, receiver.recv()).await;
            match got {
                Err(_) => return Ok(None),
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    self.missed.fetch_add(n, Ordering::Relaxed);
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Err(TaskerError::InvalidState("the engine shut down".into()))
                }
                Ok(Ok(event)) => {
                    if !self.patterns.iter().any(|p| pattern_matches(p, &event.name)) {
                        continue;
                    }
                    let mut event = (*event).clone();
                    self.tasker.fill_identity(&mut event).await;
                    return Ok(Some(event));
                }
            }
        }
    }

    /// [`Self::next`], blocking the calling thread (not a runtime thread).
    pub fn poll(&self, timeout: Duration) -> Result<Option<Event>> {
        crate::runtime::block_on(self.next(timeout))?
    }
}

/// A durable subscriber written in Rust: the group it belongs to, the events it wants, and
/// what it does with one. [`SubscriberRunner`] runs it.
///
/// ```no_run
/// # use tasker_core::events::{Event, Subscriber, SubscriberRunner};
/// struct Receipts;
///
/// #[async_trait::async_trait]
/// impl Subscriber for Receipts {
///     fn group(&self) -> String { "receipts".into() }
///     fn patterns(&self) -> Vec<String> { vec!["task.completed".into()] }
///     async fn handle(&self, event: &Event) -> Result<(), String> {
///         println!("task {:?} completed", event.task_uuid);
///         Ok(())
///     }
/// }
/// # async fn run(tasker: tasker_core::Tasker) -> tasker_core::Result<()> {
/// let runner = SubscriberRunner::start(&tasker, Receipts, None).await?;
/// // … until shutdown:
/// runner.stop().await
/// # }
/// ```
#[async_trait::async_trait]
pub trait Subscriber: Send + Sync + 'static {
    /// The subscriber group (members of one group share its events).
    fn group(&self) -> String;
    /// Event name patterns (`task.*`, `payment.charged`, `*`).
    fn patterns(&self) -> Vec<String>;
    /// Handles one event. `Err` fails the delivery: it is retried with backoff, and set aside
    /// as a dead letter after `max_attempts`.
    async fn handle(&self, event: &Event) -> std::result::Result<(), String>;
}

/// A boxed subscriber is one too, so a program can keep subscribers of different types in one
/// `Vec<Box<dyn Subscriber>>` and start each (what `tasker init` projects do).
#[async_trait::async_trait]
impl<S: Subscriber + ?Sized> Subscriber for Box<S> {
    fn group(&self) -> String {
        (**self).group()
    }
    fn patterns(&self) -> Vec<String> {
        (**self).patterns()
    }
    async fn handle(&self, event: &Event) -> std::result::Result<(), String> {
        (**self).handle(event).await
    }
}

/// Runs a [`Subscriber`] as a member of its group, one event after another, on the runtime it
/// is started on.
pub struct SubscriberRunner {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl SubscriberRunner {
    /// Joins the subscriber's group (with `options`, whose group and patterns the subscriber's
    /// replace; `None` for the defaults) and starts handing it events.
    pub async fn start<S: Subscriber>(
        tasker: &Tasker,
        subscriber: S,
        options: Option<SubscriptionOptions>,
    ) -> Result<SubscriberRunner> {
        let mut options = options.unwrap_or_else(|| SubscriptionOptions::new(subscriber.group(), Vec::new()));
        options.group = subscriber.group();
        options.patterns = subscriber.patterns();
        let subscription = EventSubscription::join(tasker, options).await?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while !*stopped.borrow() {
                let next = tokio::select! {
                    _ = stopped.changed() => break,
                    next = subscription.poll_async(Duration::from_millis(200)) => next?,
                };
                let Some(delivery) = next else { continue };
                match subscriber.handle(&delivery.event).await {
                    Ok(()) => subscription.ack(delivery.delivery_id)?,
                    Err(error) => subscription.fail(delivery.delivery_id, &error)?,
                }
            }
            subscription.close().await
        });
        Ok(SubscriberRunner { stop, task })
    }

    /// Finishes the event in hand, records positions and leaves the group.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| TaskerError::InvalidState(format!("the subscriber runner failed: {e}")))?
    }
}
