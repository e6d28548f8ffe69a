-- Daily read histories per object, built from the storage adapter's object
-- events: one row per object, its reads per UTC day in an array (reads[1] is
-- first_day, in days since 1970-01-01), so a year of history is one row of
-- about 1.5 KB, not 365 rows. Deleted objects keep a tombstone
-- (deleted_version) so that late reads of them count for nothing; an
-- overwrite starts a new history.
CREATE TABLE histories (
  namespace       text COLLATE "C" NOT NULL,
  key             text COLLATE "C" NOT NULL,
  version         bigint,
  size            bigint,
  backend         text,
  tier            smallint,
  created_at      timestamptz,
  placed_at       timestamptz,
  last_read_at    timestamptz,
  first_day       integer,
  reads           integer[] NOT NULL DEFAULT '{}',
  deleted_version bigint,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, key)
);
