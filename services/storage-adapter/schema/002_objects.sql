-- The catalog: each logical object (namespace, key) and where its bytes are.
-- A row exists only for bytes that are durably stored and checksummed.
CREATE TABLE objects (
  namespace     text NOT NULL,
  key           text NOT NULL,
  version       bigint NOT NULL DEFAULT 1,
  backend       text NOT NULL,
  physical_key  text NOT NULL,
  tier          smallint NOT NULL,
  size          bigint NOT NULL CHECK (size >= 0),
  sha256        text NOT NULL,
  etag          text NOT NULL,
  content_type  text NOT NULL DEFAULT '',
  metadata      jsonb NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, key)
);
-- Byte-wise key order for listing.
CREATE INDEX objects_listing ON objects (namespace, key COLLATE "C");
