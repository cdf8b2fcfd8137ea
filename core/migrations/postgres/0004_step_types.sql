-- Decision points, batches and checkpoints (issue 9).
--   inputs      what a step created at run time is given (a batch worker's cursor: {"batch": …})
--   checkpoint  the last progress an attempt recorded, handed to the next attempt
--   created_by  the decision or batchable step whose outcome created the step
ALTER TABLE tasker_steps
    ADD COLUMN inputs JSONB,
    ADD COLUMN checkpoint JSONB,
    ADD COLUMN created_by TEXT;
