-- Attempts that are the engine's fault, not the handler's (issue: hardening).
--   free_attempts: attempt numbers that do not count against max_attempts: claims released
--                  before the handler started, and attempts lost with their worker's lease.
--   lost_leases:   attempts lost with their worker's lease; capped on their own so that a
--                  handler that crashes its process every time still ends.
ALTER TABLE tasker_steps ADD COLUMN free_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasker_steps ADD COLUMN lost_leases INTEGER NOT NULL DEFAULT 0;
