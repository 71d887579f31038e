-- Analytics: product events from PostHog and Mixpanel, and the tokens that say which
-- workspace a request belongs to.

-- A workspace may have several of each kind (two PostHog projects, a rotated secret…).
CREATE TABLE workspace_tokens (
    token         text PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('posthog_project', 'mixpanel_project', 'posthog_webhook_secret')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workspace_tokens_workspace ON workspace_tokens (workspace_id);

-- One row per event. `id` is PostHog's uuid, or a UUID derived from Mixpanel's deduplication
-- key (event, distinct_id, time, $insert_id), so a repeated delivery is dropped by the key.
CREATE TABLE events (
    id            uuid NOT NULL,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    source        text NOT NULL CHECK (source IN ('posthog', 'mixpanel')),
    distinct_id   text NOT NULL,
    event         text NOT NULL,
    timestamp     timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    properties    jsonb COMPRESSION lz4 NOT NULL DEFAULT '{}',
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX events_by_time ON events (workspace_id, timestamp);
CREATE INDEX events_by_received ON events (received_at);

ALTER TABLE workspace_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
