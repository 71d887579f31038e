//! The blueprint's KPIs, each read from the table it summarises and judged against its
//! threshold. A KPI with nothing to measure yet is `no_data`, neither green nor red.

use serde::Serialize;
use shared::db::{DbContext, DbError, Pool};
use tokio_postgres::GenericClient;

/// Green, red, or nothing to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Failing,
    NoData,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpi {
    /// Stable key (`analytics_events_per_day`…), used by the page and its tests.
    pub key: &'static str,
    pub label: &'static str,
    pub value: Option<f64>,
    /// How the value is shown (a percentage, a count).
    pub display: String,
    /// The threshold, as the blueprint states it.
    pub target: &'static str,
    pub state: State,
}

/// How a value is judged and shown.
#[derive(Clone, Copy)]
enum Rule {
    /// A ratio in [0, 1] that must exceed the threshold.
    RateAbove(f64),
    /// A count that must exceed the threshold.
    CountAbove(f64),
    /// A count that must be zero.
    Zero,
}

fn judge(
    key: &'static str,
    label: &'static str,
    target: &'static str,
    rule: Rule,
    value: Option<f64>,
) -> Kpi {
    let (ok, display) = match (rule, value) {
        (_, None) => (None, "no data".to_string()),
        (Rule::RateAbove(threshold), Some(rate)) => {
            (Some(rate > threshold), format!("{:.1} %", rate * 100.0))
        }
        (Rule::CountAbove(threshold), Some(count)) => {
            (Some(count > threshold), format!("{count:.0}"))
        }
        (Rule::Zero, Some(count)) => (Some(count == 0.0), format!("{count:.0}")),
    };
    Kpi {
        key,
        label,
        value,
        display,
        target,
        state: match ok {
            None => State::NoData,
            Some(true) => State::Ok,
            Some(false) => State::Failing,
        },
    }
}

async fn one_number(
    client: &impl GenericClient,
    sql: &str,
    context: &'static str,
) -> Result<Option<f64>, DbError> {
    Ok(client
        .query_typed_one(sql, &[])
        .await
        .context(context)?
        .get::<_, Option<f64>>(0))
}

/// Every KPI, in the blueprint's order.
pub async fn kpis(pool: &Pool) -> Result<Vec<Kpi>, String> {
    let client = pool
        .get()
        .await
        .context("check out a connection")
        .map_err(|error| error.to_string())?;
    let client = &**client;
    let events = one_number(
        client,
        "SELECT count(*)::float8 FROM events WHERE received_at > now() - interval '24 hours' AND source <> 'email'",
        "count events",

    )
    .await;
    let etl = one_number(
        client,
        "SELECT (count(*) FILTER (WHERE status = 'ok'))::float8
                / NULLIF(count(*) FILTER (WHERE status IN ('ok', 'failed')), 0)
           FROM etl_runs WHERE started_at > now() - interval '7 days'",
        "ETL success",
    )
    .await;
    // The keys forbid duplicates; this checks that they still do, by the natural keys.
    let duplicates = one_number(
        client,
        "SELECT ((SELECT count(*) FROM (SELECT 1 FROM ad_insights GROUP BY platform, account_id, level_id, date HAVING count(*) > 1) a)
               + (SELECT count(*) FROM (SELECT 1 FROM orders GROUP BY shop, order_id HAVING count(*) > 1) o))::float8",
        "count duplicate rows",

    )
    .await;
    // Every delivery counts: a refused one (a wrong secret) is a lost event all the same.
    let stripe = one_number(
        client,
        "SELECT (sum(runs) FILTER (WHERE outcome = 'ok'))::float8 / NULLIF(sum(runs), 0)
           FROM agent_runs
          WHERE agent = 'billing' AND trigger = 'http' AND started_at > now() - interval '7 days'",
        "Stripe webhook success",
    )
    .await;
    let adoption = shared::adoption::adoption(client, None)
        .await
        .map_err(|error| error.to_string())?
        .into_iter()
        .find(|row| row.kind == "all")
        .and_then(|row| row.rate);
    let rates = email::stats::campaign_rates(client, 30)
        .await
        .map_err(|error| error.to_string())?;
    let (delivered, settled) = rates.iter().fold((0, 0), |(d, s), rate| {
        (d + rate.delivered, s + rate.settled)
    });
    let delivery = (settled > 0).then(|| delivered as f64 / settled as f64);
    let etl_rows = duplicates.map_err(|error| error.to_string())?;
    Ok(vec![
        judge(
            "analytics_events_per_day",
            "Analytics events (24 h)",
            "> 100 a day",
            Rule::CountAbove(100.0),
            events.map_err(|error| error.to_string())?,
        ),
        judge(
            "etl_success_rate",
            "ETL success (7 days)",
            "> 95 %",
            Rule::RateAbove(0.95),
            etl.map_err(|error| error.to_string())?,
        ),
        judge(
            "etl_duplicate_rows",
            "Duplicate ETL rows",
            "= 0",
            Rule::Zero,
            etl_rows,
        ),
        judge(
            "stripe_webhook_success",
            "Stripe webhook success (7 days)",
            "> 99 %",
            Rule::RateAbove(0.99),
            stripe.map_err(|error| error.to_string())?,
        ),
        judge(
            "suggestion_adoption",
            "Suggestion adoption",
            "> 30 %",
            Rule::RateAbove(0.30),
            adoption,
        ),
        judge(
            "email_delivery_rate",
            "Email delivery (30 days)",
            "> 95 %",
            Rule::RateAbove(0.95),
            delivery,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_strict_and_missing_data_is_neither_colour() {
        let rate = |value| judge("k", "l", "t", Rule::RateAbove(0.95), value).state;
        assert_eq!(rate(Some(0.951)), State::Ok);
        assert_eq!(rate(Some(0.95)), State::Failing);
        assert_eq!(rate(None), State::NoData);
        assert_eq!(judge("k", "l", "t", Rule::Zero, Some(0.0)).state, State::Ok);
        assert_eq!(
            judge("k", "l", "t", Rule::Zero, Some(2.0)).state,
            State::Failing
        );
        let count = judge("k", "l", "t", Rule::CountAbove(100.0), Some(101.0));
        assert_eq!((count.state, count.display.as_str()), (State::Ok, "101"));
        assert_eq!(
            judge("k", "l", "t", Rule::RateAbove(0.3), Some(0.4567)).display,
            "45.7 %"
        );
    }
}
