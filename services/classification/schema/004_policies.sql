-- Placement policies per namespace and key prefix (the Policy message,
-- serialized; validated by the service before it is written).
CREATE TABLE policies (
  namespace  text NOT NULL,
  prefix     text NOT NULL,
  body       bytea NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, prefix)
);
