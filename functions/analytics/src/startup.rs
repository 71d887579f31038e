//! What PostHog's browser SDK asks for when a page loads, before it sends any event.
//!
//! * [`flags`] — `POST /flags/?v=2` (and the older `/decide/`): the person's feature flags.
//!   We evaluate none, so a known project token gets an empty set in the shape posthog-js
//!   reads (v2 `flags` and the v1 `featureFlags` maps, `errorsWhileComputingFlags: false`),
//!   plus the configuration it asks for with `config=true`; an unknown token is 401, as
//!   PostHog answers it.
//! * [`remote_config`] — `GET /array/{token}/config` (JSON) and `/array/{token}/config.js`
//!   (the same as a script): the project's settings. Everything optional is off (no
//!   session recording, surveys, heatmaps, site apps), so the SDK loads nothing more from
//!   us; events go to `/e/`.
//!
//! Both are public, as the project token is, and allowed from any origin (the router's
//! [`shared::http::public_cors`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shared::http::ApiError;
use uuid::Uuid;

use crate::events::quote;
use crate::tokens::{self, TokenKind};
use crate::{AnalyticsDeps, AnalyticsError, envelope, in_sdk_shape};

/// Largest `/flags` body once decoded: a person's properties, not events.
pub const MAX_FLAGS_BYTES: usize = 64 * 1024;

/// The settings every project of ours has, as posthog-js reads them.
fn settings() -> Value {
    json!({
        "supportedCompression": ["gzip", "gzip-js"],
        "autocapture_opt_out": false,
        "autocaptureExceptions": false,
        "capturePerformance": false,
        "captureDeadClicks": false,
        "analytics": { "endpoint": "/e/" },
        "elementsChainAsString": true,
        "sessionRecording": false,
        "heatmaps": false,
        "surveys": false,
        "toolbarParams": {},
        "siteApps": [],
        "isAuthenticated": false,
        "defaultIdentifiedOnly": true,
    })
}

async fn workspace_of(deps: &AnalyticsDeps, token: &str) -> Result<Option<Uuid>, ApiError> {
    let found = tokens::workspaces_of(&deps.pool, &[token], TokenKind::PosthogProject)
        .await
        .map_err(AnalyticsError::from)?;
    Ok(found.get(token).copied())
}

/// The project token a `/flags` body names (`token`, or `api_key` in older SDKs).
fn flags_token(body: &[u8], envelope: crate::decode::Envelope<'_>) -> Result<String, ApiError> {
    let refused = |reason: String| in_sdk_shape(ApiError::bad_request(reason));
    let decoded = crate::decode::decode(body, envelope, MAX_FLAGS_BYTES).map_err(|error| {
        if matches!(error, crate::decode::DecodeError::TooLarge(_)) {
            in_sdk_shape(ApiError::payload_too_large(error.to_string()))
        } else {
            refused(error.to_string())
        }
    })?;
    let request: Value = serde_json::from_slice(&decoded)
        .map_err(|error| refused(format!("the body is not JSON: {error}")))?;
    ["token", "api_key"]
        .iter()
        .find_map(|key| request.get(*key).and_then(Value::as_str))
        .filter(|token| !token.is_empty())
        .map(str::to_string)
        .ok_or_else(|| refused("no project token (token or api_key)".into()))
}

/// `POST /flags/`, `/decide/`.
pub async fn flags(
    State(deps): State<Arc<AnalyticsDeps>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let token = flags_token(&body, envelope(&headers, &query))?;
    if workspace_of(&deps, &token).await?.is_none() {
        return Err(unknown(&token));
    }
    let mut answer = json!({
        "flags": {},
        "featureFlags": {},
        "featureFlagPayloads": {},
        "errorsWhileComputingFlags": false,
        "quotaLimited": [],
        "requestId": Uuid::new_v4(),
    });
    if query.get("config").is_some_and(|config| config == "true") {
        merge(&mut answer, settings());
    }
    Ok(axum::Json(answer).into_response())
}

/// `GET /array/{token}/config` and `/array/{token}/config.js`.
pub async fn remote_config(
    State(deps): State<Arc<AnalyticsDeps>>,
    Path((token, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let script = match file.as_str() {
        "config" => false,
        "config.js" => true,
        _ => return Err(ApiError::not_found("no such file")),
    };
    if workspace_of(&deps, &token).await?.is_none() {
        return Err(unknown(&token));
    }
    let mut config = json!({ "token": token, "hasFeatureFlags": false });
    merge(&mut config, settings());
    if !script {
        return Ok(axum::Json(config).into_response());
    }
    // As PostHog serves it: the config registered on the page for the SDK to pick up.
    let script = format!(
        "(function() {{ window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {{}}; \
         window._POSTHOG_REMOTE_CONFIG[{token}] = {{ config: {config}, siteApps: [] }}; }})();",
        token = Value::from(token.as_str()),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        script,
    )
        .into_response())
}

fn unknown(token: &str) -> ApiError {
    in_sdk_shape(ApiError::unauthorized(format!(
        "unknown project token {}",
        quote(token)
    )))
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Envelope;

    #[test]
    fn the_token_comes_from_any_encoding_of_the_body() {
        use base64::Engine;
        let json = br#"{"token":"phc_x","distinct_id":"d"}"#;
        let base64 = base64::engine::general_purpose::STANDARD.encode(json);
        let form = format!("data={}", urlencode(&base64));
        let form_envelope = Envelope {
            content_type: Some("application/x-www-form-urlencoded"),
            ..Envelope::default()
        };
        for (body, envelope) in [
            (json.to_vec(), Envelope::default()),
            (base64.clone().into_bytes(), Envelope::default()),
            (form.into_bytes(), form_envelope),
        ] {
            assert_eq!(flags_token(&body, envelope).unwrap(), "phc_x");
        }
        let old = br#"{"api_key":"phc_y"}"#;
        assert_eq!(flags_token(old, Envelope::default()).unwrap(), "phc_y");
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"token":""}"#,
            br#"{"token":7}"#,
        ] {
            let refused = flags_token(bad, Envelope::default()).unwrap_err();
            assert_eq!(refused.status(), axum::http::StatusCode::BAD_REQUEST);
        }
        let huge = format!(
            r#"{{"token":"phc_x","pad":"{}"}}"#,
            "x".repeat(MAX_FLAGS_BYTES)
        );
        assert_eq!(
            flags_token(huge.as_bytes(), Envelope::default())
                .unwrap_err()
                .status(),
            axum::http::StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    fn urlencode(text: &str) -> String {
        form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }
}
