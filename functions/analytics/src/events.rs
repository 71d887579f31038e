//! From PostHog and Mixpanel payloads to one event shape.
//!
//! Each event is checked on its own: one without a name or a distinct id, or with a timestamp
//! we will not believe, is rejected with a reason while the rest of the batch is kept.
//!
//! Timestamps: more than one hour in the future, or before 1971, are rejected (as Mixpanel's
//! `/import` does) rather than clamped, so a client clock gone wrong is visible instead of
//! silently moving its events.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Namespace of the UUIDs derived from event contents.
const NAMESPACE: Uuid = Uuid::from_u128(0x6a9b_1c4e_2f0d_4b8a_9e73_5c21_d0f4_8e17);

/// Longest distinct id kept, as PostHog trims them.
const MAX_DISTINCT_ID: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Posthog,
    Mixpanel,
    /// Outcomes of the email agent's sends (delivered, opened…), recorded by that agent.
    Email,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Posthog => "posthog",
            Source::Mixpanel => "mixpanel",
            Source::Email => "email",
        }
    }
}

/// An accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Uuid,
    pub distinct_id: String,
    pub name: String,
    pub timestamp: DateTime<Utc>,
    pub properties: Value,
    /// The project token it named, if any.
    pub token: Option<String>,
}

/// Why one event of a batch was not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::Null | Value::String(_) => None,
        other => Some(other.to_string()),
    }
}

fn believable(timestamp: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if timestamp > now + Duration::hours(1) {
        return Err(format!(
            "timestamp {timestamp} is more than an hour in the future"
        ));
    }
    if timestamp.timestamp() < 31_536_000 {
        return Err(format!("timestamp {timestamp} is before 1971"));
    }
    Ok(timestamp)
}

/// A UUID derived from what makes two deliveries the same event.
pub fn derived_id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, parts.join("\u{1f}").as_bytes())
}

/// The events of a PostHog capture body (a single event, an array, or `{batch: [...]}`) with
/// the body-level token, if any.
pub fn posthog_batch(body: Value) -> Result<(Option<String>, Vec<Value>), String> {
    match body {
        Value::Array(events) => Ok((None, events)),
        Value::Object(mut object) => {
            let token = ["api_key", "token", "$token"]
                .iter()
                .find_map(|key| text(object.get(*key)));
            match object.remove("batch") {
                Some(Value::Array(events)) => Ok((token, events)),
                Some(_) => Err("`batch` is not an array".into()),
                None => Ok((token, vec![Value::Object(object)])),
            }
        }
        _ => Err("expected an event, an array of events or {\"batch\": [...]}".into()),
    }
}

/// One PostHog event.
pub fn posthog_event(raw: &Value, now: DateTime<Utc>) -> Result<Event, String> {
    let object = raw.as_object().ok_or("an event must be a JSON object")?;
    let properties = match object.get("properties") {
        Some(Value::Object(properties)) => properties.clone(),
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err("`properties` must be an object".into()),
    };
    let name = text(object.get("event")).ok_or("`event` (the event name) is missing")?;
    let mut distinct_id = text(object.get("distinct_id"))
        .or_else(|| text(object.get("$distinct_id")))
        .or_else(|| text(properties.get("distinct_id")))
        .ok_or("`distinct_id` is missing")?;
    distinct_id.truncate(MAX_DISTINCT_ID);
    let timestamp = match object.get("timestamp").and_then(Value::as_str) {
        Some(iso) => DateTime::parse_from_rfc3339(iso)
            .map_err(|error| format!("`timestamp` {iso:?} is not ISO 8601: {error}"))?
            .with_timezone(&Utc),
        None => now,
    };
    let timestamp = believable(timestamp, now)?;
    let token = ["api_key", "token", "$token"]
        .iter()
        .find_map(|key| text(object.get(*key)))
        .or_else(|| text(properties.get("token")))
        .or_else(|| text(properties.get("$token")));
    let id = match object.get("uuid").and_then(Value::as_str) {
        Some(uuid) => uuid
            .parse()
            .map_err(|_| format!("`uuid` {uuid:?} is not a UUID"))?,
        // No uuid: the same payload delivered twice is still one event.
        None => derived_id(&[
            "posthog",
            &name,
            &distinct_id,
            &timestamp.to_rfc3339(),
            &Value::Object(properties.clone()).to_string(),
        ]),
    };
    let mut properties = properties;
    // The webhook destination carries `$set` on the person rather than the event.
    if let Some(set) = object.get("$set").filter(|set| set.is_object()) {
        properties.entry("$set").or_insert_with(|| set.clone());
    }
    Ok(Event {
        id,
        distinct_id,
        name,
        timestamp,
        properties: Value::Object(properties),
        token,
    })
}

/// The events of a Mixpanel body: a JSON array, one object, or newline-delimited JSON.
pub fn mixpanel_batch(text: &[u8]) -> Result<Vec<Value>, String> {
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Array(events)) => Ok(events),
        Ok(object @ Value::Object(_)) => Ok(vec![object]),
        Ok(_) => Err("expected an event or an array of events".into()),
        Err(whole) => text
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| {
                serde_json::from_slice(line)
                    .map_err(|error| format!("not JSON ({whole}) nor NDJSON ({error})"))
            })
            .collect(),
    }
}

/// One Mixpanel event. Its id is derived from Mixpanel's deduplication key: the same
/// (event, distinct_id, time, $insert_id) is the same event.
pub fn mixpanel_event(raw: &Value, now: DateTime<Utc>) -> Result<Event, String> {
    let name = text(raw.get("event")).ok_or("`event` (the event name) is missing")?;
    let properties = match raw.get("properties") {
        Some(Value::Object(properties)) => properties.clone(),
        _ => return Err("`properties` is missing or not an object".into()),
    };
    let mut distinct_id =
        text(properties.get("distinct_id")).ok_or("`properties.distinct_id` is missing")?;
    distinct_id.truncate(MAX_DISTINCT_ID);
    let time = properties.get("time").and_then(Value::as_f64);
    let timestamp = match time {
        // Seconds or milliseconds, as Mixpanel accepts both.
        Some(time) if time > 1e11 => Utc.timestamp_millis_opt(time as i64).single(),
        Some(time) => Utc.timestamp_millis_opt((time * 1000.0) as i64).single(),
        None => Some(now),
    }
    .ok_or("`properties.time` is not a time")?;
    let timestamp = believable(timestamp, now)?;
    let insert_id = text(properties.get("$insert_id"));
    let time_key = timestamp.timestamp_millis().to_string();
    let id = match &insert_id {
        Some(insert_id) => derived_id(&["mixpanel", &name, &distinct_id, &time_key, insert_id]),
        None => derived_id(&[
            "mixpanel",
            &name,
            &distinct_id,
            &time_key,
            &Value::Object(properties.clone()).to_string(),
        ]),
    };
    let token = text(properties.get("token"));
    Ok(Event {
        id,
        distinct_id,
        name,
        timestamp,
        properties: Value::Object(properties),
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn posthog_bodies_of_every_shape() {
        let single = json!({"api_key": "phc_a", "event": "x", "distinct_id": "u"});
        let (token, events) = posthog_batch(single).unwrap();
        assert_eq!((token.as_deref(), events.len()), (Some("phc_a"), 1));
        let (token, events) =
            posthog_batch(json!({"api_key": "phc_b", "batch": [{"event": "x"}, {"event": "y"}]}))
                .unwrap();
        assert_eq!((token.as_deref(), events.len()), (Some("phc_b"), 2));
        let (token, events) = posthog_batch(json!([{"event": "x"}])).unwrap();
        assert_eq!((token, events.len()), (None, 1));
        assert!(posthog_batch(json!(3)).is_err());
    }

    #[test]
    fn posthog_event_fields_and_fallbacks() {
        let uuid = "0190e7c2-3d0a-7e5b-9f3c-2a1b4c5d6e7f";
        let event = posthog_event(
            &json!({"event": "signed_up", "properties": {"distinct_id": 42, "token": "phc_p"}, "timestamp": "2026-12-01T11:00:00Z", "uuid": uuid}),
            now(),
        )
        .unwrap();
        assert_eq!(event.distinct_id, "42");
        assert_eq!(event.token.as_deref(), Some("phc_p"));
        assert_eq!(event.id.to_string(), uuid);
        assert_eq!(
            event.timestamp,
            Utc.with_ymd_and_hms(2026, 12, 1, 11, 0, 0).unwrap()
        );
        let without_uuid =
            json!({"event": "x", "distinct_id": "u", "timestamp": "2026-12-01T11:00:00Z"});
        assert_eq!(
            posthog_event(&without_uuid, now()).unwrap().id,
            posthog_event(&without_uuid, now()).unwrap().id
        );
    }

    #[test]
    fn bad_events_are_rejected_with_reasons() {
        let reason = |raw: Value| posthog_event(&raw, now()).unwrap_err();
        assert!(reason(json!({"distinct_id": "u"})).contains("event"));
        assert!(reason(json!({"event": "x"})).contains("distinct_id"));
        assert!(
            reason(json!({"event": "x", "distinct_id": "u", "timestamp": "2027-01-01T00:00:00Z"}))
                .contains("future")
        );
        assert!(
            reason(json!({"event": "x", "distinct_id": "u", "timestamp": "yesterday"}))
                .contains("ISO")
        );
        assert!(reason(json!({"event": "x", "distinct_id": "u", "uuid": "nope"})).contains("UUID"));
    }

    #[test]
    fn mixpanel_dedup_key_decides_the_id() {
        let event = |insert_id: &str, time: Value| {
            mixpanel_event(&json!({"event": "x", "properties": {"distinct_id": "u", "time": time, "$insert_id": insert_id, "token": "mp"}}), now()).unwrap()
        };
        let seconds = event("a", json!(1_764_590_000));
        assert_eq!(
            seconds.id,
            event("a", json!(1_764_590_000_000i64)).id,
            "seconds and milliseconds agree"
        );
        assert_ne!(seconds.id, event("b", json!(1_764_590_000)).id);
        assert_eq!(seconds.token.as_deref(), Some("mp"));
        assert!(
            mixpanel_event(&json!({"event": "x", "properties": {"time": 1}}), now())
                .unwrap_err()
                .contains("distinct_id")
        );
    }

    #[test]
    fn mixpanel_bodies_json_or_ndjson() {
        assert_eq!(
            mixpanel_batch(br#"[{"event":"a"},{"event":"b"}]"#)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            mixpanel_batch(b"{\"event\":\"a\"}\n{\"event\":\"b\"}\n")
                .unwrap()
                .len(),
            2
        );
        assert!(mixpanel_batch(b"{\"event\":\"a\"}\nnope").is_err());
    }
}
