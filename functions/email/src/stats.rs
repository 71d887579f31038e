//! Delivery, open and click rates per campaign, for the status page and the KPI
//! (delivery rate above 95 %).
//!
//! Over the sends of the last `days` days: delivery rate = delivered / settled, where settled
//! counts the sends whose fate is known (delivered or bounced) or that are more than an hour
//! old (an email not delivered within the hour counts against the rate), plus the sends the
//! provider refused. Open and click rates are over delivered emails. A rate without a
//! denominator is `None`, not 0 or 1.

use serde::Serialize;
use shared::db::DbContext;
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use crate::EmailError;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignRates {
    pub campaign: String,
    pub sent: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub bounced: i64,
    pub complained: i64,
    pub rejected: i64,
    /// Sends whose fate is known or that are over an hour old: the delivery rate's base.
    pub settled: i64,
    pub delivery_rate: Option<f64>,
    pub open_rate: Option<f64>,
    pub click_rate: Option<f64>,
}

/// One row per campaign, in campaign order, including campaigns with no sends.
pub async fn campaign_rates(
    client: &impl GenericClient,
    days: i32,
) -> Result<Vec<CampaignRates>, EmailError> {
    let rows = client
        .query_typed(
            "WITH recent AS (
                 SELECT * FROM email_sends
                  WHERE status IN ('sent', 'rejected')
                    AND COALESCE(sent_at, created_at) > now() - make_interval(days => $1))
             SELECT c.campaign,
                    count(r.id) FILTER (WHERE r.status = 'sent'),
                    count(r.delivered_at), count(r.opened_at), count(r.clicked_at),
                    count(r.bounced_at), count(r.complained_at),
                    count(r.id) FILTER (WHERE r.status = 'rejected'),
                    count(r.id) FILTER (WHERE r.status = 'rejected'
                        OR r.delivered_at IS NOT NULL OR r.bounced_at IS NOT NULL
                        OR r.sent_at < now() - interval '1 hour')
               FROM unnest(ARRAY['d1', 'd7', 'd30']) WITH ORDINALITY AS c(campaign, position)
               LEFT JOIN recent r ON r.campaign = c.campaign
              GROUP BY c.campaign, c.position
              ORDER BY c.position",
            &[(&days, Type::INT4)],
        )
        .await
        .context("read campaign rates")?;
    let ratio = |part: i64, whole: i64| (whole > 0).then(|| part as f64 / whole as f64);
    Ok(rows
        .iter()
        .map(|row| {
            let delivered: i64 = row.get(2);
            let settled: i64 = row.get(8);
            CampaignRates {
                campaign: row.get(0),
                sent: row.get(1),
                delivered,
                opened: row.get(3),
                clicked: row.get(4),
                bounced: row.get(5),
                complained: row.get(6),
                rejected: row.get(7),
                settled,
                delivery_rate: ratio(delivered, settled),
                open_rate: ratio(row.get(3), delivered),
                click_rate: ratio(row.get(4), delivered),
            }
        })
        .collect())
}
