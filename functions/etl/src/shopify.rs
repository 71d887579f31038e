//! Shopify orders into `orders`: pulled by the ETL run and pushed by Shopify's webhooks, one
//! row per (shop, order id) whichever way it came.
//!
//! **Polling** ([`extract_and_load`], called by [`crate::run`] for [`Platform::Shopify`]):
//! `GET {shop}/admin/api/2024-10/orders.json?status=any&updated_at_min=…&limit=250&order=updated_at asc`
//! with `X-Shopify-Access-Token`, following `Link: <…>; rel="next"` verbatim (a follow-up
//! carries only `page_info`, as Shopify requires) but only on the shop's own host
//! ([`next_page`]), the one host its token may go to. `updated_at_min` is the connection's
//! cursor (`sync_cursor->>'updated_at'`, the newest `updated_at` seen) minus the lookback
//! ([`Platform::lookback_days`], 7), because an order edited while a run was paging, or
//! stamped slightly out of order, would otherwise be skipped for good; a first run without a
//! cursor starts at the run's `window_start` (midnight UTC), so a backfill is a run with an
//! early window. `window_end` is not sent: a run reads everything changed up to now.
//!
//! Throttling: a 429 is retried by the shared [`retry`] honouring `Retry-After` (Shopify
//! sends fractional seconds, `2.0`, which [`classify`] reads); a 401/403 is an auth failure
//! and never retried. `X-Shopify-Shop-Api-Call-Limit: n/40` is read after every page: above
//! 80 % of the bucket the run pauses ([`pause_for`]) about as long as the standard 2 req/s
//! leak needs to bring it back under 80 %, so other apps sharing the shop's bucket keep
//! room and we rarely see a 429 at all.
//!
//! **Writing** ([`upsert_orders`], used by both paths): one set-based statement per page,
//! fenced by the run's lease on the poll path. Newest state wins: an existing row is only
//! rewritten by a copy with a later `updated_at`, or the same `updated_at` and a different
//! payload (so re-reading the lookback window rewrites nothing and only real changes are
//! counted as updated and sent to the metrics agent). Refunds are stored by refund id in
//! `order_refunds` and an order's `refunded_amount` is their sum, so a refund reported by a
//! webhook and again inside a polled order counts once, in either order. `net_revenue` is a
//! generated column: `total_price − refunded_amount` (at least 0), and 0 for a `voided`
//! order whose payment was never captured; a cancelled paid order nets what was not
//! refunded (Shopify refunds it on cancellation, so usually 0). Changed orders are reported
//! to the metrics agent by the UTC date of `processed_at` (when the sale counted; falling
//! back to `created_at`), which does not move when an order is later refunded or edited.
//!
//! **Webhooks** ([`webhook`]: `POST /webhooks/shopify`) arrive signed over the body only;
//! [`delivery`] reads what their headers claim and refuses stale ones, [`webhook`] decides
//! whether the named shop owns the order before anything is written.
//!
//! **Input never panics**: money is parsed exactly (plain or scientific notation) and a value
//! no decimal can hold is [`OrderError::OutOfRange`] (the webhook quarantines it, the poller
//! fails the run with it); sums are checked; header values are parsed, never indexed.

pub mod delivery;
pub mod webhook;

pub use webhook::{
    MAX_WEBHOOK_BYTES, WebhookDeps, WebhookError, WebhookOutcome, ingest_webhook, router,
};

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::db::{Budget, DbContext, DbError};
use shared::lease::Lease;
use shared::retry::{RetryClass, retry};
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::{
    Connection, EtlDeps, EtlError, EtlRun, ExtractError, MAX_QUOTED_BODY, Platform, RunReport,
    check_page_budget, complete, fetch_json,
};

/// The Admin API version the requests name.
pub const API_VERSION: &str = "2024-10";
/// Orders a page asks for (Shopify's maximum).
pub const PAGE_LIMIT: u32 = 250;
/// The longest pause [`pause_for`] asks for.
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// The longest `Retry-After` read as a wait; longer ones are this (the retry policy then
/// gives up rather than hold a Lambda).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// Why a body is not an order or refund we can keep. Both are permanent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Not the shape of one: a missing or non-numeric id, timestamp, currency or amount.
    #[error("{0}")]
    Malformed(String),
    /// The shape is right but a number is beyond what an exact decimal holds (`1e30`).
    #[error("{0}")]
    OutOfRange(String),
}

/// The shop handle (`demo-store`) of a handle or a `demo-store.myshopify.com` domain.
pub fn shop_handle(shop: &str) -> &str {
    let shop = shop.trim();
    shop.strip_suffix(".myshopify.com").unwrap_or(shop)
}

/// `updated_at_min` of a run: the cursor minus the lookback, or the window start.
pub fn updated_at_min(
    cursor: Option<DateTime<Utc>>,
    window_start: NaiveDate,
    lookback_days: i64,
) -> DateTime<Utc> {
    match cursor {
        Some(newest) => newest
            .checked_sub_signed(chrono::Duration::days(lookback_days))
            .unwrap_or(newest),
        None => window_start.and_time(NaiveTime::MIN).and_utc(),
    }
}

/// The newest `updated_at` a stored cursor (`{"updated_at": "…"}`) names.
pub fn cursor_updated_at(cursor: &Value) -> Option<DateTime<Utc>> {
    timestamp(cursor.get("updated_at"))
}

/// The first page's URL for a shop (`shop_url` as [`crate::Endpoints::shopify_shop_url`]).
pub fn first_page(shop_url: &str, since: DateTime<Utc>) -> String {
    let since = since.to_rfc3339_opts(SecondsFormat::Secs, true);
    let limit = PAGE_LIMIT.to_string();
    let query = crate::meta::form_query(&[
        ("status", "any"),
        ("updated_at_min", &since),
        ("limit", &limit),
        ("order", "updated_at asc"),
    ]);
    format!(
        "{}/admin/api/{API_VERSION}/orders.json?{query}",
        shop_url.trim_end_matches('/')
    )
}

/// One refund: its id, order, and the money it returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub refund_id: i64,
    pub order_id: i64,
    /// The sum of its successful `refund` transactions.
    pub amount: Decimal,
    pub created_at: Option<DateTime<Utc>>,
    pub raw: Value,
}

/// The columns of an order we keep, plus the whole payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: i64,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub currency: String,
    pub total_price: Decimal,
    pub subtotal_price: Option<Decimal>,
    pub total_tax: Option<Decimal>,
    pub total_discounts: Option<Decimal>,
    pub financial_status: Option<String>,
    pub customer_id: Option<i64>,
    pub customer_email: Option<String>,
    pub refunds: Vec<Refund>,
    pub raw: Value,
}

/// One page of orders and where the next one is.
#[derive(Debug, Clone, PartialEq)]
pub struct OrdersPage {
    pub orders: Vec<Order>,
    pub next: Option<String>,
    /// `X-Shopify-Shop-Api-Call-Limit` as (used, bucket size).
    pub call_limit: Option<(u32, u32)>,
}

fn timestamp(value: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value?.as_str()?)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// What a money field holds.
enum Money {
    Exact(Decimal),
    /// A number no decimal can hold (beyond ±7.9e28).
    OutOfRange,
    NotANumber,
}

/// Reads money exactly: `"110.10"`, `110.1`, `"1.5e2"`.
fn money(value: &Value) -> Money {
    let text = match value {
        Value::String(text) => text.trim().to_string(),
        Value::Number(number) => number.to_string(),
        _ => return Money::NotANumber,
    };
    if let Ok(exact) = text.parse::<Decimal>() {
        return Money::Exact(exact);
    }
    if let Ok(exact) = Decimal::from_scientific(&text) {
        return Money::Exact(exact);
    }
    if text.parse::<f64>().is_ok_and(f64::is_finite) {
        Money::OutOfRange
    } else {
        Money::NotANumber
    }
}

/// A required or optional money field as a result: `what` names it in the error.
fn money_field(value: Option<&Value>, what: &str) -> Result<Option<Decimal>, OrderError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match money(value) {
            Money::Exact(exact) => Ok(Some(exact)),
            Money::OutOfRange => Err(OrderError::OutOfRange(format!(
                "{what} is out of range for an exact decimal"
            ))),
            Money::NotANumber => Err(OrderError::Malformed(format!("{what} is not a decimal"))),
        },
    }
}

fn id(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    value?.as_str().map(str::to_string)
}

/// Reads a refund (`refunds/create` body, or one entry of an order's `refunds`).
pub fn parse_refund(body: &Value) -> Result<Refund, OrderError> {
    let malformed = |what: &str| OrderError::Malformed(what.to_string());
    let refund_id = id(body.get("id")).ok_or_else(|| malformed("refund without a numeric `id`"))?;
    let order_id =
        id(body.get("order_id")).ok_or_else(|| malformed("refund without a numeric `order_id`"))?;
    let mut amount = Decimal::ZERO;
    for transaction in body
        .get("transactions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = transaction.get("kind").and_then(Value::as_str);
        let status = transaction.get("status").and_then(Value::as_str);
        if kind == Some("refund") && matches!(status, None | Some("success")) {
            let what = format!("refund {refund_id}: a transaction's `amount`");
            let part = money_field(transaction.get("amount"), &what)?
                .ok_or_else(|| OrderError::Malformed(format!("{what} is missing")))?;
            amount = amount.checked_add(part).ok_or_else(|| {
                OrderError::OutOfRange(format!("refund {refund_id}: the amounts overflow"))
            })?;
        }
    }
    Ok(Refund {
        refund_id,
        order_id,
        amount,
        created_at: timestamp(body.get("created_at")),
        raw: body.clone(),
    })
}

/// Reads an order (one entry of `orders`, or an `orders/*` webhook body).
pub fn parse_order(body: &Value) -> Result<Order, OrderError> {
    let order_id = id(body.get("id"))
        .ok_or_else(|| OrderError::Malformed("order without a numeric `id`".into()))?;
    let at = |key: &str| -> Result<DateTime<Utc>, OrderError> {
        timestamp(body.get(key)).ok_or_else(|| {
            OrderError::Malformed(format!("order {order_id} without a valid `{key}`"))
        })
    };
    let money = |key: &str| money_field(body.get(key), &format!("order {order_id}: `{key}`"));
    let refunds = body
        .get("refunds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|refund| {
            let mut refund = refund.clone();
            // Shopify repeats it, but do not depend on that inside an order.
            if let Value::Object(fields) = &mut refund {
                fields.entry("order_id").or_insert_with(|| json!(order_id));
            }
            parse_refund(&refund)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let customer = body.get("customer");
    Ok(Order {
        order_id,
        name: text(body.get("name")),
        created_at: at("created_at")?,
        updated_at: at("updated_at")?,
        processed_at: timestamp(body.get("processed_at")),
        cancelled_at: timestamp(body.get("cancelled_at")),
        currency: text(body.get("currency")).ok_or_else(|| {
            OrderError::Malformed(format!("order {order_id} without a `currency`"))
        })?,
        total_price: money("total_price")?.ok_or_else(|| {
            OrderError::Malformed(format!("order {order_id} without a `total_price`"))
        })?,
        subtotal_price: money("subtotal_price")?,
        total_tax: money("total_tax")?,
        total_discounts: money("total_discounts")?,
        financial_status: text(body.get("financial_status")),
        customer_id: customer.and_then(|customer| id(customer.get("id"))),
        customer_email: customer
            .and_then(|customer| text(customer.get("email")))
            .or_else(|| text(body.get("email"))),
        refunds,
        raw: body.clone(),
    })
}

/// The URL of `Link: <…>; rel="next"`, if any.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("link")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|part| {
            let (target, params) = part.split_once(';')?;
            params
                .split(';')
                .any(|param| param.trim().replace(' ', "") == "rel=\"next\"")
                .then(|| {
                    target
                        .trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
        })
}

/// `X-Shopify-Shop-Api-Call-Limit: 32/40` as (32, 40).
pub fn call_limit(headers: &HeaderMap) -> Option<(u32, u32)> {
    let value = headers
        .get("x-shopify-shop-api-call-limit")?
        .to_str()
        .ok()?;
    let (used, size) = value.trim().split_once('/')?;
    Some((used.trim().parse().ok()?, size.trim().parse().ok()?))
}

/// How long to wait before the next request when the shop's bucket is at `used` of `size`:
/// nothing below 80 %, else half a second (one leak at the standard 2 req/s) for every
/// request above 80 %, at most 10 s — e.g. 32/40 → 0.5 s, 40/40 → 4.5 s.
pub fn pause_for(used: u32, size: u32) -> Option<Duration> {
    let threshold = u64::from(size) * 4 / 5;
    let used = u64::from(used);
    if size == 0 || used < threshold {
        return None;
    }
    let over = used - threshold + 1;
    Some(Duration::from_millis(over.saturating_mul(500)).min(MAX_PAUSE))
}

/// The URL of a `Link: rel="next"` to follow: only on the shop's own host (`shop_url`), which
/// is the only host the shop's token may be sent to.
pub fn next_page(next: &str, shop_url: &str) -> Result<String, ExtractError> {
    let url = reqwest::Url::parse(next)
        .map_err(|_| ExtractError::Malformed("the Link rel=\"next\" is not a URL".into()))?;
    let shop = reqwest::Url::parse(shop_url)
        .map_err(|_| ExtractError::Malformed("the shop's API URL is not a URL".into()))?;
    if url.origin() != shop.origin() {
        return Err(ExtractError::Malformed(format!(
            "the next page is on {}, not on the shop's {}",
            url.origin().ascii_serialization(),
            shop.origin().ascii_serialization()
        )));
    }
    Ok(url.into())
}

/// Reads one page of `orders.json`.
pub fn parse_page(headers: &HeaderMap, body: &Value) -> Result<OrdersPage, ExtractError> {
    let orders = body
        .get("orders")
        .and_then(Value::as_array)
        .ok_or_else(|| ExtractError::Malformed("orders answer without `orders`".into()))?
        .iter()
        .map(parse_order)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ExtractError::Malformed(error.to_string()))?;
    Ok(OrdersPage {
        orders,
        next: next_link(headers),
        call_limit: call_limit(headers),
    })
}

/// `Retry-After` as Shopify sends it (`2.0`), or as delay-seconds or an HTTP date, at most
/// an hour.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    shared::retry::retry_after(headers, SystemTime::now())
        .or_else(|| {
            let seconds: f64 = headers
                .get("retry-after")?
                .to_str()
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Duration::try_from_secs_f64(seconds).ok()
        })
        .map(|wait| wait.min(MAX_RETRY_AFTER))
}

/// Classifies an error answer: 429 and 5xx are transient, 401/403 an auth failure.
pub fn classify(status: reqwest::StatusCode, headers: &HeaderMap, body: &str) -> ExtractError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|json| json.get("errors").cloned())
        .map(|errors| match errors {
            Value::String(text) => text,
            other => other.to_string(),
        })
        .unwrap_or_else(|| body.to_string());
    let message = shared::text::clip(&message, MAX_QUOTED_BODY);
    if matches!(status.as_u16(), 401 | 403) {
        return ExtractError::Auth(format!("Shopify HTTP {status}: {message}"));
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return ExtractError::NotFound(format!("Shopify HTTP {status}: {message}"));
    }
    match shared::retry::classify_http(status, headers, SystemTime::now()) {
        RetryClass::Transient { .. } => ExtractError::Throttled {
            message: format!("Shopify HTTP {status}: {message}"),
            retry_after: retry_after(headers),
        },
        RetryClass::Permanent => ExtractError::Api(format!("Shopify HTTP {status}: {message}")),
    }
}

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
    let raw: Vec<&Value> = orders.iter().map(|order| &order.raw).collect();
    let rows = transaction
        .query_typed(
            "INSERT INTO orders AS o (shop, order_id, workspace_id, name, created_at, updated_at, processed_at, cancelled_at,
                                      currency, total_price, subtotal_price, total_tax, total_discounts, refunded_amount,
                                      financial_status, customer_id, customer_email, raw, run_id, source)
             SELECT $1, r.id, $2, r.name, r.created, r.updated, r.processed, r.cancelled, r.currency, r.total, r.subtotal,
                    r.tax, r.discounts,
                    COALESCE((SELECT sum(f.amount) FROM order_refunds f WHERE f.shop = $1 AND f.order_id = r.id), 0),
                    r.status, r.customer, r.email, r.raw, $3, $4
               FROM unnest($5::int8[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[],
                           $10::timestamptz[], $11::text[], $12::numeric[], $13::numeric[], $14::numeric[],
                           $15::numeric[], $16::text[], $17::int8[], $18::text[], $19::jsonb[])
                    AS r(id, name, created, updated, processed, cancelled, currency, total, subtotal, tax, discounts,
                         status, customer, email, raw)
             ON CONFLICT (shop, order_id) DO UPDATE
                SET workspace_id = EXCLUDED.workspace_id, name = EXCLUDED.name, created_at = EXCLUDED.created_at,
                    updated_at = EXCLUDED.updated_at, processed_at = EXCLUDED.processed_at,
                    cancelled_at = EXCLUDED.cancelled_at, currency = EXCLUDED.currency,
                    total_price = EXCLUDED.total_price, subtotal_price = EXCLUDED.subtotal_price,
                    total_tax = EXCLUDED.total_tax, total_discounts = EXCLUDED.total_discounts,
                    refunded_amount = EXCLUDED.refunded_amount, financial_status = EXCLUDED.financial_status,
                    customer_id = EXCLUDED.customer_id, customer_email = EXCLUDED.customer_email,
                    raw = EXCLUDED.raw, run_id = EXCLUDED.run_id, source = EXCLUDED.source, stored_at = now()
              WHERE o.updated_at < EXCLUDED.updated_at
                 OR (o.updated_at = EXCLUDED.updated_at
                     AND (o.raw IS DISTINCT FROM EXCLUDED.raw OR o.refunded_amount IS DISTINCT FROM EXCLUDED.refunded_amount))
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
async fn apply_refund(
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

/// The Shopify half of [`crate::run`]: pages of orders since the cursor, each stored under the
/// lease (the next page is fetched meanwhile); then the cursor moves to the newest
/// `updated_at` seen.
pub(crate) async fn extract_and_load(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
) -> Result<(), EtlError> {
    let shop = shop_handle(&run.account_id);
    let previous = connection.cursor.as_ref().and_then(cursor_updated_at);
    let since = updated_at_min(
        previous,
        run.window_start,
        Platform::Shopify.lookback_days(),
    );
    let shop_url = deps.endpoints.shopify_shop_url(shop);
    let fetch_page = |page_url: String| async move {
        retry(deps.retry, || {
            fetch_json(
                &deps.http,
                Platform::Shopify,
                &page_url,
                &connection.credentials,
            )
        })
        .await
    };
    let mut fetched = Some(fetch_page(first_page(&shop_url, since)).await);
    let mut newest = previous;
    let mut dates = BTreeSet::new();
    while let Some(answer) = fetched.take() {
        check_page_budget(report)?;
        let (headers, body) = answer?;
        let mut page = parse_page(&headers, &body)?;
        page.next = page
            .next
            .map(|next| next_page(&next, &shop_url))
            .transpose()?;
        let pause = page
            .call_limit
            .and_then(|(used, size)| pause_for(used, size));
        // The next page is asked for while this one is stored, unless the call limit asks
        // us to slow down first.
        let prefetch = async {
            match (&page.next, pause) {
                (Some(next), None) => Some(fetch_page(next.clone()).await),
                _ => None,
            }
        };
        let store = async {
            let mut client = deps.pool.get().await.context("check out a connection")?;
            let transaction = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
            lease.fence(&*transaction).await?;
            let written = upsert_orders(
                &transaction,
                shop,
                connection.workspace_id,
                Some(report.run_id),
                Source::Poll,
                &page.orders,
            )
            .await?;
            transaction.commit().await.context("commit page")?;
            lease.renew(&**client).await?;
            Ok::<_, EtlError>(written)
        };
        let (written, prefetched) = tokio::join!(store, prefetch);
        let written = written?;
        report.pages = report.pages.saturating_add(1);
        report.rows_inserted = report.rows_inserted.saturating_add(written.inserted);
        report.rows_updated = report.rows_updated.saturating_add(written.updated);
        dates.extend(written.dates);
        newest = page
            .orders
            .iter()
            .map(|order| order.updated_at)
            .chain(newest)
            .max();
        fetched = match (prefetched, page.next) {
            (Some(answer), _) => Some(answer),
            (None, Some(next)) => {
                if let Some(wait) = pause {
                    tracing::info!(?wait, call_limit = ?page.call_limit, "Shopify call limit near; pausing");
                    tokio::time::sleep(wait).await;
                }
                Some(fetch_page(next).await)
            }
            (None, None) => None,
        };
    }
    let cursor =
        newest.map(|at| json!({ "updated_at": at.to_rfc3339_opts(SecondsFormat::Secs, true) }));
    complete(
        deps,
        lease,
        run,
        connection.workspace_id,
        cursor.as_ref(),
        &dates,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn orders_are_read_with_exact_money_and_refunds() {
        let order = parse_order(&json!({
            "id": 450789469, "name": "#1001", "created_at": "2026-11-02T10:00:00-05:00",
            "updated_at": "2026-11-03T09:00:00-05:00", "processed_at": "2026-11-02T10:00:00-05:00",
            "cancelled_at": null, "currency": "USD", "total_price": "110.10", "subtotal_price": "100.00",
            "total_tax": "8.00", "total_discounts": "0.00", "financial_status": "partially_refunded",
            "customer": {"id": 207119551, "email": "bob@example.com"},
            "refunds": [{"id": 509562969, "created_at": "2026-11-03T09:00:00-05:00", "transactions": [
                {"kind": "refund", "status": "success", "amount": "10.05"},
                {"kind": "refund", "status": "failure", "amount": "99.00"}]}]
        }))
        .unwrap();
        assert_eq!(order.total_price, Decimal::new(11010, 2));
        assert_eq!(order.refunds[0].amount, Decimal::new(1005, 2));
        assert_eq!(order.refunds[0].order_id, 450789469);
        assert_eq!(order.created_at.to_rfc3339(), "2026-11-02T15:00:00+00:00");
        assert_eq!(order.customer_email.as_deref(), Some("bob@example.com"));
        assert!(parse_order(&json!({"id": 1})).is_err());
    }

    #[test]
    fn link_and_call_limit_headers_are_read() {
        let map = headers(&[
            (
                "link",
                r#"<https://s/admin/api/2024-10/orders.json?limit=250&page_info=abc>; rel="previous", <https://s/admin/api/2024-10/orders.json?limit=250&page_info=def>; rel="next""#,
            ),
            ("x-shopify-shop-api-call-limit", "32/40"),
        ]);
        assert_eq!(
            next_link(&map).as_deref(),
            Some("https://s/admin/api/2024-10/orders.json?limit=250&page_info=def")
        );
        assert_eq!(call_limit(&map), Some((32, 40)));
        assert_eq!(pause_for(1, 40), None);
        assert_eq!(pause_for(31, 40), None);
        assert_eq!(pause_for(32, 40), Some(Duration::from_millis(500)));
        assert_eq!(pause_for(40, 40), Some(Duration::from_millis(4500)));
        assert_eq!(pause_for(0, 0), None);
    }

    #[test]
    fn errors_are_classified() {
        let throttled = classify(
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "2.0")]),
            r#"{"errors":"Exceeded 2 calls per second for api client."}"#,
        );
        assert!(
            matches!(throttled, ExtractError::Throttled { retry_after: Some(wait), .. } if wait == Duration::from_secs(2))
        );
        let auth = classify(
            reqwest::StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            r#"{"errors":"[API] Invalid API key or access token"}"#,
        );
        assert!(matches!(auth, ExtractError::Auth(message) if message.contains("Invalid API key")));
        let bad = classify(reqwest::StatusCode::BAD_REQUEST, &HeaderMap::new(), "{}");
        assert!(matches!(bad, ExtractError::Api(_)));
    }

    #[test]
    fn the_first_page_reads_from_the_cursor_minus_the_lookback() {
        let cursor = cursor_updated_at(&json!({"updated_at": "2026-11-30T04:59:59Z"}));
        let since = updated_at_min(cursor, "2026-01-01".parse().unwrap(), 7);
        assert_eq!(since.to_rfc3339(), "2026-11-23T04:59:59+00:00");
        let first = updated_at_min(None, "2026-11-01".parse().unwrap(), 7);
        assert_eq!(first.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(
            first_page("http://x/shopify/demo", since),
            "http://x/shopify/demo/admin/api/2024-10/orders.json?status=any&updated_at_min=2026-11-23T04%3A59%3A59Z&limit=250&order=updated_at%20asc"
        );
        assert_eq!(shop_handle("demo.myshopify.com"), "demo");
    }

    fn order_with(field: &str, value: Value) -> Value {
        let mut order = json!({"id": 7, "created_at": "2026-11-02T10:00:00Z", "updated_at": "2026-11-02T10:00:00Z",
                               "currency": "USD", "total_price": "10.00"});
        order[field] = value;
        order
    }

    #[test]
    fn odd_refunds_and_huge_money_are_errors_not_panics() {
        // A refunds entry that is not an object once panicked on `refund["order_id"] = …`.
        for odd in [json!([5]), json!(["x"]), json!([null]), json!([[1]])] {
            assert!(matches!(
                parse_order(&order_with("refunds", odd)),
                Err(OrderError::Malformed(_))
            ));
        }
        let huge = "79228162514264337593543950335";
        let overflow = json!([{"id": 1, "transactions": [
            {"kind": "refund", "status": "success", "amount": huge},
            {"kind": "refund", "status": "success", "amount": huge}]}]);
        assert!(matches!(
            parse_order(&order_with("refunds", overflow)),
            Err(OrderError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_order(&order_with("total_price", json!("1e30"))),
            Err(OrderError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_order(&order_with("total_price", json!("NaN"))),
            Err(OrderError::Malformed(_))
        ));
        assert_eq!(
            parse_order(&order_with("total_price", json!(12.5)))
                .unwrap()
                .total_price,
            Decimal::new(125, 1)
        );
    }

    #[test]
    fn extreme_call_limits_and_retry_afters_are_bounded() {
        assert_eq!(pause_for(u32::MAX, 1), Some(MAX_PAUSE));
        assert_eq!(
            pause_for(u32::MAX, u32::MAX),
            Some(Duration::from_millis(500).max(MAX_PAUSE).min(MAX_PAUSE))
        );
        for value in ["1e30", "18446744073709551615", "-1", "inf", "NaN"] {
            let wait = retry_after(&headers(&[("retry-after", value)]));
            assert!(
                wait.is_none_or(|wait| wait <= MAX_RETRY_AFTER),
                "{value}: {wait:?}"
            );
        }
    }

    #[test]
    fn next_pages_stay_on_the_shop() {
        let shop = "https://demo.myshopify.com";
        assert!(
            next_page(
                "https://demo.myshopify.com/admin/api/2024-10/orders.json?page_info=x",
                shop
            )
            .is_ok()
        );
        assert!(
            next_page(
                "https://evil.example/admin/api/2024-10/orders.json?page_info=x",
                shop
            )
            .is_err()
        );
        assert!(next_page("/relative", shop).is_err());
        assert!(matches!(
            classify(
                reqwest::StatusCode::NOT_FOUND,
                &HeaderMap::new(),
                r#"{"errors":"Not Found"}"#
            ),
            ExtractError::NotFound(_)
        ));
    }

    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "[ -~]{0,80}".prop_map(String::into_bytes),
            "(<[ -~]{0,20}>; ?rel=\"?(next|previous)\"?,? ?){0,3}".prop_map(String::into_bytes),
            "[0-9]{0,12}/[0-9]{0,12}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_order_or_refund_body_parses_or_is_refused(body in crate::strategies::json()) {
            let _ = parse_order(&body);
            let _ = parse_refund(&body);
            let _ = parse_order(&order_with("refunds", json!([body.clone()])));
            let _ = parse_order(&order_with("total_price", body.clone()));
            let _ = parse_refund(&json!({"id": 1, "order_id": 2, "transactions": [body]}));
        }

        #[test]
        fn any_page_headers_are_read_without_a_panic(link in header_bytes(), limit in header_bytes(), wait in header_bytes()) {
            let mut map = HeaderMap::new();
            for (name, value) in [("link", link), ("x-shopify-shop-api-call-limit", limit), ("retry-after", wait)] {
                if let Ok(value) = axum::http::HeaderValue::from_bytes(&value) {
                    map.append(name, value);
                }
            }
            let _ = next_link(&map);
            if let Some((used, size)) = call_limit(&map) {
                prop_assert!(pause_for(used, size).is_none_or(|pause| pause <= MAX_PAUSE));
            }
            prop_assert!(retry_after(&map).is_none_or(|wait| wait <= MAX_RETRY_AFTER));
            let _ = parse_page(&map, &json!({"orders": []}));
        }

        #[test]
        fn any_bucket_reading_pauses_at_most_ten_seconds(used in any::<u32>(), size in any::<u32>()) {
            prop_assert!(pause_for(used, size).is_none_or(|pause| pause <= MAX_PAUSE));
        }

        #[test]
        fn any_error_answer_is_classified(code in 100u16..600, body in ".{0,400}", wait in "[ -~]{0,20}") {
            let status = reqwest::StatusCode::from_u16(code).unwrap_or(reqwest::StatusCode::BAD_REQUEST);
            let mut map = HeaderMap::new();
            if let Ok(value) = wait.parse() {
                map.insert("retry-after", value);
            }
            let _ = classify(status, &map, &body);
        }

        #[test]
        fn any_next_link_is_followed_only_on_the_shop(next in ".{0,80}") {
            if let Ok(url) = next_page(&next, "https://demo.myshopify.com") {
                prop_assert!(url.starts_with("https://demo.myshopify.com/"));
            }
        }
    }
}
