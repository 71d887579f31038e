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

//!
//! Layout: [`wire`] is Shopify's format (orders, refunds, money, pages, headers, error
//! answers); [`store`] writes orders and refunds; [`poll`] is the paged sync; [`webhook`] and
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
    API_VERSION, Order, OrderError, OrdersPage, PAGE_LIMIT, Refund, call_limit, classify,
    cursor_updated_at, first_page, next_link, next_page, parse_order, parse_page, parse_refund,
    pause_for, shop_handle, updated_at_min,
};
