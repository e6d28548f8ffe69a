-- The placement loop: operator policies per namespace, and the move
-- decisions (classification's TierDecided) waiting to become migrations,
-- the newest per object.
CREATE TABLE placement_policies (
  namespace          text COLLATE "C" PRIMARY KEY,
  enabled            boolean NOT NULL,
  daily_bytes        bigint NOT NULL DEFAULT 0,
  daily_cost         double precision NOT NULL DEFAULT 0,
  window_start_hour  smallint NOT NULL DEFAULT 0,
  window_end_hour    smallint NOT NULL DEFAULT 0,
  batch_objects      integer NOT NULL DEFAULT 0,
  updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE decisions (
  namespace    text COLLATE "C" NOT NULL,
  key          text COLLATE "C" NOT NULL,
  version      bigint NOT NULL,
  to_backend   text NOT NULL,
  to_tier      smallint NOT NULL,
  decided_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, key)
);

-- Which namespace a placement migration serves, and what it planned to
-- move and pay (the budgets count them).
ALTER TABLE jobs ADD COLUMN placement_namespace text,
  ADD COLUMN planned_bytes bigint NOT NULL DEFAULT 0,
  ADD COLUMN planned_cost double precision NOT NULL DEFAULT 0;
CREATE INDEX jobs_placement ON jobs (placement_namespace, created_at) WHERE placement_namespace IS NOT NULL;
