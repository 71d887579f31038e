//! Shopify orders into `orders`: pulled by the ETL run and pushed by Shopify's webhooks, one
//! row per (shop, order id) whichever way it came.
//!
//! **Reading** ([`extract_and_load`], called by [`crate::run`] for [`Platform::Shopify`]),
//! on the GraphQL Admin API (`POST {shop}/admin/api/{SHOPIFY_API_VERSION}/graphql.json`,
//! default `2026-10`, with `X-Shopify-Access-Token`), by [`poll::plan`]:
//! * a first sync (no cursor) or a backfill (a window reaching back past the cursor) is one
//!   **bulk operation** ([`bulk`]): `bulkOperationRunQuery`, polled until `COMPLETED`, its
//!   JSONL streamed and written in batches — a million orders in a few calls;
//! * any other run pages the orders query (`updated_at:>=` the cursor minus the lookback,
//!   [`Platform::lookback_days`], 7, sorted by `UPDATED_AT`, cursor pagination), because an
//!   order edited while a run was paging, or stamped slightly out of order, would otherwise
//!   be skipped for good.
//!
//! Throttling is cost-based ([`graphql`]): every answer's `extensions.cost.throttleStatus`
//! says how full the shop's bucket is, and the run waits before a page the bucket cannot
//! hold yet, so other apps sharing the bucket keep room; a `THROTTLED` answer (HTTP 200) is
//! retried after the refill it needs; a 401/403 is an auth failure and never retried.
//! Without `read_all_orders` Shopify shows only the last 60 days of orders, so a first sync
//! of an older shop reads 60 days; with it, the whole history.
//!
//! **Writing** ([`upsert_orders`], used by both paths): one set-based statement per page,
//! fenced by the run's lease on the poll path. Newest state wins: an existing row is only
//! rewritten by a copy with a later `updated_at`, or the same `updated_at` and different
//! facts (money, status, customer…; the payload alone may differ in shape, a webhook's REST
//! JSON against a poll's GraphQL node), so re-reading the lookback window rewrites nothing and only real changes are
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
//! whether the named shop owns the order before anything is written (asking the shop's
//! GraphQL API for an order it does not hold yet). `app/uninstalled` stops the connection's
//! syncing; the compliance topics (`customers/data_request`, `customers/redact`,
//! `shop/redact`) act on the orders we hold and are recorded in
//! `shopify_compliance_requests`.
//!
//! **Input never panics**: money is parsed exactly (plain or scientific notation) and a value
//! no decimal can hold is [`OrderError::OutOfRange`] (the webhook quarantines it, the poller
//! fails the run with it); sums are checked; header values are parsed, never indexed.

//!
//! Layout: [`wire`] is the REST and webhook JSON (orders, refunds, money, error answers);
//! [`graphql`] the GraphQL Admin API's (queries, cost, order nodes); [`store`] writes orders
//! and refunds; [`poll`] plans a run and pages; [`bulk`] runs a bulk operation; [`webhook`] and
//! [`delivery`] are the push half.

mod bulk;
pub mod delivery;
pub mod graphql;
mod poll;
pub mod store;
pub mod webhook;
pub mod wire;

pub(crate) use poll::extract_and_load;
pub use store::{Source, Written, upsert_orders};
pub use webhook::{
    MAX_WEBHOOK_BYTES, WebhookDeps, WebhookError, WebhookOutcome, ingest_webhook, router,
};
pub use wire::{
    Order, OrderError, Refund, classify, cursor_updated_at, parse_order, parse_refund, shop_handle,
};
