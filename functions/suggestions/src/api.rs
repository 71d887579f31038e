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
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::db::{DbContext, Pool};
use tokio_postgres::types::Type;
use uuid::Uuid;

pub struct ApiDeps {
    pub pool: Pool,
    /// Verifies the project's access tokens.
    pub jwt: shared::jwt::JwtVerifier,
    pub clock: shared::clock::Clock,
}

fn failure(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The caller's user id, from a valid bearer JWT.
/// Refusals are boxed: a `Response` is large and these are the uncommon path.
fn user(headers: &HeaderMap, deps: &ApiDeps) -> Result<Uuid, Box<Response>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Box::new(failure(
                StatusCode::UNAUTHORIZED,
                "a Supabase access token is required",
            ))
        })?;
    let refuse = |reason: String| Box::new(failure(StatusCode::UNAUTHORIZED, &reason));
    let claims = deps
        .jwt
        .verify(token, deps.clock.now())
        .map_err(|error| refuse(error.to_string()))?;
    claims
        .sub
        .parse()
        .map_err(|_| refuse("the access token's subject is not a user id".into()))
}

async fn is_member(pool: &Pool, workspace: Uuid, user: Uuid) -> Result<bool, Box<Response>> {
    let client = pool
        .get()
        .await
        .context("check out a connection")
        .map_err(|error| Box::new(unavailable(error)))?;
    let row = client
        .query_typed_opt(
            "SELECT 1 FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
            &[(&workspace, Type::UUID), (&user, Type::UUID)],
        )
        .await
        .context("check membership")
        .map_err(|error| Box::new(unavailable(error)))?;
    Ok(row.is_some())
}

/// A database failure's answer: a value the database refuses is the caller's (400 with the
/// server's reason); anything else may pass (503 with `Retry-After`).
fn unavailable(error: shared::db::DbError) -> Response {
    if let Some(reason) = error.refused_reason() {
        return failure(
            StatusCode::BAD_REQUEST,
            &format!("the database refused a value: {reason}"),
        );
    }
    tracing::error!(%error, "suggestions API");
    shared::lambda::http::unavailable("try again later", 5)
}

#[derive(Debug, Deserialize)]
struct WorkspaceQuery {
    workspace: Option<Uuid>,
}

/// The `?workspace=` the caller asks about, once their token and membership are checked.
async fn member_workspace(
    deps: &ApiDeps,
    headers: &HeaderMap,
    query: &WorkspaceQuery,
) -> Result<Uuid, Box<Response>> {
    let user = user(headers, deps)?;
    let Some(workspace) = query.workspace else {
        return Err(Box::new(failure(
            StatusCode::BAD_REQUEST,
            "workspace (uuid) is required",
        )));
    };
    if is_member(&deps.pool, workspace, user).await? {
        Ok(workspace)
    } else {
        Err(Box::new(failure(
            StatusCode::FORBIDDEN,
            "not a member of this workspace",
        )))
    }
}

async fn list(
    State(deps): State<Arc<ApiDeps>>,
    Query(query): Query<WorkspaceQuery>,
    headers: HeaderMap,
) -> Response {
    let workspace = match member_workspace(&deps, &headers, &query).await {
        Ok(workspace) => workspace,
        Err(response) => return *response,
    };
    let rows = async {
        let client = deps.pool.get().await.context("check out a connection")?;
        client
            .query_typed(
                "SELECT jsonb_build_object('id', id, 'kind', kind, 'target', target, 'explanation', explanation,
                                           'expected_impact', expected_impact, 'score', score, 'created_at', created_at)
                   FROM suggestions WHERE workspace_id = $1 AND status = 'open' ORDER BY explored DESC, score DESC, created_at",
                &[(&workspace, Type::UUID)],
            )
            .await
            .context("list suggestions")
    };
    match rows.await {
        Ok(rows) => Json(json!({ "suggestions": rows.iter().map(|row| row.get::<_, Value>(0)).collect::<Vec<_>>() })).into_response(),
        Err(error) => unavailable(error),
    }
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

async fn feedback(
    State(deps): State<Arc<ApiDeps>>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let user = match user(&headers, &deps) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let feedback: Feedback = match serde_json::from_slice(&body) {
        Ok(feedback) => feedback,
        Err(error) => {
            return failure(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"verdict\": …, \"reason\": …}}: {error}"),
            );
        }
    };
    if !matches!(
        feedback.verdict.as_str(),
        "accepted" | "rejected" | "dismissed"
    ) {
        return failure(
            StatusCode::BAD_REQUEST,
            "verdict must be accepted, rejected or dismissed",
        );
    }
    if let Some(reason) = &feedback.reason {
        if reason.len() > MAX_REASON_BYTES {
            return failure(
                StatusCode::BAD_REQUEST,
                &format!("reason is longer than {MAX_REASON_BYTES} bytes"),
            );
        }
        if reason.contains('\0') {
            return failure(StatusCode::BAD_REQUEST, "reason contains \\u0000");
        }
    }
    let workspace = async {
        let client = deps.pool.get().await.context("check out a connection")?;
        client
            .query_typed_opt(
                "SELECT workspace_id FROM suggestions WHERE id = $1",
                &[(&id, Type::UUID)],
            )
            .await
            .context("find suggestion")
    };
    let workspace: Uuid = match workspace.await {
        Ok(Some(row)) => row.get(0),
        Ok(None) => return failure(StatusCode::NOT_FOUND, "no such suggestion"),
        Err(error) => return unavailable(error),
    };
    match is_member(&deps.pool, workspace, user).await {
        Ok(true) => {}
        Ok(false) => {
            return failure(
                StatusCode::FORBIDDEN,
                "not a member of this suggestion's workspace",
            );
        }
        Err(response) => return *response,
    }
    let recorded = async {
        let mut client = deps.pool.get().await.context("check out a connection")?;
        let transaction = shared::db::begin(&mut client, shared::db::Budget::REQUEST).await?;
        let inserted = transaction
            .execute_typed(
                "INSERT INTO suggestion_feedback (suggestion_id, user_id, verdict, reason) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (suggestion_id, user_id) DO NOTHING",
                &[(&id, Type::UUID), (&user, Type::UUID), (&feedback.verdict, Type::TEXT), (&feedback.reason, Type::TEXT)],
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
        Ok::<bool, shared::db::DbError>(inserted == 1)
    };
    match recorded.await {
        Ok(new) => Json(json!({ "recorded": new })).into_response(),
        Err(error) => unavailable(error),
    }
}

async fn adoption(
    State(deps): State<Arc<ApiDeps>>,
    Query(query): Query<WorkspaceQuery>,
    headers: HeaderMap,
) -> Response {
    let workspace = match member_workspace(&deps, &headers, &query).await {
        Ok(workspace) => workspace,
        Err(response) => return *response,
    };
    match crate::adoption::adoption(&deps.pool, Some(workspace)).await {
        Ok(report) => Json(json!({ "adoption": report })).into_response(),
        Err(crate::SuggestionsError::Db(error)) => unavailable(error),
    }
}

/// The feedback API's routes.
pub fn router(deps: Arc<ApiDeps>) -> axum::Router {
    let runs = shared::runs::RunLog::new(deps.pool.clone(), "suggestions-api");
    runs.layer(
        axum::Router::new()
            .route("/suggestions", get(list))
            .route("/suggestions/adoption", get(adoption))
            .route("/suggestions/{id}/feedback", post(feedback))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(deps),
    )
}
