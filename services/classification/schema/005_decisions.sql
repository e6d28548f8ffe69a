-- The last move published for each object (TierDecided), so that periodic
-- sweeps publish a decision once per object version and target.
ALTER TABLE object_stats ADD COLUMN decided_version bigint;
ALTER TABLE object_stats ADD COLUMN decided_target text;  -- "AWS/GLACIER_IR"
ALTER TABLE object_stats ADD COLUMN decided_at timestamptz;

-- Work one replica at a time does (the sweep): held until expires_at.
CREATE TABLE leases (
  name       text PRIMARY KEY,
  holder     text NOT NULL,
  expires_at timestamptz NOT NULL
);
