-- Of a moved object's bytes, those an interrupted attempt had stored at the
-- target and the finishing attempt did not send again.
ALTER TABLE tasks ADD COLUMN bytes_resumed bigint NOT NULL DEFAULT 0;
-- When the task's last failed attempt ended (WatchMigration reports the
-- failures since its previous update).
ALTER TABLE tasks ADD COLUMN failed_at timestamptz;
CREATE INDEX tasks_failed ON tasks (job_id, failed_at) WHERE failed_at IS NOT NULL;
-- A task whose attempt failed transiently is not claimed again before this.
ALTER TABLE tasks ADD COLUMN retry_at timestamptz;
