//! `POST /webhooks/stripe`: the signature checked against every endpoint secret, the event
//! ingested, and the outcome answered as Stripe reads it (what each failure answers is said
//! once, by `From<BillingError> for ApiError`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use shared::agents::Agent;
use shared::http::ApiError;
use shared::runs::RunLog;

use crate::{BillingDeps, BillingError, MAX_BODY_BYTES, ingest};

impl From<BillingError> for ApiError {
    fn from(error: BillingError) -> Self {
        match error {
            BillingError::Malformed(reason) => {
                ApiError::bad_request(format!("malformed event: {reason}"))
            }
            error => ApiError::failed_to_record("the event", &error),
        }
    }
}

async fn receive_stripe(
    State(deps): State<Arc<BillingDeps>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    let secrets: Vec<&str> = deps.webhook_secrets.iter().map(String::as_str).collect();
    shared::webhook::verify_stripe(&body, signature, &secrets, deps.clock.now().timestamp())
        .map_err(|error| ApiError::bad_request(format!("Stripe-Signature: {error}")))?;
    let outcome = ingest(&deps, &body).await?;
    Ok(Json(json!({ "received": true, "outcome": outcome })))
}

/// The billing agent's routes, recorded in the run log.
pub fn router(deps: Arc<BillingDeps>) -> Router {
    let runs = RunLog::new(deps.pool.clone(), Agent::Billing);
    let routes = Router::new().route("/webhooks/stripe", post(receive_stripe));
    runs.layer(shared::http::limit_body(routes, MAX_BODY_BYTES).with_state(deps))
}
