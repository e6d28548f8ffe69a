-- Replication rules: a replica of every object under namespace/prefix kept
-- on another backend. The queue holds the objects whose replica is to be
-- made, checked or (a rule being dropped) removed: filled from the storage
-- adapter's object events and by the full comparison, which walks the
-- listing a page per round (full_sync_token: where it stands; NULL when no
-- comparison is under way).
CREATE TABLE replication_rules (
  id               uuid PRIMARY KEY,
  namespace        text COLLATE "C" NOT NULL,
  prefix           text COLLATE "C" NOT NULL DEFAULT '',
  backend          text NOT NULL,
  tier             smallint NOT NULL DEFAULT 0,
  dropping         boolean NOT NULL DEFAULT false,
  objects_copied   bigint NOT NULL DEFAULT 0,
  bytes_copied     bigint NOT NULL DEFAULT 0,
  full_sync_due    timestamptz NOT NULL DEFAULT now(),
  full_sync_token  text,
  last_full_sync   timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (namespace, prefix, backend)
);

CREATE TABLE replication_queue (
  rule_id      uuid NOT NULL REFERENCES replication_rules ON DELETE CASCADE,
  key          text COLLATE "C" NOT NULL,
  -- Bumped by every new event for the object: a worker that finished an
  -- older one leaves the entry for the next round.
  generation   bigint NOT NULL DEFAULT 0,
  queued_at    timestamptz NOT NULL DEFAULT now(),
  attempts     integer NOT NULL DEFAULT 0,
  retry_at     timestamptz NOT NULL DEFAULT now(),
  lease_until  timestamptz,
  last_error   text NOT NULL DEFAULT '',
  PRIMARY KEY (rule_id, key)
);
CREATE INDEX replication_due ON replication_queue (retry_at);
