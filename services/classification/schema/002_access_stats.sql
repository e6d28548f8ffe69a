-- Per-object access statistics, fed by the storage adapter's object events.
-- Columns other than the key stay NULL until an event has told them.
CREATE TABLE object_stats (
  namespace     text NOT NULL,
  key           text NOT NULL,
  version       bigint,
  size          bigint,
  backend       text,
  tier          smallint,
  created_at    timestamptz,
  placed_at     timestamptz,  -- since when it is on this backend and tier
  last_read_at  timestamptz,
  reads_total   bigint NOT NULL DEFAULT 0,
  bytes_read    bigint NOT NULL DEFAULT 0,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, key)
);

-- Reads per object and UTC day: the 1/7/30/90-day windows are sums over it.
CREATE TABLE object_reads_daily (
  namespace text NOT NULL,
  key       text NOT NULL,
  day       date NOT NULL,
  reads     bigint NOT NULL,
  bytes     bigint NOT NULL,
  PRIMARY KEY (namespace, key, day)
);
