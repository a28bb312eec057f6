-- PostgreSQL roles of least privilege for Natter's services, run by the database's owner (or a superuser) once
-- the schema exists (after the first start, or after `natter-auth-api --migrate-only` with the owner's URL), and
-- again after an upgrade that adds tables. Idempotent. The passwords come from settings given to the session:
--
--   PGOPTIONS="-c natter.api_password=… -c natter.persister_password=… -c natter.exporter_password=…" \
--     psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
--
-- What each may do:
--   natter_persister  owns the history (messages and its day partitions, which it creates and drops, and
--                     dead_letters, through the group natter_history); reads nothing else: not users, not
--                     sessions, not signing_keys.
--   natter_api        reads and writes the accounts tables; reads history and deletes a deleted room's messages;
--                     never writes a message or a dead letter, never alters the schema.
--   natter_exporter   reads PostgreSQL's statistics (pg_monitor), no table of Natter's.
-- Neither service may change the schema: schema changes are the owner's (`--migrate-only`); a service whose
-- schema is current starts without trying.

DO $$
DECLARE
  role text;
BEGIN
  FOREACH role IN ARRAY ARRAY['natter_history'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', role);
    END IF;
  END LOOP;
  FOREACH role IN ARRAY ARRAY['natter_api', 'natter_persister', 'natter_exporter'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role) THEN
      EXECUTE format('CREATE ROLE %I LOGIN', role);
    END IF;
    EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', role,
                   current_setting('natter.' || replace(role, 'natter_', '') || '_password'));
  END LOOP;
END
$$;

-- Every connection may use the schema; nobody but the owner may create in it.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO natter_api, natter_persister, natter_exporter;

-- The history: owned by natter_history, whose member the persister is, so it may create and drop day partitions.
GRANT natter_history TO natter_persister;
GRANT CREATE ON SCHEMA public TO natter_history;
DO $$
DECLARE
  t regclass;
BEGIN
  ALTER TABLE messages OWNER TO natter_history;
  ALTER TABLE dead_letters OWNER TO natter_history;
  ALTER TABLE reactions OWNER TO natter_history;
  FOR t IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'messages'::regclass LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO natter_history', t);
  END LOOP;
END
$$;

-- The accounts tables: the API's to read and write; the persister has no grant on them.
GRANT SELECT, INSERT, UPDATE, DELETE ON
  users, token_families, refresh_tokens, signing_keys, rooms, memberships, room_bans, blocks, login_failures,
  login_known_addresses
  TO natter_api;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO natter_api;
-- History for the API: reading it, and a deleted room's messages deleted with it.
GRANT SELECT, DELETE ON messages, reactions TO natter_api;
-- Which migrations ran: read by both, so a service whose schema is current starts without migrating.
GRANT SELECT ON _sqlx_migrations TO natter_api, natter_persister;

-- The exporter: statistics only.
GRANT pg_monitor TO natter_exporter;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM natter_exporter;
