WITH ws AS (
    SELECT id, timezone AS tz, currency FROM workspaces WHERE id = $1
), days AS (
    SELECT d::date AS day,
           (d::date::timestamp AT TIME ZONE ws.tz) AS starts,
           ((d::date + 1)::timestamp AT TIME ZONE ws.tz) AS ends,
           ((d::date - 6)::timestamp AT TIME ZONE ws.tz) AS week_starts,
           ((d::date - 29)::timestamp AT TIME ZONE ws.tz) AS month_starts
      FROM ws, generate_series($2::date, $3::date, interval '1 day') AS d
), ads AS (
    SELECT a.date AS day, sum(a.spend) AS spend, sum(a.impressions) AS impressions, sum(a.clicks) AS clicks,
           sum(COALESCE(a.conversions, 0)) AS conversions, sum(COALESCE(a.conversion_value, 0)) AS conversion_value
      FROM ad_insights a, ws
     WHERE a.workspace_id = ws.id AND a.date BETWEEN $2 AND $3 AND upper(COALESCE(a.currency, ws.currency)) = ws.currency
     GROUP BY a.date
), sales AS (
    SELECT d.day, count(*) AS orders, sum(o.total_price) AS gross, sum(o.refunded_amount) AS refunds,
           sum(o.net_revenue) AS net
      FROM days d, ws, orders o
     WHERE o.workspace_id = ws.id AND upper(o.currency) = ws.currency
       AND COALESCE(o.processed_at, o.created_at) >= d.starts AND COALESCE(o.processed_at, o.created_at) < d.ends
     GROUP BY d.day
), first_orders AS (
    SELECT min(COALESCE(o.processed_at, o.created_at)) AS first_at
      FROM orders o, ws
     WHERE o.workspace_id = ws.id AND o.customer_id IS NOT NULL AND o.financial_status IS DISTINCT FROM 'voided'
     GROUP BY o.customer_id
), newcomers AS (
    SELECT d.day, count(*) AS new_customers
      FROM days d, first_orders f
     WHERE f.first_at >= d.starts AND f.first_at < d.ends
     GROUP BY d.day
), charges AS (
    -- Stripe amounts are in the currency's minor unit (two decimals assumed).
    SELECT d.day, sum(c.amount - COALESCE(c.amount_refunded, 0)) / 100.0 AS revenue
      FROM days d, ws, stripe.charges c
     WHERE c.workspace_id = ws.id AND c.status = 'succeeded' AND upper(c.currency) = ws.currency
       AND c.created >= d.starts AND c.created < d.ends
     GROUP BY d.day
), moves AS (
    SELECT d.day,
           COALESCE(sum(m.delta) FILTER (WHERE m.kind = 'new'), 0) / 100.0 AS new_mrr,
           COALESCE(sum(m.delta) FILTER (WHERE m.kind = 'expansion'), 0) / 100.0 AS expansion_mrr,
           -COALESCE(sum(m.delta) FILTER (WHERE m.kind = 'contraction'), 0) / 100.0 AS contraction_mrr,
           -COALESCE(sum(m.delta) FILTER (WHERE m.kind = 'churn'), 0) / 100.0 AS churned_mrr,
           COALESCE(sum(m.delta) FILTER (WHERE m.kind = 'reactivation'), 0) / 100.0 AS reactivation_mrr
      FROM days d, ws, stripe.mrr_changes m
     WHERE m.workspace_id = ws.id AND upper(m.currency) = ws.currency
       AND m.occurred_at >= d.starts AND m.occurred_at < d.ends
     GROUP BY d.day
), standing AS (
    SELECT d.day,
           COALESCE((SELECT sum(m.delta) FROM stripe.mrr_changes m
                      WHERE m.workspace_id = ws.id AND upper(m.currency) = ws.currency AND m.occurred_at < d.ends), 0)
               / 100.0 AS mrr,
           (SELECT count(*) FROM (
                SELECT DISTINCT ON (m.subscription) m.mrr_after
                  FROM stripe.mrr_changes m
                 WHERE m.workspace_id = ws.id AND m.occurred_at < d.ends
                 ORDER BY m.subscription, m.occurred_at DESC, m.event_id DESC) latest
             WHERE latest.mrr_after > 0) AS active_subscriptions
      FROM days d, ws
), activity AS (
    -- Active users are people who used the product: an email delivered to them or opened by
    -- them (recorded as events by the email agent) is counted as an event, not as activity.
    SELECT d.day,
           (SELECT count(*) FROM events e WHERE e.workspace_id = ws.id AND e.timestamp >= d.starts AND e.timestamp < d.ends) AS events,
           (SELECT count(DISTINCT e.distinct_id) FROM events e
             WHERE e.workspace_id = ws.id AND e.timestamp >= d.starts AND e.timestamp < d.ends
               AND e.source <> 'email') AS dau,
           (SELECT count(DISTINCT e.distinct_id) FROM events e
             WHERE e.workspace_id = ws.id AND e.timestamp >= d.week_starts AND e.timestamp < d.ends
               AND e.source <> 'email') AS wau,
           (SELECT count(DISTINCT e.distinct_id) FROM events e
             WHERE e.workspace_id = ws.id AND e.timestamp >= d.month_starts AND e.timestamp < d.ends
               AND e.source <> 'email') AS mau,
           (SELECT count(*) FROM users u
             WHERE u.workspace_id = ws.id AND u.signed_up_at >= d.starts AND u.signed_up_at < d.ends) AS signups
      FROM days d, ws
), excluded AS (
    SELECT COALESCE(array_agg(DISTINCT currency ORDER BY currency), '{}') AS currencies FROM (
        SELECT upper(a.currency) AS currency FROM ad_insights a, ws
         WHERE a.workspace_id = ws.id AND a.date BETWEEN $2 AND $3 AND upper(a.currency) <> ws.currency
        UNION
        SELECT upper(o.currency) FROM orders o, days d, ws
         WHERE o.workspace_id = ws.id AND upper(o.currency) <> ws.currency
           AND COALESCE(o.processed_at, o.created_at) >= d.starts AND COALESCE(o.processed_at, o.created_at) < d.ends
        UNION
        SELECT upper(c.currency) FROM stripe.charges c, days d, ws
         WHERE c.workspace_id = ws.id AND upper(c.currency) <> ws.currency AND c.created >= d.starts AND c.created < d.ends
    ) other
), rows AS (
    SELECT d.day, ws.currency,
           COALESCE(a.spend, 0) AS spend, COALESCE(a.impressions, 0)::int8 AS impressions,
           COALESCE(a.clicks, 0)::int8 AS clicks, COALESCE(a.conversions, 0) AS conversions,
           COALESCE(a.conversion_value, 0) AS conversion_value,
           COALESCE(s.orders, 0)::int8 AS orders, COALESCE(s.gross, 0) AS gross, COALESCE(s.refunds, 0) AS refunds,
           COALESCE(s.net, 0) AS net, COALESCE(n.new_customers, 0)::int8 AS new_customers,
           COALESCE(c.revenue, 0) AS subscription_revenue,
           st.mrr, COALESCE(mv.new_mrr, 0) AS new_mrr, COALESCE(mv.expansion_mrr, 0) AS expansion_mrr,
           COALESCE(mv.contraction_mrr, 0) AS contraction_mrr, COALESCE(mv.churned_mrr, 0) AS churned_mrr,
           COALESCE(mv.reactivation_mrr, 0) AS reactivation_mrr, st.active_subscriptions,
           ac.events, ac.dau, ac.wau, ac.mau, ac.signups
      FROM days d CROSS JOIN ws
      LEFT JOIN ads a ON a.day = d.day
      LEFT JOIN sales s ON s.day = d.day
      LEFT JOIN newcomers n ON n.day = d.day
      LEFT JOIN charges c ON c.day = d.day
      LEFT JOIN moves mv ON mv.day = d.day
      JOIN standing st ON st.day = d.day
      JOIN activity ac ON ac.day = d.day
)
INSERT INTO daily_metrics (
    workspace_id, date, currency, spend, impressions, clicks, conversions, conversion_value, ctr, cpc, cpm,
    orders, gross_revenue, refunds, net_revenue, aov, new_customers, subscription_revenue, mrr, new_mrr,
    expansion_mrr, contraction_mrr, churned_mrr, reactivation_mrr, active_subscriptions, revenue, roas, mer, cac,
    events, dau, wau, mau, signups, excluded_currencies, computed_at)
SELECT $1, r.day, r.currency, r.spend, r.impressions, r.clicks, r.conversions, r.conversion_value,
       r.clicks::numeric / NULLIF(r.impressions, 0), r.spend / NULLIF(r.clicks, 0), r.spend * 1000 / NULLIF(r.impressions, 0),
       r.orders, r.gross, r.refunds, r.net, r.gross / NULLIF(r.orders, 0), r.new_customers, r.subscription_revenue,
       r.mrr, r.new_mrr, r.expansion_mrr, r.contraction_mrr, r.churned_mrr, r.reactivation_mrr, r.active_subscriptions,
       r.net + r.subscription_revenue, r.conversion_value / NULLIF(r.spend, 0),
       (r.net + r.subscription_revenue) / NULLIF(r.spend, 0), r.spend / NULLIF(r.new_customers, 0),
       r.events, r.dau, r.wau, r.mau, r.signups, (SELECT currencies FROM excluded), now()
  FROM rows r
ON CONFLICT (workspace_id, date) DO UPDATE SET
    currency = EXCLUDED.currency, spend = EXCLUDED.spend, impressions = EXCLUDED.impressions, clicks = EXCLUDED.clicks,
    conversions = EXCLUDED.conversions, conversion_value = EXCLUDED.conversion_value, ctr = EXCLUDED.ctr,
    cpc = EXCLUDED.cpc, cpm = EXCLUDED.cpm, orders = EXCLUDED.orders, gross_revenue = EXCLUDED.gross_revenue,
    refunds = EXCLUDED.refunds, net_revenue = EXCLUDED.net_revenue, aov = EXCLUDED.aov,
    new_customers = EXCLUDED.new_customers, subscription_revenue = EXCLUDED.subscription_revenue, mrr = EXCLUDED.mrr,
    new_mrr = EXCLUDED.new_mrr, expansion_mrr = EXCLUDED.expansion_mrr, contraction_mrr = EXCLUDED.contraction_mrr,
    churned_mrr = EXCLUDED.churned_mrr, reactivation_mrr = EXCLUDED.reactivation_mrr,
    active_subscriptions = EXCLUDED.active_subscriptions, revenue = EXCLUDED.revenue, roas = EXCLUDED.roas,
    mer = EXCLUDED.mer, cac = EXCLUDED.cac, events = EXCLUDED.events, dau = EXCLUDED.dau, wau = EXCLUDED.wau,
    mau = EXCLUDED.mau, signups = EXCLUDED.signups, excluded_currencies = EXCLUDED.excluded_currencies,
    computed_at = EXCLUDED.computed_at
