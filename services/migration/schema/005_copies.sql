-- Copy jobs: a task with to_namespace writes a copy there (same key) and
-- keeps the source; one with to_backend '' (a copy job's rollback) deletes
-- the copy at namespace/key if it is still the one written (sha256).
ALTER TABLE tasks ADD COLUMN to_namespace text COLLATE "C";

-- Open tasks in claiming order (a job's tasks by namespace and key): a
-- claim reads the first unlocked one instead of sorting every open task.
CREATE INDEX tasks_open_in_order ON tasks (job_id, namespace, key) WHERE outcome IN (1, 2);
DROP INDEX tasks_open;
