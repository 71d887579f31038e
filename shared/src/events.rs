//! The `events` table and the people it describes (`users`), written by more than one agent:
//! the analytics agent stores what PostHog and Mixpanel send, the email agent stores its
//! sends' outcomes as events too. Both go through [`store_within`], inside their own
//! transaction, so an event exists exactly when the writes it describes do:
//!
//! * events: one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` for the whole batch,
//!   so duplicates (by workspace and id) are dropped by the key, even across concurrent
//!   batches ([`write`]);
//! * users: `$identify` / `$set` / signup events create or update `users` (email, name,
//!   timezone, signed_up_at — the earliest signup wins), again one statement;
//! * messages: one metrics recompute per workspace and UTC day that got new events
//!   (deduplicated per five minutes downstream), and a signup notice for users whose
//!   `signed_up_at` was set by this batch ([`announce`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::db::{DbContext, DbError};
use crate::messages::MetricsRecompute;
use crate::queue::outbox::{Outbox, Pending};
use crate::queue::{Message, QueueError};
use crate::retry::{RetryClass, Retryable};

/// Why events were not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Retryable for StoreError {
    fn retry_class(&self) -> RetryClass {
        match self {
            StoreError::Db(error) => error.retry_class(),
            StoreError::Queue(error) => error.retry_class(),
        }
    }
}

impl StoreError {
    /// Whether the database refused a value an event carries: the input's fault, for good.
    pub fn is_refused_value(&self) -> bool {
        matches!(self, StoreError::Db(error) if error.is_refused_value())
    }

    /// The server's reason for a refused value.
    pub fn refused_reason(&self) -> String {
        match self {
            StoreError::Db(error) => error.refused_reason(),
            StoreError::Queue(_) => None,
        }
        .unwrap_or_else(|| "the database refused a value".into())
    }
}

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

/// Event names that mean "this person just signed up".
pub const SIGNUP_EVENTS: &[&str] = &[
    "signed_up",
    "sign_up",
    "signup",
    "user_signed_up",
    "$signup",
];

/// What a stored batch changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stored {
    pub inserted: usize,
    pub duplicates: usize,
    pub signups: usize,
    /// Events the database refused (a value it cannot hold), by their position in the slice
    /// given to the store, each with the server's reason; the others were stored.
    pub refused: Vec<(usize, String)>,
}

/// A person as a batch describes them.
#[derive(Debug, Default)]
struct Person {
    email: Option<String>,
    name: Option<String>,
    /// An IANA name, as the tenant's analytics sent it.
    timezone: Option<String>,
    signed_up_at: Option<DateTime<Utc>>,
}

fn person_updates<'a>(events: &[&'a Event]) -> BTreeMap<&'a str, Person> {
    let mut people: BTreeMap<&str, Person> = BTreeMap::new();
    for event in events {
        let set = event
            .properties
            .get("$set")
            .or_else(|| event.properties.get("$set_once"));
        let signup = SIGNUP_EVENTS.contains(&event.name.as_str());
        if set.is_none() && !signup && event.name != "$identify" {
            continue;
        }
        let person = people.entry(&event.distinct_id).or_default();
        let field = |key: &str| {
            set.and_then(|set| set.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        person.email = field("email").or_else(|| person.email.take());
        person.name = field("name").or_else(|| person.name.take());
        // posthog-js puts the browser's zone on every event as `$timezone`.
        person.timezone = field("timezone")
            .or_else(|| field("$timezone"))
            .or_else(|| {
                event
                    .properties
                    .get("$timezone")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .or_else(|| person.timezone.take());
        if signup {
            person.signed_up_at = Some(
                person
                    .signed_up_at
                    .map_or(event.timestamp, |at| at.min(event.timestamp)),
            );
        }
    }
    people
}

/// Stores `events` for `workspace` inside the caller's transaction, for agents whose own facts are events too (the
/// email agent's deliveries): the events then exist exactly when the caller's writes do, and
/// a refused value fails the caller's transaction. `now` decides the recompute requests'
/// deduplication bucket.
pub async fn store_within(
    transaction: &Transaction<'_>,
    outbox: &Outbox,
    workspace: Uuid,
    source: Source,
    events: &[Event],
    now: DateTime<Utc>,
) -> Result<(Stored, Pending), StoreError> {
    let everything: Vec<(usize, &Event)> = events.iter().enumerate().collect();
    let written = write(transaction, workspace, source, &everything).await?;
    let pending = announce(transaction, outbox, workspace, now, &written).await?;
    Ok((written.stored(Vec::new()), pending))
}

/// What [`write`] changed.
#[derive(Debug, Default)]
pub struct Written {
    /// Events considered (inserted or found already there).
    considered: usize,
    inserted: usize,
    /// UTC days that got new events.
    days: BTreeSet<NaiveDate>,
    /// People whose first signup this batch recorded. They count in the tenant's metrics;
    /// they are a tenant's audience, not our members, so no email follows.
    signups: usize,
}

impl Written {
    pub fn absorb(&mut self, other: Written) {
        self.considered = self.considered.saturating_add(other.considered);
        self.inserted = self.inserted.saturating_add(other.inserted);
        self.days.extend(other.days);
        self.signups = self.signups.saturating_add(other.signups);
    }

    pub fn stored(&self, refused: Vec<(usize, String)>) -> Stored {
        Stored {
            inserted: self.inserted,
            duplicates: self.considered.saturating_sub(self.inserted),
            signups: self.signups,
            refused,
        }
    }
}

/// Writes the events and the people they describe.
pub async fn write(
    transaction: &Transaction<'_>,
    workspace: Uuid,
    source: Source,
    events: &[(usize, &Event)],
) -> Result<Written, StoreError> {
    // Rows are inserted in id order: two batches sharing events (an SDK retrying) then take
    // their key locks in the same order and cannot deadlock.
    let mut sorted: Vec<&Event> = events.iter().map(|(_, event)| *event).collect();
    sorted.sort_by_key(|event| event.id);
    let events = sorted;
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let distinct_ids: Vec<&str> = events.iter().map(|e| e.distinct_id.as_str()).collect();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let timestamps: Vec<DateTime<Utc>> = events.iter().map(|e| e.timestamp).collect();
    let properties: Vec<&Value> = events.iter().map(|e| &e.properties).collect();
    let inserted_days = transaction
        .query_typed(
            "INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp, properties)
             SELECT id, $2, $3, distinct_id, event, ts, properties
               FROM unnest($1::uuid[], $4::text[], $5::text[], $6::timestamptz[], $7::jsonb[])
                    AS e(id, distinct_id, event, ts, properties)
             ON CONFLICT (workspace_id, id) DO NOTHING
             RETURNING (timestamp AT TIME ZONE 'UTC')::date",
            &[
                (&ids, Type::UUID_ARRAY),
                (&workspace, Type::UUID),
                (&source.as_str(), Type::TEXT),
                (&distinct_ids, Type::TEXT_ARRAY),
                (&names, Type::TEXT_ARRAY),
                (&timestamps, Type::TIMESTAMPTZ_ARRAY),
                (&properties, Type::JSONB_ARRAY),
            ],
        )
        .await
        .context("insert events")?;
    let days: BTreeSet<NaiveDate> = inserted_days.iter().map(|row| row.get(0)).collect();

    let people = person_updates(&events);
    let mut signups = 0usize;
    if !people.is_empty() {
        let who: Vec<&str> = people.keys().copied().collect();
        let emails: Vec<Option<&str>> = people.values().map(|p| p.email.as_deref()).collect();
        let full_names: Vec<Option<&str>> = people.values().map(|p| p.name.as_deref()).collect();
        let timezones: Vec<Option<&str>> = people.values().map(|p| p.timezone.as_deref()).collect();
        let signed_up: Vec<Option<DateTime<Utc>>> =
            people.values().map(|p| p.signed_up_at).collect();
        let rows = transaction
            .query_typed(
                "WITH before AS (
                     SELECT distinct_id, signed_up_at FROM users
                      WHERE workspace_id = $1 AND distinct_id = ANY ($2)
                 )
                 INSERT INTO users AS u (workspace_id, distinct_id, email, name, signed_up_at, timezone)
                 SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
                 ON CONFLICT (workspace_id, distinct_id) DO UPDATE
                    SET email = COALESCE(EXCLUDED.email, u.email),
                        name = COALESCE(EXCLUDED.name, u.name),
                        timezone = COALESCE(EXCLUDED.timezone, u.timezone),
                        signed_up_at = LEAST(u.signed_up_at, EXCLUDED.signed_up_at),
                        updated_at = now()
                 RETURNING u.distinct_id, u.signed_up_at,
                           (SELECT b.signed_up_at FROM before b WHERE b.distinct_id = u.distinct_id)",
                &[
                    (&workspace, Type::UUID),
                    (&who, Type::TEXT_ARRAY),
                    (&emails, Type::TEXT_ARRAY),
                    (&full_names, Type::TEXT_ARRAY),
                    (&signed_up, Type::TIMESTAMPTZ_ARRAY),
                    (&timezones, Type::TEXT_ARRAY),
                ],
            )
            .await
            .context("update users")?;
        // A first signup: the person had no signup time before this batch.
        signups = rows
            .iter()
            .filter(|row| {
                row.get::<_, Option<DateTime<Utc>>>(1).is_some()
                    && row.get::<_, Option<DateTime<Utc>>>(2).is_none()
            })
            .count();
    }
    Ok(Written {
        considered: events.len(),
        inserted: inserted_days.len(),
        days,
        signups,
    })
}

/// Enqueues what [`write`] tells the other agents: one recompute per day that got new
/// events.
pub async fn announce(
    transaction: &Transaction<'_>,
    outbox: &Outbox,
    workspace: Uuid,
    now: DateTime<Utc>,
    written: &Written,
) -> Result<Pending, StoreError> {
    let mut messages = Vec::new();
    for day in &written.days {
        messages.push(MetricsRecompute::new(workspace, *day, "analytics", now).to_outgoing()?);
    }
    Ok(outbox.enqueue(transaction, &messages).await?)
}
