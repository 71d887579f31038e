-- The part of a Supabase project's `auth` schema and roles that the product relies on, for
-- plain PostgreSQL (the tests and the local stack). It is never a migration: on Supabase these
-- objects belong to Supabase Auth and already exist, and `supabase_auth::install_where_missing`
-- runs this file only where `auth.users` is missing. The definitions follow Supabase's own
-- (supabase/auth's migrations and the database image's role set-up): same names, same types,
-- same claim reading, so policies written against them behave the same on both.

-- Roles are per cluster, and parallel tests each set up their own database on the same
-- cluster: a role another database's set-up created a moment ago is not an error.
DO $$
DECLARE
    wanted text[][] := ARRAY[
        ARRAY['anon', 'NOLOGIN NOINHERIT'],
        ARRAY['authenticated', 'NOLOGIN NOINHERIT'],
        ARRAY['service_role', 'NOLOGIN NOINHERIT BYPASSRLS']];
    one text[];
BEGIN
    FOREACH one SLICE 1 IN ARRAY wanted LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = one[1]) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I %s', one[1], one[2]);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE IF NOT EXISTS auth.users (
    instance_id           uuid,
    id                    uuid NOT NULL PRIMARY KEY,
    aud                   varchar(255),
    role                  varchar(255),
    email                 varchar(255),
    encrypted_password    varchar(255),
    email_confirmed_at    timestamptz,
    invited_at            timestamptz,
    confirmation_sent_at  timestamptz,
    last_sign_in_at       timestamptz,
    raw_app_meta_data     jsonb,
    raw_user_meta_data    jsonb,
    is_super_admin        boolean,
    created_at            timestamptz,
    updated_at            timestamptz,
    phone                 text UNIQUE DEFAULT NULL,
    phone_confirmed_at    timestamptz,
    banned_until          timestamptz,
    deleted_at            timestamptz,
    is_sso_user           boolean NOT NULL DEFAULT false,
    is_anonymous          boolean NOT NULL DEFAULT false
);

-- One row per way a user signs in (email, OAuth providers); password sign-in needs it.
CREATE TABLE IF NOT EXISTS auth.identities (
    provider_id      text NOT NULL,
    user_id          uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    identity_data    jsonb NOT NULL,
    provider         text NOT NULL,
    last_sign_in_at  timestamptz,
    created_at       timestamptz,
    updated_at       timestamptz,
    email            text GENERATED ALWAYS AS (lower(identity_data ->> 'email')) STORED,
    id               uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    UNIQUE (provider_id, provider)
);

-- Supabase installs extensions in their own schema.
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;

-- PostgREST puts the verified token's claims in `request.jwt.claims` (older versions in
-- `request.jwt.claim.<name>`); these read either, as Supabase's do.
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT nullif(
        coalesce(
            current_setting('request.jwt.claim.sub', true),
            (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')
        ),
        ''
    )::uuid
$$;

CREATE OR REPLACE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT nullif(
        coalesce(
            current_setting('request.jwt.claim.role', true),
            (current_setting('request.jwt.claims', true)::jsonb ->> 'role')
        ),
        ''
    )::text
$$;

CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.uid(), auth.role(), auth.jwt() TO anon, authenticated, service_role;

-- Supabase exposes `public` through PostgREST and grants its tables to the API roles by
-- default; row level security is what keeps rows in. Granting the same here means a table
-- without the right policy leaks in the tests exactly as it would on Supabase.
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
