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
//! Nothing reaches Stripe's API: every column comes from the event payload. Database trouble
//! is retried in-process, then answered 500 so Stripe redelivers; nothing is half-written
//! because everything is one transaction.

pub mod mirror;
pub mod ordering;
pub mod revenue;

use std::io::BufRead;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use shared::db::{DbContext, DbError, Pool};
use shared::messages::MetricsRecompute;
use shared::queue::outbox::{Outbox, Pending};
use shared::queue::{Message, QueueError, Transport};
use shared::retry::{RetryClass, RetryPolicy, Retryable, retry};
use shared::settings::{Env, SettingsError};
use tokio_postgres::Transaction;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use mirror::{Field, Route, Table};

/// Stripe events are a few kilobytes; anything near this is not one.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// What the billing agent needs.
pub struct BillingDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    /// Endpoint secrets; several while one is being rolled.
    pub webhook_secrets: Vec<String>,
}

/// The billing agent's own configuration.
pub fn webhook_secrets(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, SettingsError> {
    Env(&lookup).required_list("STRIPE_WEBHOOK_SECRET")
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The payload is not a Stripe event; retrying cannot help.
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Retryable for BillingError {
    fn retry_class(&self) -> RetryClass {
        match self {
            BillingError::Malformed(_) => RetryClass::Permanent,
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
}

impl Ingested {
    fn ledger_outcome(self) -> &'static str {
        match self {
            Ingested::Applied => "applied",
            Ingested::Stale | Ingested::Duplicate => "stale",
            Ingested::Unsupported => "unsupported",
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
        Ok(Self {
            id: text("id").ok_or_else(|| missing("id"))?,
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
        &self.payload["data"]["object"]
    }

    pub fn previous_attributes(&self) -> Option<&Value> {
        self.payload.pointer("/data/previous_attributes")
    }

    fn object_id(&self) -> Option<&str> {
        self.object().get("id").and_then(Value::as_str)
    }

    fn version(&self) -> ordering::Version<'_> {
        ordering::Version {
            event_id: &self.id,
            created: self.created,
            object: self.object(),
            previous_attributes: self.previous_attributes(),
        }
    }
}

/// Records and applies one verified event (the raw body Stripe sent), retrying transient
/// database failures.
pub async fn ingest(deps: &BillingDeps, payload: &[u8]) -> Result<Ingested, BillingError> {
    let event = StripeEvent::parse(payload)?;
    let outbox = Outbox::new(deps.pool.clone(), deps.transport.clone());
    let (outcome, pending) = retry(RetryPolicy::default(), || apply(deps, &outbox, &event)).await?;
    if !pending.is_empty() {
        // Committed already: if this send fails, the relay sends it later.
        if let Err(error) = outbox.dispatch(&pending).await {
            tracing::warn!(%error, event = %event.id, "metrics request left for the outbox relay");
        }
    }
    Ok(outcome)
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
        if !record(&transaction, event, None, Ingested::Unsupported).await? {
            return Ok((Ingested::Duplicate, Pending::default()));
        }
        transaction.commit().await.context("commit event")?;
        return Ok((Ingested::Unsupported, Pending::default()));
    };
    let object_id = event
        .object_id()
        .ok_or_else(|| BillingError::Malformed("`data.object.id` is missing".into()))?;
    transaction
        .execute_typed(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[(&format!("stripe:{object_id}"), Type::TEXT)],
        )
        .await
        .context("lock object")?;
    let stored = read(&transaction, route.table, object_id).await?;
    let newer = match &stored {
        None => true,
        Some(stored) if stored.event_id == event.id => {
            return Ok((Ingested::Duplicate, Pending::default()));
        }
        Some(stored) if stored.deleted => false,
        Some(stored) => ordering::is_newer(
            &event.version(),
            &ordering::Version {
                event_id: &stored.event_id,
                created: stored.created,
                object: &stored.raw,
                previous_attributes: stored.previous_attributes.as_ref(),
            },
        ),
    };
    let outcome = if newer {
        Ingested::Applied
    } else {
        Ingested::Stale
    };
    if !record(&transaction, event, Some(object_id), outcome).await? {
        return Ok((Ingested::Duplicate, Pending::default()));
    }
    let mut pending = Pending::default();
    if newer {
        let workspace = upsert(&transaction, route, event, object_id).await?;
        if route.table == Table::Subscriptions {
            sync_items(&transaction, event, object_id).await?;
            record_revenue(&transaction, event, object_id, workspace).await?;
        }
        if let (true, Some(workspace)) = (route.table.affects_revenue(), workspace) {
            let day = mirror::timestamp(event.created)
                .unwrap_or_else(Utc::now)
                .date_naive();
            let request = MetricsRecompute::new(workspace, day, "billing", Utc::now());
            pending = outbox
                .enqueue(&transaction, &[request.to_outgoing()?])
                .await?;
        }
    }
    transaction.commit().await.context("commit event")?;
    Ok((outcome, pending))
}

/// Inserts the ledger row; false if the event was recorded before.
async fn record(
    transaction: &Transaction<'_>,
    event: &StripeEvent,
    object_id: Option<&str>,
    outcome: Ingested,
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
                (&outcome.ledger_outcome(), Type::TEXT),
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

/// A deletion event may carry only `{id, object, deleted}`; its columns must not blank out
/// what the mirror knew.
fn is_tombstone(object: &Value) -> bool {
    object.as_object().is_some_and(|fields| {
        fields
            .keys()
            .all(|key| matches!(key.as_str(), "id" | "object" | "deleted"))
    })
}

/// Writes the object's row; returns its workspace.
async fn upsert(
    transaction: &Transaction<'_>,
    route: Route,
    event: &StripeEvent,
    id: &str,
) -> Result<Option<Uuid>, BillingError> {
    let object = event.object();
    let tombstone = route.deletes && is_tombstone(object);
    let columns = if tombstone {
        Vec::new()
    } else {
        mirror::columns(route.table, object)
    };
    let has_workspace = columns.iter().any(|(name, _)| *name == "workspace_id");
    let mut params: Params = Vec::new();
    let mut next = 0;
    let mut names = vec!["id"];
    let mut values = vec![Field::Text(Some(id.to_string())).render(&mut next, &mut params)];
    for (name, field) in &columns {
        names.push(name);
        values.push(field.render(&mut next, &mut params));
    }
    let bookkeeping = [
        ("deleted", Field::Bool(Some(route.deletes))),
        ("last_event_id", Field::Text(Some(event.id.clone()))),
        (
            "last_event_created",
            Field::Time(mirror::timestamp(event.created)),
        ),
    ];
    for (name, field) in &bookkeeping {
        names.push(name);
        values.push(field.render(&mut next, &mut params));
    }
    params.push((Box::new(object.clone()), Type::JSONB));
    params.push((Box::new(event.previous_attributes().cloned()), Type::JSONB));
    names.extend(["raw", "last_event_previous"]);
    values.extend([format!("${}", next + 1), format!("${}", next + 2)]);
    let mut updates: Vec<String> = names[1..]
        .iter()
        .filter(|name| !(tombstone && **name == "raw"))
        .map(|name| format!("{name} = EXCLUDED.{name}"))
        .collect();
    updates.push("updated_at = now()".into());
    let table = route.table.name();
    let returning = if has_workspace {
        "workspace_id"
    } else {
        "NULL::uuid"
    };
    let sql = format!(
        "INSERT INTO stripe.{table} ({}) VALUES ({})
         ON CONFLICT (id) DO UPDATE SET {} WHERE NOT stripe.{table}.deleted
         RETURNING {returning}",
        names.join(", "),
        values.join(", "),
        updates.join(", ")
    );
    let row = transaction
        .query_typed_opt(&sql, &refs(&params))
        .await
        .context("write mirror row")?;
    Ok(row.and_then(|row| row.get(0)))
}

/// Rewrites a subscription's items from its snapshot: items in it are upserted, items missing
/// from it (removed or replaced) are marked deleted, and a deleted item never comes back. When
/// the subscription has ended, all its items are gone.
async fn sync_items(
    transaction: &Transaction<'_>,
    event: &StripeEvent,
    subscription_id: &str,
) -> Result<(), BillingError> {
    let subscription = event.object();
    let ended = matches!(
        subscription.get("status").and_then(Value::as_str),
        Some("canceled" | "incomplete_expired")
    );
    let created = mirror::timestamp(event.created);
    let mut current = Vec::new();
    for item in mirror::items(subscription) {
        let Some(item_id) = item.get("id").and_then(Value::as_str) else {
            continue;
        };
        current.push(item_id.to_string());
        let mut params: Params = Vec::new();
        let mut next = 0;
        let mut names = vec!["id"];
        let mut values =
            vec![Field::Text(Some(item_id.to_string())).render(&mut next, &mut params)];
        for (name, field) in mirror::item_columns(item, subscription_id, subscription) {
            names.push(name);
            values.push(field.render(&mut next, &mut params));
        }
        for (name, field) in [
            ("deleted", Field::Bool(Some(ended))),
            ("last_event_id", Field::Text(Some(event.id.clone()))),
            ("last_event_created", Field::Time(created)),
        ] {
            names.push(name);
            values.push(field.render(&mut next, &mut params));
        }
        params.push((Box::new(item.clone()), Type::JSONB));
        names.push("raw");
        values.push(format!("${}", next + 1));
        let updates: Vec<String> = names[1..]
            .iter()
            .map(|name| format!("{name} = EXCLUDED.{name}"))
            .collect();
        let sql = format!(
            "INSERT INTO stripe.subscription_items ({}) VALUES ({})
             ON CONFLICT (id) DO UPDATE SET {}, updated_at = now() WHERE NOT stripe.subscription_items.deleted",
            names.join(", "),
            values.join(", "),
            updates.join(", ")
        );
        transaction
            .execute_typed(&sql, &refs(&params))
            .await
            .context("write subscription item")?;
    }
    transaction
        .execute_typed(
            "UPDATE stripe.subscription_items
                SET deleted = true, last_event_id = $3, last_event_created = $4, updated_at = now()
              WHERE subscription = $1 AND NOT deleted AND id <> ALL ($2)",
            &[
                (&subscription_id, Type::TEXT),
                (&current, Type::TEXT_ARRAY),
                (&event.id, Type::TEXT),
                (&created, Type::TIMESTAMPTZ),
            ],
        )
        .await
        .context("remove replaced subscription items")?;
    Ok(())
}

/// Updates the subscription's MRR and, when it moved, records the change.
async fn record_revenue(
    transaction: &Transaction<'_>,
    event: &StripeEvent,
    subscription_id: &str,
    workspace: Option<Uuid>,
) -> Result<(), BillingError> {
    let subscription = event.object();
    let after = revenue::mrr(subscription);
    let previous = transaction
        .query_typed_opt(
            "SELECT mrr, ever_active FROM stripe.subscription_mrr WHERE subscription = $1",
            &[(&subscription_id, Type::TEXT)],
        )
        .await
        .context("read subscription MRR")?;
    let (before, ever_active) =
        previous.map_or((Decimal::ZERO, false), |row| (row.get(0), row.get(1)));
    let customer = subscription
        .get("customer")
        .and_then(|c| c.as_str().or_else(|| c.get("id")?.as_str()));
    let currency = subscription.get("currency").and_then(Value::as_str);
    let status = subscription.get("status").and_then(Value::as_str);
    let at = mirror::timestamp(event.created);
    transaction
        .execute_typed(
            "INSERT INTO stripe.subscription_mrr (subscription, customer, workspace_id, currency, status, mrr, ever_active, as_of, event_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (subscription) DO UPDATE SET customer = EXCLUDED.customer, workspace_id = EXCLUDED.workspace_id,
                 currency = EXCLUDED.currency, status = EXCLUDED.status, mrr = EXCLUDED.mrr,
                 ever_active = stripe.subscription_mrr.ever_active OR EXCLUDED.ever_active,
                 as_of = EXCLUDED.as_of, event_id = EXCLUDED.event_id",
            &[
                (&subscription_id, Type::TEXT),
                (&customer, Type::TEXT),
                (&workspace, Type::UUID),
                (&currency, Type::TEXT),
                (&status, Type::TEXT),
                (&after, Type::NUMERIC),
                (&(ever_active || !after.is_zero()), Type::BOOL),
                (&at, Type::TIMESTAMPTZ),
                (&event.id, Type::TEXT),
            ],
        )
        .await
        .context("write subscription MRR")?;
    if let Some(kind) = revenue::classify(before, after, ever_active) {
        transaction
            .execute_typed(
                "INSERT INTO stripe.mrr_changes (event_id, subscription, customer, workspace_id, kind, mrr_before, mrr_after, delta, currency, occurred_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT DO NOTHING",
                &[
                    (&event.id, Type::TEXT),
                    (&subscription_id, Type::TEXT),
                    (&customer, Type::TEXT),
                    (&workspace, Type::UUID),
                    (&kind.as_str(), Type::TEXT),
                    (&before, Type::NUMERIC),
                    (&after, Type::NUMERIC),
                    (&(after - before), Type::NUMERIC),
                    (&currency, Type::TEXT),
                    (&at, Type::TIMESTAMPTZ),
                ],
            )
            .await
            .context("record MRR change")?;
    }
    Ok(())
}

/// How a backfill went.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BackfillReport {
    pub applied: u64,
    pub stale: u64,
    pub duplicate: u64,
    pub unsupported: u64,
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
) -> (StatusCode, axum::Json<Value>) {
    let signature = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    let secrets: Vec<&str> = deps.webhook_secrets.iter().map(String::as_str).collect();
    if let Err(error) =
        shared::webhook::verify_stripe(&body, signature, &secrets, Utc::now().timestamp())
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": format!("Stripe-Signature: {error}") })),
        );
    }
    match ingest(&deps, &body).await {
        Ok(outcome) => (
            StatusCode::OK,
            axum::Json(json!({ "received": true, "outcome": outcome })),
        ),
        Err(BillingError::Malformed(reason)) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": format!("malformed event: {reason}") })),
        ),
        Err(error) => {
            tracing::error!(%error, "Stripe event not recorded; Stripe will redeliver");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "error": "the event could not be recorded; retry later" })),
            )
        }
    }
}

/// The billing agent's routes.
pub fn router(deps: Arc<BillingDeps>) -> Router {
    Router::new()
        .route("/webhooks/stripe", post(receive_stripe))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(deps)
}
