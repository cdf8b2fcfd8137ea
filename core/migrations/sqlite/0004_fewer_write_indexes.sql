-- Issue 16 (speed): every index is one more page written to the WAL by each transaction that
-- touches it. Two that cost more than they bought:
--
-- * The queue's (queue, vt, msg_id): every message is inserted, claimed and deleted, each time
--   in both queue indexes. The claim index of 0003 holds vt too, so "is anything visible?" walks
--   it instead, past the leased messages (as many as are in flight, not a growing history).
-- * Listing by template name: no caller filters by name (the CLI lists by namespace and/or
--   state). A name filter now walks its namespace's newest-first index and filters the names.
DROP INDEX tasker_queue_messages_ready;
DROP INDEX tasker_tasks_by_template;
DROP INDEX tasker_tasks_by_template_state;
