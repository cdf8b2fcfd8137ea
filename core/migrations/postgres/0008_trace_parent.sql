-- The W3C traceparent a task was created with: its span's parent when traces are exported.
ALTER TABLE tasker_tasks ADD COLUMN trace_parent TEXT;
