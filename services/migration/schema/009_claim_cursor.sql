-- Where a job's claims of new tasks stand: the last task claimed, in key
-- order. A claim looks for the next new task after it, so it never steps
-- over the entries that the tasks done before it leave in the open-task
-- index until vacuum. Retries that are due and claims whose lease ran out
-- have indexes of their own.
ALTER TABLE jobs
  ADD COLUMN claim_namespace text COLLATE "C" NOT NULL DEFAULT '',
  ADD COLUMN claim_key text COLLATE "C" NOT NULL DEFAULT '';
CREATE INDEX tasks_retry ON tasks (job_id, retry_at) WHERE outcome = 1 AND retry_at IS NOT NULL;
