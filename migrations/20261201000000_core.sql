-- Core shared state: tenants, people, connected accounts, coordination (leases, outbox,
-- the Postgres queue) and the ETL run log. Agent issues add their own tables in later files.
--
-- Row level security is enabled on every table without any policy: Supabase exposes the
-- `public` schema through PostgREST, and with RLS on and no policy the anon and
-- authenticated roles read nothing. The agents connect as the table owner, which RLS does
-- not restrict.

CREATE TABLE workspaces (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (name <> ''),
    timezone    text NOT NULL DEFAULT 'UTC',
    currency    text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- People known to a workspace, keyed by the analytics distinct_id that first named them.
CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    distinct_id   text NOT NULL,
    email         text,
    name          text,
    timezone      text,
    signed_up_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, distinct_id)
);
CREATE INDEX users_signed_up_at ON users (signed_up_at) WHERE signed_up_at IS NOT NULL;

-- An external account a workspace connected (an ad account, a shop, a Stripe account…).
-- `sync_cursor` is the ETL watermark, written only under the account's lease.
CREATE TABLE connections (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id         uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    platform             text NOT NULL CHECK (platform IN ('meta', 'tiktok', 'shopify', 'stripe', 'posthog', 'mixpanel')),
    external_account_id  text NOT NULL,
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'revoked')),
    sync_cursor          jsonb,
    cursor_fencing_token bigint NOT NULL DEFAULT 0,
    last_synced_at       timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (platform, external_account_id)
);
CREATE INDEX connections_workspace ON connections (workspace_id);

-- Row leases for long work that must not overlap (docs/architecture.md, "Rules of the shared
-- state"). Rows are never deleted, so a lease's fencing token only ever grows.
CREATE TABLE leases (
    name          text PRIMARY KEY,
    holder        text NOT NULL,
    fencing_token bigint NOT NULL,
    expires_at    timestamptz NOT NULL,
    acquired_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Transactional outbox: messages written in the same transaction as the state they
-- announce, dispatched after commit, and by the relay if that dispatch never happened.
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text NOT NULL,
    group_id    text NOT NULL,
    dedup_id    text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text
);
CREATE INDEX outbox_created_at ON outbox (created_at);

-- The Postgres queue: SQS FIFO semantics for the local stack and tests. A message is
-- deliverable when it is visible and no older message of its group is still present, so a
-- group is processed strictly in order. visible_at, receive_count and receipt are not
-- indexed, which keeps claims and visibility changes HOT updates.
CREATE TABLE queue_messages (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue          text NOT NULL,
    group_id       text NOT NULL,
    dedup_id       text NOT NULL,
    body           text NOT NULL,
    sent_at        timestamptz NOT NULL DEFAULT now(),
    visible_at     timestamptz NOT NULL DEFAULT '-infinity',
    receive_count  integer NOT NULL DEFAULT 0,
    receipt        uuid
);
CREATE INDEX queue_messages_by_queue ON queue_messages (queue, id);
CREATE INDEX queue_messages_by_group ON queue_messages (queue, group_id, id);

-- Deduplication ids seen in the last five minutes, as SQS FIFO remembers them.
CREATE TABLE queue_dedup (
    queue       text NOT NULL,
    dedup_id    text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (queue, dedup_id)
);

CREATE TABLE queue_dead_letters (
    id             bigint PRIMARY KEY,
    queue          text NOT NULL,
    group_id       text NOT NULL,
    dedup_id       text NOT NULL,
    body           text NOT NULL,
    sent_at        timestamptz NOT NULL,
    receive_count  integer NOT NULL,
    dead_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_dead_letters_by_queue ON queue_dead_letters (queue, id);

-- One row per ETL run, whatever its outcome: the run log behind the ETL success KPI.
CREATE TABLE etl_runs (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    connection_id  uuid REFERENCES connections (id) ON DELETE SET NULL,
    platform       text NOT NULL,
    account_id     text NOT NULL,
    window_start   date NOT NULL,
    window_end     date NOT NULL CHECK (window_end >= window_start),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'failed', 'skipped')),
    pages          integer NOT NULL DEFAULT 0,
    rows_inserted  integer NOT NULL DEFAULT 0,
    rows_updated   integer NOT NULL DEFAULT 0,
    fencing_token  bigint,
    error          text
);
CREATE INDEX etl_runs_by_account ON etl_runs (platform, account_id, started_at DESC);
CREATE INDEX etl_runs_by_start ON etl_runs (started_at);

ALTER TABLE workspaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE connections ENABLE ROW LEVEL SECURITY;
ALTER TABLE leases ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_dedup ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE etl_runs ENABLE ROW LEVEL SECURITY;
