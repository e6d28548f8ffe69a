-- Adaptive conformal intervals in service: each day the champion's
-- forecasts from a week before are scored against what happened and its
-- intervals' levels move (Forecaster::Adapt). The levels are shared by every
-- replica through the champion's row; adapted_origin is the last forecast
-- origin observed (each origin once), live_coverage80/95 its coverage
-- before the step.
ALTER TABLE models
  ADD COLUMN adaptive_levels text,
  ADD COLUMN adapted_origin integer,
  ADD COLUMN live_coverage80 double precision,
  ADD COLUMN live_coverage95 double precision;
