//! The feedback API the frontend calls, authenticated with the user's Supabase JWT.
//!
//! * `GET /suggestions?workspace=…` — the workspace's open suggestions: an explored one
//!   first, then best first.
//! * `GET /suggestions/adoption?workspace=…` — accepted / shown per kind and overall.
//! * `POST /suggestions/{id}/feedback` — `{"verdict": "accepted" | "rejected" | "dismissed",
//!   "reason": "…"}`; one verdict per (suggestion, user): repeating it changes nothing.
//!
//! The token is verified by [`shared::jwt`] (signature, issuer, audience, subject, expiry and
//! not-before, against the agent's clock); its `sub` must be a member of the suggestion's
//! workspace (`workspace_members`). 401 without a valid token, naming what failed; 403 for
//! another workspace.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::agents::Agent;
use shared::clock::Clock;
use shared::db::{DbContext, Pool};
use shared::http::{ApiError, SupabaseUser, VerifiesMembers};
use shared::jwt::{JwtConfig, JwtVerifier};
use shared::lambda::Container;
use shared::membership::Caller;
use shared::runs::RunLog;
use shared::settings::{Env, SettingsError};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The `suggestions-api` function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub jwt: JwtConfig,
    /// Origins whose browsers may call the API (the frontend).
    pub cors_origins: Vec<String>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            jwt: JwtConfig::from_env(env)?,
            cors_origins: env.list("CORS_ALLOWED_ORIGINS"),
        })
    }

    /// The local stack's: the Supabase CLI's local project.
    pub fn local() -> Self {
        Self {
            jwt: JwtConfig::local(),
            cors_origins: shared::http::local_app_origins(),
        }
    }
}

pub struct ApiDeps {
    pub pool: Pool,
    /// Verifies the project's access tokens.
    pub jwt: JwtVerifier,
    pub clock: Clock,
    pub cors_origins: Vec<String>,
}

impl ApiDeps {
    pub fn new(container: &Container, config: Config) -> Self {
        Self {
            pool: container.pool.clone(),
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

#[derive(Debug, Deserialize)]
struct WorkspaceQuery {
    workspace: Option<Uuid>,
}

/// The `?workspace=` the member asks about, once their membership is checked.
async fn member_workspace(
    deps: &ApiDeps,
    user: &SupabaseUser,
    query: &WorkspaceQuery,
) -> Result<Uuid, ApiError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let caller = Caller::Member(user.clone());
    shared::membership::workspace_for(&**client, &caller, query.workspace).await
}

async fn list(
    State(deps): State<Arc<ApiDeps>>,
    user: SupabaseUser,
    Query(query): Query<WorkspaceQuery>,
) -> Result<Json<Value>, ApiError> {
    let workspace = member_workspace(&deps, &user, &query).await?;
    let client = deps.pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT jsonb_build_object('id', id, 'kind', kind, 'target', target, 'explanation', explanation,
                                           'expected_impact', expected_impact, 'score', score, 'created_at', created_at)
                   FROM suggestions WHERE workspace_id = $1 AND status = 'open' ORDER BY explored DESC, score DESC, created_at",
            &[(&workspace, Type::UUID)],
        )
        .await
        .context("list suggestions")?;
    let suggestions: Vec<Value> = rows.iter().map(|row| row.get(0)).collect();
    Ok(Json(json!({ "suggestions": suggestions })))
}

/// Longest reason kept with a verdict.
const MAX_REASON_BYTES: usize = 2_000;
/// Feedback bodies are a verdict and a sentence.
const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
struct Feedback {
    verdict: String,
    reason: Option<String>,
}

impl Feedback {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let feedback: Feedback = serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(format!(
                "expected {{\"verdict\": …, \"reason\": …}}: {error}"
            ))
        })?;
        if !matches!(
            feedback.verdict.as_str(),
            "accepted" | "rejected" | "dismissed"
        ) {
            return Err(ApiError::bad_request(
                "verdict must be accepted, rejected or dismissed",
            ));
        }
        if let Some(reason) = &feedback.reason {
            if reason.len() > MAX_REASON_BYTES {
                return Err(ApiError::bad_request(format!(
                    "reason is longer than {MAX_REASON_BYTES} bytes"
                )));
            }
            if reason.contains('\0') {
                return Err(ApiError::bad_request("reason contains \\u0000"));
            }
        }
        Ok(feedback)
    }
}

async fn feedback(
    State(deps): State<Arc<ApiDeps>>,
    Path(id): Path<Uuid>,
    user: SupabaseUser,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let feedback = Feedback::parse(&body)?;
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let workspace: Uuid = client
        .query_typed_opt(
            "SELECT workspace_id FROM suggestions WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await
        .context("find suggestion")?
        .ok_or_else(|| ApiError::not_found("no such suggestion"))?
        .get(0);
    if !shared::membership::is_member(&**client, workspace, user.id).await? {
        return Err(ApiError::forbidden(
            "not a member of this suggestion's workspace",
        ));
    }
    let transaction = shared::db::begin(&mut client, shared::db::Budget::REQUEST).await?;
    let inserted = transaction
        .execute_typed(
            "INSERT INTO suggestion_feedback (suggestion_id, user_id, verdict, reason) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (suggestion_id, user_id) DO NOTHING",
            &[(&id, Type::UUID), (&user.id, Type::UUID), (&feedback.verdict, Type::TEXT), (&feedback.reason, Type::TEXT)],
        )
        .await
        .context("record feedback")?;
    if inserted == 1 {
        transaction
            .execute_typed(
                "UPDATE suggestions SET status = $2, updated_at = now() WHERE id = $1 AND status = 'open'",
                &[(&id, Type::UUID), (&feedback.verdict, Type::TEXT)],
            )
            .await
            .context("close suggestion")?;
    }
    transaction.commit().await.context("commit feedback")?;
    Ok(Json(json!({ "recorded": inserted == 1 })))
}

async fn adoption(
    State(deps): State<Arc<ApiDeps>>,
    user: SupabaseUser,
    Query(query): Query<WorkspaceQuery>,
) -> Result<Json<Value>, ApiError> {
    let workspace = member_workspace(&deps, &user, &query).await?;
    let client = deps.pool.get().await.context("check out a connection")?;
    let report = shared::adoption::adoption(&**client, Some(workspace)).await?;
    Ok(Json(json!({ "adoption": report })))
}

/// The feedback API's routes, recorded in the run log.
pub fn router(deps: Arc<ApiDeps>) -> axum::Router {
    let runs = RunLog::new(deps.pool.clone(), Agent::SuggestionsApi);
    let cors = shared::http::cors(&deps.cors_origins);
    let routes = axum::Router::new()
        .route("/suggestions", get(list))
        .route("/suggestions/adoption", get(adoption))
        .route("/suggestions/{id}/feedback", post(feedback));
    runs.layer(
        shared::http::limit_body(routes, MAX_BODY_BYTES)
            .layer(cors)
            .with_state(deps),
    )
}
