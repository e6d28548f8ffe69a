-- Keys are compared byte for byte: the "C" collation makes the primary key
-- a memcmp index in listing order, so the separate listing index goes.
DROP INDEX objects_listing;
ALTER TABLE objects
  ALTER COLUMN namespace TYPE text COLLATE "C",
  ALTER COLUMN key TYPE text COLLATE "C";
ALTER TABLE pending_bytes
  ALTER COLUMN backend TYPE text COLLATE "C",
  ALTER COLUMN physical_key TYPE text COLLATE "C";
