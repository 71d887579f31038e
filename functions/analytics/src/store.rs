//! Writing a batch of accepted events in one bounded transaction, through the statements
//! every agent that writes events shares ([`shared::events`]); here a value the database
//! refuses fails only the event that carries it ([`store`]), and [`replay`] derives the
//! people of stored events again.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use shared::db::{Budget, DbContext, Pool, begin};
use shared::events::{Event, Source, Written, announce, write};
use shared::messages::MetricsRecompute;
use shared::queue::Message;
use shared::queue::outbox::{Outbox, Pending};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::AnalyticsError;

pub use shared::events::{SIGNUP_EVENTS, Stored, store_within};

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
            Err(error) => return Err(error.into()),
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
            Err(error) => return Err(error.into()),
        }
    }
    refused.sort_unstable();
    let pending = announce(&transaction, outbox, workspace, now, &written).await?;
    transaction.commit().await.context("commit event batch")?;
    Ok((written.stored(refused), pending))
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
