//! Local HTTP stand-ins for the three APIs the ETL agents read: Meta Ads Insights
//! ([`meta`]), TikTok's synchronous report ([`tiktok`]) and Shopify's REST orders
//! ([`shopify`]).
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
//!   orders, usage headers, leaky bucket, Meta's app secret) and the ground truth tests
//!   compare a sync against (`expected_rows`, `expected_totals`).
//!
//! Deliberately left out, everywhere: TLS, real OAuth flows (a token is a configured
//! string), every endpoint the ETL agents do not call, and exact reproduction of error
//! *messages* we could not verify (each module says which ones are approximations).

pub mod meta;
pub mod shopify;
pub mod tiktok;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{Datelike, NaiveDate};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use meta::{MetaAccount, MetaFaults, MetaScenario, MetaThrottle};
pub use shopify::{
    LeakyBucket, ShopSpec, ShopTotals, ShopifyFaults, ShopifyScenario, ShopifyTopic,
    WebhookDelivery,
};
pub use tiktok::{TikTokAdvertiser, TikTokFaults, TikTokScenario};

/// Everything the stand-ins serve is a function of this configuration (plus, when
/// `today` is `None`, the date they are asked on).
#[derive(Debug, Clone)]
pub struct StandinConfig {
    /// Seeds every generated number, id and name.
    pub seed: u64,
    /// The platforms' "today": ad rows exist up to this date (in each account's own
    /// timezone) and Shopify's seeded orders end at its midnight in the shop's timezone.
    /// `None` means the real current date; pin it in tests that compare data across runs.
    pub today: Option<NaiveDate>,
    /// The platforms' clock: when a Shopify webhook says it was triggered
    /// (`X-Shopify-Triggered-At`). Give it the stack's clock when the stack's is shifted.
    pub clock: shared::clock::Clock,
    pub meta: MetaScenario,
    pub tiktok: TikTokScenario,
    pub shopify: ShopifyScenario,
}

impl Default for StandinConfig {
    fn default() -> Self {
        StandinConfig {
            seed: 42,
            today: None,
            clock: shared::clock::Clock::system(),
            meta: MetaScenario::default(),
            tiktok: TikTokScenario::default(),
            shopify: ShopifyScenario::default(),
        }
    }
}

impl StandinConfig {
    /// The sizes issue #6's benchmark asks for: 500 ads on the Meta account and on the
    /// TikTok advertiser (90 days → 45,000 rows each) and 100,000 orders in one shop.
    pub fn benchmark() -> Self {
        let mut config = StandinConfig::default();
        for account in &mut config.meta.accounts {
            account.ads = 500;
        }
        for advertiser in &mut config.tiktok.advertisers {
            advertiser.ads = 500;
        }
        for shop in &mut config.shopify.shops {
            shop.orders = 100_000;
            shop.history_days = 120;
        }
        config
    }
}

/// The run-time handles of one set of stand-ins.
#[derive(Clone)]
pub struct Handles {
    pub meta: MetaFaults,
    pub tiktok: TikTokFaults,
    pub shopify: ShopifyFaults,
}

/// The three APIs' routes, without a listener and without a fallback, so they can be merged
/// into another router (paths start `/meta/`, `/tiktok/`, `/shopify/`). `origin` (e.g.
/// `http://127.0.0.1:8080`) is what absolute URLs in responses (Meta's `paging.next`,
/// Shopify's `Link`) start with.
pub fn router(config: &StandinConfig, origin: &str) -> (Router, Handles) {
    let origin = origin.trim_end_matches('/');
    let meta = meta::MetaFaults::new(config, &format!("{origin}/meta"));
    let tiktok = tiktok::TikTokFaults::new(config);
    let shopify = shopify::ShopifyFaults::new(config, &format!("{origin}/shopify"));
    let router = Router::new()
        .merge(meta::routes(&meta))
        .merge(tiktok::routes(&tiktok))
        .merge(shopify::routes(&shopify));
    (
        router,
        Handles {
            meta,
            tiktok,
            shopify,
        },
    )
}

/// Running stand-ins on one local port. Dropping this stops the server (without waiting);
/// [`Standins::stop`] stops it and waits.
pub struct Standins {
    addr: SocketAddr,
    config: StandinConfig,
    handles: Handles,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Standins {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stands for `https://graph.facebook.com`: append `/v21.0/act_{id}/insights`.
    pub fn meta_base_url(&self) -> String {
        format!("{}/meta", self.url())
    }

    /// Stands for `https://business-api.tiktok.com`: append
    /// `/open_api/v1.3/report/integrated/get/`.
    pub fn tiktok_base_url(&self) -> String {
        format!("{}/tiktok", self.url())
    }

    /// Stands for `https://{shop}.myshopify.com`: append `/admin/api/2024-10/orders.json`.
    pub fn shopify_base_url(&self, shop: &str) -> String {
        format!("{}/shopify/{shop}", self.url())
    }

    pub fn meta_faults(&self) -> MetaFaults {
        self.handles.meta.clone()
    }

    pub fn tiktok_faults(&self) -> TikTokFaults {
        self.handles.tiktok.clone()
    }

    pub fn shopify_faults(&self) -> ShopifyFaults {
        self.handles.shopify.clone()
    }

    pub fn handles(&self) -> &Handles {
        &self.handles
    }

    /// The configuration they were started with (tokens, account ids, shops).
    pub fn config(&self) -> &StandinConfig {
        &self.config
    }

    /// Stops accepting, lets requests in flight finish (at most 5 s), and returns.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Standins {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `127.0.0.1:0` and serves the three stand-ins until stopped or dropped.
pub async fn start(config: StandinConfig) -> anyhow::Result<Standins> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("bind the API stand-ins to 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (router, handles) = router(&config, &format!("http://{addr}"));
    let router = router.fallback(|| async {
        json_response(
            StatusCode::NOT_FOUND,
            br#"{"error":"no stand-in serves this path"}"#.to_vec(),
        )
    });
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "API stand-ins failed");
        }
    });
    Ok(Standins {
        addr,
        config,
        handles,
        shutdown,
        task: Some(task),
    })
}

/// Which stand-in a logged request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Meta,
    TikTok,
    Shopify,
}

/// How a stand-in answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Data served (possibly an empty page).
    Ok,
    /// The platform's throttling signal (Meta 400 + code 4/17/613/80000, TikTok 40100,
    /// Shopify 429).
    Throttled,
    /// Missing, wrong or expired token.
    AuthFailed,
    /// An injected HTTP 500.
    ServerError,
    /// The request itself was rejected (bad or unsupported parameters, unknown account).
    Rejected,
}

/// One request a stand-in received, for tests to assert what was asked.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub api: Api,
    pub path: String,
    /// The decoded query string, in order.
    pub query: Vec<(String, String)>,
    /// The 1-based page this request asked for, when it got that far.
    pub page: Option<u32>,
    pub outcome: Outcome,
    /// Rows (insights rows, report rows, orders) in the answer.
    pub rows: usize,
}

impl LoggedRequest {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// How many requests the log keeps (the oldest are dropped; the counter keeps counting).
const LOG_CAPACITY: usize = 20_000;

#[derive(Debug, Default)]
struct RequestLog {
    entries: VecDeque<LoggedRequest>,
}

/// The switches every stand-in has. Each fault handle dereferences to its own `Switches`.
#[derive(Debug, Default)]
pub struct Switches {
    throttle: AtomicU32,
    fail: AtomicU32,
    fail_page: AtomicU32,
    token_expired: AtomicBool,
    echo: AtomicU32,
    received: AtomicU64,
    log: Mutex<RequestLog>,
}

impl Switches {
    /// Answers the next `n` requests (that pass authentication) with the platform's
    /// throttling signal. Replaces any count still pending; `0` switches it off.
    pub fn throttle_next(&self, n: u32) {
        self.throttle.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` valid requests with HTTP 500.
    pub fn fail_next(&self, n: u32) {
        self.fail.store(n, Ordering::SeqCst);
    }

    /// Answers the first request for page `page` (1-based) with HTTP 500, once; `0` clears.
    pub fn fail_at_page(&self, page: u32) {
        self.fail_page.store(page, Ordering::SeqCst);
    }

    /// From now on the configured token is rejected as expired (Meta 190/463, TikTok
    /// 40105, Shopify 401), until [`Switches::renew_token`].
    pub fn expire_token(&self) {
        self.token_expired.store(true, Ordering::SeqCst);
    }

    pub fn renew_token(&self) {
        self.token_expired.store(false, Ordering::SeqCst);
    }

    pub fn token_expired(&self) -> bool {
        self.token_expired.load(Ordering::SeqCst)
    }

    /// Answers the next `n` requests with HTTP 400 and a plain-text body that repeats the
    /// request — its URL and every credential header — the way a careless proxy or a
    /// verbose error page does. For proving that no error a client stores quotes them.
    pub fn echo_next(&self, n: u32) {
        self.echo.store(n, Ordering::SeqCst);
    }

    /// The echo answer, when [`Switches::echo_next`] asks for one; the request is logged as
    /// rejected.
    pub(crate) fn take_echo(
        &self,
        api: Api,
        uri: &axum::http::Uri,
        headers: &axum::http::HeaderMap,
    ) -> Option<Response> {
        if !take_one(&self.echo) {
            return None;
        }
        let mut text = format!("could not serve GET {uri}\n");
        for name in ["authorization", "access-token", "x-shopify-access-token"] {
            for value in headers.get_all(name) {
                text.push_str(&format!(
                    "{name}: {}\n",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
        }
        self.record(LoggedRequest {
            api,
            path: uri.path().to_string(),
            query: parse_query(uri.query()),
            page: None,
            outcome: Outcome::Rejected,
            rows: 0,
        });
        let mut response = Response::new(Body::from(text));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Some(response)
    }

    /// Every request received since start (or since [`Switches::clear_requests`]), oldest
    /// first (at most the last 20,000).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock_log().entries.iter().cloned().collect()
    }

    /// How many requests were received in total (not capped).
    pub fn request_count(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// How many logged requests were answered with data.
    pub fn pages_served(&self) -> usize {
        self.lock_log()
            .entries
            .iter()
            .filter(|entry| entry.outcome == Outcome::Ok)
            .count()
    }

    /// How many logged requests ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.lock_log()
            .entries
            .iter()
            .filter(|entry| entry.outcome == outcome)
            .count()
    }

    pub fn clear_requests(&self) {
        self.lock_log().entries.clear();
        self.received.store(0, Ordering::SeqCst);
    }

    fn lock_log(&self) -> MutexGuard<'_, RequestLog> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn take_throttle(&self) -> bool {
        take_one(&self.throttle)
    }

    /// Whether this request (for `page`) must fail with HTTP 500.
    pub(crate) fn take_failure(&self, page: u32) -> bool {
        take_one(&self.fail)
            || (page != 0
                && self
                    .fail_page
                    .compare_exchange(page, 0, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok())
    }

    pub(crate) fn record(&self, entry: LoggedRequest) {
        self.received.fetch_add(1, Ordering::SeqCst);
        let mut log = self.lock_log();
        if log.entries.len() == LOG_CAPACITY {
            log.entries.pop_front();
        }
        log.entries.push_back(entry);
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Decodes a raw query string into ordered pairs.
pub(crate) fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|raw| {
        form_urlencoded::parse(raw.as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

pub(crate) fn first<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

pub(crate) fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

pub(crate) fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

// ---- deterministic numbers -------------------------------------------------------------

/// SplitMix64's finaliser: a cheap, well-mixed bijection on u64.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One well-mixed key from several parts (seed, account, index, date, ...).
pub(crate) fn key(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x243F_6A88_85A3_08D3, |acc, part| mix64(acc ^ part))
}

/// FNV-1a, to fold strings (account ids, shop names, salts) into keys.
pub(crate) fn hash_str(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |acc, byte| {
        (acc ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A stream of draws from one key. Only `+ - * /` on f64 are used downstream (no
/// transcendental functions), so the numbers are the same on every platform.
pub(crate) struct Draw(u64);

impl Draw {
    pub(crate) fn new(key: u64) -> Self {
        Draw(key)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

pub(crate) fn date_number(date: NaiveDate) -> u64 {
    u64::try_from(date.num_days_from_ce()).unwrap_or_default()
}

/// `1234` cents → `"12.34"`.
pub(crate) fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// `1230` cents → `"12.3"`, `1200` → `"12"` (Meta trims trailing zeros).
pub(crate) fn money_trimmed(cents: i64) -> String {
    let text = money(cents);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The numbers of one ad on one day, before a platform formats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AdDay {
    pub spend_cents: i64,
    pub impressions: u64,
    pub clicks: u64,
    pub reach: u64,
    pub link_clicks: u64,
    pub landing_page_views: u64,
    pub add_to_carts: u64,
    pub purchases: u64,
    pub purchase_value_cents: i64,
}

/// Spend patterns by weekday (Mon..Sun): e-commerce spend peaks at the weekend.
const WEEKDAY: [f64; 7] = [1.0, 0.97, 0.98, 1.0, 1.05, 1.12, 1.1];

/// One ad-day of a platform account: `account_key` already folds seed, platform and
/// account; `version` is how many times the day was restated (late conversions).
pub(crate) fn ad_day(account_key: u64, ad_index: u64, date: NaiveDate, version: u32) -> AdDay {
    let mut profile = Draw::new(key(&[account_key, ad_index, 0xAD]));
    let budget = profile.unit();
    let daily_budget_cents = 500.0 + budget * budget * 24_500.0;
    let cpm_cents = profile.between(400.0, 2_500.0);
    let ctr = profile.between(0.004, 0.03);
    let cvr = profile.between(0.005, 0.05);
    let aov_cents = profile.between(2_500.0, 15_000.0);
    let frequency = profile.between(1.05, 1.6);

    let mut day = Draw::new(key(&[account_key, ad_index, date_number(date)]));
    let weekday = WEEKDAY[date.weekday().num_days_from_monday() as usize];
    let spend = daily_budget_cents * weekday * day.between(0.7, 1.3);
    let spend_cents = spend.round() as i64;
    let impressions = (spend / cpm_cents * 1_000.0 * day.between(0.9, 1.1)).round() as u64;
    let clicks = (impressions as f64 * ctr * day.between(0.8, 1.2)).round() as u64;
    let reach = (impressions as f64 / frequency).round() as u64;
    let link_clicks = (clicks as f64 * 0.85).round() as u64;
    let landing_page_views = (link_clicks as f64 * 0.7).round() as u64;
    let mut purchases = (clicks as f64 * cvr * day.between(0.6, 1.4) + day.unit()) as u64;
    let mut value = purchases as f64 * aov_cents * day.between(0.8, 1.2);
    for restatement in 1..=version {
        // Late-attributed conversions: every restatement credits one or two more purchases.
        let mut late = Draw::new(key(&[
            account_key,
            ad_index,
            date_number(date),
            u64::from(restatement),
        ]));
        let extra = 1 + late.below(2);
        purchases += extra;
        value += extra as f64 * aov_cents * late.between(0.8, 1.2);
    }
    let add_to_carts = purchases * 3 + (link_clicks / 20);
    AdDay {
        spend_cents,
        impressions,
        clicks,
        reach,
        link_clicks,
        landing_page_views,
        add_to_carts,
        purchases,
        purchase_value_cents: value.round() as i64,
    }
}

/// The ground truth of one ad on one day, as a platform reports it (ids as the platform
/// spells them). For tests that compare what a sync stored with what the API served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdDayFacts {
    pub account_id: String,
    pub campaign_id: String,
    /// Meta's ad set, TikTok's ad group.
    pub adset_id: String,
    pub ad_id: String,
    pub date: NaiveDate,
    pub spend_cents: i64,
    pub impressions: u64,
    pub clicks: u64,
    /// Meta: the canonical purchase count (the same number appears under three action
    /// types). TikTok: `conversion`.
    pub purchases: u64,
    /// Meta: the purchase `action_values`. TikTok: `total_complete_payment_rate`, `None`
    /// where the ad has no payment tracking (the API sends `"-"`).
    pub purchase_value_cents: Option<i64>,
}

/// Sums over [`AdDayFacts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdTotals {
    pub rows: usize,
    pub spend_cents: i64,
    pub impressions: u64,
    pub clicks: u64,
    pub purchases: u64,
    /// Sum of the known purchase values (TikTok's `"-"` counts as nothing).
    pub purchase_value_cents: i64,
}

impl AdTotals {
    pub fn of(rows: &[AdDayFacts]) -> Self {
        rows.iter().fold(AdTotals::default(), |mut totals, row| {
            totals.rows += 1;
            totals.spend_cents += row.spend_cents;
            totals.impressions += row.impressions;
            totals.clicks += row.clicks;
            totals.purchases += row.purchases;
            totals.purchase_value_cents += row.purchase_value_cents.unwrap_or(0);
            totals
        })
    }
}

/// Restatement versions per day, shared by Meta and TikTok.
#[derive(Debug, Default)]
pub(crate) struct Restatements(Mutex<std::collections::HashMap<NaiveDate, u32>>);

impl Restatements {
    pub(crate) fn bump(&self, date: NaiveDate) -> u32 {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let version = map.entry(date).or_insert(0);
        *version += 1;
        *version
    }

    pub(crate) fn snapshot(&self) -> std::collections::HashMap<NaiveDate, u32> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

pub(crate) fn today_at(config_today: Option<NaiveDate>, utc_offset_minutes: i32) -> NaiveDate {
    config_today.unwrap_or_else(|| {
        (chrono::Utc::now() + chrono::Duration::minutes(i64::from(utc_offset_minutes))).date_naive()
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    /// Status, headers and body of one GET through the router.
    pub(crate) async fn get(
        router: &Router,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|error| panic!("{uri}: {error}: {}", String::from_utf8_lossy(&bytes)));
        (status, headers, body)
    }

    /// The path and query of an absolute URL the stand-in handed out.
    pub(crate) fn path_of(url: &str) -> String {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        rest.find('/')
            .map_or("/".into(), |at| rest[at..].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_formatted_as_the_platforms_do() {
        assert_eq!(money(1234), "12.34");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-250), "-2.50");
        assert_eq!(money_trimmed(1230), "12.3");
        assert_eq!(money_trimmed(1200), "12");
        assert_eq!(money_trimmed(5), "0.05");
        assert_eq!(money_trimmed(0), "0");
    }

    #[test]
    fn ad_days_are_deterministic_and_restatements_add_conversions() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        let base = ad_day(7, 3, date, 0);
        assert_eq!(base, ad_day(7, 3, date, 0));
        assert_ne!(base, ad_day(8, 3, date, 0));
        let restated = ad_day(7, 3, date, 1);
        assert_eq!(restated.spend_cents, base.spend_cents);
        assert!(restated.purchases > base.purchases);
        assert!(restated.purchase_value_cents > base.purchase_value_cents);
    }

    #[test]
    fn switches_count_down_and_fail_a_page_once() {
        let switches = Switches::default();
        switches.throttle_next(2);
        assert!(switches.take_throttle());
        assert!(switches.take_throttle());
        assert!(!switches.take_throttle());
        switches.fail_at_page(3);
        assert!(!switches.take_failure(2));
        assert!(switches.take_failure(3));
        assert!(!switches.take_failure(3));
    }

    #[tokio::test]
    async fn an_echo_repeats_the_request_and_its_credentials_once() {
        let switches = Switches::default();
        let uri: axum::http::Uri = "/meta/v21.0/act_1/insights?appsecret_proof=p"
            .parse()
            .unwrap();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("authorization", "Bearer secret-token".parse().unwrap());
        assert!(switches.take_echo(Api::Meta, &uri, &headers).is_none());
        switches.echo_next(1);
        let response = switches.take_echo(Api::Meta, &uri, &headers).unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.contains("appsecret_proof=p") && body.contains("Bearer secret-token"),
            "{body}"
        );
        assert!(switches.take_echo(Api::Meta, &uri, &headers).is_none());
        assert_eq!(switches.count(Outcome::Rejected), 1);
    }

    #[tokio::test]
    async fn one_listener_serves_all_three_and_stops() {
        let standins = start(StandinConfig::default()).await.unwrap();
        assert!(standins.meta_base_url().starts_with("http://127.0.0.1:"));
        assert!(standins.tiktok_base_url().ends_with("/tiktok"));
        assert!(
            standins
                .shopify_base_url("demo-store")
                .ends_with("/shopify/demo-store")
        );
        let addr = standins.addr();
        // A raw HTTP/1.1 request over the bound port, to prove it is really listening.
        let reply = raw_get(
            addr,
            "/shopify/demo-store/admin/api/2024-10/orders.json?limit=1",
        )
        .await
        .unwrap();
        assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
        standins.stop().await;
        assert!(raw_get(addr, "/").await.is_err());
    }

    async fn raw_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        raw_request(addr, path, &[]).await
    }

    /// One HTTP/1.1 GET on a fresh connection, the whole reply as text.
    async fn raw_request(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        Ok(reply)
    }
}
