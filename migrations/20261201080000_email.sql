-- Email: lifecycle campaigns (D1/D7/D30) sent at most once per user, what the provider said
-- about each, and who must not be written to again.

-- One row per (user, campaign), claimed before the provider is called: the key is what makes
-- a campaign go out at most once, whatever the number of consumers or retries.
--   claimed   a consumer owns the send (until claimed_at + the claim's lifetime);
--   sent      the provider accepted it (provider_message_id links its webhooks);
--   failed    the provider could not be reached or refused for now: the next delivery of
--             the queue message claims it again;
--   rejected  the provider refused it for good (an invalid address…): not retried;
--   skipped   not sent, and never will be (unsubscribed, suppressed, no address, too late).
CREATE TABLE email_sends (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id         uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    campaign             text NOT NULL CHECK (campaign IN ('d1', 'd7', 'd30')),
    status               text NOT NULL CHECK (status IN ('claimed', 'sent', 'failed', 'rejected', 'skipped')),
    -- Deliveries that claimed it; also the fencing token of the current claim.
    attempts             integer NOT NULL DEFAULT 0,
    due_at               timestamptz NOT NULL,
    claimed_at           timestamptz,
    to_address           text,
    -- What was rendered on the first claim, sent again unchanged by any later attempt so the
    -- provider's idempotency key always sees the same payload.
    subject              text,
    html                 text COMPRESSION lz4,
    text_body            text COMPRESSION lz4,
    provider             text,
    provider_message_id  text,
    sent_at              timestamptz,
    error                text,
    -- First time the provider reported each outcome.
    delivered_at         timestamptz,
    opened_at            timestamptz,
    clicked_at           timestamptz,
    bounced_at           timestamptz,
    complained_at        timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, campaign)
);
CREATE UNIQUE INDEX email_sends_provider_message ON email_sends (provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX email_sends_sent ON email_sends (sent_at) WHERE sent_at IS NOT NULL;

-- Provider webhooks as received, one row per Svix message id (stable across redeliveries).
CREATE TABLE email_events (
    svix_id      text PRIMARY KEY,
    type         text NOT NULL,
    email_id     text,
    send_id      uuid REFERENCES email_sends (id) ON DELETE SET NULL,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    payload      jsonb COMPRESSION lz4 NOT NULL
);
CREATE INDEX email_events_send ON email_events (send_id) WHERE send_id IS NOT NULL;

-- People who asked to stop (the unsubscribe link, a mailbox provider's one-click POST, or a
-- spam complaint). Lifecycle mail is one list per workspace, and a user is per workspace.
CREATE TABLE email_unsubscribes (
    user_id          uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    method           text NOT NULL CHECK (method IN ('link', 'one_click', 'complaint')),
    unsubscribed_at  timestamptz NOT NULL DEFAULT now()
);

-- Addresses never to be written to again: a hard bounce or a complaint is about the mailbox,
-- whichever workspace it was sent for. Lower-cased.
CREATE TABLE email_suppressions (
    address        text PRIMARY KEY CHECK (address = lower(address)),
    reason         text NOT NULL CHECK (reason IN ('bounced', 'complained')),
    svix_id        text,
    suppressed_at  timestamptz NOT NULL DEFAULT now()
);

-- Email outcomes are product events too, so the analytics and metrics agents see them.
ALTER TABLE events DROP CONSTRAINT events_source_check;
ALTER TABLE events ADD CONSTRAINT events_source_check CHECK (source IN ('posthog', 'mixpanel', 'email'));

ALTER TABLE email_sends ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_unsubscribes ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_suppressions ENABLE ROW LEVEL SECURITY;
