-- Every process of the classification service records itself here at start, so that
-- operators can see which versions have run against this schema.
CREATE TABLE instances (
  instance_id uuid PRIMARY KEY,
  version     text NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now()
);
