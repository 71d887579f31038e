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
//! Money is reported in the workspace's currency; amounts in other currencies are left out
//! and their currencies listed in `excluded_currencies` (no exchange-rate source yet).

use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use shared::db::{DbContext, DbError, Pool};
use shared::messages::{MetricsRecompute, SuggestionsRefresh};
use shared::queue::outbox::Outbox;
use shared::queue::{Message, QueueError, Transport};
use tokio_postgres::types::Type;
use uuid::Uuid;

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

/// Who may read metrics over HTTP: a bearer token for now (issue 10 adds Supabase JWTs).
pub struct ApiDeps {
    pub pool: Pool,
    pub token: String,
}

#[derive(Debug, serde::Deserialize)]
struct MetricsQuery {
    workspace: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn answer(status: axum::http::StatusCode, body: serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(body)).into_response()
}

async fn get_metrics(
    axum::extract::State(deps): axum::extract::State<Arc<ApiDeps>>,
    axum::extract::Query(query): axum::extract::Query<MetricsQuery>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::StatusCode;
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !shared::webhook::constant_time_eq(deps.token.as_bytes(), presented.as_bytes()) {
        return answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({ "error": "a valid bearer token is required" }),
        );
    }
    let parsed = (
        query
            .workspace
            .as_deref()
            .and_then(|w| w.parse::<Uuid>().ok()),
        query
            .from
            .as_deref()
            .and_then(|d| d.parse::<NaiveDate>().ok()),
        query
            .to
            .as_deref()
            .and_then(|d| d.parse::<NaiveDate>().ok()),
    );
    let (Some(workspace), Some(from), Some(to)) = parsed else {
        return answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": "workspace (uuid), from and to (YYYY-MM-DD) are required" }),
        );
    };
    if to < from || (to - from).num_days() >= MAX_DAYS {
        return answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": format!("from..to must span 1 to {MAX_DAYS} days") }),
        );
    }
    let rows = async {
        let client = deps.pool.get().await.context("check out a connection")?;
        client
            .query_typed(
                "SELECT to_jsonb(m) - 'workspace_id' FROM daily_metrics m
                  WHERE workspace_id = $1 AND date BETWEEN $2 AND $3 ORDER BY date",
                &[
                    (&workspace, Type::UUID),
                    (&from, Type::DATE),
                    (&to, Type::DATE),
                ],
            )
            .await
            .context("read daily metrics")
    };
    match rows.await {
        Ok(rows) => {
            let days: Vec<serde_json::Value> = rows.iter().map(|row| row.get(0)).collect();
            answer(
                StatusCode::OK,
                serde_json::json!({ "workspace": workspace, "days": days }),
            )
        }
        Err(error) => {
            tracing::error!(%error, "metrics not read");
            shared::lambda::http::unavailable("metrics could not be read; retry later", 5)
        }
    }
}

/// `GET /metrics?workspace=…&from=…&to=…` for the frontend and the status page.
pub fn router(deps: Arc<ApiDeps>) -> axum::Router {
    let runs = shared::runs::RunLog::new(deps.pool.clone(), "metrics-api");
    runs.layer(
        axum::Router::new()
            .route("/metrics", axum::routing::get(get_metrics))
            .with_state(deps),
    )
}
