//! Orders and refunds into `orders` and `order_refunds`, one set-based statement per page,
//! newest state winning, whichever path (poll or webhook) brought them.

use std::collections::{BTreeSet, HashMap};

use super::wire::{Order, Refund};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use shared::db::{DbContext, DbError};
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;
use uuid::Uuid;

/// Where a stored copy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Poll,
    Webhook,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Poll => "poll",
            Source::Webhook => "webhook",
        }
    }
}

/// What [`upsert_orders`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub inserted: i32,
    pub updated: i32,
    /// The UTC dates (of `processed_at`, else `created_at`) of the orders that changed.
    pub dates: BTreeSet<NaiveDate>,
}

/// Stores refunds by id (an existing one is left alone: refunds do not change).
async fn store_refunds(
    transaction: &Transaction<'_>,
    shop: &str,
    source: Source,
    refunds: &[&Refund],
) -> Result<u64, DbError> {
    if refunds.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = refunds.iter().map(|refund| refund.refund_id).collect();
    let orders: Vec<i64> = refunds.iter().map(|refund| refund.order_id).collect();
    let amounts: Vec<Decimal> = refunds.iter().map(|refund| refund.amount).collect();
    let created: Vec<Option<DateTime<Utc>>> =
        refunds.iter().map(|refund| refund.created_at).collect();
    let raw: Vec<&Value> = refunds.iter().map(|refund| &refund.raw).collect();
    transaction
        .execute_typed(
            "INSERT INTO order_refunds (shop, refund_id, order_id, amount, created_at, raw, source)
             SELECT $1, id, order_id, amount, created, raw, $2
               FROM unnest($3::int8[], $4::int8[], $5::numeric[], $6::timestamptz[], $7::jsonb[])
                    AS r(id, order_id, amount, created, raw)
             ON CONFLICT (shop, refund_id) DO NOTHING",
            &[
                (&shop, Type::TEXT),
                (&source.as_str(), Type::TEXT),
                (&ids, Type::INT8_ARRAY),
                (&orders, Type::INT8_ARRAY),
                (&amounts, Type::NUMERIC_ARRAY),
                (&created, Type::TIMESTAMPTZ_ARRAY),
                (&raw, Type::JSONB_ARRAY),
            ],
        )
        .await
        .context("store refunds")
}

/// Upserts `orders` of a run in a transaction of their own, fenced by the run's `lease`
/// (which is renewed after), as a polled page or a bulk batch is written.
pub(crate) async fn store_fenced(
    pool: &shared::db::Pool,
    lease: &shared::lease::Lease,
    shop: &str,
    workspace: Uuid,
    run_id: Uuid,
    orders: &[Order],
) -> Result<Written, crate::EtlError> {
    let mut client = pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, shared::db::Budget::BACKGROUND).await?;
    lease.fence(&*transaction).await?;
    let written = upsert_orders(
        &transaction,
        shop,
        workspace,
        Some(run_id),
        Source::Poll,
        orders,
    )
    .await?;
    transaction.commit().await.context("commit orders")?;
    lease.renew(&**client).await?;
    Ok(written)
}

/// Upserts orders (and their refunds) in the caller's transaction; newest `updated_at` wins.
pub async fn upsert_orders(
    transaction: &Transaction<'_>,
    shop: &str,
    workspace: Uuid,
    run_id: Option<Uuid>,
    source: Source,
    orders: &[Order],
) -> Result<Written, DbError> {
    // One statement may not touch a row twice: keep the newest copy of each order.
    let mut newest: HashMap<i64, &Order> = HashMap::with_capacity(orders.len());
    for order in orders {
        let entry = newest.entry(order.order_id).or_insert(order);
        if order.updated_at > entry.updated_at {
            *entry = order;
        }
    }
    let mut orders: Vec<&Order> = newest.into_values().collect();
    if orders.is_empty() {
        return Ok(Written::default());
    }
    orders.sort_by_key(|order| order.order_id);
    let refunds: Vec<&Refund> = orders
        .iter()
        .flat_map(|order| order.refunds.iter())
        .collect();
    store_refunds(transaction, shop, source, &refunds).await?;
    let ids: Vec<i64> = orders.iter().map(|order| order.order_id).collect();
    let names: Vec<Option<&str>> = orders.iter().map(|order| order.name.as_deref()).collect();
    let at =
        |f: fn(&Order) -> Option<DateTime<Utc>>| orders.iter().map(|o| f(o)).collect::<Vec<_>>();
    let money = |f: fn(&Order) -> Option<Decimal>| orders.iter().map(|o| f(o)).collect::<Vec<_>>();
    let currencies: Vec<&str> = orders.iter().map(|order| order.currency.as_str()).collect();
    let statuses: Vec<Option<&str>> = orders
        .iter()
        .map(|order| order.financial_status.as_deref())
        .collect();
    let customers: Vec<Option<i64>> = orders.iter().map(|order| order.customer_id).collect();
    let emails: Vec<Option<&str>> = orders
        .iter()
        .map(|order| order.customer_email.as_deref())
        .collect();
    let presentment_currencies: Vec<Option<&str>> = orders
        .iter()
        .map(|order| order.presentment_currency.as_deref())
        .collect();
    let raw: Vec<&Value> = orders.iter().map(|order| &order.raw).collect();
    let rows = transaction
        .query_typed(
            "INSERT INTO orders AS o (shop, order_id, workspace_id, name, created_at, updated_at, processed_at, cancelled_at,
                                      currency, total_price, subtotal_price, total_tax, total_discounts, refunded_amount,
                                      financial_status, customer_id, customer_email, presentment_currency,
                                      presentment_total_price, raw, run_id, source)
             SELECT $1, r.id, $2, r.name, r.created, r.updated, r.processed, r.cancelled, r.currency, r.total, r.subtotal,
                    r.tax, r.discounts,
                    COALESCE((SELECT sum(f.amount) FROM order_refunds f WHERE f.shop = $1 AND f.order_id = r.id), 0),
                    r.status, r.customer, r.email, r.presentment_currency, r.presentment_total, r.raw, $3, $4
               FROM unnest($5::int8[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[],
                           $10::timestamptz[], $11::text[], $12::numeric[], $13::numeric[], $14::numeric[],
                           $15::numeric[], $16::text[], $17::int8[], $18::text[], $19::jsonb[], $20::text[],
                           $21::numeric[])
                    AS r(id, name, created, updated, processed, cancelled, currency, total, subtotal, tax, discounts,
                         status, customer, email, raw, presentment_currency, presentment_total)
             ON CONFLICT (shop, order_id) DO UPDATE
                SET workspace_id = EXCLUDED.workspace_id, name = EXCLUDED.name, created_at = EXCLUDED.created_at,
                    updated_at = EXCLUDED.updated_at, processed_at = EXCLUDED.processed_at,
                    cancelled_at = EXCLUDED.cancelled_at, currency = EXCLUDED.currency,
                    total_price = EXCLUDED.total_price, subtotal_price = EXCLUDED.subtotal_price,
                    total_tax = EXCLUDED.total_tax, total_discounts = EXCLUDED.total_discounts,
                    refunded_amount = EXCLUDED.refunded_amount, financial_status = EXCLUDED.financial_status,
                    customer_id = EXCLUDED.customer_id, customer_email = EXCLUDED.customer_email,
                    presentment_currency = EXCLUDED.presentment_currency,
                    presentment_total_price = EXCLUDED.presentment_total_price,
                    raw = EXCLUDED.raw, run_id = EXCLUDED.run_id, source = EXCLUDED.source, stored_at = now()
              -- A newer version, or the same version with other facts (the payload alone may
              -- differ in shape: a webhook's REST JSON, a poll's GraphQL node).
              WHERE o.updated_at < EXCLUDED.updated_at
                 OR (o.updated_at = EXCLUDED.updated_at
                     AND ((o.name, o.processed_at, o.cancelled_at, o.currency, o.total_price, o.subtotal_price,
                           o.total_tax, o.total_discounts, o.financial_status, o.customer_id, o.customer_email,
                           o.refunded_amount)
                          IS DISTINCT FROM
                          (EXCLUDED.name, EXCLUDED.processed_at, EXCLUDED.cancelled_at, EXCLUDED.currency,
                           EXCLUDED.total_price, EXCLUDED.subtotal_price, EXCLUDED.total_tax, EXCLUDED.total_discounts,
                           EXCLUDED.financial_status, EXCLUDED.customer_id, EXCLUDED.customer_email,
                           EXCLUDED.refunded_amount)
                          OR (o.presentment_currency, o.presentment_total_price)
                             IS DISTINCT FROM (EXCLUDED.presentment_currency, EXCLUDED.presentment_total_price)))
             RETURNING (xmax = 0), (COALESCE(o.processed_at, o.created_at) AT TIME ZONE 'UTC')::date",
            &[
                (&shop, Type::TEXT),
                (&workspace, Type::UUID),
                (&run_id, Type::UUID),
                (&source.as_str(), Type::TEXT),
                (&ids, Type::INT8_ARRAY),
                (&names, Type::TEXT_ARRAY),
                (&at(|o| Some(o.created_at)), Type::TIMESTAMPTZ_ARRAY),
                (&at(|o| Some(o.updated_at)), Type::TIMESTAMPTZ_ARRAY),
                (&at(|o| o.processed_at), Type::TIMESTAMPTZ_ARRAY),
                (&at(|o| o.cancelled_at), Type::TIMESTAMPTZ_ARRAY),
                (&currencies, Type::TEXT_ARRAY),
                (&money(|o| Some(o.total_price)), Type::NUMERIC_ARRAY),
                (&money(|o| o.subtotal_price), Type::NUMERIC_ARRAY),
                (&money(|o| o.total_tax), Type::NUMERIC_ARRAY),
                (&money(|o| o.total_discounts), Type::NUMERIC_ARRAY),
                (&statuses, Type::TEXT_ARRAY),
                (&customers, Type::INT8_ARRAY),
                (&emails, Type::TEXT_ARRAY),
                (&raw, Type::JSONB_ARRAY),
                (&presentment_currencies, Type::TEXT_ARRAY),
                (&money(|o| o.presentment_total_price), Type::NUMERIC_ARRAY),
            ],
        )
        .await
        .context("upsert orders")?;
    let mut written = Written::default();
    for row in rows {
        if row.get::<_, bool>(0) {
            written.inserted += 1;
        } else {
            written.updated += 1;
        }
        written.dates.insert(row.get(1));
    }
    Ok(written)
}

/// Stores a refund from a webhook and, when its order is stored, recomputes the order's
/// refunded amount and appends the refund to its `raw.refunds`. `None` when the refund was
/// already known; `Some(None)` when it waits for its order.
pub(crate) async fn apply_refund(
    transaction: &Transaction<'_>,
    shop: &str,
    refund: &Refund,
) -> Result<Option<Option<NaiveDate>>, DbError> {
    if store_refunds(transaction, shop, Source::Webhook, &[refund]).await? == 0 {
        return Ok(None);
    }
    let row = transaction
        .query_typed_opt(
            "UPDATE orders AS o
                SET refunded_amount = (SELECT COALESCE(sum(f.amount), 0) FROM order_refunds f
                                        WHERE f.shop = o.shop AND f.order_id = o.order_id),
                    raw = jsonb_set(o.raw, '{refunds}', COALESCE(o.raw -> 'refunds', '[]'::jsonb) || jsonb_build_array($3::jsonb)),
                    source = 'webhook', stored_at = now()
              WHERE o.shop = $1 AND o.order_id = $2
              RETURNING (COALESCE(o.processed_at, o.created_at) AT TIME ZONE 'UTC')::date",
            &[
                (&shop, Type::TEXT),
                (&refund.order_id, Type::INT8),
                (&refund.raw, Type::JSONB),
            ],
        )
        .await
        .context("apply refund to its order")?;
    Ok(Some(row.map(|row| row.get(0))))
}
