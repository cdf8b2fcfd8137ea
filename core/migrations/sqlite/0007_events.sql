-- Durable events (issue 11): an outbox written in the transaction of the state change that
-- causes each event, and subscriber groups that read it. SQLite has one writer at a time, so
-- `id` order is commit order: readers page by `id` (PostgreSQL needs a sequencer for that).
CREATE TABLE tasker_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     BLOB NOT NULL,
    name         TEXT NOT NULL,
    task_uuid    BLOB,
    step_uuid    BLOB,
    partition    INTEGER NOT NULL,
    payload      TEXT NOT NULL,
    occurred_at  INTEGER NOT NULL
);
CREATE INDEX tasker_events_by_position ON tasker_events (partition, id);
CREATE INDEX tasker_events_by_time ON tasker_events (occurred_at);

CREATE TABLE tasker_event_groups (
    group_name  TEXT PRIMARY KEY,
    patterns    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE tasker_event_cursors (
    group_name        TEXT NOT NULL REFERENCES tasker_event_groups(group_name) ON DELETE CASCADE,
    partition         INTEGER NOT NULL,
    position          INTEGER NOT NULL,
    owner             TEXT,
    lease_expires_at  INTEGER,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (group_name, partition)
);

CREATE TABLE tasker_event_members (
    group_name    TEXT NOT NULL REFERENCES tasker_event_groups(group_name) ON DELETE CASCADE,
    member_id     TEXT NOT NULL,
    heartbeat_at  INTEGER NOT NULL,
    PRIMARY KEY (group_name, member_id)
);

CREATE TABLE tasker_event_dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name  TEXT NOT NULL,
    event_id    BLOB NOT NULL,
    name        TEXT NOT NULL,
    task_uuid   BLOB,
    event       TEXT NOT NULL,
    error       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    dead_at     INTEGER NOT NULL
);
CREATE INDEX tasker_event_dead_letters_by_group ON tasker_event_dead_letters (group_name, id);
