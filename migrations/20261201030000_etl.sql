-- ETL: ad spend pulled from Meta and TikTok, keyed by the platform's own ids and the day in
-- the ad account's timezone, so re-running any window updates rows instead of adding them.

-- What the ETL agents need to call a connected account: its token and its reporting zone.
ALTER TABLE connections
    ADD COLUMN access_token text,
    ADD COLUMN timezone text NOT NULL DEFAULT 'UTC',
    ADD COLUMN currency text;

CREATE TABLE ad_insights (
    platform          text NOT NULL CHECK (platform IN ('meta', 'tiktok')),
    account_id        text NOT NULL,
    -- The ad's id: insights are pulled at ad level.
    level_id          text NOT NULL,
    -- The day in the ad account's own timezone, as the platform reports it.
    date              date NOT NULL,
    workspace_id      uuid REFERENCES workspaces (id) ON DELETE CASCADE,
    campaign_id       text,
    adset_id          text,
    currency          text,
    -- Money as exact decimals in the account's currency.
    spend             numeric(18, 4) NOT NULL DEFAULT 0,
    impressions       bigint NOT NULL DEFAULT 0,
    clicks            bigint NOT NULL DEFAULT 0,
    conversions       numeric(18, 4),
    conversion_value  numeric(18, 4),
    run_id            uuid,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, account_id, level_id, date)
);
CREATE INDEX ad_insights_workspace_date ON ad_insights (workspace_id, date);

ALTER TABLE ad_insights ENABLE ROW LEVEL SECURITY;
