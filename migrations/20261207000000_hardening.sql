-- Hardening: what lets every entry point refuse, bound and keep what it must without losing
-- anything else (docs/security.md).

-- Deliveries whose content the database refuses (a number out of range, `\u0000` in text):
-- acknowledged to the sender, so it stops retrying a delivery that can never be stored, and
-- kept here with the reason, byte for byte, for an operator to look at (the status page
-- counts them). `key` is the sender's id for the delivery, so a redelivery is kept once.
CREATE TABLE quarantine (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text NOT NULL,
    key          text NOT NULL,
    reason       text NOT NULL,
    payload      bytea NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, key)
);
CREATE INDEX quarantine_by_time ON quarantine (received_at);

-- Refused requests are counted in memory and written as one row per flush, so a flood of
-- unauthenticated requests costs one row a few seconds, not one row each.
ALTER TABLE agent_runs ADD COLUMN runs integer NOT NULL DEFAULT 1 CHECK (runs > 0);

-- An outbox row the relay could not send N times is set aside (dead) instead of being tried
-- for ever ahead of the rows behind it; the status page shows them.
ALTER TABLE outbox ADD COLUMN dead_at timestamptz;
CREATE INDEX outbox_dead ON outbox (dead_at) WHERE dead_at IS NOT NULL;

-- Shopify repeats one event under several webhook ids (one per subscription, and on
-- retries); the event id is the same across them.
ALTER TABLE shopify_webhook_deliveries
    ADD COLUMN event_id text,
    ADD COLUMN triggered_at timestamptz;
CREATE UNIQUE INDEX shopify_webhook_deliveries_event ON shopify_webhook_deliveries (shop, event_id, topic)
    WHERE event_id IS NOT NULL;

-- Platform access tokens at rest: an AES-256-GCM envelope (shared::crypto), bound to the
-- connection's id. The plaintext column remains only for rows written before this
-- migration; the ETL agent seals such a token the first time it reads it.
ALTER TABLE connections ADD COLUMN access_token_sealed bytea;

-- Ingestion credentials. Secrets (the PostHog webhook secret, Mixpanel's API secret and
-- service-account secrets) are stored as keyed hashes (`hmac-sha256:<hex>`), never
-- verbatim; project tokens and the Mixpanel project id are public and stored as they are.
ALTER TABLE workspace_tokens DROP CONSTRAINT workspace_tokens_kind_check;
ALTER TABLE workspace_tokens ADD CONSTRAINT workspace_tokens_kind_check CHECK (kind IN (
    'posthog_project', 'mixpanel_project', 'posthog_webhook_secret',
    'mixpanel_project_id', 'mixpanel_api_secret', 'mixpanel_service_account'));

ALTER TABLE quarantine ENABLE ROW LEVEL SECURITY;
