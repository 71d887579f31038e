//! From PostHog and Mixpanel payloads to one event shape.
//!
//! A body is first split into its events' texts ([`posthog_batch`], [`mixpanel_batch`]: at
//! most [`MAX_EVENTS`], counted while the body is read, see [`crate::json`]); [`read`] then
//! takes each text on its own, so one bad event is refused with its reason while the rest
//! of the batch is kept. The rules, in the order they are applied to one event:
//!
//! 1. Its text is smaller than [`MAX_EVENT_BYTES`] (Mixpanel's and PostHog's 1 MB) and it is
//!    JSON the database can hold: no lone surrogate, no number out of range, every object and
//!    array within the source's [`Limits`] (Mixpanel's documented "fewer than 255"; 1,000 for
//!    PostHog, which documents none), and the request's values within its memory budget.
//! 2. It is an object with a name (`event`) and a distinct id; a distinct id is cut to
//!    [`MAX_DISTINCT_ID`] bytes on a character boundary, numbers become strings.
//! 3. Its timestamp is believable: ISO 8601 (PostHog) or seconds or milliseconds (Mixpanel),
//!    no more than an hour in the future, not before 1971 (as Mixpanel's `/import` rules),
//!    and not further back than the route allows ([`Backdate`]). Refused, not clamped, so a
//!    client clock gone wrong shows instead of silently moving its events.
//! 4. Its `uuid`, when given (PostHog), is a UUID.
//! 5. Nothing it would store — name, distinct id, property keys and values — holds
//!    `\u0000`, which PostgreSQL's `text` and `jsonb` refuse ([`EventError::Unstorable`]).

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use shared::text::{clip, unstorable};
use uuid::Uuid;

pub use shared::events::{Event, Source};

use crate::json::{self, Budget, Limits, SplitError, ValueError};

/// Namespace of the UUIDs derived from event contents.
const NAMESPACE: Uuid = Uuid::from_u128(0x6a9b_1c4e_2f0d_4b8a_9e73_5c21_d0f4_8e17);

/// Longest distinct id kept, in bytes, as PostHog trims them.
pub const MAX_DISTINCT_ID: usize = 200;
/// Most events in one request (Mixpanel's documented cap; above any PostHog SDK's batch).
pub const MAX_EVENTS: usize = 2_000;
/// An event's JSON must be smaller than this (both platforms drop events of 1 MB or more).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Mixpanel: "fewer than 255" properties, keys of a nested object, elements of an array.
pub const MIXPANEL_LIMITS: Limits = Limits {
    keys_per_object: 254,
    items_per_array: 254,
};
/// PostHog documents no such limit; this one is far above what its SDKs send (autocapture's
/// `$elements`, a few hundred feature flags) and bounds what one object can cost.
pub const POSTHOG_LIMITS: Limits = Limits {
    keys_per_object: 1_000,
    items_per_array: 1_000,
};
/// Longest reason given for a refused event: reasons quote input.
const MAX_REASON: usize = 300;
/// Longest piece of input quoted in a reason.
const MAX_QUOTE: usize = 64;

/// How far back an event's timestamp may lie (rule 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backdate {
    /// Any time after 1971: routes that authenticate the sender (`/import`, the webhook
    /// destination) and so may backfill history.
    Since1971,
    /// At most this many days before now: routes open to anyone holding a public token.
    Days(i64),
}

/// PostHog capture: a month covers SDK offline queues and retries, and a public token cannot
/// rewrite older, settled metrics.
pub const CAPTURE_BACKDATE: Backdate = Backdate::Days(31);
/// Mixpanel `/track` keeps "the last 5 days only"; older events belong to `/import`.
pub const TRACK_BACKDATE: Backdate = Backdate::Days(5);

/// Why one event was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// It is not an event we accept (rules 2–4): the sender's to fix.
    #[error("{0}")]
    Invalid(String),
    /// It is an event, but what it carries cannot be stored (rules 1 and 5).
    #[error("{0}")]
    Unstorable(String),
}

impl EventError {
    fn invalid(reason: impl Into<String>) -> Self {
        EventError::Invalid(reason.into())
    }
}

/// Why one event of a batch was not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
    /// Mixpanel's `$insert_id`, when the event had one: `/import` reports it.
    #[serde(skip)]
    pub insert_id: Option<String>,
    /// The field at fault, as Mixpanel's `failed_records` name it.
    #[serde(skip)]
    pub field: &'static str,
}

impl Rejected {
    pub fn new(index: usize, reason: impl AsRef<str>) -> Self {
        Self {
            index,
            reason: clip(reason.as_ref(), MAX_REASON).to_string(),
            insert_id: None,
            field: "event",
        }
    }
}

/// `text` quoted for a reason: cut short, NULs shown as escapes.
pub(crate) fn quote(text: &str) -> String {
    format!("{:?}", clip(text, MAX_QUOTE))
}

/// A field as text: trimmed strings, numbers and objects as written; nothing when empty.
pub(crate) fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::Null | Value::String(_) => None,
        other => Some(other.to_string()),
    }
}

fn believable(
    timestamp: DateTime<Utc>,
    now: DateTime<Utc>,
    backdate: Backdate,
) -> Result<DateTime<Utc>, EventError> {
    // `now` is the clock's, but the arithmetic is checked all the same.
    let latest = now
        .checked_add_signed(Duration::hours(1))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if timestamp > latest {
        return Err(EventError::invalid(format!(
            "timestamp {timestamp} is more than an hour in the future"
        )));
    }
    if timestamp.timestamp() < 31_536_000 {
        return Err(EventError::invalid(format!(
            "timestamp {timestamp} is before 1971"
        )));
    }
    if let Backdate::Days(days) = backdate
        && let Some(earliest) =
            Duration::try_days(days).and_then(|window| now.checked_sub_signed(window))
        && timestamp < earliest
    {
        return Err(EventError::invalid(format!(
            "timestamp {timestamp} is more than {days} days old, older than this route accepts"
        )));
    }
    Ok(timestamp)
}

/// Rule 5 for what an event stores.
fn storable(name: &str, distinct_id: &str, properties: &Value) -> Result<(), EventError> {
    let nul = "holds \\u0000, which cannot be stored";
    if name.contains('\0') {
        return Err(EventError::Unstorable(format!("`event` {nul}")));
    }
    if distinct_id.contains('\0') {
        return Err(EventError::Unstorable(format!("`distinct_id` {nul}")));
    }
    match unstorable(properties) {
        Some(path) => Err(EventError::Unstorable(format!(
            "`properties{}` {nul}",
            clip(&path, MAX_QUOTE)
        ))),
        None => Ok(()),
    }
}

/// A distinct id as kept: at most [`MAX_DISTINCT_ID`] bytes, whole characters.
pub(crate) fn kept_distinct_id(distinct_id: String) -> String {
    if distinct_id.len() <= MAX_DISTINCT_ID {
        return distinct_id;
    }
    clip(&distinct_id, MAX_DISTINCT_ID).to_string()
}

/// A token as named, when it could name anything: a NUL cannot be in a stored token.
fn token_in(value: Option<&Value>) -> Option<String> {
    text(value).filter(|token| !token.contains('\0'))
}

/// A UUID derived from what makes two deliveries the same event.
pub fn derived_id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, parts.join("\u{1f}").as_bytes())
}

/// A UUID derived from raw bytes (a delivery we could not read as an event).
pub fn derived_id_of_bytes(bytes: &[u8]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, bytes)
}

/// A body split into its events' texts, with the body-level token if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    pub token: Option<String>,
    pub items: Vec<&'a str>,
}

fn first_byte(text: &str) -> Option<u8> {
    text.bytes().find(|byte| !byte.is_ascii_whitespace())
}

/// The events of a PostHog capture body (a single event, an array, or `{batch: [...]}`) with
/// the body-level token, if any.
pub fn posthog_batch(text: &str) -> Result<Batch<'_>, SplitError> {
    match first_byte(text) {
        Some(b'[') => Ok(Batch {
            token: None,
            items: json::array_items(text, MAX_EVENTS)?,
        }),
        Some(b'{') => {
            // The batch, then the token's three names in the order PostHog reads them.
            let found = json::fields(text, &["batch", "api_key", "token", "$token"])?;
            let token = found
                .iter()
                .skip(1)
                .flatten()
                .find_map(|raw| token_in(serde_json::from_str::<Value>(raw).ok().as_ref()));
            match found.first().copied().flatten() {
                Some(batch) if first_byte(batch) == Some(b'[') => Ok(Batch {
                    token,
                    items: json::array_items(batch, MAX_EVENTS)?,
                }),
                Some(_) => Err(SplitError::Malformed("`batch` is not an array".into())),
                None => Ok(Batch {
                    token,
                    items: vec![text],
                }),
            }
        }
        _ => Err(SplitError::Malformed(
            "expected an event, an array of events or {\"batch\": [...]}".into(),
        )),
    }
}

/// The events of a Mixpanel body: a JSON array, one object, or newline-delimited JSON.
pub fn mixpanel_batch(text: &str) -> Result<Vec<&str>, SplitError> {
    match first_byte(text) {
        Some(b'[') => json::array_items(text, MAX_EVENTS),
        Some(b'{') if json::is_one_value(text) => Ok(vec![text]),
        Some(b'{') => json::lines(text, MAX_EVENTS),
        _ => Err(SplitError::Malformed(
            "expected an event, an array of events or NDJSON".into(),
        )),
    }
}

/// One PostHog event.
pub fn posthog_event(
    raw: Value,
    now: DateTime<Utc>,
    backdate: Backdate,
) -> Result<Event, EventError> {
    let Value::Object(mut object) = raw else {
        return Err(EventError::invalid("an event must be a JSON object"));
    };
    let mut properties = match object.remove("properties") {
        Some(Value::Object(properties)) => properties,
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(EventError::invalid("`properties` must be an object")),
    };
    let name = text(object.get("event"))
        .ok_or_else(|| EventError::invalid("`event` (the event name) is missing"))?;
    let distinct_id = text(object.get("distinct_id"))
        .or_else(|| text(object.get("$distinct_id")))
        .or_else(|| text(properties.get("distinct_id")))
        .map(kept_distinct_id)
        .ok_or_else(|| EventError::invalid("`distinct_id` is missing"))?;
    let timestamp = match object.get("timestamp").and_then(Value::as_str) {
        Some(iso) => DateTime::parse_from_rfc3339(iso)
            .map_err(|error| {
                EventError::invalid(format!(
                    "`timestamp` {} is not ISO 8601: {error}",
                    quote(iso)
                ))
            })?
            .with_timezone(&Utc),
        None => now,
    };
    let timestamp = believable(timestamp, now, backdate)?;
    let token = ["api_key", "token", "$token"]
        .iter()
        .find_map(|key| token_in(object.get(*key)))
        .or_else(|| token_in(properties.get("token")))
        .or_else(|| token_in(properties.get("$token")));
    // posthog-js sends `identify`'s and `setPersonProperties`' operations beside the
    // properties, not in them (and the webhook destination its person's `$set`): they are
    // kept with the properties, where the people rules read them.
    for operation in ["$set", "$set_once", "$unset"] {
        if let Some(value) = object.remove(operation).filter(|value| !value.is_null()) {
            properties.entry(operation).or_insert(value);
        }
    }
    let properties = Value::Object(properties);
    storable(&name, &distinct_id, &properties)?;
    let id = match object.get("uuid").and_then(Value::as_str) {
        Some(uuid) => uuid
            .parse()
            .map_err(|_| EventError::invalid(format!("`uuid` {} is not a UUID", quote(uuid))))?,
        // No uuid: the same payload delivered twice is still one event.
        None => derived_id(&[
            "posthog",
            &name,
            &distinct_id,
            &timestamp.to_rfc3339(),
            &properties.to_string(),
        ]),
    };
    Ok(Event {
        id,
        distinct_id,
        name,
        timestamp,
        properties,
        token,
    })
}

/// Milliseconds since the epoch of a Mixpanel `time`: seconds or milliseconds, as Mixpanel
/// accepts both; `None` beyond any date we could store.
fn millis_of(time: f64) -> Option<i64> {
    // ±10^15 ms is ±31,000 years: far past the range of believable times, well inside i64.
    const BOUND: f64 = 1e15;
    let millis = if time.abs() > 1e11 {
        time
    } else {
        time * 1000.0
    };
    (millis.is_finite() && millis.abs() < BOUND).then(|| millis.trunc() as i64)
}

/// One Mixpanel event. Its id is derived from Mixpanel's deduplication key: the same
/// (event, distinct_id, time, $insert_id) is the same event.
pub fn mixpanel_event(
    raw: Value,
    now: DateTime<Utc>,
    backdate: Backdate,
) -> Result<Event, EventError> {
    let Value::Object(mut object) = raw else {
        return Err(EventError::invalid("an event must be a JSON object"));
    };
    let name = text(object.get("event"))
        .ok_or_else(|| EventError::invalid("`event` (the event name) is missing"))?;
    let properties = match object.remove("properties") {
        Some(Value::Object(properties)) => properties,
        _ => {
            return Err(EventError::invalid(
                "`properties` is missing or not an object",
            ));
        }
    };
    let distinct_id = text(properties.get("distinct_id"))
        .map(kept_distinct_id)
        .ok_or_else(|| EventError::invalid("`properties.distinct_id` is missing"))?;
    let timestamp = match properties.get("time").and_then(Value::as_f64) {
        Some(time) => millis_of(time)
            .and_then(|millis| Utc.timestamp_millis_opt(millis).single())
            .ok_or_else(|| EventError::invalid("`properties.time` is not a time"))?,
        None => now,
    };
    let timestamp = believable(timestamp, now, backdate)?;
    let insert_id = text(properties.get("$insert_id"));
    let token = token_in(properties.get("token"));
    let properties = Value::Object(properties);
    storable(&name, &distinct_id, &properties)?;
    let time_key = timestamp.timestamp_millis().to_string();
    let id = match &insert_id {
        Some(insert_id) => derived_id(&["mixpanel", &name, &distinct_id, &time_key, insert_id]),
        None => derived_id(&[
            "mixpanel",
            &name,
            &distinct_id,
            &time_key,
            &properties.to_string(),
        ]),
    };
    Ok(Event {
        id,
        distinct_id,
        name,
        timestamp,
        properties,
        token,
    })
}

/// A request's events once read: the accepted ones with their index in the body, and why the
/// others were not.
#[derive(Debug, Default)]
pub struct Read {
    pub accepted: Vec<(usize, Event)>,
    pub rejected: Vec<Rejected>,
}

/// One source's rules 2–5 for a parsed event.
type EventRules = fn(Value, DateTime<Utc>, Backdate) -> Result<Event, EventError>;

/// Reads each of `items` as a `source` event (rules 1–5). Fails as a whole only when the
/// request's values outgrow `budget`.
pub fn read(
    items: &[&str],
    source: Source,
    now: DateTime<Utc>,
    backdate: Backdate,
    budget: &mut Budget,
) -> Result<Read, ValueError> {
    let (limits, parse): (Limits, EventRules) = match source {
        Source::Mixpanel => (MIXPANEL_LIMITS, mixpanel_event),
        Source::Posthog | Source::Email => (POSTHOG_LIMITS, posthog_event),
    };
    let mut read = Read::default();
    for (index, item) in items.iter().enumerate() {
        if item.len() >= MAX_EVENT_BYTES {
            read.rejected.push(Rejected::new(
                index,
                format!("the event is {MAX_EVENT_BYTES} bytes or larger"),
            ));
            continue;
        }
        let (raw, charged) = match json::value(item, limits, budget) {
            Ok(parsed) => parsed,
            Err(over @ ValueError::OverBudget(_)) => return Err(over),
            Err(ValueError::Refused(reason)) => {
                read.rejected.push(Rejected::new(index, reason));
                continue;
            }
        };
        let insert_id = (source == Source::Mixpanel)
            .then(|| text(raw.pointer("/properties/$insert_id")))
            .flatten()
            .map(|insert_id| clip(&insert_id, MAX_QUOTE).to_string());
        match parse(raw, now, backdate) {
            Ok(event) => read.accepted.push((index, event)),
            Err(error) => {
                budget.refund(charged);
                read.rejected.push(Rejected {
                    insert_id,
                    ..Rejected::new(index, error.to_string())
                });
            }
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn posthog(raw: Value) -> Result<Event, EventError> {
        posthog_event(raw, now(), CAPTURE_BACKDATE)
    }

    fn mixpanel(raw: Value) -> Result<Event, EventError> {
        mixpanel_event(raw, now(), Backdate::Since1971)
    }

    #[test]
    fn posthog_bodies_of_every_shape() {
        let single = r#"{"api_key": "phc_a", "event": "x", "distinct_id": "u"}"#;
        let batch = posthog_batch(single).unwrap();
        assert_eq!(
            (batch.token.as_deref(), batch.items),
            (Some("phc_a"), vec![single])
        );
        let batch =
            posthog_batch(r#"{"api_key": "phc_b", "batch": [{"event": "x"}, {"event": "y"}]}"#)
                .unwrap();
        assert_eq!(
            (batch.token.as_deref(), batch.items),
            (
                Some("phc_b"),
                vec![r#"{"event": "x"}"#, r#"{"event": "y"}"#]
            )
        );
        let batch = posthog_batch(r#"[{"event": "x"}]"#).unwrap();
        assert_eq!((batch.token, batch.items.len()), (None, 1));
        assert!(posthog_batch("3").is_err());
        assert!(posthog_batch(r#"{"batch": 3}"#).is_err());
        assert!(posthog_batch(r#"{"batch": [1] "#).is_err());
    }

    #[test]
    fn posthog_event_fields_and_fallbacks() {
        let uuid = "0190e7c2-3d0a-7e5b-9f3c-2a1b4c5d6e7f";
        let event = posthog(
            json!({"event": "signed_up", "properties": {"distinct_id": 42, "token": "phc_p"}, "timestamp": "2026-12-01T11:00:00Z", "uuid": uuid}),
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
            posthog(without_uuid.clone()).unwrap().id,
            posthog(without_uuid).unwrap().id
        );
    }

    #[test]
    fn bad_events_are_rejected_with_reasons() {
        let reason = |raw: Value| posthog(raw).unwrap_err().to_string();
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
        let long = "z".repeat(10_000);
        assert!(
            reason(json!({"event": "x", "distinct_id": "u", "uuid": long})).len() < 200,
            "input is quoted short"
        );
    }

    #[test]
    fn a_distinct_id_is_cut_on_a_character_boundary() {
        // 199 ASCII bytes then a 2-byte character: byte 200 falls inside it.
        let distinct_id = format!("{}é", "a".repeat(199));
        let event = posthog(json!({"event": "x", "distinct_id": distinct_id})).unwrap();
        assert_eq!(event.distinct_id, "a".repeat(199));
        let emoji = "🦀".repeat(60);
        let event = mixpanel(json!({"event": "x", "properties": {"distinct_id": emoji}})).unwrap();
        assert_eq!(event.distinct_id, "🦀".repeat(50));
        let short = "ü".repeat(100);
        assert_eq!(
            posthog(json!({"event": "x", "distinct_id": short.clone()}))
                .unwrap()
                .distinct_id,
            short
        );
    }

    #[test]
    fn nul_is_refused_for_the_event_that_carries_it() {
        for raw in [
            json!({"event": "a\u{0}b", "distinct_id": "u"}),
            json!({"event": "x", "distinct_id": "u\u{0}"}),
            json!({"event": "x", "distinct_id": "u", "properties": {"k\u{0}": 1}}),
            json!({"event": "x", "distinct_id": "u", "properties": {"k": ["ok", "v\u{0}"]}}),
            json!({"event": "x", "distinct_id": "u", "$set": {"email": "\u{0}"}}),
        ] {
            assert!(
                matches!(posthog(raw.clone()), Err(EventError::Unstorable(_))),
                "{raw}"
            );
        }
        let reason = mixpanel(
            json!({"event": "x", "properties": {"distinct_id": "u", "nested": {"k": "\u{0}"}}}),
        )
        .unwrap_err();
        assert_eq!(
            reason,
            EventError::Unstorable(
                "`properties/nested/k` holds \\u0000, which cannot be stored".into()
            )
        );
        let event =
            posthog(json!({"event": "x", "distinct_id": "u", "token": "phc\u{0}"})).unwrap();
        assert_eq!(event.token, None, "a token with NUL names nothing");
    }

    #[test]
    fn how_far_back_depends_on_the_route() {
        let at = |days: i64| (now() - Duration::days(days)).to_rfc3339();
        let event = |days| json!({"event": "x", "distinct_id": "u", "timestamp": at(days)});
        assert!(posthog_event(event(30), now(), CAPTURE_BACKDATE).is_ok());
        assert!(
            posthog_event(event(32), now(), CAPTURE_BACKDATE)
                .unwrap_err()
                .to_string()
                .contains("31 days")
        );
        assert!(posthog_event(event(400), now(), Backdate::Since1971).is_ok());
        let seconds = |days: i64| (now() - Duration::days(days)).timestamp();
        let track =
            |days| json!({"event": "x", "properties": {"distinct_id": "u", "time": seconds(days)}});
        assert!(mixpanel_event(track(4), now(), TRACK_BACKDATE).is_ok());
        assert!(mixpanel_event(track(6), now(), TRACK_BACKDATE).is_err());
        assert!(mixpanel_event(track(6), now(), Backdate::Since1971).is_ok());
    }

    #[test]
    fn mixpanel_dedup_key_decides_the_id() {
        let event = |insert_id: &str, time: Value| {
            mixpanel(json!({"event": "x", "properties": {"distinct_id": "u", "time": time, "$insert_id": insert_id, "token": "mp"}})).unwrap()
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
            mixpanel(json!({"event": "x", "properties": {"time": 1}}))
                .unwrap_err()
                .to_string()
                .contains("distinct_id")
        );
    }

    #[test]
    fn mixpanel_times_out_of_any_range_are_refused() {
        for time in [
            json!(1e300),
            json!(-1e300),
            json!(u64::MAX),
            json!(i64::MIN),
        ] {
            let raw = json!({"event": "x", "properties": {"distinct_id": "u", "time": time}});
            assert!(mixpanel(raw).is_err(), "{time}");
        }
    }

    #[test]
    fn mixpanel_bodies_json_or_ndjson() {
        assert_eq!(
            mixpanel_batch(r#"[{"event":"a"},{"event":"b"}]"#)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            mixpanel_batch("{\"event\":\"a\"}\n{\"event\":\"b\"}\n").unwrap(),
            [r#"{"event":"a"}"#, r#"{"event":"b"}"#]
        );
        assert_eq!(mixpanel_batch(r#" {"event":"a"} "#).unwrap().len(), 1);
        // A broken line is that line's problem.
        assert_eq!(
            mixpanel_batch("{\"event\":\"a\"}\nnope").unwrap(),
            [r#"{"event":"a"}"#, "nope"]
        );
        assert!(mixpanel_batch("nope").is_err());
    }

    #[test]
    fn a_batch_past_the_cap_is_refused_before_any_event_is_read() {
        let body = format!("[{}{{}}]", "{},".repeat(MAX_EVENTS));
        assert_eq!(posthog_batch(&body), Err(SplitError::TooMany(MAX_EVENTS)));
        assert_eq!(mixpanel_batch(&body), Err(SplitError::TooMany(MAX_EVENTS)));
        let ndjson = "{}\n".repeat(MAX_EVENTS + 1);
        assert_eq!(
            mixpanel_batch(&ndjson),
            Err(SplitError::TooMany(MAX_EVENTS))
        );
    }

    #[test]
    fn one_bad_item_leaves_its_siblings_readable() {
        let body = r#"[{"event":"a","distinct_id":"u"},{"event":"\ud800","distinct_id":"u"},{"event":"b","distinct_id":"u","properties":{"n":1e400}},{"event":"c","distinct_id":"u","properties":{"k":"\u0000"}},{"event":"d","distinct_id":"u"}]"#;
        let batch = posthog_batch(body).unwrap();
        let mut budget = Budget::new(1 << 20);
        let read = read(
            &batch.items,
            Source::Posthog,
            now(),
            CAPTURE_BACKDATE,
            &mut budget,
        )
        .unwrap();
        let accepted: Vec<(usize, &str)> = read
            .accepted
            .iter()
            .map(|(index, event)| (*index, event.name.as_str()))
            .collect();
        assert_eq!(accepted, [(0, "a"), (4, "d")]);
        let rejected: Vec<usize> = read.rejected.iter().map(|r| r.index).collect();
        assert_eq!(rejected, [1, 2, 3]);
        assert!(
            read.rejected[0].reason.contains("escape"),
            "{:?}",
            read.rejected
        );
        assert!(read.rejected[2].reason.contains("\\u0000"));
    }

    #[test]
    fn mixpanel_limits_are_enforced_per_event() {
        let props: Map<String, Value> = (0..255).map(|i| (format!("p{i}"), json!(i))).collect();
        let mut properties = props.clone();
        properties.insert("distinct_id".into(), json!("u"));
        let too_many = json!({"event": "x", "properties": properties}).to_string();
        let fine = json!({"event": "x", "properties": {"distinct_id": "u"}}).to_string();
        let mut budget = Budget::new(1 << 24);
        let read = read(
            &[&too_many, &fine],
            Source::Mixpanel,
            now(),
            Backdate::Since1971,
            &mut budget,
        )
        .unwrap();
        assert_eq!(read.accepted.len(), 1);
        assert!(
            read.rejected[0].reason.contains("254"),
            "{:?}",
            read.rejected
        );
        let huge = format!(
            r#"{{"event":"x","properties":{{"distinct_id":"u","s":"{}"}}}}"#,
            "x".repeat(MAX_EVENT_BYTES)
        );
        let read = super::read(
            &[&huge],
            Source::Mixpanel,
            now(),
            Backdate::Since1971,
            &mut budget,
        )
        .unwrap();
        assert!(read.rejected[0].reason.contains("bytes or larger"));
    }

    #[test]
    fn a_request_past_its_budget_is_refused_as_a_whole() {
        let event = json!({"event": "x", "distinct_id": "u", "properties": {"list": (0..500).map(|i| json!({"a": i})).collect::<Vec<_>>()}}).to_string();
        let items = vec![event.as_str(); 100];
        let mut budget = Budget::new(8 * 1024 * 1024);
        assert_eq!(
            read(
                &items,
                Source::Posthog,
                now(),
                CAPTURE_BACKDATE,
                &mut budget
            )
            .unwrap_err(),
            ValueError::OverBudget(8 * 1024 * 1024)
        );
        // Rejected events give their share back: a thousand refused events cost nothing.
        let nameless = json!({"distinct_id": "u", "properties": {"list": (0..500).map(|i| json!({"a": i})).collect::<Vec<_>>()}}).to_string();
        let items = vec![nameless.as_str(); 1_000];
        let mut budget = Budget::new(8 * 1024 * 1024);
        let read = read(
            &items,
            Source::Posthog,
            now(),
            CAPTURE_BACKDATE,
            &mut budget,
        )
        .unwrap();
        assert_eq!(read.rejected.len(), 1_000);
    }

    /// Arbitrary JSON, with what breaks naive code: huge and negative numbers, NUL, lone
    /// astral and combining characters, long strings, deep nesting.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop_oneof![
                Just(1e308),
                Just(-1e308),
                Just(1.5e11),
                Just(-0.0),
                Just(31_535_999.0)
            ]
            .prop_map(Value::from),
            "\\PC{0,40}".prop_map(Value::String),
            "[a\u{0}é🦀\u{301}\u{10FFFF}]{0,220}".prop_map(Value::String),
            Just(Value::String(format!("{}🦀", "a".repeat(198)))),
            Just(Value::String("2026-12-01T11:00:00Z".into())),
            Just(Value::String("+275760-09-13T00:00:00Z".into())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z$_\u{0}é]{0,12}", inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// An event-shaped object whose fields are arbitrary JSON.
    fn any_event() -> impl Strategy<Value = Value> {
        let field = || proptest::option::of(any_json());
        (field(), field(), field(), field(), any_json()).prop_map(
            |(event, distinct_id, timestamp, time, properties)| {
                let mut object = Map::new();
                for (key, value) in [
                    ("event", event),
                    ("distinct_id", distinct_id.clone()),
                    ("timestamp", timestamp),
                ] {
                    if let Some(value) = value {
                        object.insert(key.into(), value);
                    }
                }
                let mut properties = match properties {
                    Value::Object(properties) => properties,
                    other => Map::from_iter([("other".to_string(), other)]),
                };
                if let Some(distinct_id) = distinct_id {
                    properties.insert("distinct_id".into(), distinct_id);
                }
                if let Some(time) = time {
                    properties.insert("time".into(), time);
                }
                object.insert("properties".into(), Value::Object(properties));
                Value::Object(object)
            },
        )
    }

    fn assert_storable(event: &Event) {
        assert!(
            event.distinct_id.len() <= MAX_DISTINCT_ID,
            "{}",
            event.distinct_id
        );
        assert!(std::str::from_utf8(event.distinct_id.as_bytes()).is_ok());
        assert!(!event.distinct_id.contains('\0') && !event.name.contains('\0'));
        assert_eq!(unstorable(&event.properties), None);
        assert!(event.timestamp <= now() + Duration::hours(1));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_json_is_an_event_or_a_reason(raw in prop_oneof![any_json(), any_event()]) {
            for backdate in [CAPTURE_BACKDATE, Backdate::Since1971] {
                if let Ok(event) = posthog_event(raw.clone(), now(), backdate) {
                    assert_storable(&event);
                }
                if let Ok(event) = mixpanel_event(raw.clone(), now(), backdate) {
                    assert_storable(&event);
                }
            }
        }

        #[test]
        fn any_body_splits_or_says_why(
            text in prop_oneof![
                "\\PC{0,200}",
                any_json().prop_map(|value| value.to_string()),
                proptest::collection::vec(any_event(), 0..6)
                    .prop_map(|events| Value::Array(events).to_string()),
                proptest::collection::vec(any_event(), 0..6).prop_map(|events| {
                    events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
                }),
                "[\\[\\]{}\",:\\\\u0-9a-f ]{0,80}",
            ],
        ) {
            let mut budget = Budget::new(1 << 22);
            if let Ok(batch) = posthog_batch(&text) {
                assert!(batch.items.len() <= MAX_EVENTS);
                if let Ok(read) = read(&batch.items, Source::Posthog, now(), CAPTURE_BACKDATE, &mut budget) {
                    assert_eq!(read.accepted.len() + read.rejected.len(), batch.items.len());
                    read.accepted.iter().for_each(|(_, event)| assert_storable(event));
                }
            }
            if let Ok(items) = mixpanel_batch(&text) {
                assert!(items.len() <= MAX_EVENTS);
                if let Ok(read) = read(&items, Source::Mixpanel, now(), TRACK_BACKDATE, &mut budget) {
                    assert_eq!(read.accepted.len() + read.rejected.len(), items.len());
                    read.accepted.iter().for_each(|(_, event)| assert_storable(event));
                }
            }
        }
    }
}
