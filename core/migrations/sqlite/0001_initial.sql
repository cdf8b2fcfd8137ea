-- Tasker schema (SQLite). Timestamps are INTEGER milliseconds since the Unix epoch so that
-- comparisons are numeric; uuids are 16-byte BLOBs; JSON is TEXT.

CREATE TABLE tasker_namespaces (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);

CREATE TABLE tasker_templates (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace_name TEXT NOT NULL REFERENCES tasker_namespaces(name),
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    definition     TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    source_path    TEXT,
    created_at     INTEGER NOT NULL,
    UNIQUE (namespace_name, name, version)
);

CREATE TABLE tasker_tasks (
    task_uuid        BLOB PRIMARY KEY,
    template_id      INTEGER NOT NULL REFERENCES tasker_templates(id),
    namespace_name   TEXT NOT NULL,
    name             TEXT NOT NULL,
    version          TEXT NOT NULL,
    state            TEXT NOT NULL,
    context          TEXT NOT NULL,
    initiator        TEXT,
    source_system    TEXT,
    reason           TEXT,
    tags             TEXT NOT NULL DEFAULT '[]',
    priority         INTEGER NOT NULL DEFAULT 0,
    correlation_id   BLOB NOT NULL,
    identity_hash    TEXT NOT NULL UNIQUE,
    idempotency_key  TEXT,
    total_steps      INTEGER NOT NULL,
    completed_steps  INTEGER NOT NULL DEFAULT 0,
    active_steps     INTEGER NOT NULL DEFAULT 0,
    failed_steps     INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER
);
CREATE INDEX tasker_tasks_by_namespace ON tasker_tasks (namespace_name, state, created_at DESC);
CREATE INDEX tasker_tasks_by_state ON tasker_tasks (state, created_at DESC);

CREATE TABLE tasker_steps (
    step_uuid           BLOB PRIMARY KEY,
    task_uuid           BLOB NOT NULL REFERENCES tasker_tasks(task_uuid) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    position            INTEGER NOT NULL,
    queue               TEXT NOT NULL,
    state               TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL,
    retryable           INTEGER NOT NULL,
    pending_parents     INTEGER NOT NULL,
    next_retry_at       INTEGER,
    deadline_at         INTEGER,
    results             TEXT,
    last_error          TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    first_attempted_at  INTEGER,
    last_attempted_at   INTEGER,
    completed_at        INTEGER,
    UNIQUE (task_uuid, name)
);
CREATE INDEX tasker_steps_retry_due ON tasker_steps (next_retry_at) WHERE state = 'waiting_for_retry';
CREATE INDEX tasker_steps_deadline ON tasker_steps (deadline_at) WHERE state = 'in_progress' AND deadline_at IS NOT NULL;

CREATE TABLE tasker_step_edges (
    task_uuid  BLOB NOT NULL REFERENCES tasker_tasks(task_uuid) ON DELETE CASCADE,
    from_step  BLOB NOT NULL,
    to_step    BLOB NOT NULL,
    PRIMARY KEY (from_step, to_step)
);
CREATE INDEX tasker_step_edges_to ON tasker_step_edges (to_step);

CREATE TABLE tasker_task_transitions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task_uuid    BLOB NOT NULL REFERENCES tasker_tasks(task_uuid) ON DELETE CASCADE,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    event        TEXT NOT NULL,
    metadata     TEXT NOT NULL DEFAULT '{}',
    most_recent  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX tasker_task_transitions_task ON tasker_task_transitions (task_uuid, id);
CREATE UNIQUE INDEX tasker_task_transitions_most_recent ON tasker_task_transitions (task_uuid) WHERE most_recent;

CREATE TABLE tasker_step_transitions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    step_uuid    BLOB NOT NULL,
    task_uuid    BLOB NOT NULL REFERENCES tasker_tasks(task_uuid) ON DELETE CASCADE,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    event        TEXT NOT NULL,
    metadata     TEXT NOT NULL DEFAULT '{}',
    most_recent  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX tasker_step_transitions_task ON tasker_step_transitions (task_uuid, id);
CREATE UNIQUE INDEX tasker_step_transitions_most_recent ON tasker_step_transitions (step_uuid) WHERE most_recent;

-- The queue: PGMQ's semantics on a table. A message is visible when vt <= now; reading it
-- pushes vt forward by the lease and bumps read_ct.
CREATE TABLE tasker_queue_messages (
    msg_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    queue        TEXT NOT NULL,
    vt           INTEGER NOT NULL,
    read_ct      INTEGER NOT NULL DEFAULT 0,
    enqueued_at  INTEGER NOT NULL,
    message      TEXT NOT NULL
);
CREATE INDEX tasker_queue_messages_ready ON tasker_queue_messages (queue, vt, msg_id);
