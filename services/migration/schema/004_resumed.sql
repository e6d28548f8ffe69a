-- Of a moved object's bytes, those an interrupted attempt had stored at the
-- target and the finishing attempt did not send again.
ALTER TABLE tasks ADD COLUMN bytes_resumed bigint NOT NULL DEFAULT 0;
