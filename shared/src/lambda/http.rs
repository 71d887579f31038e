//! HTTP functions: every agent exposes its routes as an axum [`Router`], which the local
//! stack mounts on one port and Lambda serves one API Gateway event at a time. The same router
//! in both places means the paths, status codes and bodies a test sees are the ones deployed.
//!
//! [`edge`] wraps every agent's router in what keeps one request's failure inside that
//! request: a panic becomes a 500 and the process goes on serving (the release profile
//! unwinds rather than aborts for this reason), and a request that cannot finish within
//! [`REQUEST_DEADLINE`] is answered 503 with `Retry-After` before API Gateway's own 29 s
//! cut-off would answer a bare 504.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::LambdaError;

/// How long a request may take before it is answered 503 (API Gateway gives up at 29 s).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(25);

/// Serves `router` as a Lambda behind an API Gateway HTTP API.
pub async fn serve(router: Router) -> Result<(), LambdaError> {
    lambda_http::run(router).await
}

/// `router` with panics caught and a deadline on every request.
pub fn edge(router: Router) -> Router {
    edge_with_deadline(router, REQUEST_DEADLINE)
}

/// [`edge`] with another deadline (tests shorten it).
pub fn edge_with_deadline(router: Router, deadline: Duration) -> Router {
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| async move {
                match tokio::time::timeout(deadline, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => {
                        tracing::error!(
                            deadline_ms = deadline.as_millis() as u64,
                            "request exceeded its deadline"
                        );
                        unavailable("the request took too long; retry later", 5)
                    }
                }
            },
        ))
}

/// A 503 with `Retry-After`: the one answer for "our fault, and it may pass".
pub fn unavailable(reason: &str, retry_after_secs: u32) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, retry_after_secs.to_string())],
        axum::Json(json!({ "error": reason, "retryable": true })),
    )
        .into_response()
}

fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!(
        panic = %crate::telemetry::panic_message(panic.as_ref()),
        "a request handler panicked; the process goes on"
    );
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({ "error": "internal error", "retryable": true })),
    )
        .into_response()
}
