//! Writing a batch of accepted events: one bounded transaction, set-based statements.
//!
//! * events: one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` for the whole batch,
//!   so duplicates (by workspace and id) are dropped by the key, even across concurrent
//!   batches;
//! * users: `$identify` / `$set` / signup events create or update `users` (email, name,
//!   timezone, signed_up_at — the earliest signup wins), again one statement;
//! * messages: one metrics recompute per workspace and UTC day that got new events
//!   (deduplicated per five minutes downstream), and a signup notice for users whose
//!   `signed_up_at` was set by this batch;
//! * a value the database refuses fails only the event that carries it ([`store`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use shared::db::{Budget, DbContext, Pool, begin};
use shared::messages::{MetricsRecompute, UserSignedUp};
use shared::queue::Message;
use shared::queue::outbox::{Outbox, Pending};
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::AnalyticsError;
use crate::events::{Event, Source};

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
    /// given to [`store`], each with the server's reason; the others were stored.
    pub refused: Vec<(usize, String)>,
}

/// A person as a batch describes them.
#[derive(Debug, Default)]
struct Person {
    email: Option<String>,
    name: Option<String>,
    /// An IANA name, for the email agent's "day 1 in their timezone".
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

/// Stores `events` for `workspace` in one transaction bounded by [`Budget::REQUEST`];
/// returns what changed and what to dispatch after commit.
///
/// When the database refuses a value one of the events carries, the others are still stored:
/// the batch is written again in halves, each under a savepoint, down to the single events
/// the database refuses, which are reported in [`Stored::refused`]. A batch with `k` such
/// events takes about `2k·log2(n)` attempts; the usual batch, none refused, takes one.
pub async fn store(
    pool: &Pool,
    outbox: &Outbox,
    workspace: Uuid,
    source: Source,
    events: &[Event],
    now: DateTime<Utc>,
) -> Result<(Stored, Pending), AnalyticsError> {
    store_bounded(
        pool,
        outbox,
        workspace,
        source,
        events,
        now,
        Budget::REQUEST,
    )
    .await
}

async fn store_bounded(
    pool: &Pool,
    outbox: &Outbox,
    workspace: Uuid,
    source: Source,
    events: &[Event],
    now: DateTime<Utc>,
    budget: Budget,
) -> Result<(Stored, Pending), AnalyticsError> {
    let mut client = pool.get().await.context("check out a connection")?;
    let everything: Vec<(usize, &Event)> = events.iter().enumerate().collect();
    {
        let transaction = begin(&mut client, budget).await?;
        match write(&transaction, workspace, source, &everything).await {
            Ok(written) => {
                let pending = announce(&transaction, outbox, workspace, now, &written).await?;
                transaction.commit().await.context("commit event batch")?;
                return Ok((written.stored(Vec::new()), pending));
            }
            Err(error) if error.is_refused_value() => {
                transaction
                    .rollback()
                    .await
                    .context("roll back a refused batch")?;
            }
            Err(error) => return Err(error),
        }
    }
    let mut transaction = begin(&mut client, budget).await?;
    let mut written = Written::default();
    let mut refused = Vec::new();
    let mut parts = vec![everything.as_slice()];
    while let Some(part) = parts.pop() {
        let savepoint = transaction
            .savepoint("isolate")
            .await
            .context("set a savepoint")?;
        match write(&savepoint, workspace, source, part).await {
            Ok(part_written) => {
                savepoint.commit().await.context("release a savepoint")?;
                written.absorb(part_written);
            }
            Err(error) if error.is_refused_value() => {
                savepoint
                    .rollback()
                    .await
                    .context("roll back to a savepoint")?;
                match part {
                    [(position, _)] => refused.push((*position, error.refused_reason())),
                    _ => {
                        let (first, second) = part.split_at(part.len() / 2);
                        parts.push(second);
                        parts.push(first);
                    }
                }
            }
            Err(error) => return Err(error),
        }
    }
    refused.sort_unstable();
    let pending = announce(&transaction, outbox, workspace, now, &written).await?;
    transaction.commit().await.context("commit event batch")?;
    Ok((written.stored(refused), pending))
}

/// [`store`] inside the caller's transaction, for agents whose own facts are events too (the
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
) -> Result<(Stored, Pending), AnalyticsError> {
    let everything: Vec<(usize, &Event)> = events.iter().enumerate().collect();
    let written = write(transaction, workspace, source, &everything).await?;
    let pending = announce(transaction, outbox, workspace, now, &written).await?;
    Ok((written.stored(Vec::new()), pending))
}

/// What [`write`] changed.
#[derive(Debug, Default)]
struct Written {
    /// Events considered (inserted or found already there).
    considered: usize,
    inserted: usize,
    /// UTC days that got new events.
    days: BTreeSet<NaiveDate>,
    signups: Vec<UserSignedUp>,
}

impl Written {
    fn absorb(&mut self, other: Written) {
        self.considered = self.considered.saturating_add(other.considered);
        self.inserted = self.inserted.saturating_add(other.inserted);
        self.days.extend(other.days);
        self.signups.extend(other.signups);
    }

    fn stored(&self, refused: Vec<(usize, String)>) -> Stored {
        Stored {
            inserted: self.inserted,
            duplicates: self.considered.saturating_sub(self.inserted),
            signups: self.signups.len(),
            refused,
        }
    }
}

/// Writes the events and the people they describe.
async fn write(
    transaction: &Transaction<'_>,
    workspace: Uuid,
    source: Source,
    events: &[(usize, &Event)],
) -> Result<Written, AnalyticsError> {
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
    let mut signups = Vec::new();
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
        for row in rows {
            let (distinct_id, now_signed, before): (
                String,
                Option<DateTime<Utc>>,
                Option<DateTime<Utc>>,
            ) = (row.get(0), row.get(1), row.get(2));
            if let (Some(signed_up_at), None) = (now_signed, before) {
                signups.push(UserSignedUp {
                    workspace_id: workspace,
                    distinct_id,
                    signed_up_at,
                });
            }
        }
    }
    Ok(Written {
        considered: events.len(),
        inserted: inserted_days.len(),
        days,
        signups,
    })
}

/// Enqueues what [`write`] tells the other agents: one recompute per day that got new
/// events, one notice per first signup.
async fn announce(
    transaction: &Transaction<'_>,
    outbox: &Outbox,
    workspace: Uuid,
    now: DateTime<Utc>,
    written: &Written,
) -> Result<Pending, AnalyticsError> {
    let mut messages = Vec::new();
    for day in &written.days {
        messages.push(MetricsRecompute::new(workspace, *day, "analytics", now).to_outgoing()?);
    }
    for signup in &written.signups {
        messages.push(signup.to_outgoing()?);
    }
    Ok(outbox.enqueue(transaction, &messages).await?)
}

/// What [`replay`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    pub events: usize,
    /// (workspace, UTC day) recomputes requested.
    pub recomputes: usize,
}

/// Replays stored events of `[from, to]` (UTC days), optionally of one workspace: the people
/// they describe are derived again (emails, names, timezones, earliest signups) and the
/// metrics agent is asked to recompute every day they fall on. For catching up after a
/// downstream outage or a fix; the events themselves are not duplicated.
pub async fn replay(
    pool: &Pool,
    outbox: &Outbox,
    workspace: Option<Uuid>,
    from: NaiveDate,
    to: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Replayed, AnalyticsError> {
    const PAGE: i64 = 1_000;
    let mut replayed = Replayed::default();
    let mut days: BTreeSet<(Uuid, NaiveDate)> = BTreeSet::new();
    let mut after: (Option<Uuid>, Option<Uuid>) = (None, None);
    loop {
        let rows = {
            let client = pool.get().await.context("check out a connection")?;
            client
                .query_typed(
                    "SELECT workspace_id, id, source, distinct_id, event, timestamp, properties
                       FROM events
                      WHERE ($1::uuid IS NULL OR workspace_id = $1)
                        AND timestamp >= $2::date AND timestamp < $3::date + 1
                        AND ($4::uuid IS NULL OR (workspace_id, id) > ($4, $5))
                      ORDER BY workspace_id, id
                      LIMIT $6",
                    &[
                        (&workspace, Type::UUID),
                        (&from, Type::DATE),
                        (&to, Type::DATE),
                        (&after.0, Type::UUID),
                        (&after.1, Type::UUID),
                        (&PAGE, Type::INT8),
                    ],
                )
                .await
                .context("read stored events")?
        };
        let Some(last) = rows.last() else {
            break;
        };
        after = (Some(last.get(0)), Some(last.get(1)));
        let mut by_workspace: BTreeMap<(Uuid, String), Vec<Event>> = BTreeMap::new();
        for row in &rows {
            let event = Event {
                id: row.get(1),
                distinct_id: row.get(3),
                name: row.get(4),
                timestamp: row.get(5),
                properties: row.get(6),
                token: None,
            };
            days.insert((row.get(0), event.timestamp.date_naive()));
            by_workspace
                .entry((row.get(0), row.get(2)))
                .or_default()
                .push(event);
        }
        for ((workspace, source), events) in by_workspace {
            let source = match source.as_str() {
                "mixpanel" => Source::Mixpanel,
                "email" => Source::Email,
                _ => Source::Posthog,
            };
            let (_, pending) = store_bounded(
                pool,
                outbox,
                workspace,
                source,
                &events,
                now,
                Budget::BACKGROUND,
            )
            .await?;
            outbox.dispatch(&pending).await?;
            replayed.events += events.len();
        }
    }
    let messages = days
        .iter()
        .map(|(workspace, day)| {
            MetricsRecompute::new(*workspace, *day, "replay", now).to_outgoing()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut client = pool.get().await.context("check out a connection")?;
    let transaction = begin(&mut client, Budget::BACKGROUND).await?;
    let pending = outbox.enqueue(&transaction, &messages).await?;
    transaction.commit().await.context("commit replay")?;
    outbox.dispatch(&pending).await?;
    replayed.recomputes = messages.len();
    Ok(replayed)
}
