//! Meta's refusals: every error, from a missing token to throttling, is a Graph API
//! `{"error":{"message","type","code","error_subcode","is_transient","fbtrace_id"}}`
//! body. [`GraphError`] names what varies; [`MetaState::error`] writes it with a fresh
//! `fbtrace_id`.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::faults::MetaState;
use crate::reply::json_body;
use crate::seeded::mix64;

/// One Graph API error.
pub(super) struct GraphError<'a> {
    status: StatusCode,
    message: &'a str,
    kind: &'static str,
    code: u32,
    subcode: Option<u32>,
    transient: bool,
}

impl<'a> GraphError<'a> {
    /// An HTTP 400 `OAuthException`: most refusals, of tokens and of parameters alike.
    pub(super) fn oauth(code: u32, message: &'a str) -> Self {
        GraphError {
            status: StatusCode::BAD_REQUEST,
            message,
            kind: "OAuthException",
            code,
            subcode: None,
            transient: false,
        }
    }

    /// An HTTP 400 `GraphMethodException`: the request asks for what it may not have.
    pub(super) fn method(code: u32, message: &'a str) -> Self {
        GraphError {
            kind: "GraphMethodException",
            ..GraphError::oauth(code, message)
        }
    }

    pub(super) fn subcode(self, subcode: u32) -> Self {
        GraphError {
            subcode: Some(subcode),
            ..self
        }
    }

    /// Marks the error `is_transient`: retrying later may succeed.
    pub(super) fn transient(self) -> Self {
        GraphError {
            transient: true,
            ..self
        }
    }

    pub(super) fn status(self, status: StatusCode) -> Self {
        GraphError { status, ..self }
    }
}

impl MetaState {
    pub(super) fn error(&self, error: GraphError<'_>) -> Response {
        let mut body = json!({
            "message": error.message,
            "type": error.kind,
            "code": error.code,
            "fbtrace_id": self.trace_id(),
        });
        if let Some(subcode) = error.subcode {
            body["error_subcode"] = json!(subcode);
        }
        if error.transient {
            body["is_transient"] = json!(true);
        }
        json_body(error.status, &json!({ "error": body }))
    }

    /// The code 100 refusal of a parameter.
    pub(super) fn invalid(&self, message: &str) -> Response {
        self.error(GraphError::oauth(100, message))
    }

    fn trace_id(&self) -> String {
        let n = self.traces.fetch_add(1, Ordering::Relaxed);
        URL_SAFE_NO_PAD.encode(mix64(n ^ 0xFB).to_be_bytes())
    }
}
