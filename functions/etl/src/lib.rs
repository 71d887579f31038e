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

pub mod meta;
pub mod shopify;
pub mod tiktok;

pub use shopify::{WebhookDeps, router};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::clock::Clock;
use shared::db::{DbContext, DbError, Pool};
use shared::lease::{Lease, LeaseError, try_acquire};
use shared::messages::MetricsRecompute;
use shared::queue::outbox::Outbox;
use shared::queue::{Message, QueueDef, QueueError, Transport, catalog};
use shared::retry::{RetryClass, RetryPolicy, Retryable, retry};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// How long a run's lease lasts without renewal; renewed after every page.
pub const LEASE_TTL: Duration = Duration::from_secs(120);

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
    #[error("unexpected answer: {0}")]
    Malformed(String),
    #[error("request failed: {0}")]
    Http(String),
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
    pub http: reqwest::Client,
    pub endpoints: Endpoints,
    pub retry: RetryPolicy,
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
    pub(crate) access_token: String,
    currency: Option<String>,
    /// The stored `sync_cursor` (Shopify keeps `{"updated_at": …}` there).
    pub(crate) cursor: Option<serde_json::Value>,
}

async fn connection(deps: &EtlDeps, id: Uuid) -> Result<Connection, EtlError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let row = client
        .query_typed_opt(
            "SELECT workspace_id, access_token, currency, sync_cursor FROM connections WHERE id = $1 AND access_token IS NOT NULL",
            &[(&id, Type::UUID)],
        )
        .await
        .context("read connection")?
        .ok_or(EtlError::Connection(id))?;
    Ok(Connection {
        workspace_id: row.get(0),
        access_token: row.get(1),
        currency: row.get(2),
        cursor: row.get(3),
    })
}

/// Fetches one page of ad rows, classifying the platform's error answers.
async fn fetch(
    deps: &EtlDeps,
    platform: Platform,
    url: &str,
    token: &str,
) -> Result<Page, ExtractError> {
    let (_, json) = fetch_json(deps, platform, url, token).await?;
    match platform {
        Platform::Meta => meta::parse_page(&json),
        Platform::Tiktok => tiktok::parse_page(&json, url),
        Platform::Shopify => Err(ExtractError::Malformed(
            "Shopify pages carry orders, not ad rows".into(),
        )),
    }
}

/// GETs `url` with the platform's authentication; a success's headers and JSON body, or the
/// platform's error answer classified.
pub(crate) async fn fetch_json(
    deps: &EtlDeps,
    platform: Platform,
    url: &str,
    token: &str,
) -> Result<(reqwest::header::HeaderMap, serde_json::Value), ExtractError> {
    let request = match platform {
        // Meta takes the token in the query (already in `url`).
        Platform::Meta => deps.http.get(url),
        Platform::Tiktok => deps.http.get(url).header("Access-Token", token),
        Platform::Shopify => deps.http.get(url).header("X-Shopify-Access-Token", token),
    };
    let response = request
        .send()
        .await
        .map_err(|error| ExtractError::Http(error.to_string()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|error| ExtractError::Http(error.to_string()))?;
    if !status.is_success() {
        return Err(match platform {
            Platform::Meta => meta::classify(status, &headers, &body),
            Platform::Tiktok => {
                match shared::retry::classify_http(status, &headers, std::time::SystemTime::now()) {
                    RetryClass::Transient { retry_after } => ExtractError::Throttled {
                        message: format!("TikTok HTTP {status}"),
                        retry_after,
                    },
                    RetryClass::Permanent => {
                        ExtractError::Api(format!("TikTok HTTP {status}: {body}"))
                    }
                }
            }
            Platform::Shopify => shopify::classify(status, &headers, &body),
        });
    }
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|error| ExtractError::Malformed(error.to_string()))?;
    Ok((headers, json))
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
    let transaction = client.transaction().await.context("begin page")?;
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
    let transaction = client.transaction().await.context("begin completion")?;
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

/// Executes one run; `holder` names this worker in the lease.
pub async fn run(deps: &EtlDeps, run: &EtlRun, holder: &str) -> Result<RunReport, EtlError> {
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
    let outcome = extract_and_load(deps, run, &lease, &mut report).await;
    if let Err(error) = &outcome {
        report.status = RunStatus::Failed;
        report.error = Some(error.to_string());
        // The structured line the template's metric filter and alarm count.
        tracing::error!(alert = "etl_run_failed", platform = run.platform.as_str(), account = %run.account_id, %error, "ETL run failed");
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
) -> Result<(), EtlError> {
    let connection = connection(deps, run.connection_id).await?;
    if run.platform == Platform::Shopify {
        return shopify::extract_and_load(deps, run, lease, report, &connection).await;
    }
    let mut dates = BTreeSet::new();
    for start in ad_pages(deps, run, &connection) {
        walk(deps, run, lease, report, &connection, start, &mut dates).await?;
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
            &connection.access_token,
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
    let connection = connection(deps, run.connection_id).await?;
    let mut rows = 0;
    for start in ad_pages(deps, run, &connection) {
        let mut url = Some(start);
        while let Some(page_url) = url {
            let page = retry(deps.retry, || {
                fetch(deps, run.platform, &page_url, &connection.access_token)
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
        let page = retry(deps.retry, || {
            fetch(deps, run.platform, &page_url, &connection.access_token)
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
        report.pages += 1;
        report.rows_inserted += inserted;
        report.rows_updated += updated;
        dates.extend(page.rows.iter().map(|row| row.date));
        let client = deps.pool.get().await.context("check out a connection")?;
        lease.renew(&**client).await?;
        url = page.next;
    }
    Ok(())
}
