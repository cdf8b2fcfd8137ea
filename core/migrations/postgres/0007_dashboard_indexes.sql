-- The dashboard's reads. Throughput (tasks completed in the last hour, the last five minutes)
-- reads a range of completion times instead of every task; search by idempotency key finds
-- its task or two directly.
CREATE INDEX IF NOT EXISTS tasker_tasks_by_completed ON tasker_tasks (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasker_tasks_by_idempotency_key ON tasker_tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The task list, newest first, a page at a time: unfiltered (and through cursors) and by
-- template. (By state and by namespace, 0001's indexes serve.) Each index is one more entry
-- to write when a task's state changes, hence no more than these.
CREATE INDEX IF NOT EXISTS tasker_tasks_by_created ON tasker_tasks (created_at, task_uuid);
CREATE INDEX IF NOT EXISTS tasker_tasks_by_template ON tasker_tasks (namespace_name, name, created_at, task_uuid);
