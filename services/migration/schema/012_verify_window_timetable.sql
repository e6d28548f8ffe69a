-- A job's verify mode (migration.v1.VerifyMode), its maintenance window
-- (UTC hours; start = end: any time) and its bandwidth timetable (a
-- CreateMigrationRequest holding only bandwidth_timetable; NULL: none).
-- Per task: a check only (VERIFY_MODE_ALL, the object already at the
-- target), and whether the target's bytes were read back and matched.
ALTER TABLE jobs
  ADD COLUMN verify smallint NOT NULL DEFAULT 1,
  ADD COLUMN window_start smallint NOT NULL DEFAULT 0,
  ADD COLUMN window_end smallint NOT NULL DEFAULT 0,
  ADD COLUMN timetable bytea;
ALTER TABLE tasks
  ADD COLUMN verify_only boolean NOT NULL DEFAULT false,
  ADD COLUMN verified boolean NOT NULL DEFAULT false;
