-- The model registry: every trained (or training, or failed) model, its
-- backtest against the baselines, and where its artifact is (stored through
-- the storage adapter). At most one champion.
CREATE TABLE models (
  seq               bigserial PRIMARY KEY,
  version           text NOT NULL UNIQUE,
  state             smallint NOT NULL,  -- prediction.v1.ModelState
  reason            text NOT NULL DEFAULT '',
  trigger           text NOT NULL DEFAULT '',
  created_at        timestamptz NOT NULL DEFAULT now(),
  trained_at        timestamptz,
  promoted_at       timestamptz,
  window_start_day  integer,
  window_end_day    integer,
  objects           bigint NOT NULL DEFAULT 0,
  rmsse_model       double precision,
  rmsse_tsb         double precision,
  rmsse_seasonal_naive double precision,
  scored            bigint NOT NULL DEFAULT 0,
  training_rows     bigint NOT NULL DEFAULT 0,
  calibration_rows  bigint NOT NULL DEFAULT 0,
  learned_targets   integer NOT NULL DEFAULT 0,
  features          text[] NOT NULL DEFAULT '{}',
  artifact_key      text,
  artifact_sha256   text,
  artifact_size     bigint
);
CREATE UNIQUE INDEX models_one_champion ON models ((true)) WHERE state = 3;

-- Who trains (one replica at a time) and until when.
CREATE TABLE leases (
  name       text PRIMARY KEY,
  holder     text NOT NULL,
  expires_at timestamptz NOT NULL
);
