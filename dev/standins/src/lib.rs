//! Local HTTP stand-ins for the three APIs the ETL agents read: Meta Ads Insights, read
//! synchronously or as report runs ([`meta`]), TikTok's report, synchronous or as report
//! tasks ([`tiktok`]), and Shopify's Admin API, REST and GraphQL with bulk operations
//! ([`shopify`]); and, on servers of their own, for Supabase Auth's signing keys and the
//! access tokens they sign ([`supabase_auth`]) and for Stripe's list API that the billing
//! backfill pages ([`stripe`]).
//!
//! They speak the real wire formats (paths, query parameters, auth headers, envelopes,
//! numbers as strings, cursors and `Link` headers, the platforms' own throttling and
//! auth-failure signals) and serve realistic data that is a pure function of a seed, so a
//! test can assert exact numbers and the demo mode of the local stack has something to
//! show. Nothing is precomputed beyond a sorted `(updated_at, id)` index of Shopify orders:
//! rows are generated per page, so a 500-ad × 90-day insights sync or 100,000 orders cost
//! the stand-in little more than serialising them.
//!
//! Layout:
//! * [`start`] binds ONE `127.0.0.1:0` listener serving all three under distinct prefixes
//!   (`/meta` for `https://graph.facebook.com`, `/tiktok` for
//!   `https://business-api.tiktok.com`, `/shopify/{shop}` for `https://{shop}.myshopify.com`)
//!   and returns [`Standins`]: the base URLs, the fault handles, and a stop on drop.
//! * [`router`] builds the same routes without binding, for `tower::ServiceExt::oneshot`
//!   tests or to mount them on another server (the local stack's demo mode).
//! * Each API has a fault handle ([`MetaFaults`], [`TikTokFaults`], [`ShopifyFaults`]) that
//!   tests flip at run time: every handle dereferences to [`Switches`] (throttle the next N
//!   requests, fail the next N or page K with HTTP 500 once, expire the token, echo the
//!   next N requests' credentials back in an error body as a careless proxy would, and the
//!   log of requests received), plus per-API knobs (restate a day, add/refund/cancel
//!   orders, usage headers and a usage ramp, leaky bucket, Meta's app secret, the size a
//!   synchronous Meta read may have, report runs and tasks that fail, are skipped or never
//!   finish) and the ground truth tests
//!   compare a sync against (`expected_rows`, `expected_totals`).
//!
//! Deliberately left out, everywhere: TLS, real OAuth flows (a token is a configured
//! string), every endpoint the ETL agents do not call, and exact reproduction of error
//! *messages* we could not verify (each module says which ones are approximations).
//!
//! How the crate fits together: everything served is a function of `config`. Each
//! platform module serves its API from a fault handle (its state behind an `Arc`) that
//! dereferences to the [`Switches`] of `faults`: the shared faults, and the `request_log`
//! behind them. Every request takes the same way through `answer` (echo, endpoint, log).
//! The data comes from `seeded` (deterministic draws), `ad_day` and `ad_accounts` (what
//! Meta and TikTok report) and Shopify's own order model; `query`, `reply` and `money` are
//! the wire's edges; `server` mounts and runs it all.

pub mod meta;
pub mod shopify;
pub mod stripe;
pub mod supabase_auth;
pub mod tiktok;

mod ad_accounts;
mod ad_day;
mod answer;
mod config;
mod faults;
mod lock;
mod money;
mod query;
mod reply;
mod request_log;
mod seeded;
mod server;
#[cfg(test)]
mod test_support;

pub use ad_accounts::{AdDayFacts, AdTotals};
pub use config::StandinConfig;
pub use faults::Switches;
pub use meta::{MetaAccount, MetaFaults, MetaScenario, MetaThrottle};
pub use request_log::{Api, LoggedRequest, Outcome};
pub use server::{Handles, Standins, router, start};
pub use shopify::{
    LeakyBucket, ShopSpec, ShopTotals, ShopifyFaults, ShopifyScenario, ShopifyTopic,
    WebhookDelivery,
};
pub use tiktok::{TikTokAdvertiser, TikTokFaults, TikTokScenario};
