//! The status page's member view: `GET /status/workspace.json?workspace=…`, what a member
//! sees of their own workspace's health in the frontend — whether each connected account
//! syncs, when the numbers were last computed, and 30 days of spend, revenue and ROAS.
//!
//! Who may read it, in order:
//! 1. an operator (the status token, an admin's access token, a session cookie): any
//!    workspace;
//! 2. a member, by their Supabase access token: their workspaces only (403 otherwise, as
//!    [`shared::membership::workspace_for`] decides);
//! 3. anyone else: 401.
//!
//! Nothing here tells one tenant about another: no queue depths, run log or KPIs of the whole
//! deployment (those stay on the operator's page), and a sync error is shown redacted and
//! clipped, as the status page shows it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::DbContext;
use shared::http::{ApiError, BearerToken, SupabaseUser};
use shared::membership::{Caller, workspace_for};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::{Chart, ChartQuery, StatusDeps, chart_of, chosen_workspace};

/// The longest sync error shown.
const MAX_ERROR: usize = 300;

#[derive(Debug, Serialize)]
pub struct WorkspaceView {
    pub workspace: Uuid,
    pub name: String,
    pub currency: String,
    pub timezone: String,
    pub connections: Vec<ConnectionView>,
    /// When the daily numbers were last computed, for any day.
    pub metrics_computed_at: Option<DateTime<Utc>>,
    pub chart: Option<Chart>,
}

#[derive(Debug, Serialize)]
pub struct ConnectionView {
    pub platform: String,
    pub account: String,
    pub status: String,
    pub last_synced_at: Option<DateTime<Utc>>,
    /// The latest sync run: `ok`, `failed`, `running` or `skipped`.
    pub last_run: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// Rules 1–3: who is asking.
async fn caller(deps: &StatusDeps, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let now = deps.clock.now();
    if deps.access.allows(headers, now).await {
        return Ok(Caller::Service);
    }
    let (Some(BearerToken(token)), Some(verifier)) =
        (BearerToken::from_headers(headers), deps.access.verifier())
    else {
        return Err(ApiError::unauthorized(
            "a member's Supabase access token or the status token is required",
        ));
    };
    Ok(Caller::Member(
        SupabaseUser::verify(verifier, &token, now).await?,
    ))
}

/// `GET /status/workspace.json?workspace=…`.
pub(crate) async fn workspace_json(
    State(deps): State<Arc<StatusDeps>>,
    Query(query): Query<ChartQuery>,
    headers: HeaderMap,
) -> Result<Json<WorkspaceView>, ApiError> {
    let caller = caller(&deps, &headers).await?;
    let asked = chosen_workspace(&query).map_err(ApiError::bad_request)?;
    let client = deps.pool.get().await.context("check out a connection")?;
    let workspace = workspace_for(&**client, &caller, asked).await?;
    let row = client
        .query_typed_opt(
            "SELECT name, currency, timezone,
                    (SELECT max(computed_at) FROM daily_metrics WHERE workspace_id = w.id)
               FROM workspaces w WHERE id = $1",
            &[(&workspace, Type::UUID)],
        )
        .await
        .context("read the workspace")?
        .ok_or_else(|| ApiError::not_found("no such workspace"))?;
    let connections = client
        .query_typed(
            "SELECT c.platform, c.external_account_id, c.status, c.last_synced_at,
                    r.status, COALESCE(r.finished_at, r.started_at), r.error
               FROM connections c
               LEFT JOIN LATERAL (
                    SELECT status, started_at, finished_at, error FROM etl_runs
                     WHERE connection_id = c.id ORDER BY started_at DESC LIMIT 1) r ON true
              WHERE c.workspace_id = $1
              ORDER BY c.platform, c.external_account_id",
            &[(&workspace, Type::UUID)],
        )
        .await
        .context("read the workspace's connections")?
        .iter()
        .map(|row| ConnectionView {
            platform: row.get(0),
            account: row.get(1),
            status: row.get(2),
            last_synced_at: row.get(3),
            last_run: row.get(4),
            last_run_at: row.get(5),
            last_error: row.get::<_, Option<String>>(6).map(|error| {
                let redacted = shared::redact::credentials(&error);
                shared::text::clip(&redacted, MAX_ERROR).to_string()
            }),
        })
        .collect();
    let chart = chart_of(&**client, workspace, &deps.clock).await?;
    Ok(Json(WorkspaceView {
        workspace,
        name: row.get(0),
        currency: row.get(1),
        timezone: row.get(2),
        connections,
        metrics_computed_at: row.get(3),
        chart,
    }))
}
