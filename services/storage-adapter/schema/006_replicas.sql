-- Replicas: copies of an object's current version on other backends (kept
-- current by the migration service's replication rules). A replica goes
-- with its version: the catalog transaction that overwrites or deletes the
-- object removes the row and queues its bytes for removal (the sweep
-- removes them), in the same transaction, through the trigger below.
CREATE TABLE replicas (
  namespace     text NOT NULL,
  key           text NOT NULL,
  backend       text NOT NULL,
  version       bigint NOT NULL,
  physical_key  text NOT NULL,
  tier          smallint NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, key, backend)
);

CREATE FUNCTION drop_stale_replicas() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    WITH gone AS (DELETE FROM storage.replicas r WHERE r.namespace = OLD.namespace AND r.key = OLD.key
                  RETURNING r.backend, r.physical_key)
    INSERT INTO storage.pending_bytes (backend, physical_key) SELECT backend, physical_key FROM gone
    ON CONFLICT DO NOTHING;
  ELSIF NEW.version <> OLD.version OR NEW.sha256 <> OLD.sha256 THEN
    WITH gone AS (DELETE FROM storage.replicas r WHERE r.namespace = OLD.namespace AND r.key = OLD.key
                  RETURNING r.backend, r.physical_key)
    INSERT INTO storage.pending_bytes (backend, physical_key) SELECT backend, physical_key FROM gone
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER objects_drop_stale_replicas AFTER UPDATE OR DELETE ON objects
  FOR EACH ROW EXECUTE FUNCTION drop_stale_replicas();
