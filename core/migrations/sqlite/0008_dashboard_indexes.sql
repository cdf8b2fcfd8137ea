-- The dashboard's reads. Throughput (tasks completed in the last hour, the last five minutes)
-- reads a range of completion times instead of every task; search by idempotency key finds
-- its task or two directly.
CREATE INDEX tasker_tasks_by_completed ON tasker_tasks (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX tasker_tasks_by_idempotency_key ON tasker_tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
