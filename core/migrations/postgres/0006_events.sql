-- Durable events (issue 11): an outbox written in the transaction of the state change that
-- causes each event, and subscriber groups that read it.
--
-- Ordering. A transaction that writes events of a task holds that task's row lock from before
-- it inserts them until it commits, so within one task `id` order is commit order. `id` is not
-- commit order across tasks (a lower id may commit later), so readers never page by `id`: the
-- sequencer stamps committed rows with `position`, one run at a time, in `id` order. A reader
-- paging by `position` can then never skip a row that commits late.
CREATE TABLE tasker_events (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL,
    name         TEXT NOT NULL,
    task_uuid    UUID,
    step_uuid    UUID,
    -- which of the fixed partitions a task's events go to (a group member owns partitions)
    partition    SMALLINT NOT NULL,
    position     BIGINT,
    payload      JSONB NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX tasker_events_by_position ON tasker_events (partition, position);
CREATE INDEX tasker_events_unsequenced ON tasker_events (id) WHERE position IS NULL;
CREATE INDEX tasker_events_by_time ON tasker_events (occurred_at);

-- The last position the sequencer gave out.
CREATE TABLE tasker_event_sequencer (
    id             SMALLINT PRIMARY KEY CHECK (id = 1),
    last_position  BIGINT NOT NULL
);
INSERT INTO tasker_event_sequencer (id, last_position) VALUES (1, 0);

-- A subscriber group: every group gets every event; its members share them.
CREATE TABLE tasker_event_groups (
    group_name  TEXT PRIMARY KEY,
    patterns    JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- Where a group is in each partition, and which member holds the partition (until its lease
-- expires). `position` is the last event the group acknowledged.
CREATE TABLE tasker_event_cursors (
    group_name        TEXT NOT NULL REFERENCES tasker_event_groups(group_name) ON DELETE CASCADE,
    partition         SMALLINT NOT NULL,
    position          BIGINT NOT NULL,
    owner             TEXT,
    lease_expires_at  TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (group_name, partition)
);

CREATE TABLE tasker_event_members (
    group_name    TEXT NOT NULL REFERENCES tasker_event_groups(group_name) ON DELETE CASCADE,
    member_id     TEXT NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (group_name, member_id)
);

-- Events a group's subscriber failed on too often: set aside so the rest keep flowing.
CREATE TABLE tasker_event_dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    group_name  TEXT NOT NULL,
    event_id    UUID NOT NULL,
    name        TEXT NOT NULL,
    task_uuid   UUID,
    event       JSONB NOT NULL,
    error       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    dead_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX tasker_event_dead_letters_by_group ON tasker_event_dead_letters (group_name, id);
