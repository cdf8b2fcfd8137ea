-- Issue 14: the dashboard's overview and its tag filter in constant time at any number of tasks.
--
-- Both tables are derived from tasker_tasks by triggers, so every path that inserts a task or
-- changes its state (the engine's batched statements included) keeps them exact in the same
-- transaction, and no Rust code path can forget them. SQLite has one writer at a time, so a
-- counter row per (minute, state) costs no contention here; PostgreSQL's version of this
-- migration appends deltas instead (see there).

-- Tasks counted by the minute they were created in (created_at / 60000) and their current
-- state. The overview sums it by state (every task) and over the last hour's minutes (the
-- chart). `minute` 0 holds every minute older than the chart needs, folded in by
-- `compact_task_counts` (the orchestrator's maintenance pass), so the table stays a few hundred
-- rows. `n` may be negative in a minute already folded into 0; the sums are what counts.
CREATE TABLE tasker_task_counts (
    minute INTEGER NOT NULL,
    state  TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (minute, state)
) WITHOUT ROWID;

CREATE TRIGGER tasker_task_counts_insert AFTER INSERT ON tasker_tasks
BEGIN
    INSERT INTO tasker_task_counts (minute, state, n) VALUES (NEW.created_at / 60000, NEW.state, 1)
        ON CONFLICT (minute, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tasker_task_counts_update AFTER UPDATE OF state ON tasker_tasks
WHEN OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO tasker_task_counts (minute, state, n) VALUES (OLD.created_at / 60000, OLD.state, -1)
        ON CONFLICT (minute, state) DO UPDATE SET n = n - 1;
    INSERT INTO tasker_task_counts (minute, state, n) VALUES (NEW.created_at / 60000, NEW.state, 1)
        ON CONFLICT (minute, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tasker_task_counts_delete AFTER DELETE ON tasker_tasks
BEGIN
    INSERT INTO tasker_task_counts (minute, state, n) VALUES (OLD.created_at / 60000, OLD.state, -1)
        ON CONFLICT (minute, state) DO UPDATE SET n = n - 1;
END;

INSERT INTO tasker_task_counts (minute, state, n)
    SELECT created_at / 60000, state, COUNT(*) FROM tasker_tasks GROUP BY 1, 2;

-- One row per tag of a task, newest first within a tag: the task list filtered by a tag walks
-- this key in order and stops at the page's end, however rare the tag (the JSON array in the
-- task row could only be searched by reading every task). Tags never change after creation.
CREATE TABLE tasker_task_tags (
    tag        TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    task_uuid  BLOB NOT NULL,
    PRIMARY KEY (tag, created_at, task_uuid)
) WITHOUT ROWID;

CREATE TRIGGER tasker_task_tags_insert AFTER INSERT ON tasker_tasks
WHEN NEW.tags <> '[]'
BEGIN
    INSERT OR IGNORE INTO tasker_task_tags (tag, created_at, task_uuid)
        SELECT value, NEW.created_at, NEW.task_uuid FROM json_each(NEW.tags) WHERE type = 'text';
END;

CREATE TRIGGER tasker_task_tags_delete AFTER DELETE ON tasker_tasks
WHEN OLD.tags <> '[]'
BEGIN
    DELETE FROM tasker_task_tags
        WHERE tag IN (SELECT value FROM json_each(OLD.tags)) AND created_at = OLD.created_at
          AND task_uuid = OLD.task_uuid;
END;

INSERT OR IGNORE INTO tasker_task_tags (tag, created_at, task_uuid)
    SELECT j.value, t.created_at, t.task_uuid FROM tasker_tasks t, json_each(t.tags) j
    WHERE t.tags <> '[]' AND j.type = 'text';
