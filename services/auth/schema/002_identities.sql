-- Principals (users and service accounts) and their credentials.
CREATE TABLE principals (
  id                   uuid PRIMARY KEY,
  name                 text NOT NULL UNIQUE,
  kind                 text NOT NULL CHECK (kind IN ('user', 'service_account')),
  roles                text[] NOT NULL DEFAULT '{}',
  disabled             boolean NOT NULL DEFAULT false,
  password_hash        text,  -- argon2id (users)
  client_secret_sha256 text,  -- service accounts
  created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX principals_name ON principals (name text_pattern_ops);

CREATE TABLE api_keys (
  id            uuid PRIMARY KEY,
  principal_id  uuid NOT NULL REFERENCES principals (id),
  name          text NOT NULL,
  prefix        text NOT NULL,
  secret_sha256 text NOT NULL UNIQUE,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  revoked_at    timestamptz
);
CREATE INDEX api_keys_principal ON api_keys (principal_id, id);

-- Ed25519 signing keys; the private half sealed with AES-256-GCM under the
-- master key (associated data: the kid).
CREATE TABLE signing_keys (
  kid             text PRIMARY KEY,
  private_sealed  bytea NOT NULL,
  public_key      bytea NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  retired_at      timestamptz,          -- no longer signs
  publish_until   timestamptz           -- dropped from the JWKS after this
);

-- Opaque refresh tokens, stored hashed; rotated on every use. A reused token
-- revokes its whole family.
CREATE TABLE refresh_tokens (
  id            uuid PRIMARY KEY,
  family_id     uuid NOT NULL,
  principal_id  uuid NOT NULL REFERENCES principals (id),
  token_sha256  text NOT NULL UNIQUE,
  scope         text NOT NULL DEFAULT '',
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  used_at       timestamptz,
  revoked_at    timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Append-only audit log.
CREATE TABLE audit_events (
  id            uuid PRIMARY KEY,
  time          timestamptz NOT NULL DEFAULT now(),
  action        text NOT NULL,
  principal_id  text NOT NULL DEFAULT '',
  actor_id      text NOT NULL DEFAULT '',
  peer          text NOT NULL DEFAULT '',
  success       boolean NOT NULL,
  detail        text NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_time ON audit_events (time, id);
CREATE INDEX audit_events_principal ON audit_events (principal_id, time);
CREATE INDEX audit_events_action ON audit_events (action, time);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END $$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
