//! Many API reads of one table in one transaction: the backfill's fast path.
//!
//! It is the webhook's transaction ([`crate::ingest`]) for a batch: every object's lock
//! (taken in id order), stored version and workspace are read with array statements; the
//! same ordering rule decides for each object; the ledger rows go in as one statement (an id
//! already there is a duplicate and writes nothing); the newer objects are written by one
//! multi-row upsert with the same columns and the same `NOT deleted` guard; the metrics
//! requests join the transaction through the outbox. One commit for the batch instead of one
//! per object is what lets a backfill outrun the one-transaction-per-event ceiling.
//!
//! Only plain rows take it ([`batchable`]): not subscriptions (their items and revenue facts
//! are per-object work), not deletions, not objects with `\u0000`. Those, and a batch that
//! holds a value the database refuses, go through [`crate::ingest_event`] one by one, which
//! quarantines the unstorable one and applies the rest.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use shared::db::DbContext;
use shared::messages::MetricsRecompute;
use shared::queue::Message;
use shared::queue::outbox::{Outbox, Pending};
use shared::retry::{RetryPolicy, retry};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::ingest::{ingest_event, read_many};
use crate::mirror::{self, Field, Table};
use crate::writes::{Params, refs, upsert_rows_sql};
use crate::{BillingDeps, BillingError, Ingested, StripeEvent, ordering};

/// Whether `event` may share a batch transaction.
pub(crate) fn batchable(event: &StripeEvent) -> Option<Table> {
    let route = event.route()?;
    if route.table == Table::Subscriptions || route.deletes || event.object_id().is_none() {
        return None;
    }
    if shared::text::unstorable(&event.payload).is_some() {
        return None;
    }
    Some(route.table)
}

/// Applies `events` (all of `table`, distinct objects): one transaction, retried when it may
/// pass; a batch the database refuses is applied object by object instead (each with its own
/// outcome). `Err` when the batch failed as a whole (nothing of it is written).
pub(crate) async fn ingest_batch(
    deps: &BillingDeps,
    table: Table,
    events: &[StripeEvent],
) -> Result<Vec<Result<Ingested, BillingError>>, BillingError> {
    let outbox = Outbox::new(deps.pool.clone(), deps.transport.clone());
    let applied = retry(RetryPolicy::default(), || {
        apply_batch(deps, &outbox, table, events)
    })
    .await;
    match applied {
        Ok((outcomes, pending)) => {
            if !pending.is_empty()
                && let Err(error) = outbox.dispatch(&pending).await
            {
                tracing::warn!(%error, "metrics requests left for the outbox relay");
            }
            Ok(outcomes.into_iter().map(Ok).collect())
        }
        Err(error) if error.unstorable_reason().is_some() => {
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                outcomes.push(ingest_event(deps, event).await);
            }
            Ok(outcomes)
        }
        Err(error) => Err(error),
    }
}

async fn apply_batch(
    deps: &BillingDeps,
    outbox: &Outbox,
    table: Table,
    events: &[StripeEvent],
) -> Result<(Vec<Ingested>, Pending), BillingError> {
    let ids: Vec<&str> = events
        .iter()
        .map(|event| event.object_id().unwrap_or_default())
        .collect();
    let mut lock_keys: Vec<String> = ids.iter().map(|id| format!("stripe:{id}")).collect();
    lock_keys.sort();
    let refs_of: Vec<Option<mirror::WorkspaceRef>> = events
        .iter()
        .map(|event| mirror::workspace_ref(table, event.object()))
        .collect();
    let metadata: Vec<Uuid> = refs_of
        .iter()
        .flatten()
        .filter_map(|reference| reference.metadata)
        .collect();
    let customers: Vec<&str> = refs_of
        .iter()
        .flatten()
        .filter_map(|reference| reference.customer.as_deref())
        .collect();

    let settled: Vec<&StripeEvent> = events.iter().collect();
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = client
        .transaction()
        .await
        .context("begin batch transaction")?;
    let lock_params: [(&(dyn ToSql + Sync), Type); 1] = [(&lock_keys, Type::TEXT_ARRAY)];
    let metadata_params: [(&(dyn ToSql + Sync), Type); 1] = [(&metadata, Type::UUID_ARRAY)];
    let customer_params: [(&(dyn ToSql + Sync), Type); 1] = [(&customers, Type::TEXT_ARRAY)];
    let (limited, locked, stored, known_workspaces, customer_workspaces) = tokio::join!(
        crate::ingest::settle(&transaction, &settled),
        transaction.execute_typed(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0)))
               FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k) AS keys",
            &lock_params,
        ),
        read_many(&transaction, table, &ids),
        transaction.query_typed(
            "SELECT id FROM public.workspaces WHERE id = ANY ($1)",
            &metadata_params,
        ),
        transaction.query_typed(
            "SELECT id, workspace_id FROM stripe.customers WHERE id = ANY ($1)",
            &customer_params,
        ),
    );
    limited?;
    locked.context("lock objects")?;
    let stored = stored?;
    let known: HashSet<Uuid> = known_workspaces
        .context("resolve workspaces")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let of_customer: HashMap<String, Option<Uuid>> = customer_workspaces
        .context("resolve customers' workspaces")?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();

    // The decision, per object, as in the webhook's transaction.
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        let id = event.object_id().unwrap_or_default();
        let outcome = match stored.get(id) {
            None => Ingested::Applied,
            Some(stored) if stored.event_id == event.id => Ingested::Duplicate,
            Some(stored) if stored.deleted => Ingested::Stale,
            Some(stored) if ordering::is_newer(&event.version(false), &stored.version()) => {
                Ingested::Applied
            }
            Some(_) => Ingested::Stale,
        };
        outcomes.push(outcome);
    }

    let recorded = record_many(&transaction, events, &outcomes).await?;
    let mut rows = Vec::new();
    let mut messages = Vec::new();
    let mut requested = HashSet::new();
    for ((event, outcome), reference) in events.iter().zip(outcomes.iter_mut()).zip(&refs_of) {
        if *outcome == Ingested::Duplicate {
            continue;
        }
        if !recorded.contains(event.id.as_str()) {
            *outcome = Ingested::Duplicate;
            continue;
        }
        if *outcome != Ingested::Applied {
            continue;
        }
        let workspace = reference.as_ref().and_then(|reference| {
            reference
                .metadata
                .filter(|id| known.contains(id))
                .or_else(|| {
                    reference
                        .customer
                        .as_ref()
                        .and_then(|customer| of_customer.get(customer).copied().flatten())
                })
        });
        let object = event.object();
        let mut columns = vec![("id", Field::Text(event.object_id().map(str::to_string)))];
        columns.extend(mirror::columns(table, object));
        if reference.is_some() {
            columns.push(("workspace_id", Field::Uuid(workspace)));
        }
        columns.extend([
            ("deleted", Field::Bool(Some(false))),
            ("last_event_id", Field::Text(Some(event.id.clone()))),
            (
                "last_event_created",
                Field::Time(mirror::timestamp(event.created)),
            ),
            ("raw", Field::Json(Some(object.clone()))),
            (
                "last_event_previous",
                Field::Json(event.previous_attributes().cloned()),
            ),
        ]);
        rows.push(columns);
        if let (true, Some(workspace)) = (table.affects_revenue(), workspace) {
            let now = deps.clock.now();
            let day = mirror::timestamp(event.created).unwrap_or(now).date_naive();
            if requested.insert((workspace, day)) {
                messages.push(MetricsRecompute::new(workspace, day, "billing", now).to_outgoing()?);
            }
        }
    }
    let upsert = async {
        if rows.is_empty() {
            return Ok(());
        }
        let mut params = Params::new();
        let name = table.name();
        let sql = upsert_rows_sql(
            name,
            &rows,
            &format!("NOT stripe.{name}.deleted"),
            &mut params,
        );
        transaction
            .execute_typed(&sql, &refs(&params))
            .await
            .context("write mirror rows")?;
        Ok::<(), BillingError>(())
    };
    let (written, pending) = tokio::join!(upsert, outbox.enqueue(&transaction, &messages));
    written?;
    let pending = pending?;
    transaction.commit().await.context("commit batch")?;
    Ok((outcomes, pending))
}

/// Inserts the ledger rows; the ids that were new.
async fn record_many(
    transaction: &tokio_postgres::Transaction<'_>,
    events: &[StripeEvent],
    outcomes: &[Ingested],
) -> Result<HashSet<String>, BillingError> {
    let chosen: Vec<(&StripeEvent, &str)> = events
        .iter()
        .zip(outcomes)
        .filter_map(|(event, outcome)| match outcome {
            Ingested::Applied => Some((event, "applied")),
            Ingested::Stale => Some((event, "stale")),
            _ => None,
        })
        .collect();
    if chosen.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<&str> = chosen.iter().map(|(e, _)| e.id.as_str()).collect();
    let types: Vec<&str> = chosen.iter().map(|(e, _)| e.event_type.as_str()).collect();
    let created: Vec<Option<chrono::DateTime<chrono::Utc>>> = chosen
        .iter()
        .map(|(e, _)| mirror::timestamp(e.created))
        .collect();
    let livemode: Vec<bool> = chosen.iter().map(|(e, _)| e.livemode).collect();
    let accounts: Vec<Option<&str>> = chosen.iter().map(|(e, _)| e.account.as_deref()).collect();
    let versions: Vec<Option<&str>> = chosen
        .iter()
        .map(|(e, _)| e.api_version.as_deref())
        .collect();
    let objects: Vec<Option<&str>> = chosen.iter().map(|(e, _)| e.object_id()).collect();
    let payloads: Vec<&Value> = chosen.iter().map(|(e, _)| &e.payload).collect();
    let outcomes: Vec<&str> = chosen.iter().map(|(_, outcome)| *outcome).collect();
    let rows = transaction
        .query_typed(
            "INSERT INTO stripe.events (id, type, created, livemode, account, api_version, object_id, payload, processed_at, outcome)
             SELECT id, type, created, livemode, account, api_version, object_id, payload, now(), outcome
               FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bool[], $5::text[], $6::text[],
                           $7::text[], $8::jsonb[], $9::text[])
                 AS u (id, type, created, livemode, account, api_version, object_id, payload, outcome)
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
            &[
                (&ids, Type::TEXT_ARRAY),
                (&types, Type::TEXT_ARRAY),
                (&created, Type::TIMESTAMPTZ_ARRAY),
                (&livemode, Type::BOOL_ARRAY),
                (&accounts, Type::TEXT_ARRAY),
                (&versions, Type::TEXT_ARRAY),
                (&objects, Type::TEXT_ARRAY),
                (&payloads, Type::JSONB_ARRAY),
                (&outcomes, Type::TEXT_ARRAY),
            ],
        )
        .await
        .context("record events")?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
