//! The metrics agent: `daily_metrics` (one row per workspace and day in the workspace's
//! timezone) and `daily_ad_metrics` (per platform), recomputed from `events`, `users`,
//! `ad_insights`, `orders` and the `stripe` schema.
//!
//! [`recompute`] is the one code path — for queue messages ([`handle`]), the `recompute`
//! command and tests — and ends by asking the suggestions agent to refresh the workspace. It runs set-based SQL (`recompute.sql`) inside one transaction per workspace and
//! date range, under `pg_advisory_xact_lock` on the workspace, so two overlapping recomputes
//! cannot interleave (the FIFO group already serialises them in AWS; the lock covers
//! commands and retries). Recomputing twice gives the same rows. Ratios with a zero
//! denominator are NULL.
//!
//! [`consumer`] is the `metrics.fifo` Lambda's handler; [`api`] serves `GET /metrics`.
//!
//! Money is reported in the workspace's currency; amounts in other currencies are left out
//! and their currencies listed in `excluded_currencies` (no exchange-rate source yet).

use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use shared::agents::Agent;
use shared::db::{DbContext, DbError, Pool};
use shared::entry::Consumer;
use shared::lambda::Container;
use shared::messages::{MetricsRecompute, SuggestionsRefresh};
use shared::queue::outbox::Outbox;
use shared::queue::{Message, QueueError, Transport};
use shared::runs::RunLog;
use tokio_postgres::types::Type;
use uuid::Uuid;

pub mod api;

const RECOMPUTE: &str = include_str!("recompute.sql");

const RECOMPUTE_ADS: &str = "
    INSERT INTO daily_ad_metrics (workspace_id, date, platform, spend, impressions, clicks, conversions,
                                  conversion_value, ctr, cpc, cpm, roas)
    SELECT $1, a.date, a.platform, sum(a.spend), sum(a.impressions), sum(a.clicks),
           sum(COALESCE(a.conversions, 0)), sum(COALESCE(a.conversion_value, 0)),
           sum(a.clicks)::numeric / NULLIF(sum(a.impressions), 0), sum(a.spend) / NULLIF(sum(a.clicks), 0),
           sum(a.spend) * 1000 / NULLIF(sum(a.impressions), 0),
           sum(COALESCE(a.conversion_value, 0)) / NULLIF(sum(a.spend), 0)
      FROM ad_insights a JOIN workspaces w ON w.id = a.workspace_id
     WHERE a.workspace_id = $1 AND a.date BETWEEN $2 AND $3 AND upper(COALESCE(a.currency, w.currency)) = w.currency
     GROUP BY a.date, a.platform";

/// What the metrics agent needs.
pub struct MetricsDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    pub clock: shared::clock::Clock,
}

impl MetricsDeps {
    /// The consumer has no settings of its own: the container is all it needs.
    pub fn new(container: &Container) -> Self {
        Self {
            pool: container.pool.clone(),
            transport: container.transport.clone(),
            clock: container.clock.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the date range {from}..{to} is empty or longer than {max} days")]
    Range {
        from: NaiveDate,
        to: NaiveDate,
        max: i64,
    },
}

/// Longest range one recompute covers; a backfill is split by the caller.
pub const MAX_DAYS: i64 = 400;

/// Recomputes `from..=to` for `workspace` and, in the same transaction, asks the suggestions
/// agent to refresh it; returns the number of days written.
pub async fn recompute(
    deps: &MetricsDeps,
    workspace: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<u64, MetricsError> {
    if to < from || (to - from).num_days() >= MAX_DAYS {
        return Err(MetricsError::Range {
            from,
            to,
            max: MAX_DAYS,
        });
    }
    let outbox = Outbox::new(deps.pool.clone(), deps.transport.clone());
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, shared::db::Budget::BACKGROUND).await?;
    let key = format!("metrics:{workspace}");
    transaction
        .execute_typed(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[(&key, Type::TEXT)],
        )
        .await
        .context("lock workspace metrics")?;
    let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 3] = [
        (&workspace, Type::UUID),
        (&from, Type::DATE),
        (&to, Type::DATE),
    ];
    transaction
        .execute_typed(
            "DELETE FROM daily_ad_metrics WHERE workspace_id = $1 AND date BETWEEN $2 AND $3",
            &params,
        )
        .await
        .context("clear ad metrics")?;
    transaction
        .execute_typed(RECOMPUTE_ADS, &params)
        .await
        .context("recompute ad metrics")?;
    let days = transaction
        .execute_typed(RECOMPUTE, &params)
        .await
        .context("recompute daily metrics")?;
    let refresh = SuggestionsRefresh::new(workspace, deps.clock.now()).to_outgoing()?;
    let pending = outbox.enqueue(&transaction, &[refresh]).await?;
    transaction.commit().await.context("commit recompute")?;
    if let Err(error) = outbox.dispatch(&pending).await {
        tracing::warn!(%error, "suggestions refresh left for the outbox relay");
    }
    Ok(days)
}

/// The days a recompute request covers: its UTC day seen from any timezone falls on that day
/// or the ones either side of it.
pub fn days_for(request: &MetricsRecompute) -> (NaiveDate, NaiveDate) {
    (
        request.date - Duration::days(1),
        request.date + Duration::days(1),
    )
}

/// Handles one `metrics.fifo` message.
pub async fn handle(deps: &MetricsDeps, request: &MetricsRecompute) -> Result<u64, MetricsError> {
    let (from, to) = days_for(request);
    recompute(deps, request.workspace_id, from, to).await
}

/// The `metrics.fifo` consumer, recorded in the run log.
pub fn consumer(deps: Arc<MetricsDeps>) -> Consumer<MetricsRecompute> {
    let runs = RunLog::new(deps.pool.clone(), Agent::Metrics);
    Consumer::new(runs, move |request: MetricsRecompute| {
        let deps = deps.clone();
        async move { handle(&deps, &request).await }
    })
}
