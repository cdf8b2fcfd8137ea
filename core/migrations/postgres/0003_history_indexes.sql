-- Reads by task (a task's detail, cancellation) and deletes cascading from a task (retention)
-- must not scan every step or edge ever stored: index both by task.
CREATE INDEX IF NOT EXISTS tasker_steps_by_task ON tasker_steps (task_uuid, position);
CREATE INDEX IF NOT EXISTS tasker_step_edges_by_task ON tasker_step_edges (task_uuid);
