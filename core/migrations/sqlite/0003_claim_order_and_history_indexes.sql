-- Issue 16 (speed).
--
-- Claim order: visible messages are claimed lowest `order_key` first, then by msg_id, where
-- order_key = the time the message was sent minus a head start for its task's priority (see
-- `tasker_core::store::order_key`). Messages already queued keep their place: their key is the
-- time they were sent.
ALTER TABLE tasker_queue_messages ADD COLUMN order_key INTEGER NOT NULL DEFAULT 0;
UPDATE tasker_queue_messages SET order_key = enqueued_at;
-- A claim walks this index in claim order and skips the invisible (leased) messages inside the
-- index (vt is part of it), so it never sorts the visible backlog; `tasker_queue_messages_ready`
-- (queue, vt, msg_id) stays for the "anything visible?" probe of idle workers.
CREATE INDEX tasker_queue_messages_claim ON tasker_queue_messages (queue, order_key, msg_id, vt);

-- Listing tasks newest first under every filter the API offers, without sorting the history:
-- one index per combination of (namespace, name, state), each ending in the listing order.
DROP INDEX tasker_tasks_by_namespace;
DROP INDEX tasker_tasks_by_state;
CREATE INDEX tasker_tasks_by_created ON tasker_tasks (created_at, task_uuid);
CREATE INDEX tasker_tasks_by_state ON tasker_tasks (state, created_at, task_uuid);
CREATE INDEX tasker_tasks_by_namespace ON tasker_tasks (namespace_name, created_at, task_uuid);
CREATE INDEX tasker_tasks_by_namespace_state ON tasker_tasks (namespace_name, state, created_at, task_uuid);
CREATE INDEX tasker_tasks_by_template ON tasker_tasks (namespace_name, name, created_at, task_uuid);
CREATE INDEX tasker_tasks_by_template_state ON tasker_tasks (namespace_name, name, state, created_at, task_uuid);
