//! A workspace's audience — the people its own site's events describe (`users`) — and what
//! each batch says about them, applied in one statement.
//!
//! Two inputs say things about a person: events (PostHog's `$identify` and `$set` events,
//! any event's `$set` / `$set_once` / `$unset` properties, signup events, the browser's
//! `$timezone`) and Mixpanel's people updates (`/engage`: `$set`, `$set_once`, `$unset`).
//! Both become one [`PersonUpdate`] per person, folded in arrival order:
//!
//! 1. `$set` writes the properties it names (a later `$set` of the same key wins);
//! 2. `$set_once` writes a property only where the person has none — neither stored nor set
//!    earlier in the batch;
//! 3. `$unset` removes the properties it names, including ones set earlier in the batch; a
//!    later `$set` or `$set_once` of the key writes it again;
//! 4. `email`, `name` and `timezone` are also kept as columns, following the same rules;
//! 5. the earliest signup wins, and a person whose first signup this batch records is
//!    counted as a signup of the tenant (never an email: they are the tenant's audience).
//!
//! [`apply`] writes every person of a batch with one `INSERT … ON CONFLICT DO UPDATE` whose
//! input is ordered by distinct id, so two concurrent batches lock people in the same order.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::db::{DbContext, DbError};

/// What happens to one column of a person (rule 4).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum Column {
    #[default]
    Keep,
    Set(String),
    /// Written only where the column is empty.
    SetOnce(String),
    Clear,
}

impl Column {
    fn op(&self) -> Option<&'static str> {
        match self {
            Column::Keep => None,
            Column::Set(_) => Some("set"),
            Column::SetOnce(_) => Some("once"),
            Column::Clear => Some("clear"),
        }
    }

    fn value(&self) -> Option<&str> {
        match self {
            Column::Set(value) | Column::SetOnce(value) => Some(value),
            Column::Keep | Column::Clear => None,
        }
    }
}

/// Everything one batch says about one person.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PersonUpdate {
    set: Map<String, Value>,
    set_once: Map<String, Value>,
    unset: BTreeSet<String>,
    email: Column,
    name: Column,
    timezone: Column,
    signed_up_at: Option<DateTime<Utc>>,
}

impl PersonUpdate {
    fn column(&mut self, key: &str) -> Option<&mut Column> {
        match key {
            "email" => Some(&mut self.email),
            "name" => Some(&mut self.name),
            "timezone" | "$timezone" => Some(&mut self.timezone),
            _ => None,
        }
    }

    /// Rule 1.
    pub fn set(&mut self, properties: &Map<String, Value>) {
        for (key, value) in properties {
            self.unset.remove(key);
            self.set_once.remove(key);
            self.set.insert(key.clone(), value.clone());
            if let (Some(column), Some(text)) = (self.column(key), value.as_str()) {
                *column = Column::Set(text.to_string());
            }
        }
    }

    /// Rule 2.
    pub fn set_once(&mut self, properties: &Map<String, Value>) {
        for (key, value) in properties {
            if self.set.contains_key(key) || self.set_once.contains_key(key) {
                continue;
            }
            // Unset earlier in the batch: the person now has none, so it is written.
            let was_unset = self.unset.remove(key);
            if was_unset {
                self.set.insert(key.clone(), value.clone());
            } else {
                self.set_once.insert(key.clone(), value.clone());
            }
            if let (Some(column), Some(text)) = (self.column(key), value.as_str()) {
                *column = match &*column {
                    Column::Keep => Column::SetOnce(text.to_string()),
                    Column::Clear => Column::Set(text.to_string()),
                    kept => kept.clone(),
                };
            }
        }
    }

    /// Rule 3.
    pub fn unset<'a>(&mut self, keys: impl IntoIterator<Item = &'a str>) {
        for key in keys {
            self.set.remove(key);
            self.set_once.remove(key);
            self.unset.insert(key.to_string());
            if let Some(column) = self.column(key) {
                *column = Column::Clear;
            }
        }
    }

    /// The browser's zone, which posthog-js puts on every event: the latest wins.
    pub fn seen_in_timezone(&mut self, timezone: &str) {
        self.timezone = Column::Set(timezone.to_string());
    }

    /// Rule 5.
    pub fn signed_up(&mut self, at: DateTime<Utc>) {
        self.signed_up_at = Some(self.signed_up_at.map_or(at, |earlier| earlier.min(at)));
    }

    /// Applies Mixpanel-style operations in `update` (`$set`, `$set_once`, `$unset`), or a
    /// PostHog event's properties, which carry the same keys. Anything else is ignored.
    pub fn apply_operations(&mut self, update: &Map<String, Value>) {
        if let Some(Value::Object(set)) = update.get("$set") {
            self.set(set);
        }
        if let Some(Value::Object(once)) = update.get("$set_once") {
            self.set_once(once);
        }
        match update.get("$unset") {
            Some(Value::Array(keys)) => self.unset(keys.iter().filter_map(Value::as_str)),
            // PostHog also accepts `$unset` as an object of keys.
            Some(Value::Object(keys)) => self.unset(keys.keys().map(String::as_str)),
            _ => {}
        }
    }
}

/// The people of one batch, by distinct id (sorted: the lock order of [`apply`]).
pub type People<'a> = BTreeMap<&'a str, PersonUpdate>;

/// Writes `people` of `workspace`; returns how many first signups it recorded.
pub async fn apply(
    transaction: &Transaction<'_>,
    workspace: Uuid,
    people: &People<'_>,
) -> Result<usize, DbError> {
    if people.is_empty() {
        return Ok(0);
    }
    let who: Vec<&str> = people.keys().copied().collect();
    let json = |map: &Map<String, Value>| Value::Object(map.clone());
    let set: Vec<Value> = people.values().map(|p| json(&p.set)).collect();
    let set_once: Vec<Value> = people.values().map(|p| json(&p.set_once)).collect();
    let unset: Vec<Value> = people
        .values()
        .map(|p| Value::from(p.unset.iter().cloned().collect::<Vec<_>>()))
        .collect();
    let ops = |column: fn(&PersonUpdate) -> &Column| -> (Vec<Option<&str>>, Vec<Option<&str>>) {
        people
            .values()
            .map(|p| (column(p).op(), column(p).value()))
            .unzip()
    };
    let (email_ops, emails) = ops(|p| &p.email);
    let (name_ops, names) = ops(|p| &p.name);
    let (timezone_ops, timezones) = ops(|p| &p.timezone);
    let signed_up: Vec<Option<DateTime<Utc>>> = people.values().map(|p| p.signed_up_at).collect();
    let rows = transaction
        .query_typed(
            "WITH input AS MATERIALIZED (
                 SELECT * FROM unnest($2::text[], $3::jsonb[], $4::jsonb[], $5::jsonb[],
                                      $6::text[], $7::text[], $8::text[], $9::text[],
                                      $10::text[], $11::text[], $12::timestamptz[])
                     AS i(distinct_id, set, set_once, unset, email_op, email, name_op, name,
                          timezone_op, timezone, signed_up_at)
             ), before AS (
                 SELECT distinct_id, signed_up_at FROM users
                  WHERE workspace_id = $1 AND distinct_id = ANY ($2)
             )
             INSERT INTO users AS u (workspace_id, distinct_id, email, name, timezone,
                                     signed_up_at, properties)
             SELECT $1, i.distinct_id,
                    CASE WHEN i.email_op IN ('set', 'once') THEN i.email END,
                    CASE WHEN i.name_op IN ('set', 'once') THEN i.name END,
                    CASE WHEN i.timezone_op IN ('set', 'once') THEN i.timezone END,
                    i.signed_up_at, i.set_once || i.set
               FROM input i
             ON CONFLICT (workspace_id, distinct_id) DO UPDATE
                SET (email, name, timezone, properties) = (
                        SELECT CASE i.email_op WHEN 'set' THEN i.email WHEN 'clear' THEN NULL
                                    WHEN 'once' THEN COALESCE(u.email, i.email) ELSE u.email END,
                               CASE i.name_op WHEN 'set' THEN i.name WHEN 'clear' THEN NULL
                                    WHEN 'once' THEN COALESCE(u.name, i.name) ELSE u.name END,
                               CASE i.timezone_op WHEN 'set' THEN i.timezone WHEN 'clear' THEN NULL
                                    WHEN 'once' THEN COALESCE(u.timezone, i.timezone)
                                    ELSE u.timezone END,
                               i.set_once
                                 || (u.properties - ARRAY(SELECT jsonb_array_elements_text(i.unset)))
                                 || i.set
                          FROM input i WHERE i.distinct_id = EXCLUDED.distinct_id),
                    signed_up_at = LEAST(u.signed_up_at, EXCLUDED.signed_up_at),
                    updated_at = now()
             RETURNING u.signed_up_at,
                       (SELECT b.signed_up_at FROM before b WHERE b.distinct_id = u.distinct_id)",
            &[
                (&workspace, Type::UUID),
                (&who, Type::TEXT_ARRAY),
                (&set, Type::JSONB_ARRAY),
                (&set_once, Type::JSONB_ARRAY),
                (&unset, Type::JSONB_ARRAY),
                (&email_ops, Type::TEXT_ARRAY),
                (&emails, Type::TEXT_ARRAY),
                (&name_ops, Type::TEXT_ARRAY),
                (&names, Type::TEXT_ARRAY),
                (&timezone_ops, Type::TEXT_ARRAY),
                (&timezones, Type::TEXT_ARRAY),
                (&signed_up, Type::TIMESTAMPTZ_ARRAY),
            ],
        )
        .await
        .context("update the audience's people")?;
    // A first signup: the person had no signup time before this batch.
    Ok(rows
        .iter()
        .filter(|row| {
            row.get::<_, Option<DateTime<Utc>>>(0).is_some()
                && row.get::<_, Option<DateTime<Utc>>>(1).is_none()
        })
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn operations_fold_in_arrival_order() {
        let mut person = PersonUpdate::default();
        person.set(&map(json!({"plan": "free", "email": "a@example.com"})));
        person.set_once(&map(json!({"plan": "pro", "first_seen": "mon"})));
        assert_eq!(person.set["plan"], "free", "rule 2: set earlier wins");
        assert_eq!(person.set_once["first_seen"], "mon");
        person.unset(["email", "first_seen"]);
        assert!(!person.set.contains_key("email") && person.set_once.is_empty());
        assert_eq!(person.email, Column::Clear);
        person.set_once(&map(json!({"email": "b@example.com"})));
        assert_eq!(
            person.email,
            Column::Set("b@example.com".into()),
            "rule 3: once after an unset writes it"
        );
        assert!(!person.unset.contains("email"));
        person.set_once(&map(json!({"name": "Ada"})));
        assert_eq!(person.name, Column::SetOnce("Ada".into()));
        person.set(&map(json!({"name": "Ada L."})));
        assert_eq!(person.name, Column::Set("Ada L.".into()));
        assert!(!person.set_once.contains_key("name"));
    }

    #[test]
    fn operations_come_in_mixpanel_and_posthog_shapes() {
        let mut person = PersonUpdate::default();
        person.apply_operations(&map(json!({
            "$set": {"a": 1}, "$set_once": {"b": 2}, "$unset": ["c"], "$add": {"n": 1}
        })));
        person.apply_operations(&map(json!({"$unset": {"d": null}})));
        assert_eq!(person.set, map(json!({"a": 1})));
        assert_eq!(person.set_once, map(json!({"b": 2})));
        assert_eq!(
            person.unset.iter().map(String::as_str).collect::<Vec<_>>(),
            ["c", "d"]
        );
        // Non-string values stay properties but never become columns.
        person.set(&map(json!({"email": 7})));
        assert_eq!(person.email, Column::Keep);
    }

    #[test]
    fn the_earliest_signup_wins() {
        let mut person = PersonUpdate::default();
        let later: DateTime<Utc> = "2026-12-07T12:00:00Z".parse().unwrap();
        let earlier: DateTime<Utc> = "2026-12-06T12:00:00Z".parse().unwrap();
        person.signed_up(later);
        person.signed_up(earlier);
        person.signed_up(later);
        assert_eq!(person.signed_up_at, Some(earlier));
    }
}
