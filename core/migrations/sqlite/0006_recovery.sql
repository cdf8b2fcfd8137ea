-- Recovering failed work (issue 10): the dead-letter queue and the registry of live workers.

-- A task that needs a human. At most one open entry (pending, investigating) per task.
CREATE TABLE tasker_dlq_entries (
    entry_uuid   BLOB PRIMARY KEY,
    task_uuid    BLOB NOT NULL REFERENCES tasker_tasks(task_uuid) ON DELETE CASCADE,
    reason       TEXT NOT NULL,
    task_state   TEXT NOT NULL,
    snapshot     TEXT NOT NULL,
    status       TEXT NOT NULL,
    notes        TEXT NOT NULL DEFAULT '[]',
    resolved_by  TEXT,
    -- the operator action that re-opened the task: who closes the entry when the task completes
    resolution   TEXT,
    resolved_at  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX tasker_dlq_one_open_per_task ON tasker_dlq_entries (task_uuid)
    WHERE status IN ('pending', 'investigating');
CREATE INDEX tasker_dlq_by_status ON tasker_dlq_entries (status, created_at);

-- Worker processes: registered at start, heartbeating, marked stopped at shutdown.
CREATE TABLE tasker_workers (
    registration_uuid  BLOB PRIMARY KEY,
    worker_id          TEXT NOT NULL,
    host               TEXT NOT NULL,
    pid                INTEGER NOT NULL,
    language           TEXT NOT NULL,
    queues             TEXT NOT NULL,
    concurrency        INTEGER NOT NULL,
    in_flight          INTEGER NOT NULL DEFAULT 0,
    started_at         INTEGER NOT NULL,
    last_heartbeat_at  INTEGER NOT NULL,
    stopped_at         INTEGER
);
CREATE INDEX tasker_workers_by_heartbeat ON tasker_workers (last_heartbeat_at);
