-- Two-way syncs: pairs of locations (namespace + prefix) kept the same in
-- both directions. sync_listing is the pair's last agreed listing: for each
-- key (relative to the prefixes) the content both sides had when it was
-- last synced, and the versions that held it on each side. A run compares
-- each side against it to tell what changed where, and updates a key's row
-- as soon as that key is synced, so that a run that ends early leaves the
-- rest to the next one.
CREATE TABLE sync_pairs (
  id                 uuid PRIMARY KEY,
  path1_namespace    text COLLATE "C" NOT NULL,
  path1_prefix       text COLLATE "C" NOT NULL DEFAULT '',
  path1_backend      text NOT NULL DEFAULT '',
  path1_tier         smallint NOT NULL DEFAULT 0,
  path2_namespace    text COLLATE "C" NOT NULL,
  path2_prefix       text COLLATE "C" NOT NULL DEFAULT '',
  path2_backend      text NOT NULL DEFAULT '',
  path2_tier         smallint NOT NULL DEFAULT 0,
  conflict_resolve   smallint NOT NULL,
  conflict_loser     smallint NOT NULL,
  max_delete_percent smallint NOT NULL CHECK (max_delete_percent BETWEEN 1 AND 100),
  interval_ms        bigint NOT NULL DEFAULT 0,
  created_at         timestamptz NOT NULL DEFAULT now(),
  -- The run going on: who runs it, until when its lease holds.
  runner             uuid,
  lease_until        timestamptz,
  next_run_at        timestamptz,
  -- The last run, without its changes (a SyncRun message as JSON).
  last_run           jsonb
);

CREATE TABLE sync_listing (
  pair_id  uuid NOT NULL REFERENCES sync_pairs ON DELETE CASCADE,
  key      text COLLATE "C" NOT NULL,
  sha256   text NOT NULL,
  version1 bigint NOT NULL,
  version2 bigint NOT NULL,
  PRIMARY KEY (pair_id, key)
);

CREATE INDEX sync_pairs_due ON sync_pairs (next_run_at) WHERE interval_ms > 0;
