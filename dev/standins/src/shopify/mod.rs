//! Shopify Admin API stand-in (REST and GraphQL): orders as `https://{shop}.myshopify.com/admin/api/{version}/`
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
//!   [`StandinConfig::clock`](crate::StandinConfig::clock) when the delivery is built. A test rewrites headers with
//!   [`WebhookDelivery::set_header`] (Shopify signs the body only) to play a replay.
//!
//! The GraphQL Admin API (orders, bulk operations, cost-based throttling) is in `graphql`.
//!
//! Left out: every other resource, `since_id`, other sort
//! orders, `financial_status`/`fulfillment_status` filters, the 60-day limit without
//! `read_all_orders`, shipping/tax line details beyond totals, multi-currency presentment
//! (the presentment currency is the shop's), and exact 400 texts (approximations).
//!
//! How the module fits together: each shop (`shop`) generates its orders from the seed
//! (`data`), keeps the `(updated_at, id)` index it lists by and the changes made at run
//! time (`changes`), and formats orders as Shopify's JSON (`order_json`). A request
//! passes the shop's token (`auth`) and bucket (`throttle`) before an endpoint (`orders`)
//! answers it; listings page through `page_info` cursors and `Link` headers
//! (`pagination`). [`ShopifyFaults`] (`faults`) is the handle tests hold, and builds
//! signed webhook deliveries (`webhooks`).

mod auth;
mod changes;
mod data;
mod faults;
mod graphql;
mod order_json;
mod orders;
mod pagination;
mod shop;
#[cfg(test)]
mod test_support;
mod throttle;
mod webhooks;

pub use faults::{ShopTotals, ShopifyFaults};
pub use graphql::CostPlan;
pub use throttle::LeakyBucket;
pub use webhooks::{ShopifyTopic, WebhookDelivery};

pub const DEFAULT_SHOPIFY_TOKEN: &str = "shpat_local_token";
/// The default shop: `demo-store.myshopify.com`.
pub const DEFAULT_SHOP: &str = "demo-store";
/// The API version the REST helpers use and webhooks announce.
pub const API_VERSION: &str = "2026-10";
/// The most orders one shop may be seeded with.
pub const MAX_ORDERS: usize = 1_000_000;

/// The REST orders endpoints and the GraphQL Admin API with its bulk result files.
pub(crate) fn routes(faults: &ShopifyFaults) -> axum::Router {
    orders::routes(faults).merge(graphql::routes(faults))
}

/// The part of [`StandinConfig`](crate::StandinConfig) that shapes the Shopify stand-in.
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
    /// The GraphQL cost bucket of every shop.
    pub cost_plan: CostPlan,
    /// How many status polls a bulk operation takes to complete (at least 1).
    pub bulk_polls: u32,
}

impl Default for ShopifyScenario {
    fn default() -> Self {
        ShopifyScenario {
            shops: vec![ShopSpec::new(DEFAULT_SHOP, 2_000)],
            access_token: DEFAULT_SHOPIFY_TOKEN.into(),
            retry_after_seconds: 1.0,
            bucket: None,
            cost_plan: CostPlan::PLUS,
            bulk_polls: 3,
        }
    }
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
