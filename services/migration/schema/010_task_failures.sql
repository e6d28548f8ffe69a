-- Every failed attempt of a task, in the order they were recorded: a task
-- row keeps only its latest reason, and a watcher that polls less often
-- than a task retries would miss the attempts in between.
CREATE TABLE task_failures (
  id        bigserial PRIMARY KEY,
  job_id    uuid NOT NULL,
  namespace text COLLATE "C" NOT NULL,
  key       text COLLATE "C" NOT NULL,
  attempt   integer NOT NULL,
  outcome   smallint NOT NULL,
  reason    text NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  FOREIGN KEY (job_id, namespace, key) REFERENCES tasks ON DELETE CASCADE
);
CREATE INDEX task_failures_job ON task_failures (job_id, id);
DROP INDEX tasks_failed;
ALTER TABLE tasks DROP COLUMN failed_at;
