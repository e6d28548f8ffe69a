-- Migration jobs and their per-object tasks. Workers of every replica claim
-- tasks with FOR UPDATE SKIP LOCKED and hold them under a lease; a task
-- whose lease ran out (its worker died) is claimed again.
CREATE TABLE jobs (
  id           uuid PRIMARY KEY,
  seq          bigserial UNIQUE,
  state        smallint NOT NULL,  -- migration.v1.MigrationState
  origin       text NOT NULL,
  description  text NOT NULL DEFAULT '',
  request      bytea NOT NULL,     -- CreateMigrationRequest
  estimate     bytea NOT NULL,     -- MigrationEstimate
  bandwidth    bigint,             -- bytes/s, NULL = no cap
  parallelism  integer NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz
);

CREATE TABLE tasks (
  job_id        uuid NOT NULL REFERENCES jobs(id),
  namespace     text COLLATE "C" NOT NULL,
  key           text COLLATE "C" NOT NULL,
  version       bigint NOT NULL,
  size          bigint NOT NULL,
  sha256        text NOT NULL,
  from_backend  text NOT NULL,
  from_tier     smallint NOT NULL,
  to_backend    text NOT NULL,
  to_tier       smallint NOT NULL,
  outcome       smallint NOT NULL,  -- migration.v1.ObjectOutcome
  reason        text NOT NULL DEFAULT '',
  attempts      integer NOT NULL DEFAULT 0,
  bytes_moved   bigint NOT NULL DEFAULT 0,
  worker        text,
  lease_until   timestamptz,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, namespace, key)
);
CREATE INDEX tasks_open ON tasks (job_id) WHERE outcome IN (1, 2);
