-- Streamed copies in progress that can be resumed: a copy from one backend
-- to another that is interrupted (the storage adapter killed, its client
-- gone) keeps the parts the target already holds, and the next copy of the
-- same source bytes to the same backend and tier continues after them
-- instead of sending the object again. Written after every part that
-- extends the stored prefix; removed when the copy is catalogued, abandoned
-- (storage adapter --copy_resume_ttl) or found to be gone from the store.
CREATE TABLE copy_uploads (
  source_backend      text NOT NULL,
  source_physical_key text NOT NULL,
  target_backend      text NOT NULL,
  tier                smallint NOT NULL,
  -- The target's bytes (a row of pending_bytes while the copy lasts).
  target_physical_key text NOT NULL,
  upload_id           text NOT NULL,
  part_size           bigint NOT NULL CHECK (part_size > 0),
  -- The ETags of parts 1..n, one per line; every part is part_size bytes.
  etags               text NOT NULL,
  -- SHA-256 of the source's first n * part_size bytes, mid-stream (hex).
  sha256_state        text NOT NULL,
  -- The instance copying now; NULL when nobody is (the copy was stopped).
  writer              uuid,
  updated_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source_backend, source_physical_key, target_backend, tier)
);
CREATE INDEX copy_uploads_target ON copy_uploads (target_backend, target_physical_key);

-- Where each instance runs (the host name: the pod's in Kubernetes), so that
-- a restarted process knows the copies its predecessor on the same host was
-- running have stopped.
ALTER TABLE instances ADD COLUMN host text NOT NULL DEFAULT '';
