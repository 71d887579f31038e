//! A Stripe snapshot event as the webhook receives it: parsed, checked for what the mirror
//! needs, and nothing more.

use serde_json::Value;

use crate::mirror::{self, Route};
use crate::{BillingError, MAX_ID_BYTES, ordering};

/// A parsed snapshot event.
#[derive(Debug, Clone)]
pub struct StripeEvent {
    pub id: String,
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
    pub account: Option<String>,
    pub api_version: Option<String>,
    pub payload: Value,
}

impl StripeEvent {
    /// Whether this is a backfill's read of the API ([`Self::api_read`]), not a webhook.
    pub fn is_api_read(&self) -> bool {
        self.id.starts_with(ordering::API_READ_PREFIX)
    }

    /// The `SET LOCAL`s of a transaction applying events: the request's time limits, and —
    /// for a backfill's API reads only — an asynchronous commit. A read lost in a crash is
    /// read again: the backfill's cursor is committed durably after its page, and that
    /// commit flushes the WAL of every read before it, so a crash can lose only reads whose
    /// page the cursor does not cover yet. A webhook's commit stays durable, since Stripe is
    /// answered 2xx after it and never sends the event again.
    pub fn transaction_settings(events: &[&StripeEvent]) -> String {
        let mut settings = shared::db::Budget::REQUEST.sql();
        if !events.is_empty() && events.iter().all(|event| event.is_api_read()) {
            settings.push_str("; SET LOCAL synchronous_commit = off");
        }
        settings
    }

    pub fn parse(payload: &[u8]) -> Result<Self, BillingError> {
        let payload: Value = serde_json::from_slice(payload)
            .map_err(|error| BillingError::Malformed(error.to_string()))?;
        let text = |key: &str| payload.get(key).and_then(Value::as_str).map(str::to_string);
        let missing =
            |key: &str| BillingError::Malformed(format!("`{key}` is missing or of the wrong type"));
        if payload.get("object").and_then(Value::as_str) != Some("event") {
            return Err(BillingError::Malformed(
                "`object` is not \"event\" (thin events are not supported)".into(),
            ));
        }
        if !payload
            .pointer("/data/object")
            .is_some_and(Value::is_object)
        {
            return Err(missing("data.object"));
        }
        let id = text("id").ok_or_else(|| missing("id"))?;
        if id.len() > MAX_ID_BYTES {
            return Err(BillingError::Malformed(format!(
                "`id` is longer than {MAX_ID_BYTES} bytes"
            )));
        }
        if let Some(object_id) = payload.pointer("/data/object/id").and_then(Value::as_str)
            && object_id.len() > MAX_ID_BYTES
        {
            return Err(BillingError::Malformed(format!(
                "`data.object.id` is longer than {MAX_ID_BYTES} bytes"
            )));
        }
        Ok(Self {
            id,
            event_type: text("type").ok_or_else(|| missing("type"))?,
            created: payload
                .get("created")
                .and_then(Value::as_i64)
                .ok_or_else(|| missing("created"))?,
            livemode: payload
                .get("livemode")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            account: text("account"),
            api_version: text("api_version"),
            payload,
        })
    }

    /// An API read of `object` at second `read_at` (the backfill), as an event of type
    /// `api_read.{object}` whose id ([`ordering::API_READ_PREFIX`]) and `created` (the read's
    /// second) let the ordering rule tell it from Stripe's events. `api_version` is the one
    /// the API answered in.
    pub fn api_read(
        object: Value,
        read_at: i64,
        api_version: Option<&str>,
    ) -> Result<Self, BillingError> {
        let kind = object
            .get("object")
            .and_then(Value::as_str)
            .ok_or_else(|| BillingError::Malformed("the object has no `object` type".into()))?;
        let object_id = object
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| BillingError::Malformed(format!("a `{kind}` without an `id`")))?;
        let id = format!("{}{read_at}_{object_id}", ordering::API_READ_PREFIX);
        if id.len() > MAX_ID_BYTES {
            return Err(BillingError::Malformed(format!(
                "`id` {object_id:?} is too long for a Stripe id"
            )));
        }
        let event_type = mirror::api_read_type(kind);
        let livemode = object
            .get("livemode")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let payload = serde_json::json!({
            "id": id, "object": "event", "type": event_type, "created": read_at,
            "livemode": livemode, "api_version": api_version, "data": {"object": object},
        });
        Ok(Self {
            id,
            event_type,
            created: read_at,
            livemode,
            account: None,
            api_version: api_version.map(str::to_string),
            payload,
        })
    }

    /// The table this event writes, and whether it deletes the object; `None` for types kept
    /// in the ledger only.
    pub fn route(&self) -> Option<Route> {
        mirror::route(&self.event_type)
            .or_else(|| mirror::api_read_route(&self.event_type, self.object()))
    }

    pub fn object(&self) -> &Value {
        self.payload.pointer("/data/object").unwrap_or(&Value::Null)
    }

    pub fn previous_attributes(&self) -> Option<&Value> {
        self.payload.pointer("/data/previous_attributes")
    }

    pub(crate) fn object_id(&self) -> Option<&str> {
        self.object().get("id").and_then(Value::as_str)
    }

    pub(crate) fn version(&self, deletes: bool) -> ordering::Version<'_> {
        ordering::Version {
            event_id: &self.id,
            created: self.created,
            object: self.object(),
            previous_attributes: self.previous_attributes(),
            deletes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_backfills_reads_commit_asynchronously() {
        let read = StripeEvent::api_read(
            json!({"id": "cus_1", "object": "customer"}),
            1_796_688_000,
            None,
        )
        .unwrap();
        let webhook = StripeEvent::parse(
            br#"{"id": "evt_1", "object": "event", "type": "customer.created", "created": 1796688000,
                 "livemode": false, "data": {"object": {"id": "cus_1", "object": "customer"}}}"#,
        )
        .unwrap();
        assert!(read.is_api_read() && !webhook.is_api_read());
        let relaxed = "synchronous_commit = off";
        assert!(StripeEvent::transaction_settings(&[&read, &read]).contains(relaxed));
        assert!(!StripeEvent::transaction_settings(&[&webhook]).contains(relaxed));
        assert!(
            !StripeEvent::transaction_settings(&[&read, &webhook]).contains(relaxed),
            "a webhook among them keeps the commit durable"
        );
        assert!(!StripeEvent::transaction_settings(&[]).contains(relaxed));
        assert!(StripeEvent::transaction_settings(&[&webhook]).contains("statement_timeout"));
    }
}
