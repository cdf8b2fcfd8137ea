-- Tasker schema (PostgreSQL). Queues live in PGMQ (schema pgmq), installed separately.

CREATE TABLE tasker_namespaces (
    name        TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE tasker_templates (
    id             BIGSERIAL PRIMARY KEY,
    namespace_name TEXT NOT NULL REFERENCES tasker_namespaces(name),
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    definition     JSONB NOT NULL,
    content_hash   TEXT NOT NULL,
    source_path    TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (namespace_name, name, version)
);

CREATE TABLE tasker_tasks (
    task_uuid        UUID PRIMARY KEY,
    template_id      BIGINT NOT NULL REFERENCES tasker_templates(id),
    namespace_name   TEXT NOT NULL,
    name             TEXT NOT NULL,
    version          TEXT NOT NULL,
    state            TEXT NOT NULL,
    context          JSONB NOT NULL,
    initiator        TEXT,
    source_system    TEXT,
    reason           TEXT,
    tags             JSONB NOT NULL DEFAULT '[]',
    priority         INTEGER NOT NULL DEFAULT 0,
    correlation_id   UUID NOT NULL,
    identity_hash    TEXT NOT NULL UNIQUE,
    idempotency_key  TEXT,
    total_steps      INTEGER NOT NULL,
    completed_steps  INTEGER NOT NULL DEFAULT 0,
    active_steps     INTEGER NOT NULL DEFAULT 0,
    failed_steps     INTEGER NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    completed_at     TIMESTAMPTZ
);
CREATE INDEX tasker_tasks_by_namespace ON tasker_tasks (namespace_name, state, created_at DESC);
CREATE INDEX tasker_tasks_by_state ON tasker_tasks (state, created_at DESC);

CREATE TABLE tasker_steps (
    step_uuid           UUID PRIMARY KEY,
    task_uuid           UUID NOT NULL REFERENCES tasker_tasks(task_uuid) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    position            INTEGER NOT NULL,
    queue               TEXT NOT NULL,
    state               TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL,
    retryable           BOOLEAN NOT NULL,
    pending_parents     INTEGER NOT NULL,
    next_retry_at       TIMESTAMPTZ,
    deadline_at         TIMESTAMPTZ,
    results             JSONB,
    last_error          JSONB,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    first_attempted_at  TIMESTAMPTZ,
    last_attempted_at   TIMESTAMPTZ,
    completed_at        TIMESTAMPTZ,
    UNIQUE (task_uuid, name)
);
CREATE INDEX tasker_steps_retry_due ON tasker_steps (next_retry_at) WHERE state = 'waiting_for_retry';
CREATE INDEX tasker_steps_deadline ON tasker_steps (deadline_at) WHERE state = 'in_progress' AND deadline_at IS NOT NULL;

CREATE TABLE tasker_step_edges (
    task_uuid  UUID NOT NULL REFERENCES tasker_tasks(task_uuid) ON DELETE CASCADE,
    from_step  UUID NOT NULL,
    to_step    UUID NOT NULL,
    PRIMARY KEY (from_step, to_step)
);
CREATE INDEX tasker_step_edges_to ON tasker_step_edges (to_step);

CREATE TABLE tasker_task_transitions (
    id           BIGSERIAL PRIMARY KEY,
    task_uuid    UUID NOT NULL REFERENCES tasker_tasks(task_uuid) ON DELETE CASCADE,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    event        TEXT NOT NULL,
    metadata     JSONB NOT NULL DEFAULT '{}',
    most_recent  BOOLEAN NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX tasker_task_transitions_task ON tasker_task_transitions (task_uuid, id);
CREATE UNIQUE INDEX tasker_task_transitions_most_recent ON tasker_task_transitions (task_uuid) WHERE most_recent;

CREATE TABLE tasker_step_transitions (
    id           BIGSERIAL PRIMARY KEY,
    step_uuid    UUID NOT NULL,
    task_uuid    UUID NOT NULL REFERENCES tasker_tasks(task_uuid) ON DELETE CASCADE,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    event        TEXT NOT NULL,
    metadata     JSONB NOT NULL DEFAULT '{}',
    most_recent  BOOLEAN NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX tasker_step_transitions_task ON tasker_step_transitions (task_uuid, id);
CREATE UNIQUE INDEX tasker_step_transitions_most_recent ON tasker_step_transitions (step_uuid) WHERE most_recent;
