//! `GET /metrics?workspace=…&from=…&to=…`: the daily metrics of one workspace and date range,
//! for the frontend and the status page, behind one bearer token (`METRICS_API_TOKEN`).
//! Browsers may call it from the origins in `CORS_ALLOWED_ORIGINS`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use chrono::NaiveDate;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use shared::agents::Agent;
use shared::db::{DbContext, Pool};
use shared::http::{ApiError, BearerToken};
use shared::lambda::Container;
use shared::runs::RunLog;
use shared::settings::{Env, SettingsError};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::MAX_DAYS;

/// The `metrics-api` function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bearer token every caller presents.
    pub token: SecretString,
    /// Origins whose browsers may read the answers.
    pub cors_origins: Vec<String>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            token: env.secret("METRICS_API_TOKEN")?,
            cors_origins: env.list("CORS_ALLOWED_ORIGINS"),
        })
    }

    /// The local stack's: the token it prints at start.
    pub fn local() -> Self {
        Self {
            token: SecretString::from(LOCAL_TOKEN),
            cors_origins: Vec::new(),
        }
    }
}

/// The local stack's `GET /metrics` token.
pub const LOCAL_TOKEN: &str = "local-admin";

/// What the metrics API reads from and whom it lets in.
pub struct ApiDeps {
    pub pool: Pool,
    pub config: Config,
}

impl ApiDeps {
    pub fn new(container: &Container, config: Config) -> Self {
        Self {
            pool: container.pool.clone(),
            config,
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct MetricsQuery {
    workspace: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

async fn get_metrics(
    State(deps): State<Arc<ApiDeps>>,
    Query(query): Query<MetricsQuery>,
    token: Option<BearerToken>,
) -> Result<Json<Value>, ApiError> {
    let presented = token.map(|BearerToken(token)| token).unwrap_or_default();
    if !shared::webhook::constant_time_eq(
        deps.config.token.expose_secret().as_bytes(),
        presented.as_bytes(),
    ) {
        return Err(ApiError::unauthorized("a valid bearer token is required"));
    }
    let parse_date = |value: Option<&str>| value.and_then(|d| d.parse::<NaiveDate>().ok());
    let parsed = (
        query
            .workspace
            .as_deref()
            .and_then(|w| w.parse::<Uuid>().ok()),
        parse_date(query.from.as_deref()),
        parse_date(query.to.as_deref()),
    );
    let (Some(workspace), Some(from), Some(to)) = parsed else {
        return Err(ApiError::bad_request(
            "workspace (uuid), from and to (YYYY-MM-DD) are required",
        ));
    };
    if to < from || (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::bad_request(format!(
            "from..to must span 1 to {MAX_DAYS} days"
        )));
    }
    let client = deps.pool.get().await.context("check out a connection")?;
    let rows = client
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
        .context("read daily metrics")?;
    let days: Vec<Value> = rows.iter().map(|row| row.get(0)).collect();
    Ok(Json(json!({ "workspace": workspace, "days": days })))
}

/// The `metrics-api` routes, recorded in the run log.
pub fn router(deps: Arc<ApiDeps>) -> axum::Router {
    let runs = RunLog::new(deps.pool.clone(), Agent::MetricsApi);
    let cors = shared::http::cors(&deps.config.cors_origins);
    runs.layer(
        axum::Router::new()
            .route("/metrics", axum::routing::get(get_metrics))
            .layer(cors)
            .with_state(deps),
    )
}
