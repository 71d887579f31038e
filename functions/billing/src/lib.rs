//! The billing agent: Stripe webhooks into Supabase, exactly once, newest state wins.
//!
//! Stripe calls `POST /webhooks/stripe` ([`router`]). After the signature check, [`ingest`]
//! handles one event in one transaction:
//!
//! 1. events of types we do not model go to the ledger (`stripe.events`) and nowhere else;
//! 2. otherwise the object is locked (`pg_advisory_xact_lock` on its id, so two events of one
//!    object never interleave) and its stored version read;
//! 3. [`ordering::is_newer`] decides whether the event carries newer state; deleted objects
//!    are terminal;
//! 4. the ledger row is inserted — if the event id is already there this is a duplicate and
//!    the transaction is abandoned, so a redelivery changes nothing;
//! 5. a newer event rewrites the mirror row ([`mirror`]); a subscription also rewrites its
//!    items and its revenue facts ([`revenue`]); a revenue-bearing change asks the metrics
//!    agent to recompute that workspace's day (outbox, dispatched after commit).
//!
//! Nothing reaches Stripe's API: every column comes from the event payload.
//!
//! What can go wrong, and what Stripe hears (Stripe retries every non-2xx for three days):
//!
//! * not a snapshot event → 400 with the reason;
//! * an event we can never store — `\u0000` anywhere in it, money that overflows an exact
//!   decimal ([`revenue::Overflow`]), a value the database refuses (a number out of range, a
//!   time PostgreSQL cannot hold) — is acknowledged 200 `quarantined` and kept with the
//!   reason in `quarantine` ([`shared::quarantine`]): retrying cannot help, and it must not
//!   hold back the events of other objects;
//! * a transient failure (lost connection, serialization failure, a lock or statement
//!   timeout of the transaction's [`Budget::REQUEST`]) is retried in-process, then answered
//!   503 with `Retry-After` so Stripe redelivers; nothing is half-written because
//!   everything is one transaction;
//! * anything else is our defect: 500, and the redelivery succeeds once it is fixed.

pub mod config;
pub mod mirror;
pub mod ordering;
pub mod revenue;

use std::collections::HashMap;
use std::future::Future;
use std::io::BufRead;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use shared::db::{Budget, DbContext, DbError, Pool};
use shared::messages::MetricsRecompute;
use shared::queue::outbox::{Outbox, Pending};
use shared::queue::{Message, QueueError, Transport};
use shared::retry::{RetryClass, RetryPolicy, Retryable, retry};

use tokio_postgres::Transaction;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use mirror::{Field, Route, Table};

/// Stripe events are a few kilobytes; anything near this is not one.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// Stripe's ids are at most 255 characters; a longer one is not Stripe's (and would not fit
/// a btree index entry).
pub const MAX_ID_BYTES: usize = 255;

/// What a 503 asks Stripe to wait before redelivering.
const RETRY_AFTER_SECS: u32 = 5;

/// What the billing agent needs.
pub struct BillingDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    pub clock: shared::clock::Clock,
    /// Endpoint secrets; several while one is being rolled.
    pub webhook_secrets: Vec<String>,
}


#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The payload is not a Stripe event; retrying cannot help.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The event is Stripe's but can never be stored (money that overflows, `\u0000`); it is
    /// quarantined, not retried.
    #[error("the event cannot be stored: {0}")]
    Unstorable(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// SQLSTATE 54000: a value too large for the server's limits (a text too long for its
/// btree index entry). Like the refused values of [`DbError::is_refused_value`], the same
/// event fails the same way every time.
const PROGRAM_LIMIT_EXCEEDED: &str = "54000";

impl BillingError {
    /// Why this event can never be stored, when that is what went wrong.
    fn unstorable_reason(&self) -> Option<String> {
        match self {
            BillingError::Unstorable(reason) => Some(reason.clone()),
            BillingError::Db(error) if error.is_refused_value() || exceeds_limits(error) => {
                Some(error.to_string())
            }
            _ => None,
        }
    }
}

fn exceeds_limits(error: &DbError) -> bool {
    matches!(error, DbError::Postgres { source, .. }
        if source.code().is_some_and(|code| code.code() == PROGRAM_LIMIT_EXCEEDED))
}

impl Retryable for BillingError {
    fn retry_class(&self) -> RetryClass {
        match self {
            BillingError::Malformed(_) | BillingError::Unstorable(_) => RetryClass::Permanent,
            BillingError::Db(error) => error.retry_class(),
            BillingError::Queue(error) => error.retry_class(),
        }
    }
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ingested {
    /// The mirror now shows this event's state.
    Applied,
    /// Recorded; the mirror already held a newer state (or the object was deleted).
    Stale,
    /// Already recorded: nothing changed.
    Duplicate,
    /// Recorded in the ledger; the type is not mirrored.
    Unsupported,
    /// It can never be stored: kept in `quarantine` with the reason, nothing else written.
    Quarantined,
}

/// The ledger's `outcome` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LedgerOutcome {
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

    pub fn object(&self) -> &Value {
        self.payload.pointer("/data/object").unwrap_or(&Value::Null)
    }

    pub fn previous_attributes(&self) -> Option<&Value> {
        self.payload.pointer("/data/previous_attributes")
    }

    fn object_id(&self) -> Option<&str> {
        self.object().get("id").and_then(Value::as_str)
    }

    fn version(&self, deletes: bool) -> ordering::Version<'_> {
        ordering::Version {
            event_id: &self.id,
            created: self.created,
            object: self.object(),
            previous_attributes: self.previous_attributes(),
            deletes,
        }
    }
}

/// Records and applies one verified event (the raw body Stripe sent), retrying transient
/// database failures; an event that can never be stored is quarantined instead.
pub async fn ingest(deps: &BillingDeps, payload: &[u8]) -> Result<Ingested, BillingError> {
    let event = StripeEvent::parse(payload)?;
    let outbox = Outbox::new(deps.pool.clone(), deps.transport.clone());
    // Found here, the NUL is refused with where it is, and costs no transaction.
    let applied = match shared::text::unstorable(&event.payload) {
        Some(path) => Err(BillingError::Unstorable(format!(
            "`\\u0000` at {path}: PostgreSQL's text and jsonb cannot hold it"
        ))),
        None => retry(RetryPolicy::default(), || apply(deps, &outbox, &event)).await,
    };
    let (outcome, pending) = match applied {
        Ok(applied) => applied,
        Err(error) => {
            return match error.unstorable_reason() {
                Some(reason) => quarantine(deps, &event, &reason, payload).await,
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

/// The stored version of an object.
struct Stored {
    raw: Value,
    event_id: String,
    created: i64,
    previous_attributes: Option<Value>,
    deleted: bool,
}

type Params = Vec<(Box<dyn ToSql + Sync + Send>, Type)>;

fn refs(params: &Params) -> Vec<(&(dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|(value, kind)| (value.as_ref() as &(dyn ToSql + Sync), kind.clone()))
        .collect()
}

/// A statement of the write phase, already sent when first polled.
type Write<'a> = Pin<Box<dyn Future<Output = Result<(), BillingError>> + Send + 'a>>;

/// Runs `sql` as one write of the pipelined write phase.
fn write<'a>(
    transaction: &'a Transaction<'_>,
    sql: String,
    params: Params,
    context: &'static str,
) -> Write<'a> {
    Box::pin(async move {
        transaction
            .execute_typed(&sql, &refs(&params))
            .await
            .context(context)?;
        Ok(())
    })
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
    let Some(route) = mirror::route(&event.event_type) else {
        let (limited, recorded) = tokio::join!(
            shared::db::limit(&transaction, Budget::REQUEST),
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
        shared::db::limit(&transaction, Budget::REQUEST),
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
        Some(stored) => ordering::is_newer(
            &event.version(route.deletes),
            &ordering::Version {
                event_id: &stored.event_id,
                created: stored.created,
                object: &stored.raw,
                previous_attributes: stored.previous_attributes.as_ref(),
                deletes: stored.deleted,
            },
        ),
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
struct KnownItem {
    deleted: bool,
    /// The event the item's values came from: id, created, payload.
    source: Option<(String, i64, Value)>,
}

impl KnownItem {
    /// Whether a late snapshot (`event`) should refresh this removed item's values: only when
    /// the snapshot is newer, by the same rule as whole objects, than the one they came from.
    fn refreshed_by(&self, event: &StripeEvent) -> bool {
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
fn is_tombstone(object: &Value) -> bool {
    object.as_object().is_some_and(|fields| {
        fields
            .keys()
            .all(|key| matches!(key.as_str(), "id" | "object" | "deleted"))
    })
}

/// `INSERT … ON CONFLICT (id) DO UPDATE` of `columns` (the first is `id`) into `table`; an
/// existing row is updated only where `guard` holds.
fn upsert_sql(table: &str, columns: &[(&str, Field)], guard: &str, params: &mut Params) -> String {
    let mut next = 0;
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let values: Vec<String> = columns
        .iter()
        .map(|(_, field)| field.render(&mut next, params))
        .collect();
    let mut updates: Vec<String> = names
        .iter()
        .skip(1)
        .map(|name| format!("{name} = EXCLUDED.{name}"))
        .collect();
    updates.push("updated_at = now()".into());
    format!(
        "INSERT INTO stripe.{table} ({}) VALUES ({})
         ON CONFLICT (id) DO UPDATE SET {} WHERE {guard}",
        names.join(", "),
        values.join(", "),
        updates.join(", ")
    )
}

/// Writes the object's row. A tombstone (a bare deleted object) blanks Stripe's columns, as
/// Stripe itself then knows nothing more, but keeps our workspace link.
fn upsert<'a>(
    transaction: &'a Transaction<'_>,
    route: Route,
    event: &StripeEvent,
    id: &str,
    workspace: Option<Uuid>,
) -> Write<'a> {
    let object = event.object();
    let mut columns = vec![("id", Field::Text(Some(id.to_string())))];
    columns.extend(mirror::columns(route.table, object));
    if mirror::workspace_ref(route.table, object).is_some()
        && !(route.deletes && is_tombstone(object))
    {
        columns.push(("workspace_id", Field::Uuid(workspace)));
    }
    columns.extend([
        ("deleted", Field::Bool(Some(route.deletes))),
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
    let table = route.table.name();
    let mut params = Params::new();
    let sql = upsert_sql(
        table,
        &columns,
        &format!("NOT stripe.{table}.deleted"),
        &mut params,
    );
    write(transaction, sql, params, "write mirror row")
}

/// A subscription's items from one of its snapshots.
///
/// From the newest snapshot (`current`): items in it are upserted, items missing from it
/// (removed or replaced) are marked deleted, and a deleted item never comes back; when the
/// subscription has ended, all its items are gone.
///
/// From an older snapshot arriving late: an item the mirror does not know was removed by a
/// newer snapshot already applied (else that snapshot would have written it), so it is
/// recorded as deleted; a deleted item takes this snapshot's values if they are newer than
/// the ones it has. Live items are left alone. So the items converge whatever the order.
fn item_writes<'a>(
    transaction: &'a Transaction<'_>,
    event: &StripeEvent,
    subscription_id: &str,
    current: bool,
    known: &HashMap<String, KnownItem>,
) -> Vec<Write<'a>> {
    let subscription = event.object();
    let ended = matches!(
        subscription.get("status").and_then(Value::as_str),
        Some("canceled" | "incomplete_expired")
    );
    let guard = if current {
        "NOT stripe.subscription_items.deleted"
    } else {
        "stripe.subscription_items.deleted"
    };
    let created = mirror::timestamp(event.created);
    let mut writes = Vec::new();
    let mut listed = Vec::new();
    for item in mirror::items(subscription) {
        let Some(item_id) = item.get("id").and_then(Value::as_str) else {
            continue;
        };
        listed.push(item_id.to_string());
        if !current
            && known
                .get(item_id)
                .is_some_and(|item| !item.refreshed_by(event))
        {
            continue;
        }
        let mut columns = vec![("id", Field::Text(Some(item_id.to_string())))];
        columns.extend(mirror::item_columns(item, subscription_id, subscription));
        columns.extend([
            ("deleted", Field::Bool(Some(ended || !current))),
            ("last_event_id", Field::Text(Some(event.id.clone()))),
            ("last_event_created", Field::Time(created)),
            ("raw", Field::Json(Some(item.clone()))),
        ]);
        let mut params = Params::new();
        let sql = upsert_sql("subscription_items", &columns, guard, &mut params);
        writes.push(write(transaction, sql, params, "write subscription item"));
    }
    if current {
        // last_event_* keep naming the snapshot the item's values came from, so that a late
        // snapshot with newer values for it can still be told apart from an older one.
        let params: Params = vec![
            (Box::new(subscription_id.to_string()), Type::TEXT),
            (Box::new(listed), Type::TEXT_ARRAY),
        ];
        writes.push(write(
            transaction,
            "UPDATE stripe.subscription_items SET deleted = true, updated_at = now()
              WHERE subscription = $1 AND NOT deleted AND id <> ALL ($2)"
                .into(),
            params,
            "remove replaced subscription items",
        ));
    }
    writes
}

/// The subscription's new MRR and, when it moved, the change; money that overflows makes the
/// event unstorable.
fn revenue_writes<'a>(
    transaction: &'a Transaction<'_>,
    event: &StripeEvent,
    subscription_id: &str,
    workspace: Option<Uuid>,
    (before, ever_active): (Decimal, bool),
) -> Result<Vec<Write<'a>>, BillingError> {
    let subscription = event.object();
    let unstorable = |error: revenue::Overflow| BillingError::Unstorable(error.to_string());
    let after = revenue::mrr(subscription).map_err(unstorable)?;
    let delta = after
        .checked_sub(before)
        .ok_or(revenue::Overflow("the change in MRR"))
        .map_err(unstorable)?;
    let customer = subscription
        .get("customer")
        .and_then(|c| c.as_str().or_else(|| c.get("id")?.as_str()))
        .map(str::to_string);
    let currency = subscription
        .get("currency")
        .and_then(Value::as_str)
        .map(str::to_string);
    let status = subscription
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_string);
    let at = mirror::timestamp(event.created);
    let mut writes = vec![write(
        transaction,
        "INSERT INTO stripe.subscription_mrr (subscription, customer, workspace_id, currency, status, mrr, ever_active, as_of, event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (subscription) DO UPDATE SET customer = EXCLUDED.customer, workspace_id = EXCLUDED.workspace_id,
             currency = EXCLUDED.currency, status = EXCLUDED.status, mrr = EXCLUDED.mrr,
             ever_active = stripe.subscription_mrr.ever_active OR EXCLUDED.ever_active,
             as_of = EXCLUDED.as_of, event_id = EXCLUDED.event_id"
            .into(),
        vec![
            (Box::new(subscription_id.to_string()), Type::TEXT),
            (Box::new(customer.clone()), Type::TEXT),
            (Box::new(workspace), Type::UUID),
            (Box::new(currency.clone()), Type::TEXT),
            (Box::new(status), Type::TEXT),
            (Box::new(after), Type::NUMERIC),
            (Box::new(ever_active || !after.is_zero()), Type::BOOL),
            (Box::new(at), Type::TIMESTAMPTZ),
            (Box::new(event.id.clone()), Type::TEXT),
        ],
        "write subscription MRR",
    )];
    if let Some(kind) = revenue::classify(before, after, ever_active) {
        writes.push(write(
            transaction,
            "INSERT INTO stripe.mrr_changes (event_id, subscription, customer, workspace_id, kind, mrr_before, mrr_after, delta, currency, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT DO NOTHING"
                .into(),
            vec![
                (Box::new(event.id.clone()), Type::TEXT),
                (Box::new(subscription_id.to_string()), Type::TEXT),
                (Box::new(customer), Type::TEXT),
                (Box::new(workspace), Type::UUID),
                (Box::new(kind.as_str()), Type::TEXT),
                (Box::new(before), Type::NUMERIC),
                (Box::new(after), Type::NUMERIC),
                (Box::new(delta), Type::NUMERIC),
                (Box::new(currency), Type::TEXT),
                (Box::new(at), Type::TIMESTAMPTZ),
            ],
            "record MRR change",
        ));
    }
    Ok(writes)
}

/// How a backfill went.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BackfillReport {
    pub applied: u64,
    pub stale: u64,
    pub duplicate: u64,
    pub unsupported: u64,
    /// Events that can never be stored, kept in `quarantine`.
    pub quarantined: u64,
    /// (line number, reason) of lines that are not Stripe events.
    pub rejected: Vec<(usize, String)>,
}

/// Replays a JSONL file of Stripe events (one event per line, as Stripe sends them) through
/// the same path as the webhook. Bad lines are reported and skipped; a database failure stops
/// the replay (rerunning it is safe: applied events become duplicates).
pub async fn backfill(
    deps: &BillingDeps,
    lines: impl BufRead,
) -> Result<BackfillReport, BillingError> {
    let mut report = BackfillReport::default();
    for (index, line) in lines.lines().enumerate() {
        let line =
            line.map_err(|error| BillingError::Malformed(format!("line {}: {error}", index + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        match ingest(deps, line.as_bytes()).await {
            Ok(Ingested::Applied) => report.applied += 1,
            Ok(Ingested::Stale) => report.stale += 1,
            Ok(Ingested::Duplicate) => report.duplicate += 1,
            Ok(Ingested::Unsupported) => report.unsupported += 1,
            Ok(Ingested::Quarantined) => report.quarantined += 1,
            Err(BillingError::Malformed(reason)) => report.rejected.push((index + 1, reason)),
            Err(error) => return Err(error),
        }
    }
    Ok(report)
}

async fn receive_stripe(
    State(deps): State<Arc<BillingDeps>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    let secrets: Vec<&str> = deps.webhook_secrets.iter().map(String::as_str).collect();
    if let Err(error) =
        shared::webhook::verify_stripe(&body, signature, &secrets, deps.clock.now().timestamp())
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": format!("Stripe-Signature: {error}") })),
        )
            .into_response();
    }
    match ingest(&deps, &body).await {
        Ok(outcome) => (
            StatusCode::OK,
            axum::Json(json!({ "received": true, "outcome": outcome })),
        )
            .into_response(),
        Err(BillingError::Malformed(reason)) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": format!("malformed event: {reason}") })),
        )
            .into_response(),
        Err(error) if error.retry_class().is_transient() => {
            tracing::warn!(%error, "Stripe event not recorded for now; Stripe will redeliver");
            shared::http::ApiError::unavailable("the event could not be recorded now; retry later")
                .retry_after(RETRY_AFTER_SECS)
                .into_response()
        }
        Err(error) => {
            tracing::error!(%error, "Stripe event not recorded; Stripe will redeliver");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "error": "the event could not be recorded; retry later" })),
            )
                .into_response()
        }
    }
}

/// The billing agent's routes.
pub fn router(deps: Arc<BillingDeps>) -> Router {
    let runs = shared::runs::RunLog::new(deps.pool.clone(), shared::agents::Agent::Billing);
    runs.layer(
        Router::new()
            .route("/webhooks/stripe", post(receive_stripe))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(deps),
    )
}

/// Tables the ledger's events are applied to, emptied by [`rebuild`].
const MIRROR_TABLES: &str = "stripe.events, stripe.customers, stripe.products, stripe.prices, \
     stripe.subscriptions, stripe.subscription_items, stripe.invoices, stripe.charges, \
     stripe.disputes, stripe.checkout_sessions, stripe.subscription_mrr, stripe.mrr_changes";

/// Writes every stored Stripe event, oldest first, one JSON payload per line (the format
/// [`backfill`] reads); returns how many.
pub async fn export_ledger(
    pool: &Pool,
    out: &mut impl std::io::Write,
) -> Result<u64, BillingError> {
    let client = pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT payload::text FROM stripe.events ORDER BY created, id",
            &[],
        )
        .await
        .context("read the ledger")?;
    for row in &rows {
        writeln!(out, "{}", row.get::<_, &str>(0))
            .map_err(|error| BillingError::Malformed(format!("write the export: {error}")))?;
    }
    Ok(rows.len() as u64)
}

/// Rebuilds the mirror from a ledger export: empties the ledger and the mirror in one
/// transaction, then replays `export` through the webhook's own path (a fixed mirror rule
/// re-applied to history). The export is the backup: if this stops half-way,
/// `ops billing-backfill <export>` finishes it (what was replayed becomes duplicates).
pub async fn rebuild(
    deps: &BillingDeps,
    export: &std::path::Path,
) -> Result<BackfillReport, BillingError> {
    let file = std::fs::File::open(export)
        .map_err(|error| BillingError::Malformed(format!("{}: {error}", export.display())))?;
    {
        let client = deps.pool.get().await.context("check out a connection")?;
        client
            .batch_execute(&format!("TRUNCATE {MIRROR_TABLES}"))
            .await
            .context("empty the ledger and mirror")?;
    }
    backfill(deps, std::io::BufReader::new(file)).await
}
