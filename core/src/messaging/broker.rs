//! The connection to RabbitMQ: kept up with backoff, publishing with confirms, and one consumer
//! per queue this process's workers serve, whose deliveries wait in a bounded buffer (the
//! prefetch window) until a claim takes them. See [`super`] for what the messages mean.
//!
//! Recovery: a supervisor connects (backoff 100 ms doubling to 5 s, behind the `broker` circuit
//! breaker), and when the connection is lost it drops the buffered deliveries (RabbitMQ requeues
//! them), and connects again. A consumer whose channel closes opens another on the live
//! connection; the publisher's channel is reopened on its next use. Nothing here decides a
//! step's fate: a lost broker only delays messages, which stay in PostgreSQL until confirmed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use super::{QueueType, RabbitOptions};
use crate::breaker::{BreakerOptions, CircuitBreaker};
use crate::error::{Result, TaskerError};
use crate::store::{QueueMessage, RemoteSignal};

/// How long a queue that had consumers is trusted to still have some.
const SERVED_FOR: Duration = Duration::from_secs(2);

/// How long a queue counts as served after a direct claim pulled from it.
const PULLED_SERVES_FOR: Duration = Duration::from_secs(60);

/// A delivery waiting for a claim.
#[derive(Debug, Clone)]
pub(crate) struct Buffered {
    pub(crate) msg_id: i64,
    /// The row's `read_ct` when it was published: the claim's compare-and-swap.
    pub(crate) read_ct: i32,
    /// The claim order (priority, then age) the row was sent with.
    order: i64,
    acker: lapin::acker::Acker,
    /// The connection it came on; deliveries of an older one are gone (requeued by RabbitMQ).
    generation: u64,
}

/// One queue's deliveries, best first: by claim order, then arrival.
type QueueBuffer = BTreeMap<(i64, u64), Buffered>;

/// One live connection.
struct Session {
    connection: Connection,
    generation: u64,
    /// The confirm-mode channel publishes go through, opened on first use.
    publisher: tokio::sync::Mutex<Option<Channel>>,
    /// Queues declared on this connection.
    declared: Mutex<BTreeSet<String>>,
    /// The channel direct claims pull with (`basic.get`), opened on first use.
    getter: tokio::sync::Mutex<Option<Channel>>,
}

/// A queue this process consumes.
struct Consuming {
    /// Workers of this process serving it.
    workers: usize,
    task: JoinHandle<()>,
    channel: Arc<Mutex<Option<Channel>>>,
}

/// What the broker looks like now, for readiness.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BrokerStatus {
    /// `amqp://host:port/vhost`, without credentials.
    pub target: String,
    pub connected: bool,
    /// The last connection or channel error, while not connected.
    pub last_error: Option<String>,
    /// Queues consumed by this process.
    pub consuming: Vec<String>,
    pub published: u64,
    pub delivered: u64,
    pub stale: u64,
    pub reconnects: u64,
}

/// See the module documentation. One per engine using `messaging.backend = "rabbitmq"`.
pub struct Broker {
    options: RabbitOptions,
    uri: lapin::uri::AMQPUri,
    target: String,
    breaker: Arc<CircuitBreaker>,
    session: watch::Sender<Option<Arc<Session>>>,
    generation: AtomicU64,
    consumers: Mutex<HashMap<String, Consuming>>,
    buffer: Mutex<HashMap<String, QueueBuffer>>,
    seq: AtomicU64,
    /// Delivery arrivals, for the workers' wait (shared with the store's other signals).
    signals: broadcast::Sender<RemoteSignal>,
    /// Queues the relay should look at, and its wake-up.
    relay_pending: Mutex<BTreeSet<String>>,
    relay_known: Mutex<BTreeSet<String>>,
    relay_wake: Notify,
    /// When this process last claimed from a queue it does not consume (`Tasker::claim`
    /// without a worker): the relay serves such a queue for a while.
    pulled: Mutex<HashMap<String, Instant>>,
    /// When each queue was last seen with consumers (see [`Broker::consumers_of`]).
    served: Mutex<HashMap<String, Instant>>,
    /// Every queue declared since start (for [`Broker::delete_declared_queues`]).
    declared_ever: Mutex<BTreeSet<String>>,
    last_error: Mutex<Option<String>>,
    closed: AtomicBool,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    published: AtomicU64,
    delivered: AtomicU64,
    stale: AtomicU64,
    reconnects: AtomicU64,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("target", &self.target).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a single insert/remove/read: a panic cannot leave the
    // data half-updated, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn broker_error(doing: &str, e: impl std::fmt::Display) -> TaskerError {
    TaskerError::Broker(format!("{doing}: {e}"))
}

/// Describes an AMQP URL without credentials.
fn describe(uri: &lapin::uri::AMQPUri) -> String {
    let scheme = match uri.scheme {
        lapin::uri::AMQPScheme::AMQP => "amqp",
        lapin::uri::AMQPScheme::AMQPS => "amqps",
    };
    format!(
        "{scheme}://{}:{}/{}",
        uri.authority.host,
        uri.authority.port,
        url::form_urlencoded::byte_serialize(uri.vhost.as_bytes()).collect::<String>()
    )
}

impl Broker {
    /// Starts connecting (in the background: an engine starts while the broker is away, and
    /// readiness says so). A malformed URL is refused here.
    pub(crate) fn start(
        options: RabbitOptions,
        breaker: BreakerOptions,
        signals: broadcast::Sender<RemoteSignal>,
    ) -> Result<Arc<Self>> {
        options.validate()?;
        let mut uri: lapin::uri::AMQPUri = options
            .resolved_url()
            .parse()
            .map_err(|e| TaskerError::InvalidArgument(format!("messaging.rabbitmq_url: {e}")))?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = u16::try_from(options.heartbeat.as_secs()).ok();
        }
        if uri.query.connection_timeout.is_none() {
            uri.query.connection_timeout = Some(5_000);
        }
        let target = describe(&uri);
        let (session, _) = watch::channel(None);
        let broker = Arc::new(Self {
            breaker: CircuitBreaker::new("broker", breaker, Instant::now()),
            options,
            uri,
            target,
            session,
            generation: AtomicU64::new(0),
            consumers: Mutex::new(HashMap::new()),
            buffer: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            signals,
            relay_pending: Mutex::new(BTreeSet::new()),
            relay_known: Mutex::new(BTreeSet::new()),
            relay_wake: Notify::new(),
            pulled: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
            declared_ever: Mutex::new(BTreeSet::new()),
            last_error: Mutex::new(Some("connecting".into())),
            closed: AtomicBool::new(false),
            supervisor: Mutex::new(None),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        });
        let task = tokio::spawn(supervise(Arc::downgrade(&broker)));
        *lock(&broker.supervisor) = Some(task);
        Ok(broker)
    }

    pub(crate) fn options(&self) -> &RabbitOptions {
        &self.options
    }

    /// The circuit breaker around the broker.
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    /// Connection state and counters.
    pub fn status(&self) -> BrokerStatus {
        let connected = self.current().is_some();
        let mut consuming: Vec<String> = lock(&self.consumers).keys().cloned().collect();
        consuming.sort();
        BrokerStatus {
            target: self.target.clone(),
            connected,
            last_error: if connected {
                None
            } else {
                lock(&self.last_error).clone()
            },
            consuming,
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.session
            .borrow()
            .clone()
            .filter(|s| s.connection.status().connected())
    }

    fn note_error(&self, e: &TaskerError) {
        *lock(&self.last_error) = Some(e.to_string());
    }

    // ----- relay bookkeeping -----

    /// Asks the relay to look at `queues` now (and remember them for its polls).
    pub(crate) fn wake_relay<'a>(&self, queues: impl IntoIterator<Item = &'a str>) {
        let mut any = false;
        {
            let mut ever = lock(&self.declared_ever);
            let mut pending = lock(&self.relay_pending);
            let mut known = lock(&self.relay_known);
            for q in queues {
                if !known.contains(q) {
                    known.insert(q.to_owned());
                    ever.insert(q.to_owned());
                }
                pending.insert(q.to_owned());
                any = true;
            }
        }
        if any {
            self.relay_wake.notify_one();
        }
    }

    /// Every queue the relay knows of becomes pending (a poll, or a new connection).
    pub(crate) fn wake_relay_all(&self) {
        let known: Vec<String> = lock(&self.relay_known).iter().cloned().collect();
        self.wake_relay(known.iter().map(String::as_str));
    }

    /// Takes the queues the relay should look at.
    pub(crate) fn take_relay_pending(&self) -> BTreeSet<String> {
        std::mem::take(&mut *lock(&self.relay_pending))
    }

    pub(crate) fn relay_wake(&self) -> &Notify {
        &self.relay_wake
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    // ----- publishing -----

    /// Declares `queue` (idempotent) and returns how many consumers it has, across processes.
    /// A queue seen served is trusted for [`SERVED_FOR`] without asking again (the relay asks
    /// before every batch; a consumer that left meanwhile costs nothing: its messages wait in
    /// RabbitMQ for the next one, as they would have anyway).
    pub(crate) async fn consumers_of(&self, queue: &str) -> Result<u32> {
        if lock(&self.served)
            .get(queue)
            .is_some_and(|at| at.elapsed() < SERVED_FOR)
        {
            return Ok(1);
        }
        let count = self.ask_consumers_of(queue).await?;
        if count > 0 {
            lock(&self.served).insert(queue.to_owned(), Instant::now());
        }
        Ok(count)
    }

    async fn ask_consumers_of(&self, queue: &str) -> Result<u32> {
        let session = self.current().ok_or_else(|| self.unreachable())?;
        let permit = self.breaker.admit(Instant::now())?;
        let result = async {
            let guard = self.publisher(&session).await?;
            let channel = guard.as_ref().ok_or_else(|| broker_error("publishing", "no channel"))?;
            let q = declare(channel, &self.options, queue).await?;
            lock(&session.declared).insert(queue.to_owned());
            let pulled = lock(&self.pulled)
                .get(queue)
                .is_some_and(|at| at.elapsed() < PULLED_SERVES_FOR);
            Ok(q.consumer_count().max(u32::from(pulled)))
        }
        .await;
        self.settle(&session, permit, &result).await;
        result
    }

    /// Publishes relayed rows of `queue`, persistent and mandatory, and returns once RabbitMQ
    /// confirmed every one (an unroutable or refused message is an error: the caller rolls back
    /// and the rows are published again later).
    pub(crate) async fn publish(&self, queue: &str, rows: &[QueueMessage]) -> Result<()> {
        let session = self.current().ok_or_else(|| self.unreachable())?;
        let permit = self.breaker.admit(Instant::now())?;
        let result = async {
            let guard = self.publisher(&session).await?;
            let channel = guard.as_ref().ok_or_else(|| broker_error("publishing", "no channel"))?;
            if !lock(&session.declared).contains(queue) {
                declare(channel, &self.options, queue).await?;
                lock(&session.declared).insert(queue.to_owned());
            }
            let routing_key = self.options.broker_queue(queue);
            let mut confirms = Vec::with_capacity(rows.len());
            for row in rows {
                let (body, priority) = delivery_body(row);
                let mut properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_message_id(row.msg_id.to_string().into());
                if let Some(p) = priority.and_then(|p| self.options.amqp_priority(p)) {
                    properties = properties.with_priority(p);
                }
                let confirm = channel
                    .basic_publish(
                        &self.options.exchange,
                        &routing_key,
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        body.as_bytes(),
                        properties,
                    )
                    .await
                    .map_err(|e| broker_error("publishing", e))?;
                confirms.push(confirm);
            }
            for confirm in confirms {
                match confirm
                    .await
                    .map_err(|e| broker_error("awaiting a publisher confirm", e))?
                {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(_)) => {
                        // Unroutable: the binding is missing. Declare again next time.
                        lock(&session.declared).remove(queue);
                        return Err(TaskerError::Queue(format!(
                            "RabbitMQ returned a message for queue '{routing_key}' as unroutable"
                        )));
                    }
                    Confirmation::Nack(_) => {
                        return Err(TaskerError::Queue(format!(
                            "RabbitMQ refused a message for queue '{routing_key}' (nack)"
                        )))
                    }
                    Confirmation::NotRequested => {
                        return Err(broker_error("publishing", "the channel is not in confirm mode"))
                    }
                }
            }
            Ok(())
        }
        .await;
        self.settle(&session, permit, &result).await;
        if result.is_ok() {
            self.published.fetch_add(rows.len() as u64, Ordering::Relaxed);
        }
        result
    }

    /// The publisher channel, (re)opened in confirm mode when needed.
    async fn publisher<'a>(&self, session: &'a Session) -> Result<tokio::sync::MutexGuard<'a, Option<Channel>>> {
        let mut guard = session.publisher.lock().await;
        let usable = guard.as_ref().is_some_and(|c| c.status().connected());
        if !usable {
            *guard = None;
            let channel = session
                .connection
                .create_channel()
                .await
                .map_err(|e| broker_error("opening the publisher channel", e))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| broker_error("enabling publisher confirms", e))?;
            lock(&session.declared).clear();
            *guard = Some(channel);
        }
        Ok(guard)
    }

    /// Reports a call's outcome to the breaker; a broker error drops the publisher channel so
    /// that the next call opens a fresh one.
    async fn settle<T>(&self, session: &Session, permit: crate::breaker::Permit, result: &Result<T>) {
        if let Err(e) = result {
            self.note_error(e);
            *session.publisher.lock().await = None;
        }
        permit.settle(result, Instant::now());
    }

    fn unreachable(&self) -> TaskerError {
        TaskerError::Broker(format!(
            "not connected to {}{}",
            self.target,
            lock(&self.last_error)
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ))
    }

    // ----- consuming -----

    /// A worker of this process serves `queues` (with `concurrency` slots): consume them.
    pub(crate) fn serve(self: &Arc<Self>, queues: &[String], concurrency: usize) {
        let prefetch = match self.options.prefetch {
            0 => u16::try_from(concurrency.saturating_mul(2)).unwrap_or(u16::MAX).max(1),
            n => n,
        };
        let mut consumers = lock(&self.consumers);
        for queue in queues {
            if let Some(c) = consumers.get_mut(queue) {
                c.workers += 1;
                continue;
            }
            let channel = Arc::new(Mutex::new(None));
            let task = tokio::spawn(consume(
                Arc::downgrade(self),
                queue.clone(),
                prefetch,
                Arc::clone(&channel),
            ));
            consumers.insert(
                queue.clone(),
                Consuming {
                    workers: 1,
                    task,
                    channel,
                },
            );
        }
    }

    /// A worker of this process stopped serving `queues`: the last one out cancels the
    /// consumer, and RabbitMQ requeues what it had buffered for other consumers.
    pub(crate) async fn unserve(&self, queues: &[String]) {
        let mut stopped = Vec::new();
        {
            let mut consumers = lock(&self.consumers);
            for queue in queues {
                let Some(c) = consumers.get_mut(queue) else { continue };
                c.workers = c.workers.saturating_sub(1);
                if c.workers == 0 {
                    if let Some(c) = consumers.remove(queue) {
                        stopped.push((queue.clone(), c));
                    }
                }
            }
        }
        for (queue, c) in stopped {
            c.task.abort();
            let channel = lock(&c.channel).take();
            lock(&self.buffer).remove(&queue);
            if let Some(channel) = channel {
                if let Err(e) = channel.close(200, "worker stopped").await {
                    tracing::debug!(%queue, error = %e, "closing a consumer channel");
                }
            }
        }
    }

    /// Whether a delivery for one of `queues` waits.
    pub(crate) fn has_buffered(&self, queues: &[String]) -> bool {
        let buffer = lock(&self.buffer);
        queues.iter().any(|q| buffer.get(q).is_some_and(|b| !b.is_empty()))
    }

    /// Takes up to `max` deliveries of `queue`, best first (priority, then age).
    pub(crate) fn take(&self, queue: &str, max: usize) -> Vec<Buffered> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut buffer = lock(&self.buffer);
        let Some(b) = buffer.get_mut(queue) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while out.len() < max {
            let Some((_, d)) = b.pop_first() else { break };
            if d.generation == generation {
                out.push(d);
            }
        }
        out
    }

    /// [`Broker::take`] where this process consumes `queue`; elsewhere (a claim without a
    /// worker) up to `max` deliveries pulled one by one with `basic.get`, so that nothing is
    /// buffered for a claimer that may never come back.
    pub(crate) async fn take_or_pull(&self, queue: &str, max: usize) -> Vec<Buffered> {
        if lock(&self.consumers).contains_key(queue) {
            return self.take(queue, max);
        }
        let first = lock(&self.pulled).insert(queue.to_owned(), Instant::now()).is_none();
        if first {
            self.wake_relay([queue]);
        }
        let Some(session) = self.current() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let result = async {
            let mut guard = session.getter.lock().await;
            if !guard.as_ref().is_some_and(|c| c.status().connected()) {
                let channel = session
                    .connection
                    .create_channel()
                    .await
                    .map_err(|e| broker_error("opening a channel", e))?;
                declare(&channel, &self.options, queue).await?;
                *guard = Some(channel);
            }
            let Some(channel) = guard.as_ref() else { return Ok(()) };
            let name = self.options.broker_queue(queue);
            while out.len() < max {
                let got = channel
                    .basic_get(&name, lapin::options::BasicGetOptions::default())
                    .await
                    .map_err(|e| broker_error("pulling a message", e))?;
                let Some(got) = got else { break };
                if let Some(d) = self.parse_delivery(queue, got.delivery, session.generation) {
                    out.push(d);
                }
            }
            Ok::<(), TaskerError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(%queue, error = %e, "pulling from RabbitMQ failed");
            *session.getter.lock().await = None;
        }
        out
    }

    /// Puts deliveries a claim did not use back (its transaction rolled back).
    pub(crate) fn give_back(&self, queue: &str, deliveries: Vec<Buffered>) {
        let generation = self.generation.load(Ordering::SeqCst);
        if !lock(&self.consumers).contains_key(queue) {
            // Pulled by a direct claim, or the consumer is gone (its channel closed and
            // RabbitMQ requeued these): back to the broker.
            tokio::spawn(async move {
                for d in deliveries {
                    let _ = d
                        .acker
                        .nack(lapin::options::BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await;
                }
            });
            return;
        }
        let mut buffer = lock(&self.buffer);
        let b = buffer.entry(queue.to_owned()).or_default();
        for d in deliveries.into_iter().filter(|d| d.generation == generation) {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            b.insert((d.order, seq), d);
        }
    }

    /// Acknowledges deliveries whose claim committed (or that were stale). A failed ack means
    /// the channel is gone and RabbitMQ requeued the delivery: its redelivery is stale and is
    /// dropped by the claim, so it is only logged.
    pub(crate) async fn ack(&self, deliveries: Vec<Buffered>) {
        for d in deliveries {
            if let Err(e) = d.acker.ack(BasicAckOptions::default()).await {
                tracing::debug!(msg_id = d.msg_id, error = %e, "ack failed; the delivery will come back stale");
            }
        }
    }

    /// Counts deliveries a claim found stale.
    pub(crate) fn count_stale(&self, n: usize) {
        self.stale.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A delivery as a [`Buffered`] one; one that is not a Tasker message is acknowledged
    /// (dropped) and logged.
    fn parse_delivery(&self, queue: &str, delivery: lapin::message::Delivery, generation: u64) -> Option<Buffered> {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let parsed = serde_json::from_slice::<Value>(&delivery.data).ok().and_then(|v| {
            Some((
                v.get("msg_id")?.as_i64()?,
                i32::try_from(v.get("read_ct")?.as_i64()?).ok()?,
                v.get("order").and_then(Value::as_i64).unwrap_or(0),
            ))
        });
        let Some((msg_id, read_ct, order)) = parsed else {
            tracing::error!(%queue, "dropping a RabbitMQ delivery that is not a Tasker message");
            self.stale.fetch_add(1, Ordering::Relaxed);
            let acker = delivery.acker;
            tokio::spawn(async move {
                let _ = acker.ack(BasicAckOptions::default()).await;
            });
            return None;
        };
        Some(Buffered {
            msg_id,
            read_ct,
            order,
            acker: delivery.acker,
            generation,
        })
    }

    fn buffer_delivery(&self, queue: &str, delivery: lapin::message::Delivery, generation: u64) {
        let Some(d) = self.parse_delivery(queue, delivery, generation) else {
            return;
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.buffer)
            .entry(queue.to_owned())
            .or_default()
            .insert((d.order, seq), d);
        let _ = self.signals.send(RemoteSignal::Queue(queue.to_owned()));
    }

    /// Stops everything and closes the connection (RabbitMQ requeues unclaimed deliveries).
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.relay_wake.notify_one();
        if let Some(task) = lock(&self.supervisor).take() {
            task.abort();
        }
        let consumers: Vec<Consuming> = lock(&self.consumers).drain().map(|(_, c)| c).collect();
        for c in consumers {
            c.task.abort();
        }
        lock(&self.buffer).clear();
        let session = self.session.send_replace(None);
        if let Some(s) = session {
            let _ = s.connection.close(200, "engine closed").await;
        }
    }

    /// Deletes every RabbitMQ queue this engine declared (test and benchmark clean-up).
    pub async fn delete_declared_queues(&self) -> Result<()> {
        let session = self.current().ok_or_else(|| self.unreachable())?;
        let channel = session
            .connection
            .create_channel()
            .await
            .map_err(|e| broker_error("opening a channel", e))?;
        let queues: Vec<String> = lock(&self.declared_ever).iter().cloned().collect();
        for q in queues {
            channel
                .queue_delete(
                    &self.options.broker_queue(&q),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await
                .map_err(|e| broker_error("deleting a queue", e))?;
        }
        let _ = channel.close(200, "done").await;
        Ok(())
    }
}

/// The AMQP body of a relayed row (what a claim needs, plus the step for people reading the
/// queue) and the task priority it was sent with, recovered from its claim order (`order` is
/// the send time minus a second per point of priority; see [`crate::store::order_key`]).
fn delivery_body(row: &QueueMessage) -> (String, Option<i32>) {
    let order = row.payload.get("order").and_then(Value::as_i64);
    let priority = order.map(|o| {
        let head_start = row.enqueued_at.timestamp_millis().saturating_sub(o);
        let points = (head_start as f64 / crate::store::PRIORITY_WEIGHT_MS as f64).round();
        points.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
    });
    let body = json!({
        "msg_id": row.msg_id,
        "read_ct": row.read_ct,
        "order": order,
        "step_uuid": row.payload.get("step_uuid"),
        "task_uuid": row.payload.get("task_uuid"),
        "attempt": row.payload.get("attempt"),
    });
    (body.to_string(), priority)
}

/// Declares the exchange, the queue of `queue` and its binding.
async fn declare(channel: &Channel, options: &RabbitOptions, queue: &str) -> Result<lapin::Queue> {
    let name = options.broker_queue(queue);
    let mut args = FieldTable::default();
    match options.queue_type {
        QueueType::Quorum => {
            args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        }
        QueueType::Classic if options.max_priority > 0 => {
            args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(options.max_priority));
        }
        QueueType::Classic => {}
    }
    channel
        .exchange_declare(
            &options.exchange,
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker_error(&format!("declaring exchange '{}'", options.exchange), e))?;
    let q = channel
        .queue_declare(
            &name,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .map_err(|e| {
            broker_error(
                &format!(
                    "declaring queue '{name}' (an existing queue with other arguments must be deleted, or \
                     messaging.rabbitmq_queue_type/rabbitmq_max_priority set to match it)"
                ),
                e,
            )
        })?;
    channel
        .queue_bind(
            &name,
            &options.exchange,
            &name,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker_error(&format!("binding queue '{name}'"), e))?;
    Ok(q)
}

/// Keeps a connection up: connects with backoff, publishes the session, waits for it to fail.
async fn supervise(broker: std::sync::Weak<Broker>) {
    let mut failures = 0u32;
    loop {
        let Some(b) = broker.upgrade() else { return };
        if b.is_closed() {
            return;
        }
        let attempt = async {
            let permit = b.breaker.admit(Instant::now())?;
            let properties = ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio::current())
                .with_connection_name(format!("tasker {}:{}", crate::worker::hostname(), std::process::id()).into());
            let result = Connection::connect_uri(b.uri.clone(), properties)
                .await
                .map_err(|e| broker_error(&format!("connecting to {}", b.target), e));
            permit.settle(&result, Instant::now());
            result
        }
        .await;
        match attempt {
            Ok(connection) => {
                failures = 0;
                let lost = Arc::new(Notify::new());
                let on_error = Arc::clone(&lost);
                let weak = broker.clone();
                let mut events = Box::pin(connection.events_listener());
                tokio::spawn(async move {
                    while let Some(event) = events.next().await {
                        if let lapin::Event::Error(e) = event {
                            if let Some(b) = weak.upgrade() {
                                b.note_error(&broker_error("connection lost", e));
                            }
                            on_error.notify_one();
                            return;
                        }
                    }
                });
                let generation = b.generation.fetch_add(1, Ordering::SeqCst) + 1;
                b.session.send_replace(Some(Arc::new(Session {
                    connection,
                    generation,
                    publisher: tokio::sync::Mutex::new(None),
                    declared: Mutex::new(BTreeSet::new()),
                    getter: tokio::sync::Mutex::new(None),
                })));
                *lock(&b.last_error) = None;
                tracing::info!(broker = %b.target, generation, "connected to RabbitMQ");
                // Rows that waited while the broker was away go out now.
                b.wake_relay_all();
                drop(b);
                // Wait for the connection to go (the error callback, or a status check).
                loop {
                    tokio::select! {
                        _ = lost.notified() => break,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    let Some(b) = broker.upgrade() else { return };
                    if b.is_closed() {
                        return;
                    }
                    let alive = b
                        .session
                        .borrow()
                        .as_ref()
                        .is_some_and(|s| s.generation == generation && s.connection.status().connected());
                    if !alive {
                        break;
                    }
                }
                let Some(b) = broker.upgrade() else { return };
                tracing::warn!(broker = %b.target, generation, "lost the RabbitMQ connection; reconnecting");
                b.reconnects.fetch_add(1, Ordering::Relaxed);
                // Its deliveries are requeued by RabbitMQ: the buffered ones are void.
                b.generation.fetch_add(1, Ordering::SeqCst);
                lock(&b.buffer).clear();
                if let Some(old) = b.session.send_replace(None) {
                    let _ = old.connection.close(200, "reconnecting").await;
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(broker = %b.target, error = %e, failures, "cannot connect to RabbitMQ; retrying");
                }
                b.note_error(&e);
                drop(b);
                let pause = Duration::from_millis(100u64 << failures.min(6)).min(Duration::from_secs(5));
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Consumes `queue` for as long as this process serves it: on every connection, and again on a
/// fresh channel when its channel closes.
async fn consume(broker: std::sync::Weak<Broker>, queue: String, prefetch: u16, slot: Arc<Mutex<Option<Channel>>>) {
    let mut failures = 0u32;
    loop {
        let Some(b) = broker.upgrade() else { return };
        let mut sessions = b.session.subscribe();
        let session = sessions
            .borrow_and_update()
            .clone()
            .filter(|s| s.connection.status().connected());
        let Some(session) = session else {
            drop(b);
            // Wait for the supervisor's next connection.
            if sessions.changed().await.is_err() {
                return;
            }
            continue;
        };
        let result = async {
            let channel = session
                .connection
                .create_channel()
                .await
                .map_err(|e| broker_error("opening a consumer channel", e))?;
            *lock(&slot) = Some(channel.clone());
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| broker_error("setting the prefetch", e))?;
            declare(&channel, &b.options, &queue).await?;
            let tag = format!("tasker-{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
            let consumer = channel
                .basic_consume(
                    &b.options.broker_queue(&queue),
                    &tag,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| broker_error("starting a consumer", e))?;
            Ok::<_, TaskerError>(consumer)
        }
        .await;
        let mut consumer = match result {
            Ok(c) => c,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(%queue, error = %e, failures, "cannot consume from RabbitMQ; retrying");
                b.note_error(&e);
                drop(b);
                let pause = Duration::from_millis(100u64 << failures.min(6)).min(Duration::from_secs(5));
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        failures = 0;
        let generation = session.generation;
        // Rows sent while nobody consumed stayed in PostgreSQL: relay them now.
        b.wake_relay([queue.as_str()]);
        drop(b);
        while let Some(next) = consumer.next().await {
            let Some(b) = broker.upgrade() else { return };
            match next {
                Ok(delivery) => b.buffer_delivery(&queue, delivery, generation),
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "RabbitMQ consumer failed; consuming again");
                    break;
                }
            }
        }
        *lock(&slot) = None;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
