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
//! Work per run is bounded: a window of at most [`MAX_WINDOW_DAYS`], at most
//! [`MAX_PAGES_PER_RUN`] pages, answers of at most [`MAX_RESPONSE_BYTES`].

pub mod config;
pub mod meta;
pub mod shopify;
#[cfg(test)]
mod strategies;
pub mod tiktok;
pub mod tokens;

pub use config::{Config, WebhookConfig, consumer, on_tick};
pub use shopify::{WebhookDeps, router};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use shared::clock::Clock;
use shared::db::{Budget, DbContext, DbError, Pool};
use shared::lease::{Lease, LeaseError, try_acquire};
use shared::messages::MetricsRecompute;
use shared::queue::outbox::Outbox;
use shared::queue::{Message, QueueDef, QueueError, Transport, catalog};
use shared::retry::{RetryClass, RetryPolicy, Retryable, retry};
use tokio_postgres::types::Type;
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
    /// The token is expired or revoked: retrying cannot help.
    #[error("authentication failed: {0}")]
    Auth(String),
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
fn transport_error(error: reqwest::Error) -> ExtractError {
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
        ] {
            if let Some(url) = lookup(name).filter(|url| !url.is_empty()) {
                *field = url;
            }
        }
        endpoints
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

/// Enqueues one run per active connection of `platform`, each re-reading the lookback window
/// up to `today`. Returns how many were enqueued.
pub async fn dispatch(
    deps: &EtlDeps,
    platform: Platform,
    today: NaiveDate,
) -> Result<usize, EtlError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT id, external_account_id FROM connections WHERE platform = $1 AND status = 'active' ORDER BY id",
            &[(&platform.as_str(), Type::TEXT)],
        )
        .await
        .context("list connections")?;
    drop(client);
    let window_start = today - chrono::Duration::days(platform.lookback_days() - 1);
    let messages = rows
        .iter()
        .map(|row| {
            EtlRun {
                platform,
                connection_id: row.get(0),
                account_id: row.get(1),
                window_start,
                window_end: today,
            }
            .to_outgoing()
        })
        .collect::<Result<Vec<_>, _>>()?;
    deps.transport.send(&messages).await?;
    Ok(messages.len())
}

pub(crate) struct Connection {
    pub(crate) workspace_id: Uuid,
    pub(crate) credentials: Credentials,
    currency: Option<String>,
    /// The stored `sync_cursor` (Shopify keeps `{"updated_at": …}` there).
    pub(crate) cursor: Option<serde_json::Value>,
}

/// What one connection's requests authenticate with.
pub(crate) struct Credentials {
    pub(crate) token: SecretString,
    /// Meta's `appsecret_proof` of `token`, when the app secret is configured.
    pub(crate) proof: Option<String>,
}

impl Credentials {
    pub(crate) fn new(platform: Platform, token: SecretString, app_secret: Option<&str>) -> Self {
        let proof = match (platform, app_secret) {
            (Platform::Meta, Some(secret)) => {
                Some(meta::appsecret_proof(token.expose_secret(), secret))
            }
            _ => None,
        };
        Self { token, proof }
    }

    /// The texts no error may quote.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        let mut secrets = vec![self.token.expose_secret()];
        secrets.extend(self.proof.as_deref());
        secrets
    }
}

async fn connection(deps: &EtlDeps, run: &EtlRun) -> Result<Connection, EtlError> {
    let id = run.connection_id;
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
    let row = transaction
        .query_typed_opt(
            "SELECT workspace_id, access_token, access_token_sealed, currency, sync_cursor
               FROM connections WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await
        .context("read connection")?
        .ok_or(EtlError::Connection(id))?;
    let stored = tokens::StoredToken {
        plaintext: row.get(1),
        sealed: row.get(2),
    };
    let token = tokens::open(&*transaction, &deps.keys, id, stored)
        .await?
        .ok_or(EtlError::Connection(id))?;
    transaction
        .commit()
        .await
        .context("commit connection read")?;
    let app_secret = deps
        .meta_app_secret
        .as_ref()
        .map(|secret| secret.expose_secret());
    Ok(Connection {
        workspace_id: row.get(0),
        credentials: Credentials::new(run.platform, token, app_secret),
        currency: row.get(3),
        cursor: row.get(4),
    })
}

/// Fetches one page of ad rows, classifying the platform's error answers. A Meta page's
/// `next` is made safe to follow ([`meta::next_page`]).
async fn fetch(
    deps: &EtlDeps,
    platform: Platform,
    url: &str,
    credentials: &Credentials,
) -> Result<Page, ExtractError> {
    let (_, json) = fetch_json(&deps.http, platform, url, credentials).await?;
    match platform {
        Platform::Meta => {
            let mut page = meta::parse_page(&json)?;
            page.next = page
                .next
                .map(|next| {
                    meta::next_page(
                        &next,
                        &deps.endpoints.meta_base_url,
                        credentials.proof.as_deref(),
                    )
                })
                .transpose()?;
            Ok(page)
        }
        Platform::Tiktok => tiktok::parse_page(&json, url),
        Platform::Shopify => Err(ExtractError::Malformed(
            "Shopify pages carry orders, not ad rows".into(),
        )),
    }
}

/// GETs `url` with the platform's authentication; a success's headers and JSON body, or the
/// platform's error answer classified. Errors never quote the credentials.
pub(crate) async fn fetch_json(
    http: &reqwest::Client,
    platform: Platform,
    url: &str,
    credentials: &Credentials,
) -> Result<(reqwest::header::HeaderMap, serde_json::Value), ExtractError> {
    request_json(http, platform, url, credentials)
        .await
        .map_err(|error| error.redacted(&credentials.secrets()))
}

async fn request_json(
    http: &reqwest::Client,
    platform: Platform,
    url: &str,
    credentials: &Credentials,
) -> Result<(reqwest::header::HeaderMap, serde_json::Value), ExtractError> {
    let token = credentials.token.expose_secret();
    let request = match platform {
        // The proof is already in `url`; the token never is.
        Platform::Meta => http.get(url).bearer_auth(token),
        Platform::Tiktok => http.get(url).header("Access-Token", token),
        Platform::Shopify => http.get(url).header("X-Shopify-Access-Token", token),
    };
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = capped_text(response).await?;
    if !status.is_success() {
        return Err(match platform {
            Platform::Meta => meta::classify(status, &headers, &body),
            Platform::Tiktok => tiktok::classify(status, &headers, &body),
            Platform::Shopify => shopify::classify(status, &headers, &body),
        });
    }
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|error| ExtractError::Malformed(error.to_string()))?;
    Ok((headers, json))
}

/// The body as text, refusing one larger than [`MAX_RESPONSE_BYTES`] without holding it.
async fn capped_text(mut response: reqwest::Response) -> Result<String, ExtractError> {
    let too_large = |length: u64| {
        ExtractError::Malformed(format!(
            "an answer of {length} bytes or more exceeds the {MAX_RESPONSE_BYTES} bytes a page may have"
        ))
    };
    if let Some(length) = response.content_length()
        && length > MAX_RESPONSE_BYTES as u64
    {
        return Err(too_large(length));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        let length = body.len().saturating_add(chunk.len());
        if length > MAX_RESPONSE_BYTES {
            return Err(too_large(length as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Upserts one page under the lease; returns (inserted, updated).
async fn upsert(
    deps: &EtlDeps,
    lease: &Lease,
    run: &EtlRun,
    run_id: Uuid,
    workspace: Uuid,
    currency: Option<&str>,
    rows: &[AdRow],
) -> Result<(i32, i32), EtlError> {
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
    lease.fence(&*transaction).await?;
    let column = |f: fn(&AdRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let ads: Vec<&str> = rows.iter().map(|row| row.ad_id.as_str()).collect();
    let dates: Vec<NaiveDate> = rows.iter().map(|row| row.date).collect();
    let spend: Vec<Decimal> = rows.iter().map(|row| row.spend).collect();
    let impressions: Vec<i64> = rows.iter().map(|row| row.impressions).collect();
    let clicks: Vec<i64> = rows.iter().map(|row| row.clicks).collect();
    let conversions: Vec<Option<Decimal>> = rows.iter().map(|row| row.conversions).collect();
    let values: Vec<Option<Decimal>> = rows.iter().map(|row| row.conversion_value).collect();
    let counts = transaction
        .query_typed_one(
            "WITH written AS (
                 INSERT INTO ad_insights AS a (platform, account_id, level_id, date, workspace_id, campaign_id, adset_id,
                                               currency, spend, impressions, clicks, conversions, conversion_value, run_id)
                 SELECT $1, $2, ad, day, $3, campaign, adset, $4, spend, impressions, clicks, conversions, value, $5
                   FROM unnest($6::text[], $7::date[], $8::text[], $9::text[], $10::numeric[], $11::int8[], $12::int8[],
                               $13::numeric[], $14::numeric[])
                        AS r(ad, day, campaign, adset, spend, impressions, clicks, conversions, value)
                 ON CONFLICT (platform, account_id, level_id, date) DO UPDATE
                    SET workspace_id = EXCLUDED.workspace_id, campaign_id = EXCLUDED.campaign_id,
                        adset_id = EXCLUDED.adset_id, currency = EXCLUDED.currency, spend = EXCLUDED.spend,
                        impressions = EXCLUDED.impressions, clicks = EXCLUDED.clicks,
                        conversions = EXCLUDED.conversions, conversion_value = EXCLUDED.conversion_value,
                        run_id = EXCLUDED.run_id, updated_at = now()
                 RETURNING (xmax = 0) AS inserted
             )
             SELECT count(*) FILTER (WHERE inserted)::int4, count(*) FILTER (WHERE NOT inserted)::int4 FROM written",
            &[
                (&run.platform.as_str(), Type::TEXT),
                (&run.account_id, Type::TEXT),
                (&workspace, Type::UUID),
                (&currency, Type::TEXT),
                (&run_id, Type::UUID),
                (&ads, Type::TEXT_ARRAY),
                (&dates, Type::DATE_ARRAY),
                (&column(|row| row.campaign_id.clone()), Type::TEXT_ARRAY),
                (&column(|row| row.adset_id.clone()), Type::TEXT_ARRAY),
                (&spend, Type::NUMERIC_ARRAY),
                (&impressions, Type::INT8_ARRAY),
                (&clicks, Type::INT8_ARRAY),
                (&conversions, Type::NUMERIC_ARRAY),
                (&values, Type::NUMERIC_ARRAY),
            ],
        )
        .await
        .context("upsert ad insights")?;
    transaction.commit().await.context("commit page")?;
    Ok((counts.get(0), counts.get(1)))
}

async fn start_run(deps: &EtlDeps, run: &EtlRun) -> Result<Uuid, EtlError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let row = client
        .query_typed_one(
            "INSERT INTO etl_runs (connection_id, platform, account_id, window_start, window_end)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                (&run.connection_id, Type::UUID),
                (&run.platform.as_str(), Type::TEXT),
                (&run.account_id, Type::TEXT),
                (&run.window_start, Type::DATE),
                (&run.window_end, Type::DATE),
            ],
        )
        .await
        .context("record run")?;
    Ok(row.get(0))
}

async fn finish_run(
    deps: &EtlDeps,
    report: &RunReport,
    token: Option<i64>,
) -> Result<(), EtlError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let status = match report.status {
        RunStatus::Ok => "ok",
        RunStatus::Failed => "failed",
        RunStatus::Skipped => "skipped",
    };
    client
        .execute_typed(
            "UPDATE etl_runs SET status = $2, finished_at = now(), pages = $3, rows_inserted = $4, rows_updated = $5,
                    error = $6, fencing_token = $7 WHERE id = $1",
            &[
                (&report.run_id, Type::UUID),
                (&status, Type::TEXT),
                (&report.pages, Type::INT4),
                (&report.rows_inserted, Type::INT4),
                (&report.rows_updated, Type::INT4),
                (&report.error, Type::TEXT),
                (&token, Type::INT8),
            ],
        )
        .await
        .context("finish run")?;
    Ok(())
}

/// Marks the window synced (`cursor` becomes the connection's `sync_cursor`; `None` keeps
/// the stored one) and asks for the touched dates to be recomputed, under the lease.
pub(crate) async fn complete(
    deps: &EtlDeps,
    lease: &Lease,
    run: &EtlRun,
    workspace: Uuid,
    cursor: Option<&serde_json::Value>,
    dates: &BTreeSet<NaiveDate>,
) -> Result<(), EtlError> {
    let outbox = Outbox::new(deps.pool.clone(), deps.transport.clone());
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
    lease.fence(&*transaction).await?;
    transaction
        .execute_typed(
            "UPDATE connections SET sync_cursor = COALESCE($2, sync_cursor), cursor_fencing_token = $3,
                    last_synced_at = now(), updated_at = now()
              WHERE id = $1 AND cursor_fencing_token <= $3",
            &[(&run.connection_id, Type::UUID), (&cursor, Type::JSONB), (&lease.token, Type::INT8)],
        )
        .await
        .context("advance cursor")?;
    let now = deps.clock.now();
    let messages = dates
        .iter()
        .map(|date| MetricsRecompute::new(workspace, *date, "etl", now).to_outgoing())
        .collect::<Result<Vec<_>, _>>()?;
    let pending = outbox.enqueue(&transaction, &messages).await?;
    transaction.commit().await.context("commit completion")?;
    drop(client);
    if let Err(error) = outbox.dispatch(&pending).await {
        tracing::warn!(%error, "metrics requests left for the outbox relay");
    }
    Ok(())
}

/// Runs one connection over an explicit date range (a backfill), through the same path as a
/// scheduled run: lease, pages, upserts, cursor, metrics requests.
pub async fn backfill(
    deps: &EtlDeps,
    connection_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<RunReport, EtlError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let row = client
        .query_typed_opt(
            "SELECT platform, external_account_id FROM connections WHERE id = $1",
            &[(&connection_id, Type::UUID)],
        )
        .await
        .context("read connection")?
        .ok_or(EtlError::Connection(connection_id))?;
    drop(client);
    let platform: String = row.get(0);
    let platform = serde_json::from_value(serde_json::Value::String(platform))
        .map_err(|_| EtlError::Connection(connection_id))?;
    let run = EtlRun {
        platform,
        connection_id,
        account_id: row.get(1),
        window_start: from,
        window_end: to,
    };
    self::run(deps, &run, "backfill").await
}

/// Executes one run; `holder` names this worker in the lease. A run whose window cannot be
/// executed is refused ([`EtlError::InvalidRun`]) before anything is recorded.
pub async fn run(deps: &EtlDeps, run: &EtlRun, holder: &str) -> Result<RunReport, EtlError> {
    if let Some(problem) = run.window_problem() {
        return Err(EtlError::InvalidRun(problem));
    }
    let run_id = start_run(deps, run).await?;
    let mut report = RunReport {
        run_id,
        status: RunStatus::Ok,
        pages: 0,
        rows_inserted: 0,
        rows_updated: 0,
        error: None,
    };
    let lease_name = format!("etl:{}:{}", run.platform.as_str(), run.account_id);
    let lease = {
        let client = deps.pool.get().await.context("check out a connection")?;
        try_acquire(&**client, &lease_name, holder, LEASE_TTL).await?
    };
    let Some(lease) = lease else {
        report.status = RunStatus::Skipped;
        finish_run(deps, &report, None).await?;
        return Ok(report);
    };
    let (outcome, secrets) = match connection(deps, run).await {
        Ok(connection) => {
            let outcome = extract_and_load(deps, run, &lease, &mut report, &connection).await;
            let secrets = connection
                .credentials
                .secrets()
                .into_iter()
                .map(str::to_string)
                .collect();
            (outcome, secrets)
        }
        Err(error) => (Err(error), Vec::new()),
    };
    if let Err(error) = &outcome {
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let error = redacted(&error.to_string(), &secrets);
        report.status = RunStatus::Failed;
        // The structured line the template's metric filter and alarm count.
        tracing::error!(alert = "etl_run_failed", platform = run.platform.as_str(), account = %run.account_id, %error, "ETL run failed");
        report.error = Some(error);
    }
    finish_run(deps, &report, Some(lease.token)).await?;
    let client = deps.pool.get().await.context("check out a connection")?;
    lease.release(&**client).await?;
    Ok(report)
}

async fn extract_and_load(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
) -> Result<(), EtlError> {
    if run.platform == Platform::Shopify {
        return shopify::extract_and_load(deps, run, lease, report, connection).await;
    }
    let mut dates = BTreeSet::new();
    for start in ad_pages(deps, run, connection) {
        walk(deps, run, lease, report, connection, start, &mut dates).await?;
    }
    let cursor = serde_json::json!({ "synced_through": run.window_end });
    complete(
        deps,
        lease,
        run,
        connection.workspace_id,
        Some(&cursor),
        &dates,
    )
    .await
}

/// The first page of every request an ad platform's window needs.
fn ad_pages(deps: &EtlDeps, run: &EtlRun, connection: &Connection) -> Vec<String> {
    match run.platform {
        Platform::Meta => vec![meta::first_page(
            &deps.endpoints.meta_base_url,
            &run.account_id,
            run.window_start,
            run.window_end,
            connection.credentials.proof.as_deref(),
        )],
        Platform::Tiktok => tiktok::first_pages(
            &deps.endpoints.tiktok_base_url,
            &run.account_id,
            run.window_start,
            run.window_end,
        ),
        Platform::Shopify => Vec::new(),
    }
}

/// Fetches every page of an ad platform's window without storing anything; returns the
/// number of rows. For the benchmark, which compares a run with what the API side alone
/// can serve.
pub async fn fetch_window(deps: &EtlDeps, run: &EtlRun) -> Result<usize, EtlError> {
    let connection = connection(deps, run).await?;
    let mut rows = 0;
    for start in ad_pages(deps, run, &connection) {
        let mut url = Some(start);
        while let Some(page_url) = url {
            let page = retry(deps.retry, || {
                fetch(deps, run.platform, &page_url, &connection.credentials)
            })
            .await?;
            rows += page.rows.len();
            url = page.next;
        }
    }
    Ok(rows)
}

/// Follows one chain of pages from `url`, storing each page before asking for the next.
async fn walk(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
    url: String,
    dates: &mut BTreeSet<NaiveDate>,
) -> Result<(), EtlError> {
    let mut url = Some(url);
    while let Some(page_url) = url {
        check_page_budget(report)?;
        let page = retry(deps.retry, || {
            fetch(deps, run.platform, &page_url, &connection.credentials)
        })
        .await?;
        let (inserted, updated) = upsert(
            deps,
            lease,
            run,
            report.run_id,
            connection.workspace_id,
            connection.currency.as_deref(),
            &page.rows,
        )
        .await?;
        report.pages = report.pages.saturating_add(1);
        report.rows_inserted = report.rows_inserted.saturating_add(inserted);
        report.rows_updated = report.rows_updated.saturating_add(updated);
        dates.extend(page.rows.iter().map(|row| row.date));
        let client = deps.pool.get().await.context("check out a connection")?;
        lease.renew(&**client).await?;
        url = page.next;
    }
    Ok(())
}

/// Refuses another page once a run has followed [`MAX_PAGES_PER_RUN`].
pub(crate) fn check_page_budget(report: &RunReport) -> Result<(), ExtractError> {
    if report.pages >= MAX_PAGES_PER_RUN {
        return Err(ExtractError::Malformed(format!(
            "the platform still offers pages after {MAX_PAGES_PER_RUN}; the run stops there"
        )));
    }
    Ok(())
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
