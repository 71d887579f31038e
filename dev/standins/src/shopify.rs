//! Shopify Admin REST stand-in: orders as `https://{shop}.myshopify.com/admin/api/{version}/`
//! serves them, plus signed webhook deliveries for tests.
//!
//! Modelled:
//! * `GET orders.json` with `status` (`open` by default, as Shopify: pass `any` to see
//!   closed and cancelled orders), `updated_at_min`/`updated_at_max`,
//!   `created_at_min`/`created_at_max` (ISO 8601 with or without offset, or a date; shop
//!   time when no offset), `limit` (default 50, at most 250 — larger values are clamped),
//!   `order` (`updated_at asc` or absent: orders always come by `updated_at`, then id),
//!   `fields`; cursor pagination through `Link: <…page_info=…>; rel="next"` (and
//!   `rel="previous"`), where a follow-up request may carry only `page_info`, `limit` and
//!   `fields` (anything else is a 400). Also `GET orders/{id}.json` and `orders/count.json`.
//! * Auth by `X-Shopify-Access-Token` (the scenario's token, or the shop's own when its
//!   [`ShopSpec::access_token`] says so, as every real shop has its own); a missing, wrong
//!   or expired token is a 401 with Shopify's `[API] Invalid API key or access token` body.
//! * Rate limits: `X-Shopify-Shop-Api-Call-Limit: n/40` on every answer; throttling is a 429
//!   with `Retry-After: 1.0` (seconds, configurable) — switched on per request, or by an
//!   optional simulated leaky bucket ([`LeakyBucket`], off by default so benchmarks are not
//!   slowed).
//! * Orders: deterministic per (seed, shop) and spread evenly over `history_days` before the
//!   shop's "today" midnight, with money as strings with two decimals, ids as integers,
//!   timestamps in the shop's offset. About 3 % are cancelled (refunded in full unless still
//!   pending, then `voided`), 4 % fully and 4 % partially refunded (a refund moves
//!   `updated_at`), 2 % `pending`, most older ones closed and `fulfilled`; customers repeat.
//!   `current_total_price` is the total net of refunds. At run time [`ShopifyFaults`] adds
//!   orders, refunds, cancels or edits them, each bumping `updated_at` past every earlier
//!   one, so an incremental sync by `updated_at_min` sees them.
//! * Webhooks: [`ShopifyFaults::webhook`] builds the delivery Shopify would POST for an
//!   order's current state (`orders/create`, `orders/updated`, `orders/paid`,
//!   `orders/cancelled`, `refunds/create`), signed with `X-Shopify-Hmac-Sha256`; the
//!   `X-Shopify-Webhook-Id` and `X-Shopify-Event-Id` are stable for the same topic and
//!   order state (a redelivery), `X-Shopify-Triggered-At` is the time on
//!   [`StandinConfig::clock`] when the delivery is built. A test rewrites headers with
//!   [`WebhookDelivery::set_header`] (Shopify signs the body only) to play a replay.
//!
//! Left out: GraphQL and bulk operations, every other resource, `since_id`, other sort
//! orders, `financial_status`/`fulfillment_status` filters, the 60-day limit without
//! `read_all_orders`, shipping/tax line details beyond totals, multi-currency presentment
//! (the presentment currency is the shop's), and exact 400 texts (approximations).

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::answer::{Answer, serve};
use crate::config::{StandinConfig, today_at};
use crate::faults::{Switches, fault_handle};
use crate::lock;
use crate::money::money;
use crate::query::{encode_query, first};
use crate::reply::{json_body, json_response, set_header};
use crate::request_log::{Api, Outcome};
use crate::seeded::{Draw, hash_str, key, mix64};

pub const DEFAULT_SHOPIFY_TOKEN: &str = "shpat_local_token";
/// The default shop: `demo-store.myshopify.com`.
pub const DEFAULT_SHOP: &str = "demo-store";
/// The API version the helpers use and webhooks announce.
pub const API_VERSION: &str = "2024-10";
/// The most orders one shop may be seeded with.
pub const MAX_ORDERS: usize = 1_000_000;

const INVALID_TOKEN: &str =
    r#"{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}"#;
const THROTTLED: &str = r#"{"errors":"Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}"#;

/// The part of [`StandinConfig`] that shapes the Shopify stand-in.
#[derive(Debug, Clone)]
pub struct ShopifyScenario {
    pub shops: Vec<ShopSpec>,
    /// The only `X-Shopify-Access-Token` accepted.
    pub access_token: String,
    /// `Retry-After` of a 429, in seconds (sent as `1.0`).
    pub retry_after_seconds: f64,
    /// A simulated leaky bucket that throttles a client calling too fast; `None` never
    /// throttles on its own (the call-limit header then reads `1/40`).
    pub bucket: Option<LeakyBucket>,
}

impl Default for ShopifyScenario {
    fn default() -> Self {
        ShopifyScenario {
            shops: vec![ShopSpec::new(DEFAULT_SHOP, 2_000)],
            access_token: DEFAULT_SHOPIFY_TOKEN.into(),
            retry_after_seconds: 1.0,
            bucket: None,
        }
    }
}

/// Shopify's REST leaky bucket: `size` requests, leaking `leak_per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakyBucket {
    pub size: u32,
    pub leak_per_second: f64,
}

impl LeakyBucket {
    /// A standard plan: 40 requests, 2 a second.
    pub const STANDARD: LeakyBucket = LeakyBucket {
        size: 40,
        leak_per_second: 2.0,
    };
}

/// One shop and its seeded orders.
#[derive(Debug, Clone)]
pub struct ShopSpec {
    /// The `{shop}` of `{shop}.myshopify.com`.
    pub shop: String,
    /// Orders seeded before "today" (at most [`MAX_ORDERS`]).
    pub orders: usize,
    /// Over how many days before "today" they were created.
    pub history_days: u32,
    pub currency: String,
    pub utc_offset_minutes: i32,
    /// Sales tax in basis points of the discounted subtotal.
    pub tax_rate_bp: u32,
    /// This shop's own `X-Shopify-Access-Token`; `None` takes the scenario's.
    pub access_token: Option<String>,
}

impl ShopSpec {
    pub fn new(shop: impl Into<String>, orders: usize) -> Self {
        ShopSpec {
            shop: shop.into(),
            orders,
            history_days: 90,
            currency: "USD".into(),
            utc_offset_minutes: -5 * 60,
            tax_rate_bp: 800,
            access_token: None,
        }
    }

    /// `{shop}.myshopify.com`.
    pub fn domain(&self) -> String {
        format!("{}.myshopify.com", self.shop)
    }
}

/// Order sums over a shop, as a sync of every order must find them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShopTotals {
    pub orders: usize,
    pub cancelled: usize,
    /// Orders with at least one refund.
    pub refunded_orders: usize,
    /// Sum of `total_price`.
    pub gross_cents: i64,
    /// Sum of refund transactions.
    pub refunded_cents: i64,
    /// Sum of `current_total_price` (gross minus refunds).
    pub net_cents: i64,
}

/// The webhook topics the helper builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShopifyTopic {
    OrdersCreate,
    OrdersUpdated,
    OrdersPaid,
    OrdersCancelled,
    /// The body is the order's latest refund, not the order.
    RefundsCreate,
}

impl ShopifyTopic {
    pub fn as_str(self) -> &'static str {
        match self {
            ShopifyTopic::OrdersCreate => "orders/create",
            ShopifyTopic::OrdersUpdated => "orders/updated",
            ShopifyTopic::OrdersPaid => "orders/paid",
            ShopifyTopic::OrdersCancelled => "orders/cancelled",
            ShopifyTopic::RefundsCreate => "refunds/create",
        }
    }
}

/// One webhook POST as Shopify would send it.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    pub topic: ShopifyTopic,
    /// `X-Shopify-*` headers and `Content-Type`.
    pub headers: Vec<(String, String)>,
    /// The raw JSON body the HMAC was computed over.
    pub body: Vec<u8>,
}

impl WebhookDelivery {
    /// A header by name, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `X-Shopify-Webhook-Id`: the same for a redelivery of the same event.
    pub fn webhook_id(&self) -> &str {
        self.header("X-Shopify-Webhook-Id").unwrap_or_default()
    }

    /// Sets a header (replacing it, case-insensitively, or adding it). The signature covers
    /// the body only, so it stays valid: this is how a replay rewrites a delivery.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// A `POST uri` request carrying this delivery, e.g. for `Router::oneshot`.
    pub fn request(&self, uri: &str) -> axum::http::Request<Body> {
        let mut request = axum::http::Request::builder().method(Method::POST).uri(uri);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
            .body(Body::from(self.body.clone()))
            .expect("webhook headers are valid")
    }
}

// ---- the shop model ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefundKind {
    Full,
    /// One unit of the first line item (at most half the order).
    Partial,
}

/// What the seed says happened to an order before "today".
struct Timeline {
    created: i64,
    updated: i64,
    closed: Option<i64>,
    cancelled: Option<(i64, &'static str)>,
    refund: Option<(i64, RefundKind)>,
    pending: bool,
}

#[derive(Debug, Clone)]
struct ExtraRefund {
    at: i64,
    amount_cents: i64,
    note: &'static str,
}

/// What happened at run time.
#[derive(Debug, Clone, Default)]
struct Patch {
    updated_at: i64,
    cancelled_at: Option<i64>,
    refunds: Vec<ExtraRefund>,
    note: Option<String>,
}

struct Line {
    product: u64,
    quantity: u64,
    price_cents: i64,
}

struct RefundModel {
    seq: u64,
    at: i64,
    amount_cents: i64,
    partial_line: bool,
    note: Option<&'static str>,
}

/// Everything about one order, before it is formatted.
struct OrderModel {
    index: u64,
    id: u64,
    created: i64,
    updated: i64,
    closed: Option<i64>,
    cancelled: Option<(i64, &'static str)>,
    pending: bool,
    note: Option<String>,
    customer: u64,
    lines: Vec<Line>,
    discount: Option<(&'static str, i64)>,
    shipping_cents: i64,
    tax_cents: i64,
    line_total_cents: i64,
    subtotal_cents: i64,
    total_cents: i64,
    refunds: Vec<RefundModel>,
}

impl OrderModel {
    fn refunded_cents(&self) -> i64 {
        self.refunds.iter().map(|refund| refund.amount_cents).sum()
    }

    fn remaining_cents(&self) -> i64 {
        (self.total_cents - self.refunded_cents()).max(0)
    }

    fn financial_status(&self) -> &'static str {
        let refunded = self.refunded_cents();
        if self.pending {
            if self.cancelled.is_some() {
                "voided"
            } else {
                "pending"
            }
        } else if refunded >= self.total_cents {
            "refunded"
        } else if refunded > 0 {
            "partially_refunded"
        } else {
            "paid"
        }
    }
}

const CANCEL_REASONS: [&str; 4] = ["customer", "inventory", "fraud", "declined"];
const ADJECTIVES: [&str; 8] = [
    "Classic",
    "Organic",
    "Everyday",
    "Premium",
    "Travel",
    "Vintage",
    "Eco",
    "Signature",
];
const NOUNS: [&str; 5] = ["Tee", "Hoodie", "Water Bottle", "Tote Bag", "Candle"];
const FIRST_NAMES: [&str; 10] = [
    "Ava", "Liam", "Mia", "Noah", "Zoe", "Ethan", "Lena", "Omar", "Priya", "Lucas",
];
const LAST_NAMES: [&str; 10] = [
    "Smith", "Garcia", "Chen", "Müller", "Okafor", "Rossi", "Kim", "Novak", "Silva", "Brown",
];
const PRODUCTS: u64 = 40;
const DAY: i64 = 86_400;

/// Id bases of one shop (13-14 digit integers, like Shopify's).
struct IdBase {
    order: u64,
    customer: u64,
    line: u64,
    product: u64,
    variant: u64,
    refund: u64,
    transaction: u64,
}

struct Bucket {
    level: f64,
    at: Instant,
}

struct ShopInner {
    /// `(updated_at, id)` of every order: the listing order.
    index: BTreeSet<(i64, u64)>,
    patches: HashMap<u64, Patch>,
    /// `created_at` of orders added at run time (indices `spec.orders..`).
    added: Vec<i64>,
    /// The latest `updated_at` handed out.
    clock: i64,
}

struct Shop {
    spec: ShopSpec,
    key: u64,
    offset: FixedOffset,
    anchor: i64,
    start: i64,
    spacing: i64,
    ids: IdBase,
    inner: Mutex<ShopInner>,
    bucket: Mutex<Bucket>,
}

impl Shop {
    fn new(seed: u64, today: Option<NaiveDate>, spec: &ShopSpec) -> Self {
        assert!(
            spec.orders <= MAX_ORDERS,
            "a stand-in shop holds at most {MAX_ORDERS} orders"
        );
        let key = key(&[seed, hash_str("shopify"), hash_str(&spec.shop)]);
        let offset = FixedOffset::east_opt(spec.utc_offset_minutes * 60)
            .unwrap_or(FixedOffset::east_opt(0).expect("UTC"));
        let today = today_at(today, spec.utc_offset_minutes);
        let anchor = today
            .and_hms_opt(0, 0, 0)
            .and_then(|midnight| midnight.and_local_timezone(offset).single())
            .map_or(0, |midnight| midnight.timestamp());
        let history = i64::from(spec.history_days.max(1)) * DAY;
        let spacing = (history / spec.orders.max(1) as i64).max(1);
        let part = (key % 900) * 1_000_000_000;
        let ids = IdBase {
            order: 5_000_000_000_000 + part,
            customer: 6_000_000_000_000 + part,
            line: 13_000_000_000_000 + part * 10,
            product: 8_000_000_000_000 + part,
            variant: 44_000_000_000_000 + part,
            refund: 900_000_000_000 + part,
            transaction: 7_000_000_000_000 + part * 10,
        };
        let mut shop = Shop {
            spec: spec.clone(),
            key,
            offset,
            anchor,
            start: anchor - history,
            spacing,
            ids,
            inner: Mutex::new(ShopInner {
                index: BTreeSet::new(),
                patches: HashMap::new(),
                added: Vec::new(),
                clock: anchor,
            }),
            bucket: Mutex::new(Bucket {
                level: 0.0,
                at: Instant::now(),
            }),
        };
        let mut clock = anchor;
        let index: BTreeSet<(i64, u64)> = (0..spec.orders as u64)
            .map(|i| {
                let timeline = shop.timeline(i);
                clock = clock.max(timeline.updated);
                (timeline.updated, shop.order_id(i))
            })
            .collect();
        let inner = shop.inner.get_mut().expect("fresh mutex");
        inner.index = index;
        inner.clock = clock;
        shop
    }

    fn lock(&self) -> MutexGuard<'_, ShopInner> {
        lock::unpoisoned(&self.inner)
    }

    fn order_id(&self, index: u64) -> u64 {
        self.ids.order + index * 1000 + mix64(self.key ^ index) % 1000
    }

    fn index_of(&self, id: u64) -> Option<u64> {
        let index = id.checked_sub(self.ids.order)? / 1000;
        (self.order_id(index) == id).then_some(index)
    }

    fn timeline(&self, index: u64) -> Timeline {
        let mut draw = Draw::new(key(&[self.key, index, 0x71]));
        let created =
            self.start + index as i64 * self.spacing + draw.below(self.spacing as u64) as i64;
        let mut updated = created + 30 + draw.below(600) as i64;
        let kind = draw.unit();
        let (mut closed, mut cancelled, mut refund, mut pending) = (None, None, None, false);
        if kind < 0.03 {
            let at = created + 3_600 + draw.below(47 * 3_600) as i64;
            if at < self.anchor {
                let reason = CANCEL_REASONS[draw.below(CANCEL_REASONS.len() as u64) as usize];
                cancelled = Some((at, reason));
                closed = Some(at);
                updated = at;
                // A few cancelled orders were never paid.
                pending = draw.unit() < 0.2;
            }
        } else if kind < 0.05 {
            pending = true;
        } else {
            if kind < 0.13 {
                let at = created + 2 * DAY + draw.below(18 * DAY as u64) as i64;
                if at < self.anchor {
                    let refund_kind = if kind < 0.09 {
                        RefundKind::Full
                    } else {
                        RefundKind::Partial
                    };
                    refund = Some((at, refund_kind));
                    updated = updated.max(at);
                }
            }
            let close_at = created + 3 * DAY + draw.below(4 * DAY as u64) as i64;
            if close_at < self.anchor {
                closed = Some(close_at);
                updated = updated.max(close_at);
            }
        }
        Timeline {
            created,
            updated,
            closed,
            cancelled,
            refund,
            pending,
        }
    }

    fn product_price(&self, product: u64) -> i64 {
        1_499 + 100 * (mix64(self.key ^ product ^ 0x9B) % 100) as i64
    }

    fn model(&self, index: u64, patch: Option<&Patch>, added: &[i64]) -> Option<OrderModel> {
        let base_count = self.spec.orders as u64;
        let timeline = if index < base_count {
            self.timeline(index)
        } else {
            let created = *added.get(usize::try_from(index - base_count).ok()?)?;
            Timeline {
                created,
                updated: created,
                closed: None,
                cancelled: None,
                refund: None,
                pending: false,
            }
        };
        let mut draw = Draw::new(key(&[self.key, index, 0xEC]));
        let line_count = match draw.unit() {
            u if u < 0.6 => 1,
            u if u < 0.9 => 2,
            _ => 3,
        };
        let lines: Vec<Line> = (0..line_count)
            .map(|_| {
                let product = draw.below(PRODUCTS);
                Line {
                    product,
                    quantity: if draw.unit() < 0.8 { 1 } else { 2 },
                    price_cents: self.product_price(product),
                }
            })
            .collect();
        let line_total_cents: i64 = lines
            .iter()
            .map(|line| line.price_cents * line.quantity as i64)
            .sum();
        let discount = (draw.unit() < 0.15).then_some(("WELCOME10", line_total_cents / 10));
        let subtotal_cents = line_total_cents - discount.map_or(0, |(_, cents)| cents);
        let shipping_cents = if subtotal_cents >= 5_000 { 0 } else { 595 };
        let tax_cents = subtotal_cents * i64::from(self.spec.tax_rate_bp) / 10_000;
        let total_cents = subtotal_cents + shipping_cents + tax_cents;
        let customers = (self.spec.orders as u64 * 2 / 3).max(1);
        let customer = draw.below(customers);

        let mut refunds = Vec::new();
        if let Some((at, _)) = timeline.cancelled
            && !timeline.pending
        {
            refunds.push(RefundModel {
                seq: 0,
                at,
                amount_cents: total_cents,
                partial_line: false,
                note: Some("Order canceled"),
            });
        }
        if let Some((at, kind)) = timeline.refund {
            refunds.push(RefundModel {
                seq: 0,
                at,
                amount_cents: match kind {
                    RefundKind::Full => total_cents,
                    // One unit of the first line, never more than half the order.
                    RefundKind::Partial => lines[0].price_cents.min(total_cents / 2),
                },
                partial_line: kind == RefundKind::Partial,
                note: None,
            });
        }
        let mut model = OrderModel {
            index,
            id: self.order_id(index),
            created: timeline.created,
            updated: timeline.updated,
            closed: timeline.closed,
            cancelled: timeline.cancelled,
            pending: timeline.pending,
            note: None,
            customer,
            lines,
            discount,
            shipping_cents,
            tax_cents,
            line_total_cents,
            subtotal_cents,
            total_cents,
            refunds,
        };
        if let Some(patch) = patch {
            model.updated = patch.updated_at;
            if let Some(at) = patch.cancelled_at {
                model.cancelled = Some((at, "customer"));
                model.closed = Some(at);
            }
            for (n, refund) in patch.refunds.iter().enumerate() {
                model.refunds.push(RefundModel {
                    seq: n as u64 + 1,
                    at: refund.at,
                    amount_cents: refund.amount_cents,
                    partial_line: false,
                    note: Some(refund.note),
                });
            }
            model.note.clone_from(&patch.note);
        }
        Some(model)
    }

    /// The model of an order by id, under the lock.
    fn find(&self, inner: &ShopInner, id: u64) -> Option<OrderModel> {
        let index = self.index_of(id)?;
        self.model(index, inner.patches.get(&id), &inner.added)
    }

    /// [`Shop::find`] for the helpers of [`ShopifyFaults`], whose error names the order.
    fn order_model(&self, inner: &ShopInner, id: u64) -> anyhow::Result<OrderModel> {
        self.find(inner, id)
            .with_context(|| format!("shop {} has no order {id}", self.spec.shop))
    }

    fn timestamp(&self, secs: i64) -> String {
        DateTime::<Utc>::from_timestamp(secs, 0)
            .unwrap_or_default()
            .with_timezone(&self.offset)
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    }

    fn customer(&self, index: u64) -> Customer {
        let first = FIRST_NAMES[(mix64(self.key ^ index ^ 0xF1) % 10) as usize];
        let last = LAST_NAMES[(mix64(self.key ^ index ^ 0x1A) % 10) as usize];
        Customer {
            id: self.ids.customer + index,
            email: format!(
                "{}.{}{}@example.com",
                first.to_lowercase(),
                last.to_lowercase().replace('ü', "u"),
                index
            ),
            first_name: first,
            last_name: last,
        }
    }

    fn refund_json(&self, model: &OrderModel, refund: &RefundModel) -> RefundJson {
        let id = self.ids.refund + model.index * 100 + refund.seq;
        let at = self.timestamp(refund.at);
        RefundJson {
            id,
            order_id: model.id,
            created_at: at.clone(),
            processed_at: at.clone(),
            note: refund.note,
            restock: refund.partial_line,
            refund_line_items: if refund.partial_line {
                vec![RefundLineItem {
                    id: id * 10,
                    line_item_id: self.ids.line + model.index * 10,
                    quantity: 1,
                    subtotal: money(refund.amount_cents),
                    total_tax: money(0),
                }]
            } else {
                Vec::new()
            },
            transactions: vec![Transaction {
                id: self.ids.transaction + model.index * 100 + refund.seq,
                order_id: model.id,
                kind: "refund",
                status: "success",
                gateway: "shopify_payments",
                amount: money(refund.amount_cents),
                currency: self.spec.currency.clone(),
                created_at: at.clone(),
                processed_at: at,
            }],
            order_adjustments: Vec::new(),
        }
    }

    fn order_json(&self, model: &OrderModel) -> OrderJson {
        let customer = self.customer(model.customer);
        let currency = self.spec.currency.clone();
        OrderJson {
            id: model.id,
            admin_graphql_api_id: format!("gid://shopify/Order/{}", model.id),
            name: format!("#{}", 1001 + model.index),
            order_number: 1001 + model.index,
            email: customer.email.clone(),
            contact_email: customer.email.clone(),
            created_at: self.timestamp(model.created),
            updated_at: self.timestamp(model.updated),
            processed_at: self.timestamp(model.created),
            cancelled_at: model.cancelled.map(|(at, _)| self.timestamp(at)),
            cancel_reason: model.cancelled.map(|(_, reason)| reason),
            closed_at: model.closed.map(|at| self.timestamp(at)),
            presentment_currency: currency.clone(),
            currency,
            financial_status: model.financial_status(),
            fulfillment_status: (model.closed.is_some() && model.cancelled.is_none())
                .then_some("fulfilled"),
            total_price: money(model.total_cents),
            subtotal_price: money(model.subtotal_cents),
            total_line_items_price: money(model.line_total_cents),
            total_discounts: money(model.discount.map_or(0, |(_, cents)| cents)),
            total_tax: money(model.tax_cents),
            current_total_price: money(model.remaining_cents()),
            taxes_included: false,
            test: false,
            source_name: "web",
            payment_gateway_names: ["shopify_payments"],
            tags: "",
            note: model.note.clone(),
            discount_codes: model
                .discount
                .map(|(code, cents)| DiscountCode {
                    code,
                    amount: money(cents),
                    kind: "percentage",
                })
                .into_iter()
                .collect(),
            customer,
            line_items: model
                .lines
                .iter()
                .enumerate()
                .map(|(n, line)| {
                    let title = format!(
                        "{} {}",
                        ADJECTIVES[(line.product % ADJECTIVES.len() as u64) as usize],
                        NOUNS[(line.product / ADJECTIVES.len() as u64) as usize % NOUNS.len()]
                    );
                    LineItem {
                        id: self.ids.line + model.index * 10 + n as u64,
                        product_id: self.ids.product + line.product,
                        variant_id: self.ids.variant + line.product,
                        sku: format!("SKU-{:04}", line.product + 1),
                        name: title.clone(),
                        title,
                        vendor: "Local Demo Store",
                        quantity: line.quantity,
                        price: money(line.price_cents),
                        total_discount: money(0),
                        requires_shipping: true,
                        taxable: true,
                    }
                })
                .collect(),
            shipping_lines: vec![ShippingLine {
                id: self.ids.line + model.index * 10 + 9,
                title: "Standard Shipping",
                code: "STANDARD",
                price: money(model.shipping_cents),
            }],
            refunds: model
                .refunds
                .iter()
                .map(|refund| self.refund_json(model, refund))
                .collect(),
        }
    }

    /// A new `updated_at`: now, but always after every earlier one.
    fn tick(inner: &mut ShopInner) -> i64 {
        let at = Utc::now().timestamp().max(inner.clock + 1);
        inner.clock = at;
        at
    }

    /// Applies `change` to an order's patch, moving it in the index.
    fn mutate(
        &self,
        id: u64,
        change: impl FnOnce(&OrderModel, &mut Patch, i64) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut inner = self.lock();
        let model = self.order_model(&inner, id)?;
        let mut patch = inner.patches.get(&id).cloned().unwrap_or_default();
        let at = Self::tick(&mut inner);
        change(&model, &mut patch, at)?;
        patch.updated_at = at;
        inner.index.remove(&(model.updated, id));
        inner.index.insert((at, id));
        inner.patches.insert(id, patch);
        Ok(())
    }

    fn matches(&self, inner: &ShopInner, id: u64, updated: i64, filter: &Filter) -> bool {
        if filter.updated_max.is_some_and(|max| updated > max) {
            return false;
        }
        let Some(index) = self.index_of(id) else {
            return false;
        };
        let patch = inner.patches.get(&id);
        let (created, mut cancelled, mut closed) = if index < self.spec.orders as u64 {
            let timeline = self.timeline(index);
            (
                timeline.created,
                timeline.cancelled.is_some(),
                timeline.closed.is_some(),
            )
        } else {
            let added = usize::try_from(index - self.spec.orders as u64)
                .ok()
                .and_then(|at| inner.added.get(at).copied())
                .unwrap_or_default();
            (added, false, false)
        };
        if patch.is_some_and(|patch| patch.cancelled_at.is_some()) {
            cancelled = true;
            closed = true;
        }
        let status = match filter.status.as_str() {
            "open" => !closed && !cancelled,
            "closed" => closed,
            "cancelled" => cancelled,
            _ => true,
        };
        status
            && filter.created_min.is_none_or(|min| created >= min)
            && filter.created_max.is_none_or(|max| created <= max)
    }

    /// Up to `limit` order ids in listing order from a position, and whether more follow
    /// in that direction.
    fn select(
        &self,
        inner: &ShopInner,
        filter: &Filter,
        direction: Direction,
        from: Option<(i64, u64)>,
        limit: usize,
    ) -> (Vec<(i64, u64)>, bool) {
        let floor = Bound::Included((filter.updated_min.unwrap_or(i64::MIN), 0));
        let mut found: Vec<(i64, u64)> = Vec::with_capacity(limit.min(250) + 1);
        let keep = |entry: &&(i64, u64)| self.matches(inner, entry.1, entry.0, filter);
        match direction {
            Direction::Next => {
                let lower = from.map_or(floor, Bound::Excluded);
                found.extend(
                    inner
                        .index
                        .range((lower, Bound::Unbounded))
                        .take_while(|(updated, _)| {
                            filter.updated_max.is_none_or(|max| *updated <= max)
                        })
                        .filter(keep)
                        .take(limit + 1),
                );
            }
            Direction::Previous => {
                let upper = from.map_or(Bound::Unbounded, Bound::Excluded);
                found.extend(
                    inner
                        .index
                        .range((floor, upper))
                        .rev()
                        .filter(keep)
                        .take(limit + 1),
                );
            }
        }
        let more = found.len() > limit;
        found.truncate(limit);
        if direction == Direction::Previous {
            found.reverse();
        }
        (found, more)
    }
}

// ---- JSON shapes ------------------------------------------------------------------------

#[derive(Serialize)]
struct Customer {
    id: u64,
    email: String,
    first_name: &'static str,
    last_name: &'static str,
}

#[derive(Serialize)]
struct DiscountCode {
    code: &'static str,
    amount: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct LineItem {
    id: u64,
    product_id: u64,
    variant_id: u64,
    title: String,
    name: String,
    sku: String,
    vendor: &'static str,
    quantity: u64,
    price: String,
    total_discount: String,
    requires_shipping: bool,
    taxable: bool,
}

#[derive(Serialize)]
struct ShippingLine {
    id: u64,
    title: &'static str,
    code: &'static str,
    price: String,
}

#[derive(Serialize)]
struct Transaction {
    id: u64,
    order_id: u64,
    kind: &'static str,
    status: &'static str,
    gateway: &'static str,
    amount: String,
    currency: String,
    created_at: String,
    processed_at: String,
}

#[derive(Serialize)]
struct RefundLineItem {
    id: u64,
    line_item_id: u64,
    quantity: u64,
    subtotal: String,
    total_tax: String,
}

#[derive(Serialize)]
struct RefundJson {
    id: u64,
    order_id: u64,
    created_at: String,
    processed_at: String,
    note: Option<&'static str>,
    restock: bool,
    refund_line_items: Vec<RefundLineItem>,
    transactions: Vec<Transaction>,
    order_adjustments: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct OrderJson {
    id: u64,
    admin_graphql_api_id: String,
    name: String,
    order_number: u64,
    email: String,
    contact_email: String,
    created_at: String,
    updated_at: String,
    processed_at: String,
    cancelled_at: Option<String>,
    cancel_reason: Option<&'static str>,
    closed_at: Option<String>,
    currency: String,
    presentment_currency: String,
    financial_status: &'static str,
    fulfillment_status: Option<&'static str>,
    total_price: String,
    subtotal_price: String,
    total_line_items_price: String,
    total_discounts: String,
    total_tax: String,
    current_total_price: String,
    taxes_included: bool,
    test: bool,
    source_name: &'static str,
    payment_gateway_names: [&'static str; 1],
    tags: &'static str,
    note: Option<String>,
    discount_codes: Vec<DiscountCode>,
    customer: Customer,
    line_items: Vec<LineItem>,
    shipping_lines: Vec<ShippingLine>,
    refunds: Vec<RefundJson>,
}

/// An order as listed: whole, or cut down to `fields`.
#[derive(Serialize)]
#[serde(untagged)]
enum OrderOut {
    Full(Box<OrderJson>),
    Selected(serde_json::Value),
}

#[derive(Serialize)]
struct OrdersPage {
    orders: Vec<OrderOut>,
}

// ---- requests ---------------------------------------------------------------------------

/// The filters of a listing, carried inside `page_info` as Shopify does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Filter {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_max: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_max: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Direction {
    Next,
    #[serde(rename = "prev")]
    Previous,
}

/// The decoded `page_info`: base64url JSON, like Shopify's own.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    direction: Direction,
    last_id: u64,
    last_value: i64,
    page: u32,
    filter: Filter,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> Option<Self> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).ok()?).ok()
    }
}

fn parse_time(value: &str, offset: FixedOffset) -> Option<i64> {
    // An unencoded `+` in an offset arrives as a space.
    let value = value.trim().replace(' ', "+");
    if let Ok(time) = DateTime::parse_from_rfc3339(&value) {
        return Some(time.timestamp());
    }
    let local = NaiveDateTime::parse_from_str(&value, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(&value, "%Y-%m-%d")
                .ok()
                .and_then(|date| date.and_hms_opt(0, 0, 0))
        })?;
    local
        .and_local_timezone(offset)
        .single()
        .map(|time| time.timestamp())
}

pub(crate) struct ShopifyState {
    base_url: String,
    seed: u64,
    token: String,
    clock: shared::clock::Clock,
    shops: Vec<Shop>,
    retry_after: Mutex<f64>,
    bucket: Mutex<Option<LeakyBucket>>,
    switches: Switches,
}

fault_handle! {
    /// The run-time handle of the Shopify stand-in; dereferences to its [`Switches`].
    ShopifyFaults(ShopifyState)
}

impl ShopifyFaults {
    pub(crate) fn new(config: &StandinConfig, base_url: &str) -> Self {
        let scenario = &config.shopify;
        ShopifyFaults(Arc::new(ShopifyState {
            base_url: base_url.to_string(),
            seed: config.seed,
            token: scenario.access_token.clone(),
            clock: config.clock.clone(),
            shops: scenario
                .shops
                .iter()
                .map(|spec| Shop::new(config.seed, config.today, spec))
                .collect(),
            retry_after: Mutex::new(scenario.retry_after_seconds),
            bucket: Mutex::new(scenario.bucket),
            switches: Switches::default(),
        }))
    }

    /// Stands for `https://{shop}.myshopify.com`.
    pub fn base_url(&self, shop: &str) -> String {
        format!("{}/{shop}", self.0.base_url)
    }

    /// `Retry-After` (seconds) of the next 429s.
    pub fn set_retry_after(&self, seconds: f64) {
        *lock::unpoisoned(&self.0.retry_after) = seconds;
    }

    /// Switches the simulated leaky bucket on (or off with `None`).
    pub fn set_bucket(&self, bucket: Option<LeakyBucket>) {
        *lock::unpoisoned(&self.0.bucket) = bucket;
    }

    fn shop(&self, shop: &str) -> anyhow::Result<&Shop> {
        self.0
            .shop(shop)
            .with_context(|| format!("no stand-in shop {shop}"))
    }

    /// Creates `count` paid orders now; returns their ids.
    pub fn add_orders(&self, shop: &str, count: usize) -> anyhow::Result<Vec<u64>> {
        let shop = self.shop(shop)?;
        let mut inner = shop.lock();
        if shop.spec.orders + inner.added.len() + count > MAX_ORDERS {
            bail!("a stand-in shop holds at most {MAX_ORDERS} orders");
        }
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let at = Shop::tick(&mut inner);
            let index = (shop.spec.orders + inner.added.len()) as u64;
            inner.added.push(at);
            let id = shop.order_id(index);
            inner.index.insert((at, id));
            ids.push(id);
        }
        Ok(ids)
    }

    /// Refunds `amount_cents` of an order (everything still paid when `None`); returns the
    /// refund id.
    pub fn refund_order(
        &self,
        shop: &str,
        order_id: u64,
        amount_cents: Option<i64>,
    ) -> anyhow::Result<u64> {
        let shop = self.shop(shop)?;
        let mut seq = 0;
        shop.mutate(order_id, |model, patch, at| {
            let remaining = model.remaining_cents();
            if model.pending {
                bail!("order {order_id} is not paid; nothing to refund");
            }
            let amount = amount_cents.unwrap_or(remaining);
            if amount <= 0 || amount > remaining {
                bail!("order {order_id}: cannot refund {amount} cents of {remaining} remaining");
            }
            patch.refunds.push(ExtraRefund {
                at,
                amount_cents: amount,
                note: "Refund",
            });
            seq = patch.refunds.len() as u64;
            Ok(())
        })?;
        let index = shop.index_of(order_id).unwrap_or_default();
        Ok(shop.ids.refund + index * 100 + seq)
    }

    /// Cancels an order now, refunding whatever was still paid.
    pub fn cancel_order(&self, shop: &str, order_id: u64) -> anyhow::Result<()> {
        self.shop(shop)?.mutate(order_id, |model, patch, at| {
            if model.cancelled.is_some() {
                bail!("order {order_id} is already cancelled");
            }
            patch.cancelled_at = Some(at);
            let remaining = model.remaining_cents();
            if !model.pending && remaining > 0 {
                patch.refunds.push(ExtraRefund {
                    at,
                    amount_cents: remaining,
                    note: "Order canceled",
                });
            }
            Ok(())
        })
    }

    /// Edits an order (its note) without changing money: only `updated_at` moves.
    pub fn touch_order(&self, shop: &str, order_id: u64) -> anyhow::Result<()> {
        self.shop(shop)?.mutate(order_id, |_, patch, at| {
            patch.note = Some(format!("edited at {at}"));
            Ok(())
        })
    }

    /// The order as `GET orders/{id}.json` would return it.
    pub fn order(&self, shop: &str, order_id: u64) -> Option<serde_json::Value> {
        let shop = self.0.shop(shop)?;
        let inner = shop.lock();
        let model = shop.find(&inner, order_id)?;
        serde_json::to_value(shop.order_json(&model)).ok()
    }

    /// Every order id of a shop, ascending (creation order).
    pub fn order_ids(&self, shop: &str) -> Vec<u64> {
        let Some(shop) = self.0.shop(shop) else {
            return Vec::new();
        };
        let inner = shop.lock();
        let mut ids: Vec<u64> = inner.index.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// Sums over every order as it stands now.
    pub fn expected_totals(&self, shop: &str) -> ShopTotals {
        let Some(shop) = self.0.shop(shop) else {
            return ShopTotals::default();
        };
        let inner = shop.lock();
        let mut totals = ShopTotals::default();
        for (_, id) in &inner.index {
            let Some(model) = shop.find(&inner, *id) else {
                continue;
            };
            let refunded = model.refunded_cents();
            totals.orders += 1;
            totals.cancelled += usize::from(model.cancelled.is_some());
            totals.refunded_orders += usize::from(!model.refunds.is_empty());
            totals.gross_cents += model.total_cents;
            totals.refunded_cents += refunded;
            totals.net_cents += model.remaining_cents();
        }
        totals
    }

    /// The webhook Shopify would send for the order's current state, signed with
    /// `secret` (the app's client secret).
    pub fn webhook(
        &self,
        shop: &str,
        topic: ShopifyTopic,
        order_id: u64,
        secret: &str,
    ) -> anyhow::Result<WebhookDelivery> {
        let shop = self.shop(shop)?;
        let (body, updated) = {
            let inner = shop.lock();
            let model = shop.order_model(&inner, order_id)?;
            let body = match topic {
                ShopifyTopic::RefundsCreate => {
                    let refund = model
                        .refunds
                        .iter()
                        .max_by_key(|refund| (refund.at, refund.seq))
                        .with_context(|| format!("order {order_id} has no refund"))?;
                    serde_json::to_vec(&shop.refund_json(&model, refund))?
                }
                _ => serde_json::to_vec(&shop.order_json(&model))?,
            };
            (body, model.updated)
        };
        let id_key = key(&[
            self.0.seed,
            shop.key,
            hash_str(topic.as_str()),
            order_id,
            updated as u64,
        ]);
        let uuid = |salt: u64| {
            let mut draw = Draw::new(id_key ^ salt);
            let (a, b) = (draw.next_u64(), draw.next_u64());
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                0x8000 | ((b >> 48) & 0x3fff),
                b & 0xffff_ffff_ffff
            )
        };
        let triggered = self
            .0
            .clock
            .now()
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("X-Shopify-Topic".into(), topic.as_str().into()),
            (
                "X-Shopify-Hmac-Sha256".into(),
                shared::webhook::sign_shopify(&body, secret),
            ),
            ("X-Shopify-Shop-Domain".into(), shop.spec.domain()),
            ("X-Shopify-API-Version".into(), API_VERSION.into()),
            ("X-Shopify-Webhook-Id".into(), uuid(1)),
            ("X-Shopify-Event-Id".into(), uuid(2)),
            ("X-Shopify-Triggered-At".into(), triggered),
        ];
        Ok(WebhookDelivery {
            topic,
            headers,
            body,
        })
    }
}

pub(crate) fn routes(faults: &ShopifyFaults) -> Router {
    Router::new()
        .route(
            "/shopify/{shop}/admin/api/{version}/orders.json",
            get(list_orders),
        )
        .route(
            "/shopify/{shop}/admin/api/{version}/orders/{file}",
            get(one_order),
        )
        .with_state(faults.clone())
}

fn errors(status: StatusCode, message: &str) -> Response {
    json_body(status, &serde_json::json!({ "errors": message }))
}

/// Shopify's 404, for an unknown shop, order or path alike.
fn not_found() -> Answer {
    Answer::refused(
        errors(StatusCode::NOT_FOUND, "Not Found"),
        Outcome::Rejected,
    )
}

async fn list_orders(
    State(faults): State<ShopifyFaults>,
    Path((shop, version)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = format!("/shopify/{shop}/admin/api/{version}/orders.json");
    faults
        .0
        .serve(&shop, &version, path, &uri, &headers, |found, query| {
            faults.0.list(found, &version, query)
        })
}

async fn one_order(
    State(faults): State<ShopifyFaults>,
    Path((shop, version, file)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = format!("/shopify/{shop}/admin/api/{version}/orders/{file}");
    faults.0.serve(
        &shop,
        &version,
        path,
        &uri,
        &headers,
        |found, query| match file.strip_suffix(".json") {
            Some("count") => faults.0.count(found, query),
            Some(id) => faults.0.single(found, id, query),
            None => not_found(),
        },
    )
}

/// Keeps only the top-level keys listed in `fields`.
fn select_fields(value: serde_json::Value, fields: Option<&str>) -> serde_json::Value {
    let Some(fields) = fields.filter(|fields| !fields.is_empty()) else {
        return value;
    };
    let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(key, _)| wanted.contains(&key.as_str()))
                .collect(),
        ),
        other => other,
    }
}

impl ShopifyState {
    fn shop(&self, name: &str) -> Option<&Shop> {
        self.shops.iter().find(|shop| shop.spec.shop == name)
    }

    /// Serves a request of `shop`'s Admin API: the checks every endpoint shares (the shop,
    /// its token, throttling), then `endpoint`, whose answer carries the call-limit and
    /// version headers Shopify sends with every request it let through.
    fn serve(
        &self,
        shop: &str,
        version: &str,
        path: String,
        uri: &Uri,
        headers: &HeaderMap,
        endpoint: impl FnOnce(&Shop, &[(String, String)]) -> Answer,
    ) -> Response {
        serve(&self.switches, Api::Shopify, path, uri, headers, |query| {
            let (shop, call_limit) = match self.gate(shop, headers) {
                Ok(passed) => passed,
                Err(refusal) => return *refusal,
            };
            let mut answer = endpoint(shop, query);
            set_header(
                &mut answer.response,
                "x-shopify-shop-api-call-limit",
                &call_limit,
            );
            set_header(&mut answer.response, "x-shopify-api-version", version);
            answer
        })
    }

    /// Shop, token, throttling: the shop and the `X-Shopify-Shop-Api-Call-Limit` reading
    /// when the request passes.
    fn gate(&self, shop: &str, headers: &HeaderMap) -> Result<(&Shop, String), Box<Answer>> {
        let Some(shop) = self.shop(shop) else {
            return Err(Box::new(not_found()));
        };
        let token = headers
            .get("x-shopify-access-token")
            .and_then(|value| value.to_str().ok());
        let expected = shop.spec.access_token.as_deref().unwrap_or(&self.token);
        if token != Some(expected) || self.switches.token_expired() {
            return Err(Box::new(Answer::refused(
                json_response(StatusCode::UNAUTHORIZED, INVALID_TOKEN.as_bytes().to_vec()),
                Outcome::AuthFailed,
            )));
        }
        let bucket = *lock::unpoisoned(&self.bucket);
        let (used, size, overflow) = match bucket {
            None => (1, 40, false),
            Some(bucket) => {
                let mut state = lock::unpoisoned(&shop.bucket);
                let now = Instant::now();
                let leaked = now.duration_since(state.at).as_secs_f64() * bucket.leak_per_second;
                state.level = (state.level - leaked).max(0.0);
                state.at = now;
                if state.level + 1.0 > f64::from(bucket.size) {
                    (bucket.size, bucket.size, true)
                } else {
                    state.level += 1.0;
                    (state.level.ceil() as u32, bucket.size, false)
                }
            }
        };
        if overflow || self.switches.take_throttle() {
            let retry_after = *lock::unpoisoned(&self.retry_after);
            let mut response =
                json_response(StatusCode::TOO_MANY_REQUESTS, THROTTLED.as_bytes().to_vec());
            set_header(&mut response, "retry-after", &format!("{retry_after:.1}"));
            set_header(
                &mut response,
                "x-shopify-shop-api-call-limit",
                &format!("{size}/{size}"),
            );
            return Err(Box::new(Answer::refused(response, Outcome::Throttled)));
        }
        Ok((shop, format!("{used}/{size}")))
    }

    fn server_error(&self, page: u32) -> Option<Answer> {
        self.switches.injected_failure(page, || {
            errors(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        })
    }

    /// The listing filters of a first request; `Err` is the 400 message.
    fn filter(&self, shop: &Shop, query: &[(String, String)]) -> Result<Filter, String> {
        let status = first(query, "status").unwrap_or("open");
        if !matches!(status, "open" | "closed" | "cancelled" | "any") {
            return Err("status: expected one of open, closed, cancelled, any".into());
        }
        let time = |name: &str| -> Result<Option<i64>, String> {
            first(query, name)
                .map(|value| {
                    parse_time(value, shop.offset)
                        .ok_or_else(|| format!("{name}: invalid date {value}"))
                })
                .transpose()
        };
        Ok(Filter {
            status: status.to_string(),
            updated_min: time("updated_at_min")?,
            updated_max: time("updated_at_max")?,
            created_min: time("created_at_min")?,
            created_max: time("created_at_max")?,
        })
    }

    fn list(&self, shop: &Shop, version: &str, query: &[(String, String)]) -> Answer {
        let bad = |message: &str| {
            Answer::refused(errors(StatusCode::BAD_REQUEST, message), Outcome::Rejected)
        };
        let limit = match first(query, "limit") {
            None => 50,
            Some(value) => match value.parse::<usize>() {
                Ok(limit) if limit > 0 => limit.min(250),
                _ => return bad("limit: expected a positive integer"),
            },
        };
        let fields = first(query, "fields");
        let (filter, direction, from, page) = match first(query, "page_info") {
            Some(page_info) => {
                if query
                    .iter()
                    .any(|(key, _)| !matches!(key.as_str(), "page_info" | "limit" | "fields"))
                {
                    return bad(
                        "page_info: only limit and fields may be sent with page_info; the other parameters are inside it",
                    );
                }
                let Some(cursor) = Cursor::decode(page_info) else {
                    return bad("page_info: invalid value");
                };
                (
                    cursor.filter,
                    cursor.direction,
                    Some((cursor.last_value, cursor.last_id)),
                    cursor.page,
                )
            }
            None => {
                if first(query, "order").is_some_and(|order| order != "updated_at asc") {
                    return bad("order: the Shopify stand-in lists by updated_at asc only");
                }
                match self.filter(shop, query) {
                    Ok(filter) => (filter, Direction::Next, None, 1),
                    Err(message) => return bad(&message),
                }
            }
        };
        if let Some(failure) = self.server_error(page) {
            return failure;
        }
        let (orders, links) = {
            let inner = shop.lock();
            let (found, more) = shop.select(&inner, &filter, direction, from, limit);
            let orders: Vec<OrderOut> = found
                .iter()
                .filter_map(|(_, id)| shop.find(&inner, *id))
                .map(|model| {
                    let order = shop.order_json(&model);
                    match fields {
                        None => OrderOut::Full(Box::new(order)),
                        Some(fields) => OrderOut::Selected(select_fields(
                            serde_json::to_value(order).unwrap_or_default(),
                            Some(fields),
                        )),
                    }
                })
                .collect();
            let (has_previous, has_next) = match direction {
                Direction::Next => (from.is_some(), more),
                Direction::Previous => (more, true),
            };
            let link = |direction: Direction, entry: &(i64, u64), page: u32| {
                let cursor = Cursor {
                    direction,
                    last_id: entry.1,
                    last_value: entry.0,
                    page,
                    filter: filter.clone(),
                }
                .encode();
                let limit = limit.to_string();
                let mut pairs = vec![("limit", limit.as_str())];
                if let Some(fields) = fields {
                    pairs.push(("fields", fields));
                }
                pairs.push(("page_info", &cursor));
                format!(
                    "<{}/{}/admin/api/{version}/orders.json?{}>",
                    self.base_url,
                    shop.spec.shop,
                    encode_query(pairs)
                )
            };
            let mut links = Vec::new();
            if let (true, Some(first_entry)) = (has_previous, found.first()) {
                links.push(format!(
                    "{}; rel=\"previous\"",
                    link(
                        Direction::Previous,
                        first_entry,
                        page.saturating_sub(1).max(1)
                    )
                ));
            }
            if let (true, Some(last_entry)) = (has_next, found.last()) {
                links.push(format!(
                    "{}; rel=\"next\"",
                    link(Direction::Next, last_entry, page + 1)
                ));
            }
            (orders, links)
        };
        let rows = orders.len();
        let mut response = json_body(StatusCode::OK, &OrdersPage { orders });
        if !links.is_empty() {
            set_header(&mut response, "link", &links.join(", "));
        }
        Answer::served(response, Some(page), rows)
    }

    fn count(&self, shop: &Shop, query: &[(String, String)]) -> Answer {
        let filter = match self.filter(shop, query) {
            Ok(filter) => filter,
            Err(message) => {
                return Answer::refused(
                    errors(StatusCode::BAD_REQUEST, &message),
                    Outcome::Rejected,
                );
            }
        };
        if let Some(failure) = self.server_error(0) {
            return failure;
        }
        let count = {
            let inner = shop.lock();
            shop.select(&inner, &filter, Direction::Next, None, usize::MAX - 1)
                .0
                .len()
        };
        Answer::served(
            json_body(StatusCode::OK, &serde_json::json!({ "count": count })),
            None,
            0,
        )
    }

    fn single(&self, shop: &Shop, id: &str, query: &[(String, String)]) -> Answer {
        let Ok(id) = id.parse::<u64>() else {
            return not_found();
        };
        if let Some(failure) = self.server_error(0) {
            return failure;
        }
        let order = {
            let inner = shop.lock();
            shop.find(&inner, id)
                .and_then(|model| serde_json::to_value(shop.order_json(&model)).ok())
        };
        match order {
            None => not_found(),
            Some(order) => {
                let order = select_fields(order, first(query, "fields"));
                Answer::served(
                    json_body(StatusCode::OK, &serde_json::json!({ "order": order })),
                    None,
                    1,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{get, path_of};
    use crate::{StandinConfig, router};

    fn config(orders: usize) -> StandinConfig {
        let mut config = StandinConfig {
            today: Some(NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()),
            ..StandinConfig::default()
        };
        config.shopify.shops[0].orders = orders;
        config
    }

    const TOKEN: (&str, &str) = ("X-Shopify-Access-Token", DEFAULT_SHOPIFY_TOKEN);

    fn orders_uri(params: &[(&str, &str)]) -> String {
        format!(
            "/shopify/{DEFAULT_SHOP}/admin/api/{API_VERSION}/orders.json?{}",
            encode_query(params.iter().copied())
        )
    }

    /// The URL of `rel` in a `Link` header.
    fn link(headers: &HeaderMap, rel: &str) -> Option<String> {
        let value = headers.get("link")?.to_str().ok()?;
        value.split(", ").find_map(|part| {
            let (url, relation) = part.split_once("; ")?;
            (relation == format!("rel=\"{rel}\"")).then(|| {
                url.trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
        })
    }

    /// Follows `rel="next"` to the end; returns the orders and how many pages it took.
    async fn walk(router: &Router, uri: String) -> (Vec<serde_json::Value>, usize) {
        let mut orders = Vec::new();
        let mut pages = 0;
        let mut next = Some(uri);
        while let Some(uri) = next.take() {
            let (status, headers, body) = get(router, &uri, &[TOKEN]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(
                headers["x-shopify-shop-api-call-limit"]
                    .to_str()
                    .unwrap()
                    .ends_with("/40")
            );
            orders.extend(body["orders"].as_array().unwrap().iter().cloned());
            pages += 1;
            next = link(&headers, "next").map(|url| path_of(&url));
        }
        (orders, pages)
    }

    fn cents(value: &serde_json::Value) -> i64 {
        let text = value.as_str().unwrap();
        let (units, fraction) = text.split_once('.').unwrap();
        assert_eq!(fraction.len(), 2, "{text}");
        units.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap()
    }

    #[tokio::test]
    async fn link_pagination_walks_every_order_once_by_updated_at() {
        let (router, handles) = router(&config(430), "http://standins.test");
        let (orders, pages) =
            walk(&router, orders_uri(&[("status", "any"), ("limit", "50")])).await;
        assert_eq!(orders.len(), 430);
        assert_eq!(pages, 9);
        let ids: BTreeSet<u64> = orders
            .iter()
            .map(|order| order["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), 430);
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            handles.shopify.order_ids(DEFAULT_SHOP)
        );
        let updated: Vec<i64> = orders
            .iter()
            .map(|order| {
                DateTime::parse_from_rfc3339(order["updated_at"].as_str().unwrap())
                    .unwrap()
                    .timestamp()
            })
            .collect();
        assert!(updated.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(
            orders[0]["created_at"]
                .as_str()
                .unwrap()
                .ends_with("-05:00")
        );

        // Money adds up, and the totals helper agrees with what was served.
        let totals = handles.shopify.expected_totals(DEFAULT_SHOP);
        let mut gross = 0;
        let mut net = 0;
        let mut refunded = 0;
        for order in &orders {
            let total = cents(&order["total_price"]);
            assert_eq!(
                total,
                cents(&order["subtotal_price"])
                    + cents(&order["total_tax"])
                    + cents(&order["shipping_lines"][0]["price"])
            );
            gross += total;
            net += cents(&order["current_total_price"]);
            for refund in order["refunds"].as_array().unwrap() {
                for transaction in refund["transactions"].as_array().unwrap() {
                    assert_eq!(transaction["kind"], "refund");
                    refunded += cents(&transaction["amount"]);
                }
            }
        }
        assert_eq!(totals.orders, 430);
        assert_eq!(
            (gross, net, refunded),
            (totals.gross_cents, totals.net_cents, totals.refunded_cents)
        );
        assert_eq!(gross - refunded, net);

        let requests = handles.shopify.requests();
        assert_eq!(requests.len(), 9);
        assert_eq!(requests[0].param("status"), Some("any"));
        assert!(requests[1].param("page_info").is_some());
        assert_eq!(requests[8].page, Some(9));
    }

    #[tokio::test]
    async fn follow_up_pages_take_only_page_info_limit_and_fields() {
        let (router, _) = router(&config(120), "http://standins.test");
        let (_, headers, _) = get(
            &router,
            &orders_uri(&[("status", "any"), ("limit", "50")]),
            &[TOKEN],
        )
        .await;
        let next = path_of(&link(&headers, "next").unwrap());
        assert!(next.contains("limit=50"));
        assert!(!next.contains("status"));
        let (status, _, body) = get(&router, &format!("{next}&status=any"), &[TOKEN]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["errors"].as_str().unwrap().contains("page_info"));

        // The second page links back, and the previous page is the first one again.
        let (_, headers, second) = get(&router, &next, &[TOKEN]).await;
        let previous = path_of(&link(&headers, "previous").unwrap());
        let (_, _, first_again) = get(&router, &previous, &[TOKEN]).await;
        let (_, _, first) = get(
            &router,
            &orders_uri(&[("status", "any"), ("limit", "50")]),
            &[TOKEN],
        )
        .await;
        assert_eq!(first_again, first);
        assert_ne!(second, first);

        // fields cuts each order down.
        let (_, _, body) = get(
            &router,
            &orders_uri(&[
                ("status", "any"),
                ("limit", "2"),
                ("fields", "id,updated_at"),
            ]),
            &[TOKEN],
        )
        .await;
        let keys: Vec<&String> = body["orders"][0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "updated_at"]);
    }

    #[tokio::test]
    async fn status_defaults_to_open_and_the_seed_mixes_refunds_and_cancellations() {
        let (router, handles) = router(&config(2_000), "http://standins.test");
        let (open, _) = walk(&router, orders_uri(&[("limit", "250")])).await;
        let (all, _) = walk(&router, orders_uri(&[("status", "any"), ("limit", "250")])).await;
        assert_eq!(all.len(), 2_000);
        assert!(open.len() < all.len() / 2, "{} open", open.len());
        assert!(
            open.iter()
                .all(|order| order["closed_at"].is_null() && order["cancelled_at"].is_null())
        );
        let count = |status: &str| {
            all.iter()
                .filter(|order| order["financial_status"] == status)
                .count()
        };
        let cancelled = all
            .iter()
            .filter(|order| !order["cancelled_at"].is_null())
            .count();
        assert!((30..=90).contains(&cancelled), "{cancelled} cancelled");
        assert!(count("refunded") > 60, "{} refunded", count("refunded"));
        assert!(
            count("partially_refunded") > 40,
            "{}",
            count("partially_refunded")
        );
        assert!(count("pending") > 10, "{}", count("pending"));
        assert!(count("paid") > 1_500);
        let (_, _, body) = get(
            &router,
            &format!(
                "/shopify/{DEFAULT_SHOP}/admin/api/{API_VERSION}/orders/count.json?status=any"
            ),
            &[TOKEN],
        )
        .await;
        assert_eq!(body["count"], 2_000);
        let totals = handles.shopify.expected_totals(DEFAULT_SHOP);
        assert_eq!(totals.cancelled, cancelled);
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_orders() {
        let uri = orders_uri(&[("status", "any"), ("limit", "100")]);
        let (a, _) = router(&config(300), "http://standins.test");
        let (b, _) = router(&config(300), "http://standins.test");
        let mut other = config(300);
        other.seed += 1;
        let (c, _) = router(&other, "http://standins.test");
        let (orders_a, _) = walk(&a, uri.clone()).await;
        assert_eq!(orders_a, walk(&b, uri.clone()).await.0);
        assert_ne!(orders_a, walk(&c, uri).await.0);
    }

    #[tokio::test]
    async fn incremental_sync_sees_new_refunded_cancelled_and_edited_orders() {
        let (router, handles) = router(&config(500), "http://standins.test");
        let shopify = &handles.shopify;
        let (all, _) = walk(&router, orders_uri(&[("status", "any"), ("limit", "250")])).await;
        let cursor = all.last().unwrap()["updated_at"]
            .as_str()
            .unwrap()
            .to_string();
        let before = shopify.expected_totals(DEFAULT_SHOP);

        let paid: Vec<u64> = all
            .iter()
            .filter(|order| order["financial_status"] == "paid")
            .map(|order| order["id"].as_u64().unwrap())
            .collect();
        let new = shopify.add_orders(DEFAULT_SHOP, 3).unwrap();
        let refund_id = shopify
            .refund_order(DEFAULT_SHOP, paid[0], Some(500))
            .unwrap();
        shopify.cancel_order(DEFAULT_SHOP, paid[1]).unwrap();
        shopify.touch_order(DEFAULT_SHOP, paid[2]).unwrap();
        assert!(shopify.cancel_order(DEFAULT_SHOP, paid[1]).is_err());
        assert!(shopify.refund_order(DEFAULT_SHOP, 1, None).is_err());

        shopify.clear_requests();
        let (changed, _) = walk(
            &router,
            orders_uri(&[
                ("status", "any"),
                ("limit", "250"),
                ("updated_at_min", &cursor),
            ]),
        )
        .await;
        assert_eq!(
            shopify.requests()[0].param("updated_at_min"),
            Some(cursor.as_str())
        );
        // updated_at_min is inclusive: the last order seen comes again, then the six changes.
        let ids: Vec<u64> = changed
            .iter()
            .map(|order| order["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), 7, "{ids:?}");
        assert_eq!(
            ids[1..],
            [new[0], new[1], new[2], paid[0], paid[1], paid[2]]
        );
        let by_id = |id: u64| changed.iter().find(|order| order["id"] == id).unwrap();
        let refunded = by_id(paid[0]);
        assert_eq!(refunded["financial_status"], "partially_refunded");
        let last_refund = refunded["refunds"].as_array().unwrap().last().unwrap();
        assert_eq!(last_refund["id"], refund_id);
        assert_eq!(last_refund["transactions"][0]["amount"], "5.00");
        let cancelled = by_id(paid[1]);
        assert_eq!(cancelled["financial_status"], "refunded");
        assert_eq!(cancelled["current_total_price"], "0.00");
        assert!(!cancelled["cancelled_at"].is_null());
        assert!(!by_id(paid[2])["note"].is_null());
        assert_eq!(by_id(new[0])["financial_status"], "paid");

        let after = shopify.expected_totals(DEFAULT_SHOP);
        assert_eq!(after.orders, before.orders + 3);
        assert_eq!(after.cancelled, before.cancelled + 1);
        assert!(after.refunded_cents > before.refunded_cents + 500);
        assert_eq!(after.gross_cents - after.refunded_cents, after.net_cents);
    }

    #[tokio::test]
    async fn throttling_is_a_429_with_retry_after_and_bad_tokens_a_401() {
        let (router, handles) = router(&config(10), "http://standins.test");
        let uri = orders_uri(&[("status", "any")]);
        handles.shopify.throttle_next(1);
        let (status, headers, body) = get(&router, &uri, &[TOKEN]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "1.0");
        assert_eq!(headers["x-shopify-shop-api-call-limit"], "40/40");
        assert!(
            body["errors"]
                .as_str()
                .unwrap()
                .starts_with("Exceeded 2 calls per second")
        );
        let (status, headers, _) = get(&router, &uri, &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-shopify-api-version"], API_VERSION);

        let (status, _, body) = get(&router, &uri, &[("X-Shopify-Access-Token", "nope")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body["errors"]
                .as_str()
                .unwrap()
                .contains("Invalid API key or access token")
        );
        handles.shopify.expire_token();
        let (status, _, _) = get(&router, &uri, &[TOKEN]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        handles.shopify.renew_token();
        let (status, _, _) = get(
            &router,
            &orders_uri(&[]).replace(DEFAULT_SHOP, "elsewhere"),
            &[TOKEN],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(handles.shopify.count(Outcome::AuthFailed), 2);
    }

    #[tokio::test]
    async fn the_leaky_bucket_fills_and_throttles() {
        let (router, handles) = router(&config(10), "http://standins.test");
        handles.shopify.set_bucket(Some(LeakyBucket {
            size: 3,
            leak_per_second: 0.001,
        }));
        handles.shopify.set_retry_after(2.0);
        let uri = orders_uri(&[("status", "any")]);
        for used in 1..=3 {
            let (status, headers, _) = get(&router, &uri, &[TOKEN]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                headers["x-shopify-shop-api-call-limit"],
                format!("{used}/3")
            );
        }
        let (status, headers, _) = get(&router, &uri, &[TOKEN]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "2.0");
    }

    #[tokio::test]
    async fn a_page_fails_once_with_a_500() {
        let (router, handles) = router(&config(100), "http://standins.test");
        handles.shopify.fail_at_page(2);
        let (_, headers, _) = get(
            &router,
            &orders_uri(&[("status", "any"), ("limit", "40")]),
            &[TOKEN],
        )
        .await;
        let next = path_of(&link(&headers, "next").unwrap());
        let (status, _, _) = get(&router, &next, &[TOKEN]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, _, body) = get(&router, &next, &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["orders"].as_array().unwrap().len(), 40);
    }

    #[tokio::test]
    async fn webhooks_are_signed_and_their_ids_change_with_the_event() {
        let (router, handles) = router(&config(50), "http://standins.test");
        let shopify = &handles.shopify;
        let id = shopify.order_ids(DEFAULT_SHOP)[7];
        let secret = "shpss_local";
        let delivery = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersUpdated, id, secret)
            .unwrap();
        shared::webhook::verify_shopify(
            &delivery.body,
            delivery.header("x-shopify-hmac-sha256"),
            secret,
        )
        .unwrap();
        assert!(
            shared::webhook::verify_shopify(
                &delivery.body,
                delivery.header("x-shopify-hmac-sha256"),
                "other"
            )
            .is_err()
        );
        assert_eq!(delivery.header("X-Shopify-Topic"), Some("orders/updated"));
        assert_eq!(
            delivery.header("X-Shopify-Shop-Domain"),
            Some("demo-store.myshopify.com")
        );
        assert_eq!(delivery.header("X-Shopify-API-Version"), Some(API_VERSION));
        assert!(
            delivery
                .header("X-Shopify-Triggered-At")
                .unwrap()
                .ends_with('Z')
        );
        assert_eq!(delivery.webhook_id().len(), 36);
        let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(Some(&body), shopify.order(DEFAULT_SHOP, id).as_ref());

        // The same event again is a redelivery; an update is a new event with the polled state.
        let again = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersUpdated, id, secret)
            .unwrap();
        assert_eq!(again.webhook_id(), delivery.webhook_id());
        assert_eq!(again.body, delivery.body);
        shopify.refund_order(DEFAULT_SHOP, id, Some(100)).unwrap();
        let refund = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::RefundsCreate, id, secret)
            .unwrap();
        assert_ne!(refund.webhook_id(), delivery.webhook_id());
        let refund_body: serde_json::Value = serde_json::from_slice(&refund.body).unwrap();
        assert_eq!(refund_body["order_id"], id);
        assert_eq!(refund_body["transactions"][0]["amount"], "1.00");
        let request = refund.request("/webhooks/shopify");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.headers()["x-shopify-topic"], "refunds/create");

        let (status, _, polled) = get(
            &router,
            &format!("/shopify/{DEFAULT_SHOP}/admin/api/{API_VERSION}/orders/{id}.json"),
            &[TOKEN],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let updated = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersUpdated, id, secret)
            .unwrap();
        let updated: serde_json::Value = serde_json::from_slice(&updated.body).unwrap();
        assert_eq!(polled["order"], updated);
    }

    #[tokio::test]
    async fn webhooks_stamp_the_clock_and_shops_have_their_own_tokens() {
        let at: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let mut config = config(20);
        config.clock = shared::clock::Clock::fixed(at);
        config.shopify.shops.push(ShopSpec {
            access_token: Some("shpat_other".into()),
            ..ShopSpec::new("other-store", 5)
        });
        let (router, handles) = router(&config, "http://standins.test");
        let shopify = &handles.shopify;
        let id = shopify.order_ids(DEFAULT_SHOP)[0];
        let mut delivery = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersCreate, id, "s")
            .unwrap();
        assert_eq!(
            delivery.header("X-Shopify-Triggered-At"),
            Some("2026-12-07T10:00:00.000Z")
        );
        let event = delivery.header("X-Shopify-Event-Id").unwrap().to_string();
        let again = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersCreate, id, "s")
            .unwrap();
        assert_eq!(again.header("X-Shopify-Event-Id"), Some(event.as_str()));
        delivery.set_header("x-shopify-shop-domain", "other-store.myshopify.com");
        assert_eq!(
            delivery.header("X-Shopify-Shop-Domain"),
            Some("other-store.myshopify.com")
        );
        assert_eq!(
            delivery
                .headers
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case("x-shopify-shop-domain"))
                .count(),
            1
        );

        let path = |shop: &str, id: u64| {
            format!("/shopify/{shop}/admin/api/{API_VERSION}/orders/{id}.json")
        };
        let own = ("X-Shopify-Access-Token", "shpat_other");
        let other = shopify.order_ids("other-store")[0];
        let (status, _, _) = get(&router, &path("other-store", other), &[TOKEN]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "another shop's token");
        let (status, _, body) = get(&router, &path("other-store", other), &[own]).await;
        assert_eq!(
            (status, body["order"]["id"].as_u64()),
            (StatusCode::OK, Some(other))
        );
        let (status, _, _) = get(&router, &path("other-store", id), &[own]).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "the default shop's order is not here"
        );
    }

    #[test]
    fn times_parse_with_offsets_dates_and_unencoded_plus() {
        let offset = FixedOffset::west_opt(5 * 3600).unwrap();
        let utc = parse_time("2026-11-01T05:00:00Z", offset).unwrap();
        assert_eq!(parse_time("2026-11-01T00:00:00-05:00", offset), Some(utc));
        assert_eq!(parse_time("2026-11-01T00:00:00", offset), Some(utc));
        assert_eq!(parse_time("2026-11-01", offset), Some(utc));
        assert_eq!(parse_time("2026-11-01T10:00:00 05:00", offset), Some(utc));
        assert_eq!(parse_time("yesterday", offset), None);
    }
}
