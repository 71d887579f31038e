//! One event, one transaction: the ledger row, the ordering decision, the mirror's rows and
//! the revenue facts, and the metrics recompute in the outbox (see the crate's map).

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::Value;
use shared::db::DbContext;
use shared::messages::MetricsRecompute;
use shared::queue::Message;
use shared::queue::outbox::{Outbox, Pending};
use shared::retry::{RetryPolicy, retry};
use tokio_postgres::Transaction;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::mirror::{self, Table};
use crate::writes::{Write, item_writes, revenue_writes, upsert};
use crate::{BillingDeps, BillingError, Ingested, StripeEvent, ordering};

/// Records and applies one verified event (the raw body Stripe sent), retrying transient
/// database failures; an event that can never be stored is quarantined instead.
pub async fn ingest(deps: &BillingDeps, payload: &[u8]) -> Result<Ingested, BillingError> {
    let event = StripeEvent::parse(payload)?;
    ingest_parsed(deps, &event, payload).await
}

/// [`ingest`] of an event built here rather than received: an API read of the backfill
/// ([`StripeEvent::api_read`]). Its payload is what the ledger (and a quarantine) keeps.
pub async fn ingest_event(
    deps: &BillingDeps,
    event: &StripeEvent,
) -> Result<Ingested, BillingError> {
    let payload = serde_json::to_vec(&event.payload)
        .map_err(|error| BillingError::Malformed(error.to_string()))?;
    ingest_parsed(deps, event, &payload).await
}

async fn ingest_parsed(
    deps: &BillingDeps,
    event: &StripeEvent,
    payload: &[u8],
) -> Result<Ingested, BillingError> {
    let outbox = Outbox::new(deps.pool.clone(), deps.transport.clone());
    // Found here, the NUL is refused with where it is, and costs no transaction.
    let applied = match shared::text::unstorable(&event.payload) {
        Some(path) => Err(BillingError::Unstorable(format!(
            "`\\u0000` at {path}: PostgreSQL's text and jsonb cannot hold it"
        ))),
        None => retry(RetryPolicy::default(), || apply(deps, &outbox, event)).await,
    };
    let (outcome, pending) = match applied {
        Ok(applied) => applied,
        Err(error) => {
            return match error.unstorable_reason() {
                Some(reason) => quarantine(deps, event, &reason, payload).await,
                None => Err(error),
            };
        }
    };
    if !pending.is_empty() {
        // Committed already: if this send fails, the relay sends it later.
        if let Err(error) = outbox.dispatch(&pending).await {
            tracing::warn!(%error, event = %event.id, "metrics request left for the outbox relay");
        }
    }
    Ok(outcome)
}

/// Keeps an event that can never be stored, so Stripe stops redelivering it.
async fn quarantine(
    deps: &BillingDeps,
    event: &StripeEvent,
    reason: &str,
    payload: &[u8],
) -> Result<Ingested, BillingError> {
    tracing::warn!(event = %event.id, reason, "Stripe event quarantined");
    shared::quarantine::keep(
        &deps.pool,
        shared::quarantine::Quarantined {
            source: "stripe",
            key: &event.id,
            reason,
            payload,
        },
    )
    .await?;
    Ok(Ingested::Quarantined)
}

/// The ledger's `outcome` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedgerOutcome {
    Applied,
    Stale,
    Unsupported,
}

impl LedgerOutcome {
    fn as_str(self) -> &'static str {
        match self {
            LedgerOutcome::Applied => "applied",
            LedgerOutcome::Stale => "stale",
            LedgerOutcome::Unsupported => "unsupported",
        }
    }
}

/// The stored version of an object.
pub(crate) struct Stored {
    raw: Value,
    pub(crate) event_id: String,
    created: i64,
    previous_attributes: Option<Value>,
    pub(crate) deleted: bool,
}

impl Stored {
    pub(crate) fn version(&self) -> ordering::Version<'_> {
        ordering::Version {
            event_id: &self.event_id,
            created: self.created,
            object: &self.raw,
            previous_attributes: self.previous_attributes.as_ref(),
            deletes: self.deleted,
        }
    }
}

/// Imposes [`StripeEvent::transaction_settings`] of `events` on their transaction.
pub(crate) async fn settle(
    transaction: &tokio_postgres::Transaction<'_>,
    events: &[&StripeEvent],
) -> Result<(), shared::db::DbError> {
    transaction
        .batch_execute(&StripeEvent::transaction_settings(events))
        .await
        .context("set the transaction's limits")
}

/// One event, one transaction, four round trips: `BEGIN`; the transaction's time limits, the
/// object lock and every read, pipelined (the server runs them in order, so the limits hold
/// for the lock and the reads see the state after it); the decision; every write,
/// pipelined; `COMMIT`.
async fn apply(
    deps: &BillingDeps,
    outbox: &Outbox,
    event: &StripeEvent,
) -> Result<(Ingested, Pending), BillingError> {
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = client
        .transaction()
        .await
        .context("begin event transaction")?;
    let Some(route) = event.route() else {
        let (limited, recorded) = tokio::join!(
            settle(&transaction, std::slice::from_ref(&event)),
            record(&transaction, event, None, LedgerOutcome::Unsupported),
        );
        limited?;
        if !recorded? {
            return Ok((Ingested::Duplicate, Pending::default()));
        }
        transaction.commit().await.context("commit event")?;
        return Ok((Ingested::Unsupported, Pending::default()));
    };
    let object_id = event
        .object_id()
        .ok_or_else(|| BillingError::Malformed("`data.object.id` is missing".into()))?;
    let is_subscription = route.table == Table::Subscriptions;
    let lock_key = format!("stripe:{object_id}");
    let lock_params: [(&(dyn ToSql + Sync), Type); 1] = [(&lock_key, Type::TEXT)];
    let (limited, locked, stored, workspace, mrr_before, items_before) = tokio::join!(
        settle(&transaction, std::slice::from_ref(&event)),
        transaction.execute_typed(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &lock_params,
        ),
        read(&transaction, route.table, object_id),
        resolve_workspace(
            &transaction,
            mirror::workspace_ref(route.table, event.object())
        ),
        async {
            if is_subscription {
                read_mrr(&transaction, object_id).await
            } else {
                Ok((Decimal::ZERO, false))
            }
        },
        async {
            if is_subscription {
                read_items(&transaction, event.object()).await
            } else {
                Ok(HashMap::new())
            }
        },
    );
    limited?;
    locked.context("lock object")?;
    let (stored, workspace, mrr_before, items_before) =
        (stored?, workspace?, mrr_before?, items_before?);
    let newer = match &stored {
        None => true,
        Some(stored) if stored.event_id == event.id => {
            return Ok((Ingested::Duplicate, Pending::default()));
        }
        Some(stored) if stored.deleted => false,
        Some(stored) => ordering::is_newer(&event.version(route.deletes), &stored.version()),
    };
    let (outcome, ledger) = if newer {
        (Ingested::Applied, LedgerOutcome::Applied)
    } else {
        (Ingested::Stale, LedgerOutcome::Stale)
    };

    let mut writes: Vec<Write<'_>> = Vec::new();
    let mut messages = Vec::new();
    if is_subscription {
        writes.extend(item_writes(
            &transaction,
            event,
            object_id,
            newer,
            &items_before,
        ));
    }
    if newer {
        writes.push(upsert(&transaction, route, event, object_id, workspace));
        if is_subscription {
            writes.extend(revenue_writes(
                &transaction,
                event,
                object_id,
                workspace,
                mrr_before,
            )?);
        }
        if let (true, Some(workspace)) = (route.table.affects_revenue(), workspace) {
            let now = deps.clock.now();
            let day = mirror::timestamp(event.created).unwrap_or(now).date_naive();
            messages.push(MetricsRecompute::new(workspace, day, "billing", now).to_outgoing()?);
        }
    }
    let (recorded, written, pending) = tokio::join!(
        record(&transaction, event, Some(object_id), ledger),
        futures::future::try_join_all(writes),
        outbox.enqueue(&transaction, &messages),
    );
    if !recorded? {
        // Already in the ledger: dropping the transaction rolls the writes back.
        return Ok((Ingested::Duplicate, Pending::default()));
    }
    written?;
    let pending = pending?;
    transaction.commit().await.context("commit event")?;
    Ok((outcome, pending))
}

/// Inserts the ledger row; false if the event was recorded before.
async fn record(
    transaction: &Transaction<'_>,
    event: &StripeEvent,
    object_id: Option<&str>,
    outcome: LedgerOutcome,
) -> Result<bool, BillingError> {
    let created = mirror::timestamp(event.created);
    let inserted = transaction
        .execute_typed(
            "INSERT INTO stripe.events (id, type, created, livemode, account, api_version, object_id, payload, processed_at, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), $9)
             ON CONFLICT (id) DO NOTHING",
            &[
                (&event.id, Type::TEXT),
                (&event.event_type, Type::TEXT),
                (&created, Type::TIMESTAMPTZ),
                (&event.livemode, Type::BOOL),
                (&event.account, Type::TEXT),
                (&event.api_version, Type::TEXT),
                (&object_id, Type::TEXT),
                (&event.payload, Type::JSONB),
                (&outcome.as_str(), Type::TEXT),
            ],
        )
        .await
        .context("record event")?;
    Ok(inserted == 1)
}

async fn read(
    transaction: &Transaction<'_>,
    table: Table,
    id: &str,
) -> Result<Option<Stored>, BillingError> {
    let sql = format!(
        "SELECT raw, last_event_id, extract(epoch FROM last_event_created)::int8, last_event_previous, deleted
           FROM stripe.{} WHERE id = $1",
        table.name()
    );
    let row = transaction
        .query_typed_opt(&sql, &[(&id, Type::TEXT)])
        .await
        .context("read stored object")?;
    Ok(row.map(|row| Stored {
        raw: row.get(0),
        event_id: row.get(1),
        created: row.get(2),
        previous_attributes: row.get(3),
        deleted: row.get(4),
    }))
}

/// The stored versions of several objects of one table, by id.
pub(crate) async fn read_many(
    transaction: &Transaction<'_>,
    table: Table,
    ids: &[&str],
) -> Result<HashMap<String, Stored>, BillingError> {
    let sql = format!(
        "SELECT id, raw, last_event_id, extract(epoch FROM last_event_created)::int8, last_event_previous, deleted
           FROM stripe.{} WHERE id = ANY ($1)",
        table.name()
    );
    let rows = transaction
        .query_typed(&sql, &[(&ids, Type::TEXT_ARRAY)])
        .await
        .context("read stored objects")?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.get(0),
                Stored {
                    raw: row.get(1),
                    event_id: row.get(2),
                    created: row.get(3),
                    previous_attributes: row.get(4),
                    deleted: row.get(5),
                },
            )
        })
        .collect())
}

/// The object's workspace, if it names one that exists or its customer has one.
async fn resolve_workspace(
    transaction: &Transaction<'_>,
    reference: Option<mirror::WorkspaceRef>,
) -> Result<Option<Uuid>, BillingError> {
    let Some(reference) = reference else {
        return Ok(None);
    };
    let row = transaction
        .query_typed_one(
            "SELECT COALESCE((SELECT w.id FROM public.workspaces w WHERE w.id = $1),
                             (SELECT c.workspace_id FROM stripe.customers c WHERE c.id = $2))",
            &[
                (&reference.metadata, Type::UUID),
                (&reference.customer, Type::TEXT),
            ],
        )
        .await
        .context("resolve workspace")?;
    Ok(row.get(0))
}

/// A subscription's MRR and whether it ever had any.
async fn read_mrr(
    transaction: &Transaction<'_>,
    subscription: &str,
) -> Result<(Decimal, bool), BillingError> {
    let row = transaction
        .query_typed_opt(
            "SELECT mrr, ever_active FROM stripe.subscription_mrr WHERE subscription = $1",
            &[(&subscription, Type::TEXT)],
        )
        .await
        .context("read subscription MRR")?;
    Ok(row.map_or((Decimal::ZERO, false), |row| (row.get(0), row.get(1))))
}

/// What the mirror knows of the items a subscription snapshot lists: for each known item,
/// whether it is deleted and the event its values came from (from the ledger).
async fn read_items(
    transaction: &Transaction<'_>,
    subscription: &Value,
) -> Result<HashMap<String, KnownItem>, BillingError> {
    let ids: Vec<&str> = mirror::items(subscription)
        .iter()
        .filter_map(|item| item.get("id")?.as_str())
        .collect();
    let rows = transaction
        .query_typed(
            "SELECT i.id, i.deleted, e.id, extract(epoch FROM e.created)::int8, e.payload
               FROM stripe.subscription_items i LEFT JOIN stripe.events e ON e.id = i.last_event_id
              WHERE i.id = ANY ($1)",
            &[(&ids, Type::TEXT_ARRAY)],
        )
        .await
        .context("read subscription items")?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let source = match (row.get(2), row.get(3), row.get(4)) {
                (Some(event_id), Some(created), Some(payload)) => {
                    Some((event_id, created, payload))
                }
                _ => None,
            };
            (
                row.get(0),
                KnownItem {
                    deleted: row.get(1),
                    source,
                },
            )
        })
        .collect())
}

/// An item the mirror already has.
pub(crate) struct KnownItem {
    deleted: bool,
    /// The event the item's values came from: id, created, payload.
    source: Option<(String, i64, Value)>,
}

impl KnownItem {
    /// Whether a late snapshot (`event`) should refresh this removed item's values: only when
    /// the snapshot is newer, by the same rule as whole objects, than the one they came from.
    pub(crate) fn refreshed_by(&self, event: &StripeEvent) -> bool {
        self.deleted
            && self
                .source
                .as_ref()
                .is_none_or(|(event_id, created, payload)| {
                    ordering::is_newer(
                        &event.version(false),
                        &ordering::Version {
                            event_id,
                            created: *created,
                            object: &payload["data"]["object"],
                            previous_attributes: payload.pointer("/data/previous_attributes"),
                            deletes: false,
                        },
                    )
                })
    }
}

/// A deletion event may carry only `{id, object, deleted}`, as Stripe's API then answers for
/// the object too.
pub(crate) fn is_tombstone(object: &Value) -> bool {
    object.as_object().is_some_and(|fields| {
        fields
            .keys()
            .all(|key| matches!(key.as_str(), "id" | "object" | "deleted"))
    })
}
