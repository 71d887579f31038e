//! Mixpanel's people updates: `POST /engage`, as mixpanel-browser sends them when a page
//! calls `mixpanel.people.set`, `set_once` or `unset` (a `data=` form field, base64 JSON,
//! one update or an array of them, each naming `$token` and `$distinct_id`).
//!
//! Each update changes the audience person its project's workspace knows by that distinct
//! id, by the rules of [`shared::people`]; updates are applied in the order sent, all of one
//! workspace in one transaction. Operations we do not keep (`$add`, `$append`, `$union`,
//! `$remove`, `$delete`) are acknowledged and ignored — a person's numbers come from events.
//! An update without a known token or a distinct id is listed in `failed_records` while the
//! others are applied; a request none of whose tokens is known is 401.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use shared::db::{Budget, DbContext, begin};
use shared::http::ApiError;
use shared::people::People;
use shared::retry::{RetryPolicy, retry};
use uuid::Uuid;

use crate::decode::{DecodeError, decode};
use crate::events::{Rejected, kept_distinct_id, quote, text};
use crate::tokens::TokenKind;
use crate::{
    AnalyticsDeps, AnalyticsError, Unreadable, envelope, in_sdk_shape, project_workspaces,
};

/// Largest body once decoded: people updates are small.
pub const MAX_ENGAGE_BYTES: usize = 1024 * 1024;
/// Most updates in one request (Mixpanel's own batch limit for people is 2,000).
pub const MAX_UPDATES: usize = 2000;

/// One readable update: its position, token, distinct id and operations.
struct Update {
    index: usize,
    token: String,
    distinct_id: String,
    operations: Map<String, Value>,
}

fn updates_of(text: &[u8]) -> Result<Vec<Value>, ApiError> {
    let refused = |reason: String| in_sdk_shape(ApiError::bad_request(reason));
    let body: Value = serde_json::from_slice(text)
        .map_err(|error| refused(format!("the body is not JSON: {error}")))?;
    let updates = match body {
        Value::Array(updates) => updates,
        update @ Value::Object(_) => vec![update],
        _ => return Err(refused("expected an update or an array of updates".into())),
    };
    if updates.len() > MAX_UPDATES {
        return Err(in_sdk_shape(ApiError::payload_too_large(format!(
            "more than {MAX_UPDATES} updates in one request"
        ))));
    }
    Ok(updates)
}

fn read(index: usize, update: Value) -> Result<Update, Rejected> {
    let Value::Object(operations) = update else {
        return Err(Rejected::new(index, "an update must be an object"));
    };
    let token = text(operations.get("$token"))
        .filter(|token| !token.is_empty() && !token.contains('\0'))
        .ok_or_else(|| Rejected::new(index, "`$token` is missing"))?;
    let distinct_id = text(operations.get("$distinct_id"))
        .filter(|id| !id.is_empty())
        .map(kept_distinct_id)
        .ok_or_else(|| Rejected::new(index, "`$distinct_id` is missing"))?;
    if distinct_id.contains('\0') {
        return Err(Rejected::new(
            index,
            "`$distinct_id` holds \\u0000, which cannot be stored",
        ));
    }
    if let Some(path) = shared::text::unstorable(&Value::Object(operations.clone())) {
        return Err(Rejected::new(
            index,
            format!("`{path}` holds \\u0000, which cannot be stored"),
        ));
    }
    Ok(Update {
        index,
        token,
        distinct_id,
        operations,
    })
}

/// Applies `updates` of one workspace in one transaction, retrying what may pass.
async fn apply(
    deps: &AnalyticsDeps,
    workspace: Uuid,
    updates: &[Update],
) -> Result<(), AnalyticsError> {
    let mut people = People::new();
    for update in updates {
        people
            .entry(update.distinct_id.as_str())
            .or_default()
            .apply_operations(&update.operations);
    }
    retry(RetryPolicy::default(), || async {
        let mut client = deps.pool.get().await.context("check out a connection")?;
        let transaction = begin(&mut client, Budget::REQUEST).await?;
        shared::people::apply(&transaction, workspace, &people).await?;
        transaction
            .commit()
            .await
            .context("commit people updates")?;
        Ok::<_, AnalyticsError>(())
    })
    .await
}

/// `POST /engage`.
pub async fn engage(
    State(deps): State<Arc<AnalyticsDeps>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let decoded = decode(&body, envelope(&headers, &query), MAX_ENGAGE_BYTES)
        .map_err(|error: DecodeError| ApiError::from(Unreadable::Decode(error)))?;
    let updates = updates_of(&decoded)?;
    drop(decoded);
    let mut rejected = Vec::new();
    let mut readable = Vec::with_capacity(updates.len());
    for (index, update) in updates.into_iter().enumerate() {
        match read(index, update) {
            Ok(update) => readable.push(update),
            Err(rejection) => rejected.push(rejection),
        }
    }
    let named: Vec<&str> = readable
        .iter()
        .map(|update| update.token.as_str())
        .collect();
    let workspaces = project_workspaces(&deps, &named, TokenKind::MixpanelProject).await?;
    let mut by_workspace: BTreeMap<Uuid, Vec<Update>> = BTreeMap::new();
    for update in readable {
        match workspaces.get(&update.token) {
            Some(workspace) => by_workspace.entry(*workspace).or_default().push(update),
            None => rejected.push(Rejected::new(
                update.index,
                format!("unknown project token {}", quote(&update.token)),
            )),
        }
    }
    let mut applied = 0usize;
    for (workspace, updates) in &by_workspace {
        match apply(&deps, *workspace, updates).await {
            Ok(()) => applied = applied.saturating_add(updates.len()),
            Err(error) if error.is_refused_value() => {
                let reason = format!("the database refused it: {}", error.refused_reason());
                rejected.extend(
                    updates
                        .iter()
                        .map(|update| Rejected::new(update.index, &reason)),
                );
            }
            Err(error) => return Err(error.into()),
        }
    }
    let (listed, count) = crate::reported(rejected);
    let failed = || {
        Value::Array(
            listed
                .iter()
                .map(|rejection| json!({"index": rejection.index, "message": rejection.reason}))
                .collect(),
        )
    };
    if applied == 0 && count > 0 {
        let first = listed.first().map(|rejection| rejection.reason.clone());
        return Err(in_sdk_shape(ApiError::bad_request(
            first.unwrap_or_else(|| "no update was valid".into()),
        ))
        .with_field("failed_records", failed())
        .with_field("num_records_failed", count));
    }
    let mut answer = json!({ "status": 1, "error": null });
    if count > 0 {
        answer["failed_records"] = failed();
        answer["num_records_failed"] = json!(count);
    }
    Ok(axum::Json(answer).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_read_one_by_one() {
        let updates = updates_of(
            br#"[{"$token":"t","$distinct_id":"d","$set":{"a":1}},
                 {"$distinct_id":"d"}, {"$token":"t"}, 7,
                 {"$token":"t","$distinct_id":"d","$set":{"a":"\u0000"}},
                 {"$token":"t","$distinct_id":"d\u0000"}]"#,
        )
        .unwrap();
        let read: Vec<Result<String, String>> = updates
            .into_iter()
            .enumerate()
            .map(|(index, update)| {
                read(index, update)
                    .map(|update| update.distinct_id)
                    .map_err(|rejection| rejection.reason)
            })
            .collect();
        assert_eq!(read[0], Ok("d".into()));
        assert!(read[1].as_ref().unwrap_err().contains("$token"));
        assert!(read[2].as_ref().unwrap_err().contains("$distinct_id"));
        assert!(read[3].as_ref().unwrap_err().contains("object"));
        assert!(read[4].as_ref().unwrap_err().contains("/$set/a"));
        assert!(read[5].as_ref().unwrap_err().contains("\\u0000"));
        let one = updates_of(br#"{"$token":"t","$distinct_id":"d"}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert!(updates_of(b"[1,").is_err());
        assert!(updates_of(b"\"x\"").is_err());
        let too_many = format!("[{}]", vec!["{}"; MAX_UPDATES + 1].join(","));
        assert_eq!(
            updates_of(too_many.as_bytes()).unwrap_err().status(),
            axum::http::StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
