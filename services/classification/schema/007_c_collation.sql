-- Object keys, namespaces and prefixes are identifiers compared byte for
-- byte: the "C" collation makes every B-tree comparison a memcmp instead of
-- a locale's strcoll (the ingest's upserts spend most of their index time
-- comparing keys) and gives the same order on every server.
ALTER TABLE object_stats
  ALTER COLUMN namespace TYPE text COLLATE "C",
  ALTER COLUMN key TYPE text COLLATE "C";
ALTER TABLE object_reads_daily
  ALTER COLUMN namespace TYPE text COLLATE "C",
  ALTER COLUMN key TYPE text COLLATE "C";
ALTER TABLE policies
  ALTER COLUMN namespace TYPE text COLLATE "C",
  ALTER COLUMN prefix TYPE text COLLATE "C";
