//! Mixpanel's ingestion: `/track` for untrusted clients, `/import` for servers.
//!
//! * [`track`] — each event names its project by `properties.token` (public, as in every
//!   browser); events older than [`TRACK_BACKDATE`] are refused, as Mixpanel keeps "the last
//!   5 days only" there. Answers `{"status": 1, "error": null}`.
//! * [`import`] — authenticated before the body is even decoded, as Mixpanel authenticates
//!   it: the project's API secret as the Basic user name (empty password), or a service
//!   account (`username:secret`) with `?project_id=`. The public project token alone is
//!   refused. An event may still name its project token; one that names another
//!   workspace's project is refused, so a credential cannot write into someone else's data.
//!   Any time after 1971 is accepted. Partial success is 400 with `num_records_imported` and
//!   `failed_records`, as Mixpanel answers it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use shared::http::ApiError;
use uuid::Uuid;

use crate::events::{self, Backdate, Event, Read, Rejected, Source, TRACK_BACKDATE, quote};
use crate::tokens::{self, IMPORT_REFUSED, ImportCredentials, TokenKind};
use crate::{
    AnalyticsDeps, AnalyticsError, envelope, in_sdk_shape, project_workspaces, read_body, reported,
    store_events,
};

/// `POST /track`.
pub async fn track(
    State(deps): State<Arc<AnalyticsDeps>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    ingest(&deps, body, &headers, &query, None).await
}

/// `POST /import`.
pub async fn import(
    State(deps): State<Arc<AnalyticsDeps>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let refused = |reason: &str| in_sdk_shape(ApiError::unauthorized(reason));
    let credentials = basic_credentials(&headers).ok_or_else(|| {
        refused("/import needs Basic auth: the project's API secret, or a service account with ?project_id=")
    })?;
    let project_id = query.get("project_id").map(String::as_str);
    let credentials = ImportCredentials::parse(&credentials, project_id)
        .ok_or_else(|| refused(IMPORT_REFUSED))?;
    let workspace = tokens::import_workspace(&deps.pool, &deps.keys, &credentials)
        .await
        .map_err(AnalyticsError::from)?
        .map_err(refused)?;
    ingest(&deps, body, &headers, &query, Some(workspace)).await
}

/// The decoded `user:password` of a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(decoded).ok()
}

fn insert_id_of(event: &Event) -> Option<String> {
    events::text(event.properties.get("$insert_id"))
        .map(|insert_id| shared::text::clip(&insert_id, 64).to_string())
}

fn token_refusal(index: usize, event: &Event, reason: String) -> Rejected {
    Rejected {
        insert_id: insert_id_of(event),
        field: "properties.token",
        ..Rejected::new(index, reason)
    }
}

/// Mixpanel's `failed_records` entries.
fn failed_records(rejected: &[Rejected]) -> Value {
    Value::Array(
        rejected
            .iter()
            .map(|rejection| {
                json!({
                    "index": rejection.index,
                    "insert_id": rejection.insert_id,
                    "field": rejection.field,
                    "message": rejection.reason,
                })
            })
            .collect(),
    )
}

/// Groups accepted `/track` events by the workspace their token names, refusing the rest;
/// `Err` is the answer when no token named is known.
async fn by_project_token(
    deps: &AnalyticsDeps,
    accepted: Vec<(usize, Event)>,
    rejected: &mut Vec<Rejected>,
) -> Result<BTreeMap<Uuid, Vec<(usize, Event)>>, ApiError> {
    let named: Vec<String> = accepted
        .iter()
        .filter_map(|(_, event)| event.token.clone())
        .collect();
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    let workspaces = project_workspaces(deps, &named, TokenKind::MixpanelProject).await?;
    let mut grouped: BTreeMap<Uuid, Vec<(usize, Event)>> = BTreeMap::new();
    for (index, event) in accepted {
        match event.token.as_ref().map(|token| workspaces.get(token)) {
            Some(Some(workspace)) => grouped.entry(*workspace).or_default().push((index, event)),
            Some(None) => {
                let reason = format!(
                    "unknown project token {}",
                    quote(event.token.as_deref().unwrap_or_default())
                );
                rejected.push(token_refusal(index, &event, reason));
            }
            None => rejected.push(token_refusal(index, &event, "no project token".into())),
        }
    }
    Ok(grouped)
}

/// Keeps the accepted `/import` events that name no project token or one of `workspace`'s.
async fn within_workspace(
    deps: &AnalyticsDeps,
    workspace: Uuid,
    accepted: Vec<(usize, Event)>,
    rejected: &mut Vec<Rejected>,
) -> Result<Vec<(usize, Event)>, ApiError> {
    let named: Vec<&str> = accepted
        .iter()
        .filter_map(|(_, event)| event.token.as_deref())
        .collect();
    let own = tokens::tokens_of(&deps.pool, workspace, &named, TokenKind::MixpanelProject)
        .await
        .map_err(AnalyticsError::from)?;
    let mut kept = Vec::with_capacity(accepted.len());
    for (index, event) in accepted {
        match &event.token {
            Some(token) if !own.contains(token) => {
                let reason = format!(
                    "project token {} is not a project these credentials may import into",
                    quote(token)
                );
                rejected.push(token_refusal(index, &event, reason));
            }
            _ => kept.push((index, event)),
        }
    }
    Ok(kept)
}

/// `/track` (`import` = `None`) and `/import` into the authenticated workspace.
async fn ingest(
    deps: &AnalyticsDeps,
    body: Bytes,
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    import: Option<Uuid>,
) -> Result<Response, ApiError> {
    let backdate = match import {
        Some(_) => Backdate::Since1971,
        None => TRACK_BACKDATE,
    };
    let envelope = envelope(headers, query);
    let (
        _,
        Read {
            accepted,
            mut rejected,
        },
    ) = read_body(body, envelope, Source::Mixpanel, deps.clock.now(), backdate)?;
    let grouped = match import {
        Some(workspace) => BTreeMap::from([(
            workspace,
            within_workspace(deps, workspace, accepted, &mut rejected).await?,
        )]),
        None => by_project_token(deps, accepted, &mut rejected).await?,
    };
    let mut imported = 0usize;
    for (workspace, events) in grouped {
        let accepted =
            store_events(deps, workspace, Source::Mixpanel, events, &mut rejected).await?;
        imported = imported.saturating_add(accepted);
    }
    let (listed, count) = reported(rejected);
    if import.is_some() {
        let status = if count == 0 {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut answer = json!({
            "code": status.as_u16(),
            "status": u8::from(count == 0),
            "num_records_imported": imported,
        });
        if count > 0 {
            answer["error"] = json!("some data points in the request failed validation");
            answer["failed_records"] = failed_records(&listed);
            answer["num_records_failed"] = json!(count);
        }
        return Ok((status, axum::Json(answer)).into_response());
    }
    if imported == 0
        && let Some(first) = listed.first()
    {
        return Err(in_sdk_shape(ApiError::bad_request(first.reason.clone()))
            .with_field("failed_records", failed_records(&listed))
            .with_field("num_records_failed", count));
    }
    // Mixpanel answers a bare `1` unless asked for `verbose`, which its SDKs send in the form
    // body as often as in the query; they then read `status` from JSON. JSON always serves both.
    let mut answer = json!({ "status": 1, "error": null });
    if count > 0 {
        answer["failed_records"] = failed_records(&listed);
        answer["num_records_failed"] = json!(count);
    }
    Ok(axum::Json(answer).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn credentials_of(value: &[u8]) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_bytes(value).ok()?);
        basic_credentials(&headers)
    }

    #[test]
    fn basic_credentials_are_read_as_sent() {
        assert_eq!(
            credentials_of(b"Basic c2VjcmV0Og==").as_deref(),
            Some("secret:")
        );
        assert_eq!(
            credentials_of(b"basic  c2VjcmV0Og== ").as_deref(),
            Some("secret:")
        );
        assert_eq!(credentials_of(b"Bearer c2VjcmV0Og=="), None);
        assert_eq!(credentials_of(b"Basic %%%"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_authorization_header_is_credentials_or_none(
            value in proptest::collection::vec(any::<u8>(), 0..80),
            encoded in proptest::collection::vec(any::<u8>(), 0..60),
        ) {
            let _ = credentials_of(&value);
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(&encoded)
            );
            if let Some(credentials) = credentials_of(basic.as_bytes()) {
                let parsed = ImportCredentials::parse(&credentials, Some("1"));
                prop_assert_eq!(parsed.is_none(), credentials.split(':').next() == Some(""));
            }
        }
    }
}
