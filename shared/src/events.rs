//! The `events` table and the people it describes (`users`), written by more than one agent:
//! the analytics agent stores what PostHog and Mixpanel send, the email agent stores its
//! sends' outcomes as events too. Both go through [`store_within`], inside their own
//! transaction, so an event exists exactly when the writes it describes do:
//!
//! * events: one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` for the whole batch,
//!   so duplicates (by workspace and id) are dropped by the key, even across concurrent
//!   batches ([`write`]);
//! * users: `$identify`, `$set` / `$set_once` / `$unset` and signup events create or update
//!   the audience's people in `users`, again one statement ([`crate::people`]);
//! * messages: one metrics recompute per workspace and UTC day that got new events
//!   (deduplicated per five minutes downstream), and a signup notice for users whose
//!   `signed_up_at` was set by this batch ([`announce`]).

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::db::{DbContext, DbError};
use crate::messages::MetricsRecompute;
use crate::people::People;
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

/// What the events of a batch say about their people, in arrival order ([`crate::people`]).
fn person_updates<'a>(events: &[&'a Event]) -> People<'a> {
    let mut people = People::new();
    for event in events {
        let Some(properties) = event.properties.as_object() else {
            continue;
        };
        let operations = ["$set", "$set_once", "$unset"]
            .iter()
            .any(|key| properties.contains_key(*key));
        let signup = SIGNUP_EVENTS.contains(&event.name.as_str());
        if !operations && !signup && event.name != "$identify" {
            continue;
        }
        let person = people.entry(event.distinct_id.as_str()).or_default();
        // posthog-js puts the browser's zone on every event as `$timezone`.
        if let Some(timezone) = properties.get("$timezone").and_then(Value::as_str) {
            person.seen_in_timezone(timezone);
        }
        person.apply_operations(properties);
        if signup {
            person.signed_up(event.timestamp);
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
    let in_arrival_order: Vec<&Event> = events.iter().map(|(_, event)| *event).collect();
    let people = person_updates(&in_arrival_order);
    // Rows are inserted in id order: two batches sharing events (an SDK retrying) then take
    // their key locks in the same order and cannot deadlock.
    let mut sorted = in_arrival_order.clone();
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

    let signups = crate::people::apply(transaction, workspace, &people).await?;
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
