//! The durable event log's rows and statements (issue 11): the outbox that state-changing
//! transactions write to ([`super::StoreTx::insert_events`]), and what subscriber groups read
//! and record ([`EventStore`]). The consumer protocol on top of it lives in
//! [`crate::events::subscriber`].
//!
//! The model, for both backends:
//! * every event goes to one of [`EVENT_PARTITIONS`] partitions, by its task, so one task's
//!   events stay in one partition and in order;
//! * an event's `position` is its place in the log: increasing in commit order, so a reader that
//!   remembers the last position it handled never skips an event that committed late;
//! * a group keeps one cursor per partition (the last position it acknowledged) and a lease on
//!   it held by one member at a time; members share a group's partitions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::Result;

/// How many partitions the log has. A group can spread over at most this many members.
pub const EVENT_PARTITIONS: i16 = 16;

/// The partition of a task's events: its uuid's last byte, which is random in v4 and v7 uuids
/// (their first bytes are a timestamp). Events of no task go to partition 0.
pub fn partition_of(task_uuid: Option<Uuid>) -> i16 {
    task_uuid.map_or(0, |t| i16::from(t.as_bytes()[15]) % EVENT_PARTITIONS)
}

/// An event to write in the current transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub name: String,
    pub task_uuid: Option<Uuid>,
    pub step_uuid: Option<Uuid>,
    pub payload: Value,
    pub occurred_at: DateTime<Utc>,
}

impl NewEvent {
    /// Its partition: its task's; an event of no task has no order to keep, so it is spread by
    /// its own id.
    pub fn partition(&self) -> i16 {
        partition_of(Some(self.task_uuid.unwrap_or(self.event_id)))
    }
}

/// An event as read from the log, with its task's identity (read with it, not stored with it:
/// the hot path writes only what it knows).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub partition: i16,
    pub position: i64,
    pub event_id: Uuid,
    pub name: String,
    pub task_uuid: Option<Uuid>,
    pub step_uuid: Option<Uuid>,
    pub payload: Value,
    pub occurred_at: DateTime<Utc>,
    /// The task's template identity and correlation id; `None` once the task is deleted.
    pub namespace: Option<String>,
    pub task_name: Option<String>,
    pub version: Option<String>,
    pub correlation_id: Option<Uuid>,
}

/// A group's place in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub partition: i16,
    pub position: i64,
}

/// An event a group's subscriber gave up on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDeadLetter {
    pub id: i64,
    pub group: String,
    pub event_id: Uuid,
    pub name: String,
    pub task_uuid: Option<Uuid>,
    /// The whole event as it was delivered.
    pub event: Value,
    pub error: String,
    pub attempts: i32,
    pub dead_at: DateTime<Utc>,
}

/// A subscriber group and how far behind it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventGroupStatus {
    pub group: String,
    pub patterns: Vec<String>,
    /// Members that heartbeated recently.
    pub live_members: i64,
    /// Partitions held by a live lease.
    pub leased_partitions: i64,
    /// Events in the log after the group's cursors (not yet acknowledged by it).
    pub lag: i64,
    /// When the oldest of those was written.
    pub oldest_pending_at: Option<DateTime<Utc>>,
    pub dead_letters: i64,
    pub created_at: DateTime<Utc>,
}

/// Where a group's recorded ack lands: the cursor moves only while `member` holds the lease.
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    pub group: &'a str,
    pub member: &'a str,
}

/// The statements subscriber groups use. Each is its own transaction.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Gives committed events their positions, oldest first, at most `limit` of them; returns
    /// how many. Only one process sequences at a time (the others return 0). SQLite needs no
    /// sequencing (one writer: `id` order is commit order) and always returns 0.
    async fn sequence_events(&self, limit: i64) -> Result<u64>;

    /// Events of `partition` after `after`, in position order.
    async fn read_events(&self, partition: i16, after: i64, limit: i64) -> Result<Vec<StoredEvent>>;

    /// Creates the group if it does not exist (its cursors after position `start_after`, or at
    /// the log's current end when `None`) and records `member` as live.
    async fn join_event_group(
        &self,
        fence: Fence<'_>,
        patterns: &[String],
        start_after: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Records `member` as live; returns how many members of the group heartbeated since
    /// `live_since` (itself included).
    async fn event_member_heartbeat(
        &self,
        fence: Fence<'_>,
        now: DateTime<Utc>,
        live_since: DateTime<Utc>,
    ) -> Result<i64>;

    /// Takes up to `max` partitions of the group that nobody holds (or whose lease expired),
    /// leased to `member` until `lease_until`; returns them with the group's cursors.
    async fn claim_event_partitions(
        &self,
        fence: Fence<'_>,
        max: i64,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventCursor>>;

    /// Extends `member`'s leases; returns the partitions it still holds.
    async fn renew_event_partitions(
        &self,
        fence: Fence<'_>,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<i16>>;

    /// Moves the group's cursors forward (never back) where `member` still holds the lease;
    /// returns the partitions it moved.
    async fn commit_event_positions(
        &self,
        fence: Fence<'_>,
        positions: &[EventCursor],
        now: DateTime<Utc>,
    ) -> Result<Vec<i16>>;

    /// Gives partitions back (their cursors stay).
    async fn release_event_partitions(&self, fence: Fence<'_>, partitions: &[i16], now: DateTime<Utc>) -> Result<()>;

    /// Gives every partition of `member` back and forgets the member.
    async fn leave_event_group(&self, fence: Fence<'_>, now: DateTime<Utc>) -> Result<()>;

    /// Sets an event aside for the group and moves the group's cursor past it, in one
    /// transaction; `false` (and nothing written) if `member` lost the partition's lease.
    #[allow(clippy::too_many_arguments)]
    async fn dead_letter_event(
        &self,
        fence: Fence<'_>,
        at: EventCursor,
        event: &StoredEvent,
        envelope: &Value,
        error: &str,
        attempts: i32,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// A group's dead letters (every group's with `None`), oldest first.
    async fn event_dead_letters(&self, group: Option<&str>, limit: i64) -> Result<Vec<EventDeadLetter>>;

    /// Every group, with its lag.
    async fn event_groups(&self, live_since: DateTime<Utc>) -> Result<Vec<EventGroupStatus>>;

    /// Deletes a group, its cursors and members (not its dead letters); `false` if unknown.
    async fn delete_event_group(&self, group: &str) -> Result<bool>;

    /// Whether any group exists (lifecycle events are then written; see `EventOptions`).
    async fn has_event_groups(&self) -> Result<bool>;

    /// Deletes up to `limit` events written before `before` that every group has acknowledged;
    /// returns how many.
    async fn prune_events(&self, before: DateTime<Utc>, limit: i64) -> Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_keeps_one_partition_and_tasks_spread_over_all() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let t = Uuid::now_v7();
            let p = partition_of(Some(t));
            assert_eq!(p, partition_of(Some(t)));
            assert!((0..EVENT_PARTITIONS).contains(&p));
            seen.insert(p);
        }
        assert_eq!(seen.len(), EVENT_PARTITIONS as usize);
        assert_eq!(partition_of(None), 0);
    }
}
