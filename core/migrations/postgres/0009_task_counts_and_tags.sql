-- Issue 14: the dashboard's overview and its tag filter in constant time at any number of tasks.
--
-- Both tables are derived from tasker_tasks by triggers, so every path that inserts a task or
-- changes its state (the fused CTEs of pg_fused.rs included) keeps them exact in the same
-- transaction, and no Rust code path can forget them.

-- Task counts by the minute a task was created in and its current state, kept as DELTAS: each
-- insert, state change or delete of a task appends +1/-1 rows, and nothing is ever updated in
-- place by a task's transaction. Why not one counter row per state: every task transition of
-- every engine process would update the same dozen rows and hold their row locks until commit,
-- serializing all task transitions across processes (and two transactions moving tasks
-- between the same states in opposite orders would deadlock). Sharded counters narrow that but
-- keep the lock waits and the deadlocks. Appending to a heap without an index takes no row lock
-- that anyone else waits for. `compact_task_counts` (the overview before it reads, and the
-- orchestrator's maintenance pass) folds the deltas into one row per (minute, state) in a
-- single statement under a try-advisory lock, and folds minutes older than the chart needs
-- into `minute` 0, so a read sums a few hundred rows plus the deltas since the last fold.
CREATE TABLE tasker_task_counts (
    minute BIGINT NOT NULL,
    state  TEXT NOT NULL,
    n      BIGINT NOT NULL
);

CREATE FUNCTION tasker_task_counts_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tasker_task_counts (minute, state, n)
            VALUES (floor(extract(epoch FROM NEW.created_at) / 60)::bigint, NEW.state, 1);
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO tasker_task_counts (minute, state, n)
            VALUES (floor(extract(epoch FROM OLD.created_at) / 60)::bigint, OLD.state, -1),
                   (floor(extract(epoch FROM NEW.created_at) / 60)::bigint, NEW.state, 1);
    ELSE
        INSERT INTO tasker_task_counts (minute, state, n)
            VALUES (floor(extract(epoch FROM OLD.created_at) / 60)::bigint, OLD.state, -1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasker_task_counts_insert AFTER INSERT OR DELETE ON tasker_tasks
    FOR EACH ROW EXECUTE FUNCTION tasker_task_counts_change();
-- The WHEN clause is evaluated without calling the function, so the many updates that do not
-- change a task's state (its step counters) cost nothing here.
CREATE TRIGGER tasker_task_counts_update AFTER UPDATE OF state, created_at ON tasker_tasks
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION tasker_task_counts_change();

INSERT INTO tasker_task_counts (minute, state, n)
    SELECT floor(extract(epoch FROM created_at) / 60)::bigint, state, COUNT(*)
    FROM tasker_tasks GROUP BY 1, 2;

-- One row per tag of a task, newest first within a tag: the task list filtered by a tag walks
-- this key in order and stops at the page's end, however rare the tag (`tags ? $tag` on the
-- JSONB array could only filter while walking every task). A GIN index on the array would find
-- a rare tag quickly but returns its tasks unordered, so a common tag would fetch and sort all
-- of its tasks for one page; this key serves both. Tags never change after creation.
CREATE TABLE tasker_task_tags (
    tag        TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    task_uuid  UUID NOT NULL,
    PRIMARY KEY (tag, created_at, task_uuid)
);

CREATE FUNCTION tasker_task_tags_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tasker_task_tags (tag, created_at, task_uuid)
            SELECT DISTINCT tag, NEW.created_at, NEW.task_uuid FROM jsonb_array_elements_text(NEW.tags) AS tag
            ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM tasker_task_tags
            WHERE tag IN (SELECT jsonb_array_elements_text(OLD.tags)) AND created_at = OLD.created_at
              AND task_uuid = OLD.task_uuid;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasker_task_tags_insert AFTER INSERT ON tasker_tasks
    FOR EACH ROW WHEN (NEW.tags <> '[]'::jsonb) EXECUTE FUNCTION tasker_task_tags_change();
CREATE TRIGGER tasker_task_tags_delete AFTER DELETE ON tasker_tasks
    FOR EACH ROW WHEN (OLD.tags <> '[]'::jsonb) EXECUTE FUNCTION tasker_task_tags_change();

INSERT INTO tasker_task_tags (tag, created_at, task_uuid)
    SELECT DISTINCT tag, t.created_at, t.task_uuid
    FROM tasker_tasks t, jsonb_array_elements_text(t.tags) AS tag
    WHERE t.tags <> '[]'::jsonb
    ON CONFLICT DO NOTHING;
