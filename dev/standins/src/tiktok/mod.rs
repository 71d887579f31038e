//! TikTok API for Business stand-in: the synchronous report
//! `GET /open_api/v1.3/report/integrated/get/`, as `https://business-api.tiktok.com`
//! answers it for `report_type=BASIC`, `data_level=AUCTION_AD`,
//! `dimensions=["ad_id","stat_time_day"]`.
//!
//! Modelled:
//! * Auth by the `Access-Token` header (no `Bearer`; a `Bearer …` value is a wrong token).
//! * Parameters: `advertiser_id`, `report_type`, `data_level`, `dimensions` and `metrics`
//!   (JSON-encoded lists), `start_date`/`end_date` (`YYYY-MM-DD`, inclusive, advertiser
//!   timezone; at most 30 days with `stat_time_day`), `page` (default 1), `page_size`
//!   (default 10, at most 1,000). `service_type`, `query_mode`, `order_*` and
//!   `enable_total_metrics` are accepted and ignored.
//! * Answers: always HTTP 200 with the envelope `{"code","message","request_id","data"}`;
//!   rows `{"dimensions":{"ad_id","stat_time_day":"YYYY-MM-DD 00:00:00"},"metrics":{…}}`
//!   with every metric a string, `"-"` where TikTok has no value (the payment metrics of
//!   ads without payment tracking, one ad in ten); `page_info` with `total_number` and
//!   `total_page` (a page past the end is an empty list). Rows run date by date, ads in a
//!   fixed order; days after the advertiser's "today" have none.
//! * Faults: `code 40100` "App reaches the QPS limit." (throttling), `code 40105` "Access
//!   token is incorrect or has been revoked." (wrong or expired token), `code 40002` for
//!   invalid parameters, among them a span over 30 days ("max time span is 30 days when use
//!   stat_time_day", worded after the verified hourly message "max time span is 1 day when
//!   use stat_time_hour") and unknown metrics (the verified "Invalid metric fields" text);
//!   an injected HTTP 500 with `code 50000`; restated days (more late conversions).
//!
//! * Asynchronous report tasks (`report/task/create/`, `check/`, `download/`, module
//!   `tasks`): the same report as CSV once a task succeeds; task creation limited to 2 per
//!   second; failing tasks when switched.
//!
//! Left out: other report types, data levels and dimensions, hourly and lifetime reports,
//! filtering, the 10,000-ads-per-report limit, the advertiser-info and
//! entity endpoints, and real QPS accounting (throttling happens only when switched on).
//! Codes for a missing advertiser or unsupported options reuse 40002 (unverified).
//!
//! How the module fits together: [`TikTokFaults`] (`faults`) holds the state behind the
//! routes `report` and `tasks` serve. An answer checks the version, the `Access-Token` and the
//! throttling switch, checks the query (`request`), and builds the page (`report`) with
//! every metric formatted as TikTok does (`metrics`), inside TikTok's envelope
//! (`envelope`), which carries its refusals too.

mod envelope;
mod faults;
mod metrics;
mod report;
mod request;
mod tasks;
#[cfg(test)]
mod test_support;

pub use faults::TikTokFaults;

/// The synchronous report's route and the asynchronous tasks'.
pub(crate) fn routes(faults: &TikTokFaults) -> axum::Router {
    report::routes(faults).merge(tasks::routes(faults))
}

use crate::ad_accounts::{IdScheme, SeededAccount, impl_ad_account_spec};

pub const DEFAULT_TIKTOK_TOKEN: &str = "tiktok-local-token";
pub const DEFAULT_TIKTOK_ADVERTISER: &str = "7012345678901234567";

/// The longest `start_date..=end_date` (days, inclusive) a daily report may span.
pub const MAX_DAYS_PER_REQUEST: i64 = 30;

/// The part of [`StandinConfig`](crate::StandinConfig) that shapes the TikTok stand-in.
#[derive(Debug, Clone)]
pub struct TikTokScenario {
    pub advertisers: Vec<TikTokAdvertiser>,
    /// The only `Access-Token` accepted.
    pub access_token: String,
}

impl Default for TikTokScenario {
    fn default() -> Self {
        TikTokScenario {
            advertisers: vec![TikTokAdvertiser::new(DEFAULT_TIKTOK_ADVERTISER, 20)],
            access_token: DEFAULT_TIKTOK_TOKEN.into(),
        }
    }
}

/// One advertiser: how many ads deliver every day, currency and (fixed) timezone.
#[derive(Debug, Clone)]
pub struct TikTokAdvertiser {
    pub id: String,
    pub ads: usize,
    pub currency: String,
    pub timezone_name: String,
    pub utc_offset_minutes: i32,
}

impl TikTokAdvertiser {
    pub fn new(id: impl Into<String>, ads: usize) -> Self {
        TikTokAdvertiser {
            id: id.into(),
            ads,
            currency: "USD".into(),
            timezone_name: "America/New_York".into(),
            utc_offset_minutes: -5 * 60,
        }
    }
}

impl_ad_account_spec!(TikTokAdvertiser);

/// TikTok's ids are 19 digits under a prefix per kind; 10 ads a campaign, 5 an ad group.
const IDS: IdScheme = IdScheme {
    prefixes: [
        1_779_000_000_000_000_000,
        1_779_500_000_000_000_000,
        1_780_000_000_000_000_000,
    ],
    ids_per_account: 1_000_000,
    ads_per_campaign: 10,
    ads_per_adset: 5,
};

type Advertiser = SeededAccount<TikTokAdvertiser>;
