//! The analytics agent: where product events enter the shared state.
//!
//! Routes (the same in Lambda and the local stack):
//!
//! * `POST /webhooks/posthog` — PostHog's HTTP Webhook destination (`{"event": {…},
//!   "person": {…}}`), authenticated by a shared secret sent as `Authorization: Bearer …` or
//!   `X-Webhook-Secret` (compared in constant time against the workspaces' secrets).
//! * `POST /batch/`, `/e/`, `/i/v0/e/`, `/capture/` — PostHog's capture API, so the official
//!   SDKs can point their host here: single events, arrays or `{batch: […]}`, JSON or form
//!   `data=`, gzip or base64 ([`decode`]); the project token comes from the body or the
//!   event's properties. Answers `{"status": 1}`.
//! * `POST /track`, `/import` — Mixpanel's ingestion (JSON array, NDJSON, form `data=`, gzip),
//!   deduplicated by Mixpanel's key; `/import` reports partial success as Mixpanel does.
//!
//! A project token names a workspace (`workspace_tokens`). Each event is checked on its own
//! ([`events`]); rejected ones are listed with a reason and the rest are stored in one
//! transaction ([`store`]). Bad input never yields a 500.

pub mod decode;
pub mod events;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::db::{DbContext, DbError, Pool};
use shared::queue::outbox::Outbox;
use shared::queue::{QueueError, Transport};
use shared::retry::{RetryClass, RetryPolicy, Retryable, retry};
use tokio_postgres::types::Type;
use uuid::Uuid;

use decode::{DecodeError, Envelope};
use events::{Event, Rejected, Source};

/// Largest request body accepted, compressed or not (API Gateway's own limit is 10 MB).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Largest body once inflated or decoded.
pub const MAX_DECODED_BYTES: usize = 20 * 1024 * 1024;

pub struct AnalyticsDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    pub clock: Clock,
    /// Hashes the ingestion secrets presented to us, to find their stored keyed hashes.
    pub keys: Arc<shared::crypto::Keys>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Retryable for AnalyticsError {
    fn retry_class(&self) -> RetryClass {
        match self {
            AnalyticsError::Db(error) => error.retry_class(),
            AnalyticsError::Queue(error) => error.retry_class(),
        }
    }
}

/// The kinds of token a workspace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    PosthogProject,
    MixpanelProject,
    PosthogWebhookSecret,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::PosthogProject => "posthog_project",
            TokenKind::MixpanelProject => "mixpanel_project",
            TokenKind::PosthogWebhookSecret => "posthog_webhook_secret",
        }
    }
}

async fn workspace_for(
    pool: &Pool,
    token: &str,
    kind: TokenKind,
) -> Result<Option<Uuid>, AnalyticsError> {
    let client = pool.get().await.context("check out a connection")?;
    let row = client
        .query_typed_opt(
            "SELECT workspace_id FROM workspace_tokens WHERE token = $1 AND kind = $2",
            &[(&token, Type::TEXT), (&kind.as_str(), Type::TEXT)],
        )
        .await
        .context("look up token")?;
    Ok(row.map(|row| row.get(0)))
}

/// The workspace whose webhook secret equals `presented`, compared in constant time with
/// every configured secret so timing reveals nothing about any of them.
async fn workspace_for_secret(
    pool: &Pool,
    presented: &str,
) -> Result<Option<Uuid>, AnalyticsError> {
    let client = pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT token, workspace_id FROM workspace_tokens WHERE kind = $1",
            &[(&TokenKind::PosthogWebhookSecret.as_str(), Type::TEXT)],
        )
        .await
        .context("read webhook secrets")?;
    let mut found = None;
    for row in rows {
        let secret: String = row.get(0);
        if shared::webhook::constant_time_eq(secret.as_bytes(), presented.as_bytes()) {
            found = Some(row.get(1));
        }
    }
    Ok(found)
}

/// Creates a workspace with these tokens unless any workspace exists; returns its id when
/// created. The local stack calls it so an SDK can be pointed at it at once.
pub async fn ensure_default_workspace(
    pool: &Pool,
    name: &str,
    tokens: &[(&str, TokenKind)],
) -> Result<Option<Uuid>, AnalyticsError> {
    let mut client = pool.get().await.context("check out a connection")?;
    let transaction = client.transaction().await.context("begin")?;
    transaction
        .batch_execute("SELECT pg_advisory_xact_lock(hashtext('default workspace'))")
        .await
        .context("lock default workspace")?;
    let exists = transaction
        .query_typed_opt("SELECT 1 FROM workspaces LIMIT 1", &[])
        .await
        .context("look for workspaces")?;
    if exists.is_some() {
        return Ok(None);
    }
    let id: Uuid = transaction
        .query_typed_one(
            "INSERT INTO workspaces (name) VALUES ($1) RETURNING id",
            &[(&name, Type::TEXT)],
        )
        .await
        .context("create default workspace")?
        .get(0);
    for (token, kind) in tokens {
        transaction
            .execute_typed(
                "INSERT INTO workspace_tokens (token, workspace_id, kind) VALUES ($1, $2, $3)",
                &[
                    (token, Type::TEXT),
                    (&id, Type::UUID),
                    (&kind.as_str(), Type::TEXT),
                ],
            )
            .await
            .context("create default token")?;
    }
    transaction
        .commit()
        .await
        .context("commit default workspace")?;
    Ok(Some(id))
}

/// Stores accepted events, retrying transient failures, and dispatches what the outbox holds.
async fn store_events(
    deps: &AnalyticsDeps,
    workspace: Uuid,
    source: Source,
    events: &[Event],
) -> Result<store::Stored, AnalyticsError> {
    if events.is_empty() {
        return Ok(store::Stored::default());
    }
    let outbox = Outbox::new(deps.pool.clone(), deps.transport.clone());
    let (stored, pending) = retry(RetryPolicy::default(), || {
        store::store(
            &deps.pool,
            &outbox,
            workspace,
            source,
            events,
            deps.clock.now(),
        )
    })
    .await?;
    if let Err(error) = outbox.dispatch(&pending).await {
        tracing::warn!(%error, "analytics messages left for the outbox relay");
    }
    Ok(stored)
}

/// Stores each token's events in its workspace; how many were accepted (new or duplicate),
/// or the answer to give when a token is unknown or the database fails.
async fn store_by_token(
    deps: &AnalyticsDeps,
    by_token: &BTreeMap<String, Vec<Event>>,
    kind: TokenKind,
    source: Source,
) -> Result<usize, Response> {
    let mut accepted = 0;
    for (token, batch) in by_token {
        let workspace = match workspace_for(&deps.pool, token, kind).await {
            Ok(Some(workspace)) => workspace,
            Ok(None) => {
                return Err(failure(
                    StatusCode::UNAUTHORIZED,
                    format!("unknown project token {token:?}"),
                ));
            }
            Err(error) => return Err(internal(error)),
        };
        let stored = store_events(deps, workspace, source, batch)
            .await
            .map_err(internal)?;
        accepted += stored.inserted + stored.duplicates;
    }
    Ok(accepted)
}

fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "status": 0, "error": message.into() })),
    )
        .into_response()
}

fn decode_failure(error: DecodeError) -> Response {
    let status = match error {
        DecodeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    failure(status, error.to_string())
}

fn internal(error: AnalyticsError) -> Response {
    tracing::error!(%error, "events not stored");
    failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "events could not be stored; retry later",
    )
}

fn envelope<'a>(headers: &'a HeaderMap, query: &'a BTreeMap<String, String>) -> Envelope<'a> {
    let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
    Envelope {
        content_type: header(header::CONTENT_TYPE),
        content_encoding: header(header::CONTENT_ENCODING),
        compression: query.get("compression").map(String::as_str),
    }
}

/// Parses and groups a PostHog capture body by workspace, or answers why not.
async fn posthog_capture(deps: &AnalyticsDeps, body: &[u8], envelope: Envelope<'_>) -> Response {
    let text = match decode::decode(body, envelope, MAX_DECODED_BYTES) {
        Ok(text) => text,
        Err(error) => return decode_failure(error),
    };
    let json: Value = match serde_json::from_slice(&text) {
        Ok(json) => json,
        Err(error) => {
            return failure(
                StatusCode::BAD_REQUEST,
                format!("body is not JSON: {error}"),
            );
        }
    };
    let (batch_token, raw_events) = match events::posthog_batch(json) {
        Ok(parsed) => parsed,
        Err(reason) => return failure(StatusCode::BAD_REQUEST, reason),
    };
    let now = deps.clock.now();
    let mut rejected = Vec::new();
    let mut by_token: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for (index, raw) in raw_events.iter().enumerate() {
        match events::posthog_event(raw, now) {
            Ok(event) => match event.token.clone().or_else(|| batch_token.clone()) {
                Some(token) => by_token.entry(token).or_default().push(event),
                None => rejected.push(Rejected {
                    index,
                    reason: "no project token (api_key, token or properties.token)".into(),
                }),
            },
            Err(reason) => rejected.push(Rejected { index, reason }),
        }
    }
    let stored =
        match store_by_token(deps, &by_token, TokenKind::PosthogProject, Source::Posthog).await {
            Ok(stored) => stored,
            Err(response) => return response,
        };
    if stored == 0 && !rejected.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "status": 0, "error": "no event was valid", "rejected": rejected })),
        )
            .into_response();
    }
    let mut answer = json!({ "status": 1 });
    if !rejected.is_empty() {
        answer["rejected"] = json!(rejected);
    }
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn capture(
    State(deps): State<Arc<AnalyticsDeps>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    posthog_capture(&deps, &body, envelope(&headers, &query)).await
}

#[derive(Debug, Deserialize)]
struct WebhookBody {
    event: Value,
    #[serde(default)]
    person: Option<Value>,
}

fn presented_secret(headers: &HeaderMap) -> Option<&str> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    header("x-webhook-secret")
        .or_else(|| header("authorization").and_then(|value| value.strip_prefix("Bearer ")))
}

async fn posthog_webhook(
    State(deps): State<Arc<AnalyticsDeps>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = presented_secret(&headers) else {
        return failure(
            StatusCode::UNAUTHORIZED,
            "missing webhook secret (Authorization: Bearer … or X-Webhook-Secret)",
        );
    };
    let workspace = match workspace_for_secret(&deps.pool, secret).await {
        Ok(Some(workspace)) => workspace,
        Ok(None) => return failure(StatusCode::UNAUTHORIZED, "wrong webhook secret"),
        Err(error) => return internal(error),
    };
    let payload: WebhookBody = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(error) => {
            return failure(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"event\": {{…}}, \"person\": {{…}}}}: {error}"),
            );
        }
    };
    let mut raw = payload.event;
    if let (Some(set), Some(object)) = (
        payload
            .person
            .as_ref()
            .and_then(|person| person.get("properties")),
        raw.as_object_mut(),
    ) {
        object.entry("$set").or_insert_with(|| set.clone());
    }
    let event = match events::posthog_event(&raw, deps.clock.now()) {
        Ok(event) => event,
        Err(reason) => return failure(StatusCode::BAD_REQUEST, reason),
    };
    match store_events(
        &deps,
        workspace,
        Source::Posthog,
        std::slice::from_ref(&event),
    )
    .await
    {
        Ok(_) => (StatusCode::OK, axum::Json(json!({ "status": 1 }))).into_response(),
        Err(error) => internal(error),
    }
}

/// Mixpanel's `/track` (`import = false`) and `/import`.
async fn mixpanel(
    deps: &AnalyticsDeps,
    body: &[u8],
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    import: bool,
) -> Response {
    let text = match decode::decode(body, envelope(headers, query), MAX_DECODED_BYTES) {
        Ok(text) => text,
        Err(error) => return decode_failure(error),
    };
    let raw_events = match events::mixpanel_batch(&text) {
        Ok(raw) => raw,
        Err(reason) => return failure(StatusCode::BAD_REQUEST, reason),
    };
    // `/import` may name the project by Basic auth (the project token as the user name).
    let basic_user = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .map(|credentials| {
            credentials
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|user| !user.is_empty());
    let now = deps.clock.now();
    let mut failed = Vec::new();
    let mut by_token: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for (index, raw) in raw_events.iter().enumerate() {
        let insert_id = raw
            .pointer("/properties/$insert_id")
            .cloned()
            .unwrap_or(Value::Null);
        match events::mixpanel_event(raw, now) {
            Ok(event) => match event.token.clone().or_else(|| basic_user.clone()) {
                Some(token) => by_token.entry(token).or_default().push(event),
                None => failed.push(json!({"index": index, "insert_id": insert_id, "field": "properties.token", "message": "no project token"})),
            },
            Err(reason) => failed.push(json!({"index": index, "insert_id": insert_id, "field": "event", "message": reason})),
        }
    }
    let imported = match store_by_token(
        deps,
        &by_token,
        TokenKind::MixpanelProject,
        Source::Mixpanel,
    )
    .await
    {
        Ok(imported) => imported,
        Err(response) => return response,
    };
    if import {
        let status = if failed.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut answer = json!({ "code": status.as_u16(), "status": if failed.is_empty() { 1 } else { 0 }, "num_records_imported": imported });
        if !failed.is_empty() {
            answer["failed_records"] = json!(failed);
        }
        return (status, axum::Json(answer)).into_response();
    }
    if imported == 0 && !failed.is_empty() {
        let reason = failed[0]["message"]
            .as_str()
            .unwrap_or("invalid event")
            .to_string();
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "status": 0, "error": reason, "failed_records": failed })),
        )
            .into_response();
    }
    // Mixpanel answers a bare `1` unless asked for `verbose`, which its SDKs send in the form
    // body as often as in the query; they then read `status` from JSON. JSON always serves both.
    (
        StatusCode::OK,
        axum::Json(json!({ "status": 1, "error": null })),
    )
        .into_response()
}

async fn mixpanel_track(
    State(deps): State<Arc<AnalyticsDeps>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    mixpanel(&deps, &body, &headers, &query, false).await
}

async fn mixpanel_import(
    State(deps): State<Arc<AnalyticsDeps>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    mixpanel(&deps, &body, &headers, &query, true).await
}

/// The analytics agent's routes.
pub fn router(deps: Arc<AnalyticsDeps>) -> Router {
    let mut router = Router::new().route("/webhooks/posthog", post(posthog_webhook));
    for path in ["/batch", "/e", "/i/v0/e", "/capture"] {
        router = router
            .route(path, post(capture))
            .route(&format!("{path}/"), post(capture));
    }
    for path in ["/track", "/track/"] {
        router = router.route(path, post(mixpanel_track));
    }
    for path in ["/import", "/import/"] {
        router = router.route(path, post(mixpanel_import));
    }
    let runs = shared::runs::RunLog::new(deps.pool.clone(), "analytics");
    runs.layer(
        router
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(deps),
    )
}
