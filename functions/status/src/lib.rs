//! The status agent: one place that says whether the system is coherent.
//!
//! For now it answers `GET /status.json` with the database's reachability and migration
//! version, each queue's depth and dead letters, a few KPIs (events per day, ETL success,
//! email delivery, open and click rates per campaign) and the agents running in this process.
//! The route is the same in Lambda (behind API Gateway) and in the local stack.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use shared::db::{Pool, migrations};
use shared::queue::{QueueDepth, Transport, catalog};

/// What the status route reads from.
pub struct StatusDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    /// The agents this process serves (one in Lambda, all of them in the local stack).
    pub agents: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// True when the database is reachable and migrated and every queue answered.
    pub ok: bool,
    pub database: DatabaseStatus,
    pub queues: Vec<QueueStatus>,
    /// Events received in the last 24 hours (the KPI wants more than 100 a day); `None`
    /// when the database could not say.
    pub events_last_24h: Option<i64>,
    /// Share of finished ETL runs in the last 7 days that succeeded (skipped runs are not
    /// counted: another run held the account); `None` without finished runs.
    pub etl_success_rate_7d: Option<f64>,
    /// Delivery, open and click rates of the lifecycle emails sent in the last 30 days, per
    /// campaign (the KPI wants delivery above 95 %); `None` when the database could not say.
    pub email_campaigns_30d: Option<Vec<email::stats::CampaignRates>>,
    pub agents: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct DatabaseStatus {
    pub reachable: bool,
    pub migration_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct QueueStatus {
    pub name: &'static str,
    #[serde(flatten)]
    pub depth: Option<QueueDepth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Gathers the report. Failures are part of the answer, not errors: a status page that
/// fails when the database is down would hide exactly what it exists to show.
pub async fn report(deps: &StatusDeps) -> StatusReport {
    let database = match database_status(&deps.pool).await {
        Ok(version) => DatabaseStatus {
            reachable: true,
            migration_version: version,
            error: None,
        },
        Err(error) => DatabaseStatus {
            reachable: false,
            migration_version: None,
            error: Some(error),
        },
    };
    let mut queues = Vec::new();
    for queue in catalog::QUEUES {
        let status = match deps.transport.depth(queue.name).await {
            Ok(depth) => QueueStatus {
                name: queue.name,
                depth: Some(depth),
                error: None,
            },
            Err(error) => QueueStatus {
                name: queue.name,
                depth: None,
                error: Some(error.to_string()),
            },
        };
        queues.push(status);
    }
    // An unmigrated database is reachable but not usable by any agent.
    let ok = database.reachable
        && database.migration_version.is_some()
        && queues.iter().all(|queue| queue.error.is_none());
    let etl_success_rate_7d = if database.migration_version.is_some() {
        etl_success_rate_7d(&deps.pool).await
    } else {
        None
    };
    let events_last_24h = if database.migration_version.is_some() {
        events_last_24h(&deps.pool).await
    } else {
        None
    };
    let email_campaigns_30d = if database.migration_version.is_some() {
        email_campaigns_30d(&deps.pool).await
    } else {
        None
    };
    StatusReport {
        ok,
        database,
        queues,
        events_last_24h,
        etl_success_rate_7d,
        email_campaigns_30d,
        agents: deps.agents.clone(),
    }
}

async fn database_status(pool: &Pool) -> Result<Option<String>, String> {
    let client = pool.get().await.map_err(|error| error.to_string())?;
    migrations::current_version(&client)
        .await
        .map_err(|error| error.to_string())
}

async fn events_last_24h(pool: &Pool) -> Option<i64> {
    let client = pool.get().await.ok()?;
    let row = client
        .query_typed_one(
            "SELECT count(*) FROM events WHERE received_at > now() - interval '24 hours'",
            &[],
        )
        .await
        .ok()?;
    Some(row.get(0))
}

async fn email_campaigns_30d(pool: &Pool) -> Option<Vec<email::stats::CampaignRates>> {
    let client = pool.get().await.ok()?;
    email::stats::campaign_rates(&**client, 30).await.ok()
}

async fn etl_success_rate_7d(pool: &Pool) -> Option<f64> {
    let client = pool.get().await.ok()?;
    let row = client
        .query_typed_one(
            "SELECT (count(*) FILTER (WHERE status = 'ok'))::float8
                    / NULLIF(count(*) FILTER (WHERE status IN ('ok', 'failed')), 0)
               FROM etl_runs WHERE started_at > now() - interval '7 days'",
            &[],
        )
        .await
        .ok()?;
    row.get(0)
}

async fn status_json(State(deps): State<Arc<StatusDeps>>) -> (StatusCode, Json<StatusReport>) {
    let report = report(&deps).await;
    let code = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}

/// The status agent's routes.
pub fn router(deps: Arc<StatusDeps>) -> Router {
    Router::new()
        .route("/status.json", get(status_json))
        .with_state(deps)
}
