//! ETL agents: ad spend pulled into `ad_insights` under a lease, recorded in `etl_runs`.
//!
//! * [`dispatch`] (woken by a platform's schedule) enqueues one [`EtlRun`] per active
//!   connection on `etl.fifo`: group = platform and account, so runs of one account never
//!   overlap; deduplication id = platform, account and window, so a double-fired schedule
//!   starts one run.
//! * [`run`] executes one: it records the run, takes the account's lease (a second run that
//!   finds it held ends as `skipped`), walks the platform's pages with bounded retries for
//!   throttling, upserts each page in a transaction fenced by the lease, and on success
//!   advances the connection's cursor and asks the metrics agent to recompute the dates it
//!   touched. A failure is recorded with its reason and logged as an alert; the cursor does
//!   not move, so the next run fetches the window again (upserts make that harmless).
//! * [`meta`] reads Meta's Ads Insights, [`tiktok`] TikTok's daily ad report, [`shopify`] a
//!   shop's orders (by `updated_at`, into `orders`) and also receives Shopify's order webhooks
//!   ([`router`]: `POST /webhooks/shopify`).
//!
//! Ad rows are keyed by (platform, account, ad, day in the account's timezone), orders by
//! (shop, order id): re-running any window yields identical tables.
//!
//! Secrets stay inside: a connection's token is sealed at rest ([`tokens`]) and opened only
//! for the request; it travels in a header (Meta's `Authorization: Bearer` with
//! `appsecret_proof` in the query, TikTok's `Access-Token`, Shopify's
//! `X-Shopify-Access-Token`), never in a URL; a next-page URL is followed only on the host
//! it came from, and Meta's `access_token=` is taken out of it first; the HTTP client
//! follows no redirects ([`http_client`]). Every error text that is stored or logged has the
//! token, the proof and anything credential-shaped removed ([`redacted`]).
//!
//! Layout: [`config`] builds the two functions and their entry points; `run` is one run
//! start to end, `extract` the bounded calls to the platforms, `report_jobs` the
//! asynchronous reports (Meta's report runs and TikTok's report tasks: create, poll to a deadline, then page or download), `load`
//! the ad rows' upsert; [`meta`], [`tiktok`] and [`shopify`] each speak their platform;
//! [`tokens`] seals and opens the connections' tokens.
//!
//! A token the platform refuses (Meta 190, TikTok 40001/40104/40105) marks the connection
//! `needs_reauth`, once: dispatch passes it over and a run already queued for it fails
//! without calling the platform, until a new token is stored.
//!
//! Work per run is bounded: a window of at most [`MAX_WINDOW_DAYS`], at most
//! [`MAX_PAGES_PER_RUN`] pages, answers of at most [`MAX_RESPONSE_BYTES`].

pub mod config;
mod extract;
mod load;
pub mod meta;
mod report_jobs;
mod run;
pub mod shopify;
#[cfg(test)]
mod strategies;
pub mod tiktok;
pub mod tokens;

pub use config::{Config, WebhookConfig, consumer, on_tick};
pub(crate) use extract::post_json;
pub(crate) use run::{Connection, Credentials, check_page_budget, complete};
pub use run::{backfill, dispatch, fetch_window, run};
pub use shopify::{WebhookDeps, router};

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use shared::clock::Clock;
use shared::db::{DbError, Pool};
use shared::lease::LeaseError;
use shared::queue::{Message, QueueDef, QueueError, Transport, catalog};
use shared::retry::{RetryClass, RetryPolicy, Retryable};
use uuid::Uuid;

/// How long a run's lease lasts without renewal; renewed after every page.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
/// The longest window one run reads (ten years): longer ones are refused, not walked.
pub const MAX_WINDOW_DAYS: i64 = 3_660;
/// Pages one run follows at most: an API that always answers "there is more" must not keep
/// a run (and its lease) going for ever. 20,000 pages is 10 M Meta rows, 5 M orders.
pub const MAX_PAGES_PER_RUN: i32 = 20_000;
/// The largest answer read from a platform. A page of 500 insights rows or 250 orders is a
/// few megabytes; anything far larger is not a page.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// The longest error text stored in `etl_runs.error` (and returned in [`RunReport::error`]).
pub const MAX_ERROR_BYTES: usize = 2_000;
/// How much of a platform's error body an error quotes.
pub(crate) const MAX_QUOTED_BODY: usize = 300;

/// A platform we pull from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Meta,
    Tiktok,
    Shopify,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Meta => "meta",
            Platform::Tiktok => "tiktok",
            Platform::Shopify => "shopify",
        }
    }

    /// The platform whose dispatch `schedule` fires, if it is an ETL schedule.
    pub fn for_schedule(schedule: &shared::schedule::Schedule) -> Option<Self> {
        use shared::schedule::{ETL_META, ETL_SHOPIFY, ETL_TIKTOK};
        [
            (&ETL_META, Platform::Meta),
            (&ETL_TIKTOK, Platform::Tiktok),
            (&ETL_SHOPIFY, Platform::Shopify),
        ]
        .into_iter()
        .find(|(known, _)| known.name == schedule.name)
        .map(|(_, platform)| platform)
    }

    /// Days re-read on every incremental run, because the platform restates conversions
    /// that long after the fact. For Shopify the lookback is subtracted from the cursor (the
    /// newest `updated_at` seen) to form `updated_at_min`, so late edits are read again.
    pub fn lookback_days(self) -> i64 {
        match self {
            Platform::Meta => 28,
            Platform::Tiktok => 7,
            Platform::Shopify => 7,
        }
    }
}

/// One run of one account over a window of days (inclusive, account timezone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtlRun {
    pub platform: Platform,
    pub connection_id: Uuid,
    pub account_id: String,
    pub window_start: NaiveDate,
    pub window_end: NaiveDate,
}

impl EtlRun {
    /// Why this run cannot be executed, if it cannot: a window that ends before it starts
    /// or spans more than [`MAX_WINDOW_DAYS`].
    pub fn window_problem(&self) -> Option<String> {
        let days = (self.window_end - self.window_start).num_days();
        if days < 0 {
            Some(format!(
                "window {}..{} ends before it starts",
                self.window_start, self.window_end
            ))
        } else if days >= MAX_WINDOW_DAYS {
            Some(format!(
                "window {}..{} spans more than {MAX_WINDOW_DAYS} days",
                self.window_start, self.window_end
            ))
        } else {
            None
        }
    }
}

impl Message for EtlRun {
    const QUEUE: &'static QueueDef = &catalog::ETL;

    fn group_id(&self) -> String {
        format!("{}:{}", self.platform.as_str(), self.account_id)
    }

    fn dedup_id(&self) -> String {
        format!(
            "etl:{}:{}:{}:{}",
            self.platform.as_str(),
            self.account_id,
            self.window_start,
            self.window_end
        )
    }
}

/// One ad on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct AdRow {
    pub ad_id: String,
    pub campaign_id: Option<String>,
    pub adset_id: Option<String>,
    pub date: NaiveDate,
    pub spend: Decimal,
    pub impressions: i64,
    pub clicks: i64,
    pub conversions: Option<Decimal>,
    pub conversion_value: Option<Decimal>,
}

/// One page of a platform's answer and where the next one is.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub rows: Vec<AdRow>,
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Rate limited or briefly unavailable: worth retrying, after `retry_after` if given.
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The token is expired or revoked: retrying cannot help, and the connection needs its
    /// owner to sign in again (`needs_reauth`).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Meta refuses to answer this much synchronously (code 100, subcode 1487534). Permanent
    /// for the synchronous read; the run asks again through a report run.
    #[error("too much data for one synchronous read: {0}")]
    TooMuchData(String),
    /// An asynchronous report (Meta's report run) did not complete: `transient` when Meta
    /// failed or skipped it, so a new one may succeed; not when it outlived its deadline.
    #[error("{message}")]
    ReportJob { message: String, transient: bool },
    #[error("{0}")]
    Api(String),
    /// The platform has no such object (HTTP 404): permanent.
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unexpected answer: {0}")]
    Malformed(String),
    /// The request did not get an answer (connect, timeout, reset): worth retrying.
    #[error("request failed: {0}")]
    Http(String),
}

impl ExtractError {
    /// The same error with `secrets` and anything credential-shaped taken out of its text
    /// (see [`redacted`]).
    pub fn redacted(self, secrets: &[&str]) -> Self {
        let clean = |text: String| redacted(&text, secrets);
        match self {
            ExtractError::Throttled {
                message,
                retry_after,
            } => ExtractError::Throttled {
                message: clean(message),
                retry_after,
            },
            ExtractError::Auth(text) => ExtractError::Auth(clean(text)),
            ExtractError::TooMuchData(text) => ExtractError::TooMuchData(clean(text)),
            ExtractError::ReportJob { message, transient } => ExtractError::ReportJob {
                message: clean(message),
                transient,
            },
            ExtractError::Api(text) => ExtractError::Api(clean(text)),
            ExtractError::NotFound(text) => ExtractError::NotFound(clean(text)),
            ExtractError::Malformed(text) => ExtractError::Malformed(clean(text)),
            ExtractError::Http(text) => ExtractError::Http(clean(text)),
        }
    }
}

impl Retryable for ExtractError {
    fn retry_class(&self) -> RetryClass {
        match self {
            ExtractError::Throttled { retry_after, .. } => RetryClass::Transient {
                retry_after: *retry_after,
            },
            ExtractError::Http(_) => RetryClass::transient(),
            ExtractError::ReportJob {
                transient: true, ..
            } => RetryClass::transient(),
            _ => RetryClass::Permanent,
        }
    }
}

/// `text` as it may be stored or logged: every one of `secrets` (the connection's token, its
/// `appsecret_proof`) replaced, credential-shaped parameters, user-info and bearer values
/// removed ([`shared::redact::credentials`]), NULs dropped (the column would refuse them),
/// and cut to [`MAX_ERROR_BYTES`].
pub fn redacted(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        text = text.replace(secret, "[redacted]");
    }
    let text = shared::redact::credentials(&text);
    let text = shared::text::without_nul(&text);
    shared::text::clip(&text, MAX_ERROR_BYTES).to_string()
}

/// A transport failure as text without the URL it failed on (which may carry credentials),
/// with its causes.
pub(crate) fn transport_error(error: reqwest::Error) -> ExtractError {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(source) = cause {
        text.push_str(": ");
        text.push_str(&source.to_string());
        cause = source.source();
    }
    ExtractError::Http(text)
}

#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("connection {0} not found, without an access token, or of a platform we do not pull")]
    Connection(Uuid),
    #[error(transparent)]
    Token(#[from] tokens::TokenError),
    /// The connection's token was refused before; nothing is fetched until it is renewed.
    #[error("connection {0} needs its owner to sign in again (its token was refused)")]
    NeedsReauth(Uuid),
    /// The message asks for a run that cannot be executed (see [`EtlRun::window_problem`]).
    #[error("invalid run: {0}")]
    InvalidRun(String),
}

/// Where each platform's API lives (the real hosts in production, stand-ins in tests).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub meta_base_url: String,
    pub tiktok_base_url: String,
    /// Every shop has its own host, so this is a template: `{shop}` is replaced by the shop
    /// handle (production: `https://{shop}.myshopify.com`); a value without `{shop}` gets
    /// `/{shop}` appended (the stand-in: `http://127.0.0.1:PORT/shopify`). See
    /// [`Endpoints::shopify_shop_url`].
    pub shopify_base_url: String,
    /// The Shopify Admin API version requests name (`SHOPIFY_API_VERSION`).
    pub shopify_api_version: String,
}

impl Endpoints {
    /// The defaults, overridden by `META_API_BASE_URL`, `TIKTOK_API_BASE_URL` and
    /// `SHOPIFY_API_BASE_URL` when `lookup` finds them (stand-ins, staging).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut endpoints = Self::default();
        for (name, field) in [
            ("META_API_BASE_URL", &mut endpoints.meta_base_url),
            ("TIKTOK_API_BASE_URL", &mut endpoints.tiktok_base_url),
            ("SHOPIFY_API_BASE_URL", &mut endpoints.shopify_base_url),
            ("SHOPIFY_API_VERSION", &mut endpoints.shopify_api_version),
        ] {
            if let Some(url) = lookup(name).filter(|url| !url.is_empty()) {
                *field = url;
            }
        }
        endpoints
    }

    /// One shop's GraphQL Admin API endpoint.
    pub fn shopify_graphql_url(&self, shop: &str) -> String {
        format!(
            "{}/admin/api/{}/graphql.json",
            self.shopify_shop_url(shop),
            self.shopify_api_version
        )
    }

    /// The base URL of one shop's Admin API (append `/admin/api/…`).
    pub fn shopify_shop_url(&self, shop: &str) -> String {
        let template = self.shopify_base_url.trim_end_matches('/');
        if template.contains("{shop}") {
            template.replace("{shop}", shop)
        } else {
            format!("{template}/{shop}")
        }
    }
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            meta_base_url: "https://graph.facebook.com".into(),
            tiktok_base_url: "https://business-api.tiktok.com".into(),
            shopify_base_url: "https://{shop}.myshopify.com".into(),
            shopify_api_version: shopify::graphql::DEFAULT_API_VERSION.into(),
        }
    }
}

pub struct EtlDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    pub clock: Clock,
    /// Opens the connections' sealed access tokens.
    pub keys: Arc<shared::crypto::Keys>,
    /// Build it with [`http_client`]: no redirects.
    pub http: reqwest::Client,
    pub endpoints: Endpoints,
    pub retry: RetryPolicy,
    /// The Meta app's secret, which signs every request's `appsecret_proof`
    /// ([`meta_app_secret`]); without it requests carry none (apps that do not require it).
    pub meta_app_secret: Option<SecretString>,
    /// How often a Shopify bulk operation is asked whether it is done, and how long a run
    /// waits for it ([`shopify::bulk`]).
    pub bulk_poll_interval: Duration,
    pub bulk_deadline: Duration,
    /// The Marketing API version, report runs and pacing.
    pub meta: meta::MetaSettings,
    /// The throttle wait and the report tasks.
    pub tiktok: tiktok::TikTokSettings,
}

/// The HTTP client the agent calls platforms with: a whole-request `timeout`, and no
/// redirects, because a redirect to another host would carry the token headers
/// (`Access-Token`, `X-Shopify-Access-Token`) with it. A 3xx is an error answer.
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub run_id: Uuid,
    pub status: RunStatus,
    pub pages: i32,
    pub rows_inserted: i32,
    pub rows_updated: i32,
    pub error: Option<String>,
}

impl RunReport {
    /// How the run log counts this run: a failed ETL run is a failure even though the
    /// message is acknowledged (the next schedule retries it, not the queue).
    pub fn judged(&self) -> (shared::runs::Outcome, Option<String>) {
        match self.status {
            RunStatus::Failed => (shared::runs::Outcome::Failed, self.error.clone()),
            RunStatus::Ok | RunStatus::Skipped => (shared::runs::Outcome::Ok, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(start: &str, end: &str) -> EtlRun {
        EtlRun {
            platform: Platform::Tiktok,
            connection_id: Uuid::nil(),
            account_id: "7".into(),
            window_start: start.parse().unwrap(),
            window_end: end.parse().unwrap(),
        }
    }

    #[test]
    fn windows_must_run_forward_and_stay_bounded() {
        assert_eq!(run("2026-11-01", "2026-11-30").window_problem(), None);
        assert_eq!(run("2026-11-01", "2026-11-01").window_problem(), None);
        assert!(run("2026-11-02", "2026-11-01").window_problem().is_some());
        assert!(run("2016-01-01", "2026-11-01").window_problem().is_some());
        let extreme = EtlRun {
            window_start: NaiveDate::MIN,
            window_end: NaiveDate::MAX,
            ..run("2026-11-01", "2026-11-01")
        };
        assert!(extreme.window_problem().is_some());
    }

    #[test]
    fn stored_errors_quote_no_secret() {
        let error = "Meta HTTP 400: echo GET /v21.0/act_1/insights?appsecret_proof=abc123&x=1 \
                     authorization: Bearer EAAB-token access-token: EAAB-token \u{0} done";
        let clean = redacted(error, &["EAAB-token", "abc123"]);
        assert!(
            !clean.contains("EAAB-token") && !clean.contains("abc123"),
            "{clean}"
        );
        assert!(!clean.contains('\0'));
        assert!(clean.ends_with("done"), "{clean}");
        let long = "é".repeat(MAX_ERROR_BYTES);
        assert!(redacted(&long, &[]).len() <= MAX_ERROR_BYTES);
        assert_eq!(redacted("plain", &[""]), "plain");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn redaction_never_leaves_the_secret_or_panics(
            prefix in ".{0,40}",
            suffix in ".{0,40}",
            secret in "[A-Za-z0-9_-]{8,40}",
        ) {
            let text = format!("{prefix}{secret}{suffix}{secret}");
            let clean = redacted(&text, &[&secret]);
            prop_assert!(!clean.contains(&secret));
            prop_assert!(clean.len() <= MAX_ERROR_BYTES);
        }

        #[test]
        fn any_window_is_judged_without_a_panic(start in any::<i32>(), end in any::<i32>()) {
            let day = |n: i32| NaiveDate::from_num_days_from_ce_opt(n).unwrap_or(NaiveDate::MIN);
            let candidate = EtlRun { window_start: day(start), window_end: day(end), ..run("2026-11-01", "2026-11-01") };
            if candidate.window_problem().is_none() {
                prop_assert!(candidate.window_end >= candidate.window_start);
                let pages = tiktok::first_pages("http://x/tiktok", "7", candidate.window_start, candidate.window_end);
                prop_assert!(!pages.is_empty());
            }
        }
    }
}
