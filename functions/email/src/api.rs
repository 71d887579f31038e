//! The email agent's HTTP routes: Resend's webhook and the unsubscribe endpoints.
//!
//! * `POST /webhooks/resend` — Svix-signed delivery reports ([`crate::webhook`]). 400 for a
//!   bad signature or payload (with the reason), 413 above 256 KiB, 200 with the outcome
//!   (a redelivery answers `duplicate`; a delivery that can never be stored, `quarantined`),
//!   503 with `Retry-After` when the database fails for now (a lost connection, a held lock)
//!   so Svix retries, 500 for anything else.
//! * `GET /email/unsubscribe?token=…` — a confirmation page and nothing else: link scanners
//!   and mail previews fetch links, and must not unsubscribe anyone.
//! * `POST /email/unsubscribe?token=…` — unsubscribes. A mailbox provider's RFC 8058
//!   one-click POST (`List-Unsubscribe=One-Click`) and our page's button both land here; no
//!   cookie or session is needed, and repeating it changes nothing. A transient database
//!   failure answers a 503 page with `Retry-After`; nothing was changed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use shared::agents::Agent;
use shared::db::Pool;
use shared::http::ApiError;
use shared::lambda::Container;
use shared::queue::outbox::Outbox;
use shared::retry::Retryable;
use shared::settings::{Env, SettingsError, exposed};
use shared::webhook::SvixHeaders;

use crate::unsubscribe::{Method, TokenSigner, Unsubscribed, unsubscribe};
use crate::{EmailError, webhook};

/// Resend's reports are small; anything larger is not one.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What a 503 asks the sender (Svix, a mailbox provider, a person) to wait.
const RETRY_AFTER_SECS: u32 = 5;

pub struct ApiDeps {
    pub pool: Pool,
    pub outbox: Outbox,
    pub signer: TokenSigner,
    /// `whsec_…` signing secrets of the Resend webhook (several while rotating).
    pub webhook_secrets: Vec<String>,
    pub product: String,
    pub clock: shared::clock::Clock,
}

/// The `email-api` function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `EMAIL_UNSUBSCRIBE_SECRET` (comma-separated while rotating).
    pub unsubscribe_secrets: Vec<SecretString>,
    /// `RESEND_WEBHOOK_SECRET`: `whsec_…` signing secrets (several while rotating).
    pub webhook_secrets: Vec<SecretString>,
    /// `EMAIL_PRODUCT_NAME`, on the unsubscribe pages.
    pub product: String,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Ok(Self {
            unsubscribe_secrets: env.secret_list("EMAIL_UNSUBSCRIBE_SECRET")?,
            webhook_secrets: env.secret_list("RESEND_WEBHOOK_SECRET")?,
            product: env
                .optional("EMAIL_PRODUCT_NAME")
                .unwrap_or_else(|| crate::DEFAULT_PRODUCT_NAME.to_string()),
        })
    }

    pub fn local() -> Self {
        Self {
            unsubscribe_secrets: vec![crate::LOCAL_UNSUBSCRIBE_SECRET.into()],
            webhook_secrets: vec![crate::LOCAL_RESEND_WEBHOOK_SECRET.into()],
            product: crate::DEFAULT_PRODUCT_NAME.into(),
        }
    }
}

impl ApiDeps {
    pub fn new(container: &Container, config: Config) -> Self {
        Self {
            pool: container.pool.clone(),
            outbox: Outbox::new(container.pool.clone(), container.transport.clone()),
            signer: TokenSigner::new(exposed(&config.unsubscribe_secrets)),
            webhook_secrets: exposed(&config.webhook_secrets),
            product: config.product,
            clock: container.clock.clone(),
        }
    }
}

fn verify(deps: &ApiDeps, headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let svix = SvixHeaders {
        id: header("svix-id"),
        timestamp: header("svix-timestamp"),
        signature: header("svix-signature"),
    };
    let now = deps.clock.now().timestamp();
    let mut last_error = String::from("no webhook secret configured");
    for secret in &deps.webhook_secrets {
        match shared::webhook::verify_svix(body, svix, secret, now) {
            Ok(()) => return Ok(svix.id.unwrap_or_default().to_string()),
            Err(error) => last_error = error.to_string(),
        }
    }
    Err(last_error)
}

async fn receive_resend(
    State(deps): State<Arc<ApiDeps>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let svix_id = verify(&deps, &headers, &body)
        .map_err(|reason| ApiError::bad_request(format!("svix signature: {reason}")))?;
    match webhook::record(&deps.pool, &deps.outbox, &svix_id, &body, deps.clock.now()).await {
        Ok((outcome, pending)) => {
            if let Err(error) = deps.outbox.dispatch(&pending).await {
                tracing::warn!(%error, "metrics requests left for the outbox relay");
            }
            Ok(Json(json!({ "received": true, "outcome": outcome })))
        }
        Err(EmailError::Malformed(reason)) => {
            Err(ApiError::bad_request(format!("malformed event: {reason}")))
        }
        Err(error) => Err(ApiError::failed_to_record("the event", &error)),
    }
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn page(status: StatusCode, title: &str, body: &str) -> (StatusCode, Html<String>) {
    (
        status,
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title}</title></head>\
             <body style=\"font-family:sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;\">\
             <h1>{title}</h1>{body}</body></html>"
        )),
    )
}

fn bad_link(reason: &str) -> (StatusCode, Html<String>) {
    page(
        StatusCode::BAD_REQUEST,
        "This unsubscribe link does not work",
        &format!("<p>{reason}. Please use the link from the most recent email.</p>"),
    )
}

/// The token, checked; the page to answer when it is missing or wrong.
fn checked_user(
    deps: &ApiDeps,
    query: &TokenQuery,
) -> Result<(uuid::Uuid, String), (StatusCode, Html<String>)> {
    let token = query
        .token
        .as_deref()
        .ok_or_else(|| bad_link("The link has no token"))?;
    let user = deps
        .signer
        .verify(token)
        .map_err(|error| bad_link(&capitalised(&error.to_string())))?;
    Ok((user, token.trim().to_string()))
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

async fn confirm_page(
    State(deps): State<Arc<ApiDeps>>,
    Query(query): Query<TokenQuery>,
) -> (StatusCode, Html<String>) {
    let token = match checked_user(&deps, &query) {
        Ok((_, token)) => token,
        Err(answer) => return answer,
    };
    // `verify` accepts only 43 base64url characters, which need no escaping in an attribute.
    page(
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<p>Stop receiving {product}'s onboarding emails?</p>\
             <form method=\"post\" action=\"unsubscribe?token={token}\">\
             <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
             <button type=\"submit\">Unsubscribe</button></form>",
            product = deps.product
        ),
    )
}

async fn unsubscribe_post(
    State(deps): State<Arc<ApiDeps>>,
    Query(query): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let user = match checked_user(&deps, &query) {
        Ok((user, _)) => user,
        Err(answer) => return answer.into_response(),
    };
    let one_click = form_urlencoded::parse(&body)
        .any(|(key, value)| key == "List-Unsubscribe" && value == "One-Click");
    let method = if one_click {
        Method::OneClick
    } else {
        Method::Link
    };
    match unsubscribe(&deps.pool, user, method).await {
        Ok(outcome) => {
            tracing::info!(%user, ?method, ?outcome, "unsubscribe");
            let already = matches!(outcome, Unsubscribed::Already);
            page(
                StatusCode::OK,
                "You are unsubscribed",
                &format!(
                    "<p>{} You will not receive {product}'s onboarding emails any more.</p>",
                    if already {
                        "You had already unsubscribed."
                    } else {
                        "Done."
                    },
                    product = deps.product
                ),
            )
            .into_response()
        }
        Err(error) => {
            let transient = error.retry_class().is_transient();
            tracing::error!(%error, %user, transient, "unsubscribe not recorded");
            let status = if transient {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            let answer = page(
                status,
                "Please try again",
                "<p>We could not record your request just now. Nothing was changed; please try again in a minute.</p>",
            );
            if transient {
                (
                    [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())],
                    answer,
                )
                    .into_response()
            } else {
                answer.into_response()
            }
        }
    }
}

/// The email agent's routes.
pub fn router(deps: Arc<ApiDeps>) -> Router {
    let runs = shared::runs::RunLog::new(deps.pool.clone(), Agent::EmailApi);
    let routes = Router::new()
        .route("/webhooks/resend", post(receive_resend))
        .route(
            "/email/unsubscribe",
            get(confirm_page).post(unsubscribe_post),
        );
    runs.layer(shared::http::limit_body(routes, MAX_BODY_BYTES).with_state(deps))
}
