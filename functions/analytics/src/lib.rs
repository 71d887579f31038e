//! The analytics agent: where product events enter the shared state.
//!
//! Routes (the same in Lambda and the local stack):
//!
//! * `POST /webhooks/posthog` — PostHog's HTTP Webhook destination (`{"event": {…},
//!   "person": {…}}`), authenticated by the workspace's secret as `Authorization: Bearer …`
//!   or `X-Webhook-Secret` ([`posthog::webhook`]).
//! * `POST /batch/`, `/e/`, `/i/v0/e/`, `/capture/` — PostHog's capture API, so the official
//!   SDKs can point their host here; the project token comes from the body or the event
//!   ([`posthog::capture`]). Answers `{"status": 1}`.
//! * `POST /track`, `/import` — Mixpanel's ingestion; `/track` takes the project token in
//!   each event, `/import` authenticates as Mixpanel does (API secret or service account) and
//!   reports partial success as Mixpanel does ([`mixpanel`]).
//! * `POST /engage` — Mixpanel's people updates (`$set`, `$set_once`, `$unset`) of the
//!   audience ([`engage`]).
//! * `POST /flags/`, `GET /array/{token}/config` — what posthog-js asks for on start: no
//!   flags, and a configuration that turns everything optional off ([`startup`]).
//!
//! Browsers call all but the webhook and `/import` from the tenant's own site, so those
//! routes answer CORS preflights for any origin ([`shared::http::public_cors`]).
//!
//! Layout, in the order a request meets it: [`decode`] turns the body into JSON text within
//! [`MAX_DECODED_BYTES`]; [`json`] splits it into events' texts, counting them, and builds
//! each event's value within the request's memory budget; [`events`] applies the rules an
//! event must pass, each event on its own; [`tokens`] says which workspace a token or secret
//! names; [`store`] writes the accepted events, isolating any the database refuses.
//!
//! What callers get: a rejected event is listed (the first [`REPORTED_REJECTIONS`], with a
//! count) while its siblings are stored; a body that cannot be read at all is 400, one too
//! large or with too many events 413, a wrong credential 401; only a transient failure (the
//! database unreachable, a lock or statement timeout) is 503 with `Retry-After`. A webhook
//! delivery that can never be stored is acknowledged and kept in the quarantine.

pub mod decode;
pub mod engage;
pub mod events;
pub mod json;
pub mod mixpanel;
pub mod posthog;
pub mod startup;
pub mod store;
pub mod tokens;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, header};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use shared::agents::Agent;
use shared::clock::Clock;
use shared::crypto::Keys;
use shared::db::{DbError, Pool};
use shared::http::ApiError;
use shared::lambda::Container;
use shared::queue::outbox::Outbox;
use shared::queue::{QueueError, Transport};
use shared::retry::{RetryClass, RetryPolicy, Retryable, retry};
use shared::settings::{Env, SettingsError};
use uuid::Uuid;

use decode::{DecodeError, Envelope};
use events::{Backdate, Event, Read, Rejected, Source};
use json::{Budget, SplitError, ValueError};

pub use tokens::{TokenKind, WorkspaceKind, ensure_default_workspace, ensure_workspace};

/// Largest request body accepted, compressed or not (API Gateway's own limit is 10 MB).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Largest body once inflated or decoded: Mixpanel's 10 MB uncompressed per request.
pub const MAX_DECODED_BYTES: usize = 10 * 1024 * 1024;
/// The memory one request's parsed events may hold, as [`json::value`] estimates it.
pub const MAX_PARSED_BYTES: usize = 32 * 1024 * 1024;
/// How many rejected events an answer lists; the rest are counted.
pub const REPORTED_REJECTIONS: usize = 20;
pub struct AnalyticsDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    pub clock: Clock,
    /// Hashes the ingestion secrets presented to us, to find their stored keyed hashes.
    pub keys: Arc<Keys>,
}

/// The `analytics` function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The deployment's key-encryption keys (`ENCRYPTION_KEYS`).
    pub keys: Arc<Keys>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            keys: Arc::new(Keys::from_env(env)?),
        })
    }

    pub fn local() -> Self {
        Self {
            keys: Arc::new(Keys::local()),
        }
    }
}

impl AnalyticsDeps {
    pub fn new(container: &Container, config: Config) -> Self {
        Self {
            pool: container.pool.clone(),
            transport: container.transport.clone(),
            clock: container.clock.clone(),
            keys: config.keys,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<shared::events::StoreError> for AnalyticsError {
    fn from(error: shared::events::StoreError) -> Self {
        match error {
            shared::events::StoreError::Db(error) => AnalyticsError::Db(error),
            shared::events::StoreError::Queue(error) => AnalyticsError::Queue(error),
        }
    }
}

impl Retryable for AnalyticsError {
    fn retry_class(&self) -> RetryClass {
        match self {
            AnalyticsError::Db(error) => error.retry_class(),
            AnalyticsError::Queue(error) => error.retry_class(),
        }
    }
}

impl AnalyticsError {
    /// Whether the database refused a value the input carries: the input's fault, for good.
    pub fn is_refused_value(&self) -> bool {
        matches!(self, AnalyticsError::Db(error) if error.is_refused_value())
    }

    /// The server's reason for a refused value.
    pub fn refused_reason(&self) -> String {
        match self {
            AnalyticsError::Db(error) => error.refused_reason(),
            AnalyticsError::Queue(_) => None,
        }
        .unwrap_or_else(|| "the database refused a value".into())
    }
}

/// `error` in the shape PostHog's and Mixpanel's SDKs read a refusal in:
/// `{"status": 0, "error": …}`.
pub(crate) fn in_sdk_shape(error: ApiError) -> ApiError {
    error.with_field("status", 0)
}

/// Our failure: 503 with `Retry-After` when it may pass, 500 when it will not.
impl From<AnalyticsError> for ApiError {
    fn from(error: AnalyticsError) -> Self {
        in_sdk_shape(ApiError::failed_to_record("the events", &error))
    }
}

/// Why a body could not be read into events. Each is the sender's fault and permanent.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// JSON bodies must be UTF-8 (RFC 8259 §8.1): a body that is not cannot even be split
    /// into its events, so it is refused as a whole.
    #[error("{NOT_UTF8}")]
    NotUtf8,
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error("{0}; send fewer events at a time")]
    OverBudget(#[from] ValueError),
}

impl From<Unreadable> for ApiError {
    fn from(unreadable: Unreadable) -> Self {
        in_sdk_shape(match unreadable {
            Unreadable::Split(SplitError::TooMany(cap)) => ApiError::payload_too_large(format!(
                "more than {cap} events in one request; send at most {cap} at a time"
            )),
            Unreadable::Decode(DecodeError::TooLarge(_)) | Unreadable::OverBudget(_) => {
                ApiError::payload_too_large(unreadable.to_string())
            }
            Unreadable::Decode(_) | Unreadable::NotUtf8 | Unreadable::Split(_) => {
                ApiError::bad_request(unreadable.to_string())
            }
        })
    }
}

pub(crate) const NOT_UTF8: &str = "the body is not UTF-8 text";

/// The workspace of each project token of `kind` among `named`; 401 when events name tokens
/// and none of them is known (a wrong or revoked token, not one bad event).
pub(crate) async fn project_workspaces(
    deps: &AnalyticsDeps,
    named: &[&str],
    kind: TokenKind,
) -> Result<BTreeMap<String, Uuid>, ApiError> {
    let workspaces = tokens::workspaces_of(&deps.pool, named, kind)
        .await
        .map_err(AnalyticsError::from)?;
    match named.first() {
        Some(token) if workspaces.is_empty() => Err(in_sdk_shape(ApiError::unauthorized(format!(
            "unknown project token {}",
            events::quote(token)
        )))),
        _ => Ok(workspaces),
    }
}

/// Decodes, splits and reads a capture or Mixpanel body: the body-level token (PostHog) and
/// the events read. The body and its decoded text are dropped on return, before anything is
/// stored, so a request never holds its text and the storing of its events at once.
pub(crate) fn read_body(
    body: Bytes,
    envelope: Envelope<'_>,
    source: Source,
    now: DateTime<Utc>,
    backdate: Backdate,
) -> Result<(Option<String>, Read), Unreadable> {
    let decoded = decode::decode(&body, envelope, MAX_DECODED_BYTES)?;
    let text = std::str::from_utf8(&decoded).map_err(|_| Unreadable::NotUtf8)?;
    let (token, items) = match source {
        Source::Mixpanel => (None, events::mixpanel_batch(text)?),
        Source::Posthog | Source::Email => {
            let batch = events::posthog_batch(text)?;
            (batch.token, batch.items)
        }
    };
    let mut budget = Budget::new(MAX_PARSED_BYTES);
    let read = events::read(&items, source, now, backdate, &mut budget)?;
    Ok((token, read))
}

/// The rejections an answer lists, in body order, and how many there were.
pub(crate) fn reported(mut rejected: Vec<Rejected>) -> (Vec<Rejected>, usize) {
    let count = rejected.len();
    rejected.sort_by_key(|rejection| rejection.index);
    rejected.truncate(REPORTED_REJECTIONS);
    (rejected, count)
}

pub(crate) fn envelope<'a>(
    headers: &'a HeaderMap,
    query: &'a BTreeMap<String, String>,
) -> Envelope<'a> {
    let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
    Envelope {
        content_type: header(header::CONTENT_TYPE),
        content_encoding: header(header::CONTENT_ENCODING),
        compression: query.get("compression").map(String::as_str),
    }
}

/// Stores `accepted` (events with their index in the body) for `workspace`, retrying
/// transient failures, and dispatches what the outbox holds; events the database refused
/// join `rejected`. Returns how many were accepted (new or duplicate).
pub(crate) async fn store_events(
    deps: &AnalyticsDeps,
    workspace: Uuid,
    source: Source,
    accepted: Vec<(usize, Event)>,
    rejected: &mut Vec<Rejected>,
) -> Result<usize, AnalyticsError> {
    if accepted.is_empty() {
        return Ok(0);
    }
    let (indices, events): (Vec<usize>, Vec<Event>) = accepted.into_iter().unzip();
    let outbox = Outbox::new(deps.pool.clone(), deps.transport.clone());
    let (stored, pending) = retry(RetryPolicy::default(), || {
        store::store(
            &deps.pool,
            &outbox,
            workspace,
            source,
            &events,
            deps.clock.now(),
        )
    })
    .await?;
    if let Err(error) = outbox.dispatch(&pending).await {
        tracing::warn!(%error, "analytics messages left for the outbox relay");
    }
    for (position, reason) in &stored.refused {
        if let Some(index) = indices.get(*position) {
            rejected.push(Rejected::new(
                *index,
                format!("the database refused it: {reason}"),
            ));
        }
    }
    Ok(stored.inserted.saturating_add(stored.duplicates))
}

/// Who calls a route, which decides its method in API Gateway and its CORS policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A page on the tenant's site: any origin, so preflights are answered.
    Browser,
    /// A server: no preflight.
    Server,
}

/// Every route of the agent: path, method, caller. The SDKs call the ingestion paths with
/// and without a trailing `/`, so both are served.
pub fn routes() -> Vec<(String, Method, Caller)> {
    let mut routes = Vec::new();
    for path in [
        "/batch", "/e", "/i/v0/e", "/capture", "/flags", "/decide", "/track", "/engage",
    ] {
        for path in [path.to_string(), format!("{path}/")] {
            routes.push((path, Method::POST, Caller::Browser));
        }
    }
    routes.push(("/array/{token}/{file}".into(), Method::GET, Caller::Browser));
    routes.push(("/webhooks/posthog".into(), Method::POST, Caller::Server));
    for path in ["/import", "/import/"] {
        routes.push((path.into(), Method::POST, Caller::Server));
    }
    routes
}

/// The analytics agent's routes. The routes browsers call answer any origin, as PostHog's
/// and Mixpanel's do; the webhook and `/import` are server-to-server and answer no
/// preflight.
pub fn router(deps: Arc<AnalyticsDeps>) -> Router {
    let (mut browser, mut servers) = (Router::new(), Router::new());
    for (path, _, caller) in routes() {
        let handler = match path.trim_end_matches('/') {
            "/flags" | "/decide" => post(startup::flags),
            "/track" => post(mixpanel::track),
            "/engage" => post(engage::engage),
            "/import" => post(mixpanel::import),
            "/webhooks/posthog" => post(posthog::webhook),
            "/array/{token}/{file}" => get(startup::remote_config),
            _ => post(posthog::capture),
        };
        match caller {
            Caller::Browser => browser = browser.route(&path, handler),
            Caller::Server => servers = servers.route(&path, handler),
        }
    }
    let router = browser.layer(shared::http::public_cors()).merge(servers);
    let runs = shared::runs::RunLog::new(deps.pool.clone(), Agent::Analytics);
    runs.layer(shared::http::limit_body(router, MAX_BODY_BYTES).with_state(deps))
}
