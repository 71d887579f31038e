//! PostHog's two ways in: the capture API its SDKs call, and the HTTP Webhook destination.
//!
//! * [`capture`] — public: the project token in the body (or each event) names the
//!   workspace. Events are read one by one ([`crate::events::read`]), grouped by the
//!   workspace their token names, and stored; the answer lists the first rejections and
//!   counts them. Backdating is limited to [`CAPTURE_BACKDATE`].
//! * [`webhook`] — authenticated by the workspace's secret before the body is read. A
//!   delivery that is JSON but can never be stored (a lone surrogate, `\u0000`, a number out
//!   of range, a value the database refuses) is acknowledged 200 and kept in the quarantine
//!   (source `posthog-webhook`), since PostHog would otherwise retry it for hours; one that is
//!   not JSON or not an event is 400 with the reason, for whoever configured the destination.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shared::http::ApiError;
use shared::quarantine::{self, Quarantined};
use shared::text::clip;
use uuid::Uuid;

use crate::events::{
    self, Backdate, CAPTURE_BACKDATE, Event, EventError, POSTHOG_LIMITS, Read, Rejected, Source,
    quote,
};
use crate::json::{self, Budget};
use crate::tokens::{self, TokenKind};
use crate::{
    AnalyticsDeps, AnalyticsError, MAX_PARSED_BYTES, NOT_UTF8, envelope, in_sdk_shape,
    project_workspaces, read_body, reported, store_events,
};

const NO_TOKEN: &str = "no project token (api_key, token or properties.token)";

/// `POST /batch/`, `/e/`, `/i/v0/e/`, `/capture/`.
pub async fn capture(
    State(deps): State<Arc<AnalyticsDeps>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let now = deps.clock.now();
    let envelope = envelope(&headers, &query);
    let (
        batch_token,
        Read {
            accepted,
            mut rejected,
        },
    ) = read_body(body, envelope, Source::Posthog, now, CAPTURE_BACKDATE)?;

    let mut by_token: BTreeMap<String, Vec<(usize, Event)>> = BTreeMap::new();
    for (index, event) in accepted {
        match event.token.clone().or_else(|| batch_token.clone()) {
            Some(token) => by_token.entry(token).or_default().push((index, event)),
            None => rejected.push(Rejected::new(index, NO_TOKEN)),
        }
    }
    let named: Vec<&str> = by_token.keys().map(String::as_str).collect();
    let workspaces = project_workspaces(&deps, &named, TokenKind::PosthogProject).await?;
    let mut by_workspace: BTreeMap<Uuid, Vec<(usize, Event)>> = BTreeMap::new();
    for (token, events) in by_token {
        match workspaces.get(&token) {
            Some(workspace) => by_workspace.entry(*workspace).or_default().extend(events),
            None => rejected.extend(events.into_iter().map(|(index, _)| {
                Rejected::new(index, format!("unknown project token {}", quote(&token)))
            })),
        }
    }
    let mut stored = 0usize;
    for (workspace, events) in by_workspace {
        let accepted =
            store_events(&deps, workspace, Source::Posthog, events, &mut rejected).await?;
        stored = stored.saturating_add(accepted);
    }
    let (listed, count) = reported(rejected);
    if stored == 0 && count > 0 {
        return Err(in_sdk_shape(ApiError::bad_request("no event was valid"))
            .with_field("rejected", json!(listed))
            .with_field("rejected_count", count));
    }
    let mut answer = json!({ "status": 1 });
    if count > 0 {
        answer["rejected"] = json!(listed);
        answer["rejected_count"] = json!(count);
    }
    Ok(axum::Json(answer).into_response())
}

fn presented_secret(headers: &HeaderMap) -> Option<&str> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    header("x-webhook-secret")
        .or_else(|| header("authorization").and_then(|value| value.strip_prefix("Bearer ")))
        .filter(|secret| !secret.is_empty())
}

/// The sender's id of a delivery, for the quarantine: the event's `uuid` when it can be read
/// as a string, else a UUID derived from the body's bytes.
fn delivery_key(text: &str, body: &[u8]) -> String {
    let field = |text: &'_ str, name: &str| -> Option<String> {
        json::fields(text, &[name])
            .ok()?
            .into_iter()
            .next()
            .flatten()
            .map(str::to_string)
    };
    let uuid = field(text, "event")
        .and_then(|event| field(&event, "uuid"))
        .and_then(|raw| serde_json::from_str::<String>(&raw).ok());
    match uuid {
        Some(uuid) => format!("uuid:{}", clip(&uuid, 100)),
        None => format!("body:{}", events::derived_id_of_bytes(body)),
    }
}

/// Acknowledges a delivery that can never be stored and keeps it, with the reason.
async fn quarantined(
    deps: &AnalyticsDeps,
    key: &str,
    reason: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let item = Quarantined {
        source: "posthog-webhook",
        key,
        reason,
        payload: body,
    };
    quarantine::keep(&deps.pool, item)
        .await
        .map_err(AnalyticsError::from)?;
    tracing::warn!(
        key,
        reason,
        "a PostHog delivery that cannot be stored was quarantined"
    );
    let answer = json!({ "status": 1, "outcome": "quarantined", "reason": reason });
    Ok(axum::Json(answer).into_response())
}

/// `POST /webhooks/posthog`.
pub async fn webhook(
    State(deps): State<Arc<AnalyticsDeps>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let refused = |error: ApiError| Err(in_sdk_shape(error));
    let Some(secret) = presented_secret(&headers) else {
        return refused(ApiError::unauthorized(
            "missing webhook secret (Authorization: Bearer … or X-Webhook-Secret)",
        ));
    };
    let workspace = tokens::workspace_for_webhook_secret(&deps.pool, &deps.keys, secret)
        .await
        .map_err(AnalyticsError::from)?;
    let Some(workspace) = workspace else {
        return refused(ApiError::unauthorized("wrong webhook secret"));
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return refused(ApiError::bad_request(NOT_UTF8));
    };
    const SHAPE: &str = "expected {\"event\": {…}, \"person\": {…}}";
    if !json::is_one_value(text) {
        return refused(ApiError::bad_request(format!("{SHAPE}: not JSON")));
    }
    let mut budget = Budget::new(MAX_PARSED_BYTES);
    let payload = match json::value(text, POSTHOG_LIMITS, &mut budget) {
        Ok((payload, _)) => payload,
        Err(error) => {
            return quarantined(&deps, &delivery_key(text, &body), &error.to_string(), &body).await;
        }
    };
    let Value::Object(mut payload) = payload else {
        return refused(ApiError::bad_request(SHAPE));
    };
    let Some(mut raw) = payload.remove("event") else {
        return refused(ApiError::bad_request(format!("{SHAPE}: no `event`")));
    };
    if let (Some(set), Some(object)) = (
        payload
            .get("person")
            .and_then(|person| person.get("properties")),
        raw.as_object_mut(),
    ) {
        object.entry("$set").or_insert_with(|| set.clone());
    }
    // An authenticated destination may backfill history, as `/import` may.
    let event = match events::posthog_event(raw, deps.clock.now(), Backdate::Since1971) {
        Ok(event) => event,
        Err(EventError::Unstorable(reason)) => {
            return quarantined(&deps, &delivery_key(text, &body), &reason, &body).await;
        }
        Err(EventError::Invalid(reason)) => return refused(ApiError::bad_request(reason)),
    };
    let key = format!("uuid:{}", event.id);
    let mut refusals = Vec::new();
    store_events(
        &deps,
        workspace,
        Source::Posthog,
        vec![(0, event)],
        &mut refusals,
    )
    .await?;
    match refusals.first() {
        Some(refusal) => quarantined(&deps, &key, &refusal.reason, &body).await,
        None => Ok(axum::Json(json!({ "status": 1 })).into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_delivery_is_known_by_its_uuid_or_its_bytes() {
        let text = r#"{"event": {"uuid": "abc", "x": "\ud800"}}"#;
        assert_eq!(delivery_key(text, text.as_bytes()), "uuid:abc");
        let unreadable = r#"{"event": {"uuid": "\ud800"}}"#;
        let key = delivery_key(unreadable, unreadable.as_bytes());
        assert!(key.starts_with("body:"), "{key}");
        assert_eq!(key, delivery_key(unreadable, unreadable.as_bytes()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_body_has_a_short_delivery_key(text in "\\PC{0,300}") {
            let key = delivery_key(&text, text.as_bytes());
            prop_assert!(key.len() <= 105, "{}", key);
        }
    }
}
