-- Suggestions: candidates generated from the metrics, ranked, shown, and judged by users.

CREATE TABLE suggestions (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id     uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('shift_budget', 'pause_ad', 'raise_budget', 'tracking_gap', 'churn_risk')),
    -- What the suggestion is about (an ad, a campaign pair, a day range…), stable across
    -- regenerations so the same advice is recognised as the same suggestion.
    target           text NOT NULL,
    explanation      text NOT NULL,
    expected_impact  numeric(18, 4) NOT NULL,
    features         jsonb NOT NULL,
    score            float8 NOT NULL,
    model_version    text NOT NULL,
    -- Chosen for exploration rather than by score.
    explored         boolean NOT NULL DEFAULT false,
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'accepted', 'rejected', 'dismissed', 'expired')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- Never the same open suggestion twice.
CREATE UNIQUE INDEX suggestions_one_open ON suggestions (workspace_id, kind, target) WHERE status = 'open';

ALTER TABLE suggestions ENABLE ROW LEVEL SECURITY;

-- Who belongs to a workspace: Supabase Auth user ids (the `sub` of their JWT).
CREATE TABLE workspace_members (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL,
    role          text NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user ON workspace_members (user_id);

-- One verdict per suggestion and user: a repeated click is the same feedback.
CREATE TABLE suggestion_feedback (
    suggestion_id  uuid NOT NULL REFERENCES suggestions (id) ON DELETE CASCADE,
    user_id        uuid NOT NULL,
    verdict        text NOT NULL CHECK (verdict IN ('accepted', 'rejected', 'dismissed')),
    reason         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (suggestion_id, user_id)
);

ALTER TABLE workspace_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE suggestion_feedback ENABLE ROW LEVEL SECURITY;
