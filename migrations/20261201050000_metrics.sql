-- Metrics: one row per workspace and day (in the workspace's timezone), recomputed from the
-- agents' tables by the metrics agent. Money is in the workspace's currency; amounts in other
-- currencies are left out and their currencies listed in `excluded_currencies` (there is no
-- exchange-rate source yet — see docs/metrics.md).

CREATE TABLE daily_metrics (
    workspace_id          uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    date                  date NOT NULL,
    currency              text NOT NULL,
    -- Advertising, all platforms.
    spend                 numeric(18, 4) NOT NULL,
    impressions           bigint NOT NULL,
    clicks                bigint NOT NULL,
    conversions           numeric(18, 4) NOT NULL,
    conversion_value      numeric(18, 4) NOT NULL,
    ctr                   numeric(18, 6),
    cpc                   numeric(18, 4),
    cpm                   numeric(18, 4),
    -- Orders (Shopify), by the day they were processed.
    orders                bigint NOT NULL,
    gross_revenue         numeric(18, 4) NOT NULL,
    refunds               numeric(18, 4) NOT NULL,
    net_revenue           numeric(18, 4) NOT NULL,
    aov                   numeric(18, 4),
    new_customers         bigint NOT NULL,
    -- Subscriptions (Stripe): charges net of refunds that day, MRR at the end of the day and
    -- its movements during it.
    subscription_revenue  numeric(18, 4) NOT NULL,
    mrr                   numeric(18, 4) NOT NULL,
    new_mrr               numeric(18, 4) NOT NULL,
    expansion_mrr         numeric(18, 4) NOT NULL,
    contraction_mrr       numeric(18, 4) NOT NULL,
    churned_mrr           numeric(18, 4) NOT NULL,
    reactivation_mrr      numeric(18, 4) NOT NULL,
    active_subscriptions  bigint NOT NULL,
    -- Blended.
    revenue               numeric(18, 4) NOT NULL,
    roas                  numeric(18, 6),
    mer                   numeric(18, 6),
    cac                   numeric(18, 4),
    -- Product analytics.
    events                bigint NOT NULL,
    dau                   bigint NOT NULL,
    wau                   bigint NOT NULL,
    mau                   bigint NOT NULL,
    signups               bigint NOT NULL,
    excluded_currencies   text[] NOT NULL DEFAULT '{}',
    computed_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, date)
);

-- Advertising per platform and day.
CREATE TABLE daily_ad_metrics (
    workspace_id      uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    date              date NOT NULL,
    platform          text NOT NULL,
    spend             numeric(18, 4) NOT NULL,
    impressions       bigint NOT NULL,
    clicks            bigint NOT NULL,
    conversions       numeric(18, 4) NOT NULL,
    conversion_value  numeric(18, 4) NOT NULL,
    ctr               numeric(18, 6),
    cpc               numeric(18, 4),
    cpm               numeric(18, 4),
    roas              numeric(18, 6),
    computed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, date, platform)
);

ALTER TABLE daily_metrics ENABLE ROW LEVEL SECURITY;
ALTER TABLE daily_ad_metrics ENABLE ROW LEVEL SECURITY;
