//! The PostgreSQL hot path's fused statements: each of the engine's batched store calls
//! ([`StoreTx::apply_outcome_writes`](super::StoreTx::apply_outcome_writes),
//! [`StoreTx::apply_followup_writes`](super::StoreTx::apply_followup_writes),
//! [`StoreTx::change_steps_audited`](super::StoreTx::change_steps_audited)) as one statement of
//! data-modifying CTEs, so a batch of completions costs a few round trips whatever it holds.
//!
//! Nothing here decides anything: the engine has decided every row beforehand, and each CTE
//! does what the primitive of the same name does on its own (the default implementations in
//! `store/mod.rs` are the reference, and SQLite runs them). PostgreSQL runs every
//! data-modifying CTE exactly once, to completion, on the statement's snapshot; the CTEs of one
//! statement touch different rows (a step changed by `upd` is `in_progress` or open; a child
//! released by `rel` is `pending`), so they cannot see or overwrite each other's work.
//!
//! Each statement ends with one `SELECT` whose rows are tagged by `kind`, all of one shape:
//! `kind, id, name, task, queue, state, n1, n2, n3, n4, big, body`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::records::*;
use crate::error::{Result, TaskerError};

/// The columns every tagged row has, with their types, for rows that leave some empty.
const NO_NAME: &str = "NULL::text AS name";

/// Pushes the CTEs `upd` (the compare-and-swap of step rows), `cleared` and `ins` (for the rows
/// that changed: their previous most-recent audit rows cleared and the new ones inserted).
/// With no change, `upd` is an empty relation and the audit CTEs do nothing.
pub(super) fn push_step_changes<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    changes: &'a [StepChange],
    transitions: &'a [TransitionRecord],
    now: DateTime<Utc>,
) {
    let ids: Vec<Uuid> = changes.iter().map(|c| c.step_uuid).collect();
    let expected_state: Vec<&str> = changes.iter().map(|c| c.expected_state.as_str()).collect();
    let expected_attempts: Vec<i32> = changes.iter().map(|c| c.expected_attempts).collect();
    let new_state: Vec<&str> = changes.iter().map(|c| c.new_state.as_str()).collect();
    let new_attempts: Vec<i32> = changes.iter().map(|c| c.new_attempts).collect();
    let results: Vec<Option<Json<&Value>>> = changes.iter().map(|c| c.results.as_ref().map(Json)).collect();
    let errors: Vec<Option<Json<&Value>>> = changes.iter().map(|c| c.last_error.as_ref().map(Json)).collect();
    let retry_at: Vec<Option<DateTime<Utc>>> = changes.iter().map(|c| c.next_retry_at).collect();
    let deadline: Vec<Option<DateTime<Utc>>> = changes.iter().map(|c| c.deadline_at).collect();
    let started: Vec<bool> = changes.iter().map(|c| c.attempt_started).collect();
    let finished: Vec<bool> = changes.iter().map(|c| c.finished).collect();
    let free_delta: Vec<i32> = changes.iter().map(|c| c.free_attempts_delta).collect();
    let lost_delta: Vec<i32> = changes.iter().map(|c| c.lost_leases_delta).collect();
    let audit = TransitionArrays::new(transitions);

    qb.push("upd AS (UPDATE tasker_steps s SET state = v.new_state, attempts = v.new_attempts, ");
    qb.push("results = COALESCE(v.results, s.results), last_error = COALESCE(v.last_error, s.last_error), ");
    qb.push("next_retry_at = v.retry_at, deadline_at = v.deadline, updated_at = v.now, ");
    qb.push("first_attempted_at = CASE WHEN v.started THEN COALESCE(s.first_attempted_at, v.now) ELSE s.first_attempted_at END, ");
    qb.push("last_attempted_at = CASE WHEN v.started THEN v.now ELSE s.last_attempted_at END, ");
    qb.push("completed_at = CASE WHEN v.finished THEN v.now ELSE s.completed_at END, ");
    qb.push("free_attempts = s.free_attempts + v.free_delta, lost_leases = s.lost_leases + v.lost_delta ");
    qb.push("FROM (SELECT u.*, ");
    qb.push_bind(now);
    qb.push("::timestamptz AS now FROM unnest(");
    qb.push_bind(ids);
    qb.push("::uuid[], ");
    qb.push_bind(expected_state);
    qb.push("::text[], ");
    qb.push_bind(expected_attempts);
    qb.push("::int[], ");
    qb.push_bind(new_state);
    qb.push("::text[], ");
    qb.push_bind(new_attempts);
    qb.push("::int[], ");
    qb.push_bind(results);
    qb.push("::jsonb[], ");
    qb.push_bind(errors);
    qb.push("::jsonb[], ");
    qb.push_bind(retry_at);
    qb.push("::timestamptz[], ");
    qb.push_bind(deadline);
    qb.push("::timestamptz[], ");
    qb.push_bind(started);
    qb.push("::bool[], ");
    qb.push_bind(finished);
    qb.push("::bool[], ");
    qb.push_bind(free_delta);
    qb.push("::int[], ");
    qb.push_bind(lost_delta);
    qb.push(
        "::int[]) AS u(id, expected_state, expected_attempts, new_state, new_attempts, results, last_error, \
         retry_at, deadline, started, finished, free_delta, lost_delta)) AS v \
         WHERE s.step_uuid = v.id AND s.state = v.expected_state AND s.attempts = v.expected_attempts \
         RETURNING s.step_uuid), ",
    );
    qb.push("audit AS (SELECT * FROM unnest(");
    qb.push_bind(audit.ids);
    qb.push("::uuid[], ");
    qb.push_bind(audit.tasks);
    qb.push("::uuid[], ");
    qb.push_bind(audit.from);
    qb.push("::text[], ");
    qb.push_bind(audit.to);
    qb.push("::text[], ");
    qb.push_bind(audit.events);
    qb.push("::text[], ");
    qb.push_bind(audit.metadata);
    qb.push("::jsonb[], ");
    qb.push_bind(audit.recent);
    qb.push("::bool[], ");
    qb.push_bind(audit.at);
    qb.push(
        "::timestamptz[]) WITH ORDINALITY AS r(id, task, from_state, to_state, event, metadata, recent, at, ord) \
         WHERE r.id IN (SELECT step_uuid FROM upd)), \
         cleared AS (UPDATE tasker_step_transitions t SET most_recent = false \
           WHERE t.step_uuid IN (SELECT id FROM audit) AND t.most_recent RETURNING 1), \
         ins AS (INSERT INTO tasker_step_transitions \
           (step_uuid, task_uuid, from_state, to_state, event, metadata, most_recent, created_at) \
           SELECT id, task, from_state, to_state, event, metadata, recent, at FROM audit \
           WHERE (SELECT count(*) FROM cleared) >= 0 ORDER BY ord RETURNING 1)",
    );
}

/// Pushes one CTE per queue, `del0`, `del1`…, deleting messages (skipping locked ones: see
/// [`super::MessageQueue::delete_messages`]).
fn push_deletes<'a>(qb: &mut QueryBuilder<'a, Postgres>, delete: &'a [MessageRef]) -> Result<()> {
    let mut by_queue: std::collections::BTreeMap<&str, Vec<i64>> = std::collections::BTreeMap::new();
    for m in delete {
        by_queue.entry(m.queue.as_str()).or_default().push(m.msg_id);
    }
    for (i, (queue, ids)) in by_queue.into_iter().enumerate() {
        let table = super::postgres::queue_table(queue)?;
        qb.push(format!(
            ", del{i} AS (DELETE FROM pgmq.{table} WHERE msg_id IN \
               (SELECT msg_id FROM pgmq.{table} WHERE msg_id = ANY("
        ));
        qb.push_bind(ids);
        qb.push(") FOR UPDATE SKIP LOCKED) RETURNING 1)");
    }
    Ok(())
}

/// The first writes of a batch of outcomes as one statement: `upd`/`cleared`/`ins`, the
/// deletes, and `rel`, which decrements the pending-parent counters of the children of
/// `released_parents` exactly as `release_children` does.
pub(super) fn outcome_statement<'a>(w: OutcomeWrites<'a>, now: DateTime<Utc>) -> Result<QueryBuilder<'a, Postgres>> {
    let mut qb = QueryBuilder::new("WITH ");
    push_step_changes(&mut qb, w.changes, w.transitions, now);
    push_deletes(&mut qb, w.delete)?;
    qb.push(
        ", rel AS (UPDATE tasker_steps c SET pending_parents = c.pending_parents - x.n \
           FROM (SELECT to_step, count(*)::int AS n FROM tasker_step_edges WHERE from_step = ANY(",
    );
    qb.push_bind(w.released_parents);
    qb.push(
        ") GROUP BY to_step) x WHERE c.step_uuid = x.to_step \
           RETURNING c.step_uuid, c.name, c.task_uuid, c.queue, c.max_attempts, c.pending_parents, c.state) ",
    );
    qb.push(format!(
        "SELECT 'applied' AS kind, step_uuid AS id, {NO_NAME}, NULL::uuid AS task, NULL::text AS queue, \
           NULL::text AS state, NULL::int AS n1, NULL::int AS n2 FROM upd WHERE (SELECT count(*) FROM ins) >= 0 \
         UNION ALL \
         SELECT 'released', step_uuid, name, task_uuid, queue, state, max_attempts, pending_parents FROM rel"
    ));
    Ok(qb)
}

/// Reads the rows of [`outcome_statement`].
pub(super) fn outcome_rows(rows: &[PgRow]) -> Result<(Vec<Uuid>, Vec<ReadyChild>)> {
    let mut applied = Vec::new();
    let mut ready = Vec::new();
    for r in rows {
        match r.try_get::<&str, _>("kind")? {
            "applied" => applied.push(r.try_get("id")?),
            _ => {
                let pending: i32 = r.try_get("n2")?;
                let state: &str = r.try_get("state")?;
                if pending == 0 && state == crate::state::StepState::Pending.as_str() {
                    ready.push(ReadyChild {
                        step_uuid: r.try_get("id")?,
                        name: r.try_get("name")?,
                        task_uuid: r.try_get("task")?,
                        queue: r.try_get("queue")?,
                        max_attempts: r.try_get("n1")?,
                    });
                }
            }
        }
    }
    Ok((applied, ready))
}

/// The second writes of a batch of outcomes, and the claim inputs, as one statement:
/// `upd`/`cleared`/`ins` for the released children, one insert into the queue table per (queue,
/// visibility) group (`send0`, `send1`…, as `send_messages` does; their wake-ups are the caller's, sent
/// after commit), `counters` (the task deltas, as `apply_task_deltas`), and the reads
/// of `claim_inputs`, which see the parents' results written by the outcome statement before.
pub(super) fn followup_statement<'a>(
    w: FollowupWrites<'a>,
    now: DateTime<Utc>,
    groups: &[SendGroup],
) -> Result<QueryBuilder<'a, Postgres>> {
    let mut qb = QueryBuilder::new("WITH ");
    push_step_changes(&mut qb, w.changes, w.transitions, now);
    for (i, g) in groups.iter().enumerate() {
        push_send(&mut qb, i, g, w.send, None);
    }
    let mut sorted: Vec<&TaskDelta> = w.deltas.iter().collect();
    // A fixed lock order keeps concurrent batches touching the same tasks deadlock-free.
    sorted.sort_by_key(|d| d.task_uuid);
    qb.push(
        ", counters AS (UPDATE tasker_tasks t SET completed_steps = t.completed_steps + v.completed, \
           active_steps = t.active_steps + v.active, failed_steps = t.failed_steps + v.failed, updated_at = ",
    );
    qb.push_bind(now);
    qb.push(" FROM unnest(");
    qb.push_bind(sorted.iter().map(|d| d.task_uuid).collect::<Vec<Uuid>>());
    qb.push("::uuid[], ");
    qb.push_bind(sorted.iter().map(|d| d.completed).collect::<Vec<i32>>());
    qb.push("::int[], ");
    qb.push_bind(sorted.iter().map(|d| d.active).collect::<Vec<i32>>());
    qb.push("::int[], ");
    qb.push_bind(sorted.iter().map(|d| d.failed).collect::<Vec<i32>>());
    qb.push(
        "::int[]) AS v(id, completed, active, failed) WHERE t.task_uuid = v.id \
         RETURNING t.task_uuid, t.state, t.total_steps, t.completed_steps, t.active_steps, t.failed_steps) ",
    );
    qb.push(format!(
        "SELECT 'applied' AS kind, step_uuid AS id, {NO_NAME}, NULL::text AS state, NULL::int AS n1, \
           NULL::int AS n2, NULL::int AS n3, NULL::int AS n4, NULL::bigint AS big, NULL::text AS body, \
           NULL::uuid AS task \
         FROM upd WHERE (SELECT count(*) FROM ins) >= 0"
    ));
    for i in 0..groups.len() {
        qb.push(format!(
            " UNION ALL SELECT 'sent', NULL, NULL, NULL, {i}, NULL, NULL, NULL, id, NULL, NULL FROM send{i}"
        ));
    }
    qb.push(
        " UNION ALL SELECT 'counters', task_uuid, NULL, state, total_steps, completed_steps, active_steps, \
           failed_steps, NULL, NULL, NULL FROM counters",
    );
    if !w.input_tasks.is_empty() {
        qb.push(
            " UNION ALL SELECT 'input', task_uuid, NULL, NULL, NULL, NULL, NULL, NULL, template_id, context::text, \
               correlation_id FROM tasker_tasks WHERE task_uuid = ANY(",
        );
        qb.push_bind(w.input_tasks);
        qb.push(
            ") UNION ALL SELECT 'dependency', e.to_step, p.name, NULL, NULL, NULL, NULL, NULL, NULL, p.results::text, \
               NULL FROM tasker_step_edges e JOIN tasker_steps p ON p.step_uuid = e.from_step WHERE e.to_step = ANY(",
        );
        qb.push_bind(w.input_steps);
        qb.push(")");
    }
    Ok(qb)
}

/// Pushes `send{i}`: the messages of one group inserted into their queue's table (what
/// `pgmq.send_batch` does, without its per-call dynamic SQL), in input order, returning their
/// `id`s (which therefore ascend in input order). With `after`, the insert takes one set of
/// messages per row of that CTE (none: nothing is sent). Wake-ups are the caller's (see
/// `pg_notifier`).
fn push_send<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    i: usize,
    g: &SendGroup,
    messages: &'a [OutgoingMessage],
    after: Option<&str>,
) {
    let bodies: Vec<Json<&StepMessage>> = g.indices.iter().map(|&m| Json(&messages[m].body)).collect();
    let head_starts: Vec<i64> = g
        .indices
        .iter()
        .map(|&m| super::order_key(0, messages[m].priority))
        .collect();
    let from = after.map(|cte| format!("{cte}, ")).unwrap_or_default();
    // Visibility and each body's `order_key` by the server's clock (the one reads compare
    // with): now + hidden, now + order_key(0, priority).
    qb.push(format!(
        ", send{i} AS (INSERT INTO pgmq.{table} (vt, message) SELECT clock_timestamp() + ",
        table = g.table
    ));
    qb.push_bind(g.hidden_ms);
    qb.push(
        " ::float8 * interval '1 millisecond', v.b || jsonb_build_object('order', \
           (extract(epoch FROM clock_timestamp()) * 1000)::bigint + v.h) ",
    );
    qb.push(format!("FROM {from}unnest("));
    qb.push_bind(bodies);
    qb.push("::jsonb[], ");
    qb.push_bind(head_starts);
    qb.push("::bigint[]) WITH ORDINALITY AS v(b, h, ord) ORDER BY v.ord RETURNING msg_id AS id)");
}

/// Creating a task as one statement: `task` (the row, unless its identity exists: then every
/// other CTE is empty, as each reads from `task`), `steps`, `edges`, the audit rows, and the
/// root steps' messages. Rows: `created` (the task's uuid) or nothing when it existed.
pub(super) fn create_task_statement<'a>(
    t: &'a NewTask,
    task_transitions: &'a [TransitionRecord],
    step_transitions: &'a [TransitionRecord],
    messages: &'a [OutgoingMessage],
    groups: &[SendGroup],
) -> QueryBuilder<'a, Postgres> {
    let mut qb = QueryBuilder::new(
        "WITH task AS (INSERT INTO tasker_tasks (task_uuid, template_id, namespace_name, name, version, state, \
           context, initiator, source_system, reason, tags, priority, correlation_id, identity_hash, \
           idempotency_key, total_steps, active_steps, created_at, updated_at, trace_parent) \
         SELECT * FROM (VALUES (",
    );
    {
        let mut values = qb.separated(", ");
        values.push_bind(t.task_uuid);
        values.push_bind(t.template_id);
        values.push_bind(&t.namespace);
        values.push_bind(&t.name);
        values.push_bind(&t.version);
        values.push_bind(t.state.as_str());
        values.push_bind(Json(&t.context));
        values.push_bind(&t.initiator);
        values.push_bind(&t.source_system);
        values.push_bind(&t.reason);
        values.push_bind(Json(&t.tags));
        values.push_bind(t.priority);
        values.push_bind(t.correlation_id);
        values.push_bind(&t.identity_hash);
        values.push_bind(&t.idempotency_key);
        values.push_bind(i32::try_from(t.steps.len()).unwrap_or(i32::MAX));
        values.push_bind(t.active_steps);
        values.push_bind(t.created_at);
        values.push_bind(t.created_at);
        values.push_bind(&t.trace_parent);
    }
    // Only while its template is still the newest version, when the caller asks (see
    // `NewTask::newest_template_id`).
    qb.push(")) AS v WHERE ");
    qb.push_bind(t.newest_template_id);
    qb.push("::bigint IS NULL OR NOT EXISTS (SELECT 1 FROM tasker_templates WHERE namespace_name = ");
    qb.push_bind(&t.namespace);
    qb.push(" AND name = ");
    qb.push_bind(&t.name);
    qb.push(" AND id > ");
    qb.push_bind(t.newest_template_id);
    qb.push(") ON CONFLICT (identity_hash) DO NOTHING RETURNING task_uuid), ");
    qb.push(
        "steps AS (INSERT INTO tasker_steps (step_uuid, task_uuid, name, position, queue, state, max_attempts, \
           retryable, pending_parents, created_at, updated_at) \
         SELECT v.id, task.task_uuid, v.name, v.position, v.queue, v.state, v.max_attempts, v.retryable, v.pending, \
           v.at, v.at FROM task, (SELECT u.*, ",
    );
    qb.push_bind(t.created_at);
    qb.push("::timestamptz AS at FROM unnest(");
    qb.push_bind(t.steps.iter().map(|s| s.step_uuid).collect::<Vec<Uuid>>());
    qb.push("::uuid[], ");
    qb.push_bind(t.steps.iter().map(|s| s.name.as_str()).collect::<Vec<&str>>());
    qb.push("::text[], ");
    qb.push_bind(t.steps.iter().map(|s| s.position).collect::<Vec<i32>>());
    qb.push("::int[], ");
    qb.push_bind(t.steps.iter().map(|s| s.queue.as_str()).collect::<Vec<&str>>());
    qb.push("::text[], ");
    qb.push_bind(t.steps.iter().map(|s| s.state.as_str()).collect::<Vec<&str>>());
    qb.push("::text[], ");
    qb.push_bind(t.steps.iter().map(|s| s.max_attempts).collect::<Vec<i32>>());
    qb.push("::int[], ");
    qb.push_bind(t.steps.iter().map(|s| s.retryable).collect::<Vec<bool>>());
    qb.push("::bool[], ");
    qb.push_bind(t.steps.iter().map(|s| s.pending_parents).collect::<Vec<i32>>());
    qb.push(
        "::int[]) AS u(id, name, position, queue, state, max_attempts, retryable, pending)) AS v RETURNING 1), \
         edges AS (INSERT INTO tasker_step_edges (task_uuid, from_step, to_step) \
           SELECT task.task_uuid, v.f, v.t FROM task, unnest(",
    );
    qb.push_bind(t.edges.iter().map(|e| e.0).collect::<Vec<Uuid>>());
    qb.push("::uuid[], ");
    qb.push_bind(t.edges.iter().map(|e| e.1).collect::<Vec<Uuid>>());
    qb.push("::uuid[]) AS v(f, t) RETURNING 1), ");
    // A new task and new steps have no earlier audit rows to clear.
    let tt = TransitionArrays::new(task_transitions);
    qb.push(
        "task_audit AS (INSERT INTO tasker_task_transitions \
           (task_uuid, from_state, to_state, event, metadata, most_recent, created_at) \
         SELECT r.id, r.from_state, r.to_state, r.event, r.metadata, r.recent, r.at FROM task, unnest(",
    );
    push_transition_arrays(&mut qb, tt);
    qb.push(" ORDER BY r.ord RETURNING 1), ");
    let st = TransitionArrays::new(step_transitions);
    qb.push(
        "step_audit AS (INSERT INTO tasker_step_transitions \
           (step_uuid, task_uuid, from_state, to_state, event, metadata, most_recent, created_at) \
         SELECT r.id, r.task, r.from_state, r.to_state, r.event, r.metadata, r.recent, r.at FROM task, unnest(",
    );
    push_transition_arrays(&mut qb, st);
    qb.push(" AND (SELECT count(*) FROM steps) >= 0 ORDER BY r.ord RETURNING 1)");
    for (i, g) in groups.iter().enumerate() {
        push_send(&mut qb, i, g, messages, Some("task"));
    }
    qb.push(" SELECT 'created' AS kind, task_uuid FROM task");
    for i in 0..groups.len() {
        qb.push(format!(" UNION ALL SELECT 'sent', NULL FROM send{i}"));
    }
    qb
}

/// Compare-and-swap of task states (`upd`) and the audit rows of the tasks that changed.
/// Rows: the changed uuids.
pub(super) fn task_changes_statement<'a>(
    changes: &'a [TaskChange],
    transitions: &'a [TransitionRecord],
    now: DateTime<Utc>,
) -> QueryBuilder<'a, Postgres> {
    let mut qb = QueryBuilder::new("WITH upd AS (UPDATE tasker_tasks t SET state = v.new_state, updated_at = ");
    qb.push_bind(now);
    qb.push(", completed_at = CASE WHEN v.terminal THEN ");
    qb.push_bind(now);
    qb.push(" ELSE t.completed_at END FROM unnest(");
    qb.push_bind(changes.iter().map(|c| c.task_uuid).collect::<Vec<Uuid>>());
    qb.push("::uuid[], ");
    qb.push_bind(changes.iter().map(|c| c.expected.as_str()).collect::<Vec<&str>>());
    qb.push("::text[], ");
    qb.push_bind(changes.iter().map(|c| c.new.as_str()).collect::<Vec<&str>>());
    qb.push("::text[], ");
    qb.push_bind(changes.iter().map(|c| c.new.is_terminal()).collect::<Vec<bool>>());
    qb.push(
        "::bool[]) AS v(id, expected, new_state, terminal) WHERE t.task_uuid = v.id AND t.state = v.expected \
         RETURNING t.task_uuid, v.terminal, v.new_state), ",
    );
    // A task that completes closes its open dead-letter entry, crediting the operator whose
    // action re-opened it (`resolution`), if any.
    qb.push(
        "dlq AS (UPDATE tasker_dlq_entries d SET status = 'manually_resolved', \
           resolved_by = COALESCE(d.resolution ->> 'by', 'tasker'), resolved_at = ",
    );
    qb.push_bind(now);
    qb.push(", updated_at = ");
    qb.push_bind(now);
    qb.push(
        ", notes = d.notes || jsonb_build_array(jsonb_build_object('by', COALESCE(d.resolution ->> 'by', 'tasker'), \
           'text', 'the task completed', 'status', 'manually_resolved', 'at', ",
    );
    qb.push_bind(now);
    qb.push(
        "::timestamptz)) \
         WHERE d.task_uuid IN (SELECT task_uuid FROM upd WHERE new_state = 'complete') \
           AND d.status IN ('pending', 'investigating') RETURNING 1), \
         audit AS (SELECT r.* FROM unnest(",
    );
    push_transition_arrays(&mut qb, TransitionArrays::new(transitions));
    qb.push(
        " AND r.id IN (SELECT task_uuid FROM upd)), \
         cleared AS (UPDATE tasker_task_transitions t SET most_recent = false \
           WHERE t.task_uuid IN (SELECT id FROM audit) AND t.most_recent RETURNING 1), \
         ins AS (INSERT INTO tasker_task_transitions \
           (task_uuid, from_state, to_state, event, metadata, most_recent, created_at) \
           SELECT id, from_state, to_state, event, metadata, recent, at FROM audit \
           WHERE (SELECT count(*) FROM cleared) >= 0 ORDER BY ord RETURNING 1) \
         SELECT task_uuid FROM upd WHERE (SELECT count(*) FROM ins) >= 0",
    );
    qb
}

/// Pushes `$ids::uuid[], … $at::timestamptz[]) WITH ORDINALITY AS r(…) WHERE true` for an
/// `unnest(` already pushed.
fn push_transition_arrays<'a>(qb: &mut QueryBuilder<'a, Postgres>, a: TransitionArrays<'a>) {
    qb.push_bind(a.ids);
    qb.push("::uuid[], ");
    qb.push_bind(a.tasks);
    qb.push("::uuid[], ");
    qb.push_bind(a.from);
    qb.push("::text[], ");
    qb.push_bind(a.to);
    qb.push("::text[], ");
    qb.push_bind(a.events);
    qb.push("::text[], ");
    qb.push_bind(a.metadata);
    qb.push("::jsonb[], ");
    qb.push_bind(a.recent);
    qb.push("::bool[], ");
    qb.push_bind(a.at);
    qb.push(
        "::timestamptz[]) WITH ORDINALITY AS r(id, task, from_state, to_state, event, metadata, recent, at, ord) \
         WHERE true",
    );
}

/// Messages sent by one insert: one queue, one visibility.
pub(super) struct SendGroup {
    pub queue: String,
    /// The queue's PGMQ table (a checked identifier).
    pub table: String,
    pub hidden_ms: i64,
    /// Positions in [`FollowupWrites::send`].
    pub indices: Vec<usize>,
}

/// Groups messages by (queue, visibility), the way `send_messages` sends them.
pub(super) fn send_groups(messages: &[OutgoingMessage]) -> Result<Vec<SendGroup>> {
    let mut groups: std::collections::BTreeMap<(&str, i64), Vec<usize>> = std::collections::BTreeMap::new();
    for (i, m) in messages.iter().enumerate() {
        let hidden = super::postgres::millis(m.hidden_for.unwrap_or_default());
        groups.entry((m.queue.as_str(), hidden)).or_default().push(i);
    }
    groups
        .into_iter()
        .map(|((queue, hidden_ms), indices)| {
            Ok(SendGroup {
                queue: queue.to_owned(),
                table: super::postgres::queue_table(queue)?,
                hidden_ms,
                indices,
            })
        })
        .collect()
}

/// Reads the rows of [`followup_statement`].
pub(super) fn followup_rows(rows: &[PgRow], w: FollowupWrites<'_>, groups: &[SendGroup]) -> Result<Followup> {
    let mut out = Followup::default();
    let mut ids: Vec<Vec<i64>> = vec![Vec::new(); groups.len()];
    for r in rows {
        match r.try_get::<&str, _>("kind")? {
            "applied" => out.applied.push(r.try_get("id")?),
            "sent" => {
                let group: i32 = r.try_get("n1")?;
                let Some(group) = usize::try_from(group).ok().and_then(|g| ids.get_mut(g)) else {
                    return Err(TaskerError::Queue(format!(
                        "a message came back for send group {group}"
                    )));
                };
                group.push(r.try_get("big")?);
            }
            "counters" => out.counters.push(TaskCounters {
                task_uuid: r.try_get("id")?,
                state: super::postgres::parse_state(r.try_get::<&str, _>("state")?, "task")?,
                total: r.try_get("n1")?,
                completed: r.try_get("n2")?,
                active: r.try_get("n3")?,
                failed: r.try_get("n4")?,
            }),
            "input" => {
                let body: Option<&str> = r.try_get("body")?;
                out.inputs.push(TaskInput {
                    task_uuid: r.try_get("id")?,
                    // Decoded row by row: one undecodable context fails its own steps only.
                    context: super::postgres::decode_json(body.unwrap_or("null"), "task context"),
                    correlation_id: r.try_get("task")?,
                    template_id: r.try_get("big")?,
                });
            }
            "dependency" => {
                let body: Option<&str> = r.try_get("body")?;
                out.dependency_results.push((
                    r.try_get("id")?,
                    r.try_get("name")?,
                    body.map_or(Ok(Value::Null), |text| {
                        super::postgres::decode_json(text, "dependency result")
                    }),
                ));
            }
            _ => {}
        }
    }
    out.sent = message_refs(groups, ids, w.send.len())?;
    Ok(out)
}

/// The references of sent messages in input order, from each group's returned ids (which
/// ascend in input order within a group: see `push_send`).
fn message_refs(groups: &[SendGroup], ids: Vec<Vec<i64>>, count: usize) -> Result<Vec<MessageRef>> {
    let mut sent: Vec<Option<MessageRef>> = vec![None; count];
    for (g, mut group_ids) in groups.iter().zip(ids) {
        group_ids.sort_unstable();
        for (&i, id) in g.indices.iter().zip(group_ids) {
            if let Some(slot) = sent.get_mut(i) {
                *slot = Some(MessageRef {
                    queue: g.queue.clone(),
                    msg_id: id,
                });
            }
        }
    }
    let stored = sent.iter().filter(|s| s.is_some()).count();
    if stored != count {
        return Err(TaskerError::Queue(format!(
            "the queues stored {stored} of {count} messages"
        )));
    }
    Ok(sent.into_iter().flatten().collect())
}

/// Sending messages on their own: one statement for every group. Rows: `n1` (the group) and
/// `big` (a message id).
pub(super) fn send_statement<'a>(messages: &'a [OutgoingMessage], groups: &[SendGroup]) -> QueryBuilder<'a, Postgres> {
    let mut qb = QueryBuilder::new("WITH none AS (SELECT 1)");
    for (i, g) in groups.iter().enumerate() {
        push_send(&mut qb, i, g, messages, None);
    }
    let selects: Vec<String> = (0..groups.len())
        .map(|i| format!("SELECT {i} AS n1, id AS big FROM send{i}"))
        .collect();
    qb.push(" ");
    qb.push(selects.join(" UNION ALL "));
    qb
}

/// Reads the rows of [`send_statement`].
pub(super) fn sent_rows(rows: &[PgRow], groups: &[SendGroup], count: usize) -> Result<Vec<MessageRef>> {
    let mut ids: Vec<Vec<i64>> = vec![Vec::new(); groups.len()];
    for r in rows {
        let group: i32 = r.try_get("n1")?;
        let Some(group) = usize::try_from(group).ok().and_then(|g| ids.get_mut(g)) else {
            return Err(TaskerError::Queue(format!(
                "a message came back for send group {group}"
            )));
        };
        group.push(r.try_get("big")?);
    }
    message_refs(groups, ids, count)
}

/// Audit rows as parallel arrays for `unnest`, with `recent` set on the last row of each
/// entity (the one that becomes its most recent transition).
pub(super) struct TransitionArrays<'a> {
    pub ids: Vec<Uuid>,
    pub tasks: Vec<Uuid>,
    pub from: Vec<Option<&'a str>>,
    pub to: Vec<&'a str>,
    pub events: Vec<&'a str>,
    pub metadata: Vec<Json<&'a Value>>,
    pub recent: Vec<bool>,
    pub at: Vec<DateTime<Utc>>,
}

impl<'a> TransitionArrays<'a> {
    pub fn new(rows: &'a [TransitionRecord]) -> Self {
        let mut last = std::collections::BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            last.insert(r.entity_uuid, i);
        }
        Self {
            ids: rows.iter().map(|r| r.entity_uuid).collect(),
            tasks: rows.iter().map(|r| r.task_uuid).collect(),
            from: rows.iter().map(|r| r.from_state).collect(),
            to: rows.iter().map(|r| r.to_state).collect(),
            events: rows.iter().map(|r| r.event).collect(),
            metadata: rows.iter().map(|r| Json(&r.metadata)).collect(),
            recent: rows
                .iter()
                .enumerate()
                .map(|(i, r)| last.get(&r.entity_uuid) == Some(&i))
                .collect(),
            at: rows.iter().map(|r| r.at).collect(),
        }
    }
}
