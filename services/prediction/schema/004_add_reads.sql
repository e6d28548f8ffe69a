-- Adds reads to a history inside the database, so that an ingest batch of
-- reads sends (day, count) pairs instead of reading and rewriting each
-- object's whole array: `reads` starts on `first_day` (NULL = no day yet);
-- the result starts on the earliest of first_day and `days`, and counts
-- saturate at the integer maximum. The caller sets first_day to the least
-- of the two.
CREATE FUNCTION add_reads(reads integer[], first_day integer, days integer[], counts integer[])
RETURNS integer[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  start integer := least(first_day, (SELECT min(d) FROM unnest(days) AS d));
  result integer[] := coalesce(reads, '{}');
  len integer;
  idx integer;
BEGIN
  IF start IS NULL THEN
    RETURN result;
  END IF;
  IF first_day IS NOT NULL AND start < first_day THEN
    result := array_fill(0, ARRAY[first_day - start]) || result;
  END IF;
  FOR i IN 1 .. coalesce(array_length(days, 1), 0) LOOP
    idx := days[i] - start + 1;
    len := coalesce(array_length(result, 1), 0);
    IF idx > len THEN
      result := result || array_fill(0, ARRAY[idx - len]);
    END IF;
    result[idx] := least(result[idx]::bigint + counts[i], 2147483647)::integer;
  END LOOP;
  RETURN result;
END
$$;
