//! `GET /metrics?workspace=…&from=…&to=…`: the daily metrics of one workspace and date range.
//! The frontend calls it with the member's Supabase access token, and gets only workspaces
//! the member belongs to; a server may call it with the service token (`METRICS_API_TOKEN`,
//! when set) for any workspace ([`shared::membership`]). Browsers may call it from the
//! origins in `CORS_ALLOWED_ORIGINS`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use chrono::NaiveDate;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::agents::Agent;
use shared::clock::Clock;
use shared::db::{DbContext, Pool};
use shared::http::{ApiError, VerifiesMembers};
use shared::jwt::{JwtConfig, JwtVerifier};
use shared::lambda::Container;
use shared::membership::{Caller, HasServiceToken};
use shared::runs::RunLog;
use shared::settings::{Env, SettingsError};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::MAX_DAYS;

/// The `metrics-api` function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The service token servers present; `None`: members only.
    pub token: Option<SecretString>,
    /// Which project's member tokens to accept.
    pub jwt: JwtConfig,
    /// Origins whose browsers may read the answers.
    pub cors_origins: Vec<String>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            token: env.optional("METRICS_API_TOKEN").map(SecretString::from),
            jwt: JwtConfig::from_env(env)?,
            cors_origins: env.list("CORS_ALLOWED_ORIGINS"),
        })
    }

    /// The local stack's: the service token it prints at start, and the Supabase CLI's
    /// local project for members.
    pub fn local() -> Self {
        Self {
            token: Some(SecretString::from(LOCAL_TOKEN)),
            jwt: JwtConfig::local(),
            cors_origins: shared::http::local_app_origins(),
        }
    }
}

/// The local stack's `GET /metrics` service token.
pub const LOCAL_TOKEN: &str = "local-admin";

/// What the metrics API reads from and whom it lets in.
pub struct ApiDeps {
    pub pool: Pool,
    pub token: Option<SecretString>,
    pub jwt: JwtVerifier,
    pub clock: Clock,
    pub cors_origins: Vec<String>,
}

impl ApiDeps {
    pub fn new(container: &Container, config: Config) -> Self {
        Self {
            pool: container.pool.clone(),
            token: config.token,
            jwt: JwtVerifier::from_config(&config.jwt),
            clock: container.clock.clone(),
            cors_origins: config.cors_origins,
        }
    }
}

impl VerifiesMembers for ApiDeps {
    fn verifier(&self) -> &JwtVerifier {
        &self.jwt
    }
    fn clock(&self) -> &Clock {
        &self.clock
    }
}

impl HasServiceToken for ApiDeps {
    fn service_token(&self) -> Option<&SecretString> {
        self.token.as_ref()
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
    caller: Caller,
    Query(query): Query<MetricsQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let workspace = shared::membership::workspace_for(&**client, &caller, Some(workspace)).await?;
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
    let cors = shared::http::cors(&deps.cors_origins);
    runs.layer(
        axum::Router::new()
            .route("/metrics", axum::routing::get(get_metrics))
            .layer(cors)
            .with_state(deps),
    )
}
