-- Bytes in a backend that no catalog row owns: a write in progress (owned by
-- the instance writing it) or bytes to remove (instance_id NULL: an old
-- version, a deleted object, an abandoned write). A row is added before the
-- bytes are written and removed in the transaction that catalogues them, so
-- a crash in between never leaves bytes nobody knows about. Each instance
-- heartbeats; the sweeper removes the writes of instances that stopped.
ALTER TABLE instances ADD COLUMN heartbeat_at timestamptz NOT NULL DEFAULT now();

CREATE TABLE pending_bytes (
  backend      text NOT NULL,
  physical_key text NOT NULL,
  instance_id  uuid,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (backend, physical_key)
);
CREATE INDEX pending_bytes_removals ON pending_bytes (created_at) WHERE instance_id IS NULL;
