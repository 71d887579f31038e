//! The statements of the write phase: guarded upserts built from the mirror's field lists
//! ([`crate::mirror`]), a subscription's items and its revenue facts, each sent as one
//! unnamed statement and pipelined by [`crate::ingest`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use rust_decimal::Decimal;
use serde_json::Value;
use shared::db::DbContext;
use tokio_postgres::Transaction;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::ingest::{KnownItem, is_tombstone};
use crate::mirror::{self, Field, Route};
use crate::{BillingError, StripeEvent, revenue};

pub(crate) type Params = Vec<(Box<dyn ToSql + Sync + Send>, Type)>;

pub(crate) fn refs(params: &Params) -> Vec<(&(dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|(value, kind)| (value.as_ref() as &(dyn ToSql + Sync), kind.clone()))
        .collect()
}

/// A statement of the write phase, already sent when first polled.
pub(crate) type Write<'a> = Pin<Box<dyn Future<Output = Result<(), BillingError>> + Send + 'a>>;

/// Runs `sql` as one write of the pipelined write phase.
pub(crate) fn write<'a>(
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

/// `INSERT … ON CONFLICT (id) DO UPDATE` of `columns` (the first is `id`) into `table`; an
/// existing row is updated only where `guard` holds.
pub(crate) fn upsert_sql(
    table: &str,
    columns: &[(&str, Field)],
    guard: &str,
    params: &mut Params,
) -> String {
    upsert_rows_sql(table, &[columns.to_vec()], guard, params)
}

/// [`upsert_sql`] of several rows (same columns, distinct ids) in one statement.
pub(crate) fn upsert_rows_sql(
    table: &str,
    rows: &[Vec<(&str, Field)>],
    guard: &str,
    params: &mut Params,
) -> String {
    let mut next = 0;
    let names: Vec<&str> = rows
        .first()
        .map(|columns| columns.iter().map(|(name, _)| *name).collect())
        .unwrap_or_default();
    let values: Vec<String> = rows
        .iter()
        .map(|columns| {
            let row: Vec<String> = columns
                .iter()
                .map(|(_, field)| field.render(&mut next, params))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect();
    let mut updates: Vec<String> = names
        .iter()
        .skip(1)
        .map(|name| format!("{name} = EXCLUDED.{name}"))
        .collect();
    updates.push("updated_at = now()".into());
    format!(
        "INSERT INTO stripe.{table} ({}) VALUES {}
         ON CONFLICT (id) DO UPDATE SET {} WHERE {guard}",
        names.join(", "),
        values.join(", "),
        updates.join(", ")
    )
}

/// Writes the object's row. A tombstone (a bare deleted object) blanks Stripe's columns, as
/// Stripe itself then knows nothing more, but keeps our workspace link.
pub(crate) fn upsert<'a>(
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
pub(crate) fn item_writes<'a>(
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
pub(crate) fn revenue_writes<'a>(
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
