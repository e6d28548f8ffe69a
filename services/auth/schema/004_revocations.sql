-- The record of revoked access tokens. Redis holds a mirror that every
-- service's authenticator reads; a Redis that lost its data is rebuilt from
-- here before any token is accepted again.
--   token:   one access token (id = jti), until it expires
--   session: every access token issued in a refresh-token family (id = family)
--   subject: a principal's tokens carrying a token_version below `version`
CREATE TABLE revocations (
  seq          bigserial PRIMARY KEY,
  kind         text NOT NULL CHECK (kind IN ('token', 'session', 'subject')),
  id           text NOT NULL,
  version      bigint NOT NULL DEFAULT 0,
  expires_at   timestamptz NOT NULL,
  recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revocations_expires ON revocations (expires_at);
CREATE INDEX revocations_recorded ON revocations (recorded_at);

-- Access tokens carry the version of their principal they were issued
-- under; a change of roles or of the disabled flag increases it.
ALTER TABLE principals ADD COLUMN token_version bigint NOT NULL DEFAULT 0;

-- Failed logins, the record behind the brute-force counters in Redis (one
-- row per failure and counter: the principal name's and the peer's).
CREATE TABLE login_failures (
  counter    text NOT NULL,
  failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_counter ON login_failures (counter, failed_at);
CREATE INDEX login_failures_time ON login_failures (failed_at);
