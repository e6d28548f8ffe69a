-- A job's copies at once while its target throttles (NULL: its
-- parallelism), when it was last lowered and raised, and the throttled
-- answers so far; per task, the throttled answers not counted as failed
-- attempts.
ALTER TABLE jobs
  ADD COLUMN concurrency integer,
  ADD COLUMN lowered_at timestamptz,
  ADD COLUMN raised_at timestamptz,
  ADD COLUMN throttled bigint NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN throttled integer NOT NULL DEFAULT 0;
