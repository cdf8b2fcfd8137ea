//! Where step messages travel: the database's own queue (PGMQ on PostgreSQL, a table on SQLite;
//! the default), or RabbitMQ with PostgreSQL still holding every state (`messaging.backend =
//! "rabbitmq"`).
//!
//! # RabbitMQ: the PGMQ tables are the outbox
//!
//! With RabbitMQ, nothing about how the engine writes messages changes: every send, delete and
//! visibility change still happens in the PostgreSQL transaction of the state change, in the
//! PGMQ table of the queue. That row is the transactional outbox *and* the lease record:
//!
//! * **Relay** ([`relay`]): a row that is visible (just sent, released, or whose lease expired
//!   because its worker died) is read like a claim would read it — `read_ct` goes up by one and
//!   it is hidden for `messaging.rabbitmq_republish_after_ms` — published to RabbitMQ with
//!   publisher confirms, and the transaction commits only after the broker confirmed. A crash
//!   before the commit leaves the row visible, so it is published again; a rolled-back state
//!   change never wrote the row, so nothing is published. Every process relays the queues it
//!   knows of, woken by the commit that sent (in this process) or by NOTIFY (from others), with a
//!   poll as the fallback for leases that simply expire.
//! * **Claim** (`store/rabbit.rs`): workers consume with `basic.qos(prefetch)`; a claim takes
//!   buffered deliveries and claims their rows by id *if the row was not read since the
//!   delivery was published* (a compare-and-swap on `read_ct`), then runs the ordinary claim.
//!   A duplicate or stale delivery (a re-publish, a redelivery after a connection loss, a row
//!   claimed or deleted meanwhile) fails that compare-and-swap and is dropped; the step's own
//!   compare-and-swap on (state, attempt) stays behind it.
//! * **Leases** stay in PostgreSQL, renewed by the worker's lease loop exactly as with PGMQ.
//!   A delivery is acknowledged once the claim that took it committed: from then on the row's
//!   lease, not the delivery, says whether the worker is alive. That is what keeps a cut TCP
//!   connection from running a step twice (RabbitMQ requeues the delivery, whose claim then
//!   finds the row leased and drops it), what makes a dead worker's steps come back (its lease
//!   expires, the relay publishes the row again, the next claim gives the lost attempt back),
//!   and why RabbitMQ's `consumer_timeout` never cuts a long step short. Deliveries that were
//!   buffered but not claimed are simply redelivered when a consumer's connection goes.
//! * **Retries** are re-sent by the orchestrator when they are due (`next_retry_at`, as on
//!   every backend), so a backoff never busy-loops the broker.
//! * Eager dispatch (a completion claiming the children it releases in its own transaction)
//!   needs no broker at all: its hidden row only comes back through the relay if the worker dies.

pub mod broker;
pub mod relay;

use std::time::Duration;

use crate::error::{Result, TaskerError};

/// Which transport carries step messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessagingBackend {
    /// The database's own queue: PGMQ on PostgreSQL, the queue table on SQLite.
    #[default]
    Database,
    /// RabbitMQ, with the PGMQ tables of PostgreSQL as the outbox (PostgreSQL only).
    Rabbitmq,
}

impl std::str::FromStr for MessagingBackend {
    type Err = TaskerError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "database" => Ok(Self::Database),
            "rabbitmq" => Ok(Self::Rabbitmq),
            other => Err(TaskerError::InvalidArgument(format!(
                "messaging backend '{other}' is not one of database, rabbitmq"
            ))),
        }
    }
}

/// RabbitMQ's queue type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    /// Durable classic queues; priorities with `x-max-priority`.
    #[default]
    Classic,
    /// Quorum queues (replicated); RabbitMQ 3.x quorum queues have no priorities.
    Quorum,
}

/// The default broker when neither `messaging.rabbitmq_url` nor `RABBITMQ_URL` names one.
pub const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Messaging settings (the `messaging` section of the configuration).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MessagingOptions {
    pub backend: MessagingBackend,
    pub rabbitmq: RabbitOptions,
}

impl Default for MessagingOptions {
    fn default() -> Self {
        Self {
            backend: MessagingBackend::Database,
            rabbitmq: RabbitOptions::default(),
        }
    }
}

impl MessagingOptions {
    /// RabbitMQ with default settings on `url` (tests and benchmarks).
    pub fn rabbitmq(url: Option<String>) -> Self {
        Self {
            backend: MessagingBackend::Rabbitmq,
            rabbitmq: RabbitOptions {
                url,
                ..RabbitOptions::default()
            },
        }
    }
}

/// How to reach RabbitMQ and name things there.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RabbitOptions {
    /// `amqp://` or `amqps://`; `None`: `RABBITMQ_URL`, else [`DEFAULT_RABBITMQ_URL`].
    #[serde(skip)]
    pub url: Option<String>,
    /// Unacknowledged deliveries a consumer holds; 0: twice the concurrency of the workers that
    /// serve the queue in this process.
    pub prefetch: u16,
    /// The direct exchange steps are published to (durable).
    pub exchange: String,
    /// Prepended to a Tasker queue's name to make the RabbitMQ queue's (and routing key).
    pub queue_prefix: String,
    pub queue_type: QueueType,
    /// `x-max-priority` of classic queues (0: none). Task priorities map onto 0..=this.
    pub max_priority: u8,
    /// How long a published row stays hidden in PostgreSQL before it is published again, in
    /// case the broker lost it (a purged or deleted queue).
    pub republish_after: Duration,
    /// Most rows one relay transaction publishes.
    pub relay_batch: usize,
    /// The relay's fallback poll (expired leases, missed notifications).
    pub relay_poll: Duration,
    /// AMQP heartbeat: how soon a dead connection is noticed on either side.
    pub heartbeat: Duration,
}

impl Default for RabbitOptions {
    fn default() -> Self {
        Self {
            url: None,
            prefetch: 0,
            exchange: "tasker".into(),
            queue_prefix: "tasker.".into(),
            queue_type: QueueType::Classic,
            max_priority: 9,
            republish_after: Duration::from_secs(900),
            relay_batch: 256,
            relay_poll: Duration::from_secs(1),
            heartbeat: Duration::from_secs(10),
        }
    }
}

impl RabbitOptions {
    /// The broker URL: `url`, else `RABBITMQ_URL`, else [`DEFAULT_RABBITMQ_URL`].
    pub fn resolved_url(&self) -> String {
        self.url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| std::env::var("RABBITMQ_URL").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| DEFAULT_RABBITMQ_URL.to_owned())
    }

    /// The RabbitMQ queue (and routing key) of a Tasker queue.
    pub fn broker_queue(&self, queue: &str) -> String {
        format!("{}{queue}", self.queue_prefix)
    }

    /// The AMQP priority of a task priority: 0 in the middle of `0..=max_priority`, higher
    /// priorities above it, clamped at both ends. `None` without priorities.
    pub fn amqp_priority(&self, priority: i32) -> Option<u8> {
        if self.max_priority == 0 || self.queue_type == QueueType::Quorum {
            return None;
        }
        let max = i64::from(self.max_priority);
        let mid = max / 2;
        u8::try_from((mid + i64::from(priority)).clamp(0, max)).ok()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| TaskerError::InvalidArgument(format!("messaging.{key}: {why}"));
        if self.exchange.is_empty() || self.exchange.len() > 200 {
            return Err(bad("rabbitmq_exchange", "must be 1-200 characters".into()));
        }
        if self.queue_prefix.len() > 200 {
            return Err(bad("rabbitmq_queue_prefix", "must be at most 200 characters".into()));
        }
        if self.relay_batch == 0 {
            return Err(bad("rabbitmq_relay_batch", "must be at least 1".into()));
        }
        let url = self.resolved_url();
        url.parse::<lapin::uri::AMQPUri>().map_err(|e| {
            bad(
                "rabbitmq_url",
                format!("'{}' is not an AMQP URL: {e}", crate::engine::describe_database(&url)),
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_around_the_middle_and_clamp() {
        let o = RabbitOptions::default();
        assert_eq!(o.amqp_priority(0), Some(4));
        assert_eq!(o.amqp_priority(3), Some(7));
        assert_eq!(o.amqp_priority(1_000), Some(9));
        assert_eq!(o.amqp_priority(-1_000), Some(0));
        assert_eq!(o.amqp_priority(i32::MIN), Some(0));
        let quorum = RabbitOptions {
            queue_type: QueueType::Quorum,
            ..RabbitOptions::default()
        };
        assert_eq!(quorum.amqp_priority(5), None);
    }

    #[test]
    fn a_bad_url_names_the_key_without_credentials() {
        let o = RabbitOptions {
            url: Some("http://user:secret@host".into()),
            ..RabbitOptions::default()
        };
        let e = o.validate().expect_err("not amqp").to_string();
        assert!(e.contains("messaging.rabbitmq_url"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
