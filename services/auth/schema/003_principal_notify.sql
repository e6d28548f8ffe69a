-- Tells every auth replica that a principal changed (disabled, roles, secret),
-- so that cached credentials are dropped at once.
CREATE FUNCTION notify_principal_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('cloudflux_auth_principals', OLD.name);
  RETURN NULL;
END
$$;

CREATE TRIGGER principals_changed AFTER UPDATE OR DELETE ON principals
  FOR EACH ROW EXECUTE FUNCTION notify_principal_change();
