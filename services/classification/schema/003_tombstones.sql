-- A deleted object keeps a row with deleted_version set (its other columns
-- emptied), so that read events of the deleted version arriving late do not
-- bring it back. A newer version clears it.
ALTER TABLE object_stats ADD COLUMN deleted_version bigint;
