-- A job's running tasks, counted by every claim (its room under the
-- parallelism): at most `parallelism` entries per job, where the open-task
-- index would walk every task not yet done.
CREATE INDEX tasks_running ON tasks (job_id, lease_until) WHERE outcome = 2;
