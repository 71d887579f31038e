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
//! Left out: other report types, data levels and dimensions, hourly and lifetime reports,
//! filtering, async report tasks, the 10,000-ads-per-report limit, the advertiser-info and
//! entity endpoints, and real QPS accounting (throttling happens only when switched on).
//! Codes for a missing advertiser or unsupported options reuse 40002 (unverified).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use chrono::NaiveDate;
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::ad_accounts::{
    AdAccounts, AdDayFacts, AdDayRow, AdTotals, IdScheme, SeededAccount, impl_ad_account_spec,
};
use crate::answer::{Answer, serve};
use crate::config::StandinConfig;
use crate::faults::{Switches, fault_handle};
use crate::money::money;
use crate::query::first;
use crate::reply::{json_body, json_response};
use crate::request_log::{Api, Outcome};
use crate::seeded::mix64;

pub const DEFAULT_TIKTOK_TOKEN: &str = "tiktok-local-token";
pub const DEFAULT_TIKTOK_ADVERTISER: &str = "7012345678901234567";

/// The longest `start_date..=end_date` (days, inclusive) a daily report may span.
pub const MAX_DAYS_PER_REQUEST: i64 = 30;

/// The part of [`StandinConfig`] that shapes the TikTok stand-in.
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

pub(crate) struct TikTokState {
    ads: AdAccounts<TikTokAdvertiser>,
    token: String,
    switches: Switches,
    requests: AtomicU64,
}

fault_handle! {
    /// The run-time handle of the TikTok stand-in; dereferences to its [`Switches`].
    TikTokFaults(TikTokState)
}

impl TikTokFaults {
    pub(crate) fn new(config: &StandinConfig) -> Self {
        TikTokFaults(Arc::new(TikTokState {
            ads: AdAccounts::new(config, "tiktok", &config.tiktok.advertisers, &IDS),
            token: config.tiktok.access_token.clone(),
            switches: Switches::default(),
            requests: AtomicU64::new(0),
        }))
    }

    /// Restates `date` for every advertiser: one or two more late conversions (and their
    /// value) for each ad; spend, impressions and clicks stay. Returns the restatement count.
    pub fn restate_day(&self, date: NaiveDate) -> u32 {
        self.0.ads.restate_day(date)
    }

    /// The ad ids of an advertiser, in the order rows come.
    pub fn ad_ids(&self, advertiser_id: &str) -> Vec<String> {
        self.0.ads.ad_ids(advertiser_id)
    }

    /// What a full sync of `since..=until` must store (`purchases` = `conversion`,
    /// `purchase_value_cents` = `total_complete_payment_rate`, `None` where it is `"-"`).
    pub fn expected_rows(
        &self,
        advertiser_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Vec<AdDayFacts> {
        self.0
            .ads
            .expected_rows(advertiser_id, since, until, |advertiser, row| {
                tracks_payments(advertiser.key, row.ad).then_some(row.numbers.purchase_value_cents)
            })
    }

    /// Sums of [`TikTokFaults::expected_rows`].
    pub fn expected_totals(
        &self,
        advertiser_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> AdTotals {
        AdTotals::of(&self.expected_rows(advertiser_id, since, until))
    }
}

/// One ad in ten has no payment tracking: its payment metrics are `"-"`.
fn tracks_payments(advertiser_key: u64, ad: u64) -> bool {
    !mix64(advertiser_key ^ ad ^ 0x9A7).is_multiple_of(10)
}

pub(crate) fn routes(faults: &TikTokFaults) -> Router {
    Router::new()
        .route(
            "/tiktok/open_api/{version}/report/integrated/get/",
            get(report),
        )
        .with_state(faults.clone())
}

async fn report(
    State(faults): State<TikTokFaults>,
    Path(version): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let state = &faults.0;
    serve(
        &state.switches,
        Api::TikTok,
        format!("/tiktok/open_api/{version}/report/integrated/get/"),
        &uri,
        &headers,
        |query| state.answer(&version, query, &headers),
    )
}

/// The metrics the stand-in knows (attribute metrics included).
const KNOWN_METRICS: [&str; 20] = [
    "spend",
    "impressions",
    "clicks",
    "reach",
    "ctr",
    "cpc",
    "cpm",
    "conversion",
    "cost_per_conversion",
    "conversion_rate",
    "complete_payment",
    "total_complete_payment_rate",
    "complete_payment_roas",
    "cost_per_complete_payment",
    "campaign_id",
    "campaign_name",
    "adgroup_id",
    "adgroup_name",
    "ad_name",
    "currency",
];

const MISSING: &str = "-";

fn percent(numerator: f64, denominator: f64) -> String {
    if denominator > 0.0 {
        format!("{:.2}", numerator * 100.0 / denominator)
    } else {
        "0.00".into()
    }
}

fn per(spend_cents: i64, count: u64) -> String {
    if count > 0 {
        money((spend_cents as f64 / count as f64).round() as i64)
    } else {
        "0.00".into()
    }
}

fn metric(name: &str, advertiser: &Advertiser, row: &AdDayRow) -> String {
    let day = &row.numbers;
    let tracked = tracks_payments(advertiser.key, row.ad);
    match name {
        "spend" => money(day.spend_cents),
        "impressions" => day.impressions.to_string(),
        "clicks" => day.clicks.to_string(),
        "reach" => day.reach.to_string(),
        "ctr" => percent(day.clicks as f64, day.impressions as f64),
        "cpc" => per(day.spend_cents, day.clicks),
        "cpm" => per(day.spend_cents * 1000, day.impressions),
        "conversion" => day.purchases.to_string(),
        "cost_per_conversion" => per(day.spend_cents, day.purchases),
        "conversion_rate" => percent(day.purchases as f64, day.clicks as f64),
        "complete_payment" if tracked => day.purchases.to_string(),
        "total_complete_payment_rate" if tracked => money(day.purchase_value_cents),
        "complete_payment_roas" if tracked => format!(
            "{:.2}",
            day.purchase_value_cents as f64 / day.spend_cents.max(1) as f64
        ),
        "cost_per_complete_payment" if tracked => per(day.spend_cents, day.purchases),
        "complete_payment"
        | "total_complete_payment_rate"
        | "complete_payment_roas"
        | "cost_per_complete_payment" => MISSING.into(),
        "campaign_id" => row.ids.campaign.clone(),
        "campaign_name" => format!("Spark | Conversions #{}", IDS.campaign_of(row.ad) + 1),
        "adgroup_id" => row.ids.adset.clone(),
        "adgroup_name" => format!("Ad group {} – Auto placement", IDS.adset_of(row.ad) + 1),
        "ad_name" => format!("TikTok creative {:03}", row.ad + 1),
        "currency" => advertiser.spec.currency.clone(),
        _ => MISSING.into(),
    }
}

/// Serialises as a JSON object in the requested order.
struct Metrics(Vec<(&'static str, String)>);

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Dimensions {
    ad_id: String,
    stat_time_day: String,
}

#[derive(Serialize)]
struct ReportRow {
    dimensions: Dimensions,
    metrics: Metrics,
}

#[derive(Serialize)]
struct PageInfo {
    page: u64,
    page_size: u64,
    total_number: u64,
    total_page: u64,
}

#[derive(Serialize)]
struct ReportData {
    list: Vec<ReportRow>,
    page_info: PageInfo,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    code: u32,
    message: &'a str,
    request_id: String,
    data: T,
}

#[derive(Serialize)]
struct Empty {}

struct Request<'a> {
    advertiser: &'a Advertiser,
    metrics: Vec<&'static str>,
    start: NaiveDate,
    end: NaiveDate,
    page: u64,
    page_size: u64,
}

fn json_list(value: Option<&str>) -> Option<Vec<String>> {
    serde_json::from_str(value?).ok()
}

impl TikTokState {
    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}{:020X}",
            chrono::Utc::now().format("%Y%m%d%H%M%S"),
            mix64(n) >> 8
        )
    }

    fn envelope<T: Serialize>(
        &self,
        status: StatusCode,
        code: u32,
        message: &str,
        data: T,
    ) -> Response {
        let envelope = Envelope {
            code,
            message,
            request_id: self.request_id(),
            data,
        };
        json_body(status, &envelope)
    }

    fn error(&self, code: u32, message: &str) -> Response {
        self.envelope(StatusCode::OK, code, message, Empty {})
    }

    fn answer(&self, version: &str, query: &[(String, String)], headers: &HeaderMap) -> Answer {
        if version != "v1.3" {
            return Answer::refused(
                json_response(
                    StatusCode::NOT_FOUND,
                    br#"{"message":"Not Found"}"#.to_vec(),
                ),
                Outcome::Rejected,
            );
        }
        let token = headers
            .get("access-token")
            .and_then(|value| value.to_str().ok());
        if token != Some(self.token.as_str()) || self.switches.token_expired() {
            return Answer::refused(
                self.error(40105, "Access token is incorrect or has been revoked."),
                Outcome::AuthFailed,
            );
        }
        if self.switches.take_throttle() {
            return Answer::refused(
                self.error(40100, "App reaches the QPS limit."),
                Outcome::Throttled,
            );
        }
        let request = match self.parse(query) {
            Ok(request) => request,
            Err(message) => return Answer::refused(self.error(40002, &message), Outcome::Rejected),
        };
        let page = u32::try_from(request.page).unwrap_or(u32::MAX);
        let failure = self.switches.injected_failure(page, || {
            self.envelope(
                StatusCode::INTERNAL_SERVER_ERROR,
                50000,
                "Internal service error. Please try again later.",
                Empty {},
            )
        });
        if let Some(failure) = failure {
            return failure;
        }
        let (response, rows) = self.page(&request);
        Answer::served(response, Some(page), rows)
    }

    fn parse<'a>(&'a self, query: &[(String, String)]) -> Result<Request<'a>, String> {
        let advertiser_id = first(query, "advertiser_id")
            .ok_or("advertiser_id: Missing data for required field.")?;
        let advertiser = self.ads.find(advertiser_id).ok_or_else(|| {
            format!("advertiser_id: no permission to operate advertiser {advertiser_id}")
        })?;
        if first(query, "report_type") != Some("BASIC") {
            return Err("the TikTok stand-in models report_type=BASIC only".into());
        }
        if first(query, "data_level") != Some("AUCTION_AD") {
            return Err("the TikTok stand-in models data_level=AUCTION_AD only".into());
        }
        let mut dimensions = json_list(first(query, "dimensions"))
            .ok_or("dimensions: must be a JSON list of strings")?;
        dimensions.sort();
        if dimensions != ["ad_id", "stat_time_day"] {
            return Err(
                "the TikTok stand-in models dimensions [\"ad_id\",\"stat_time_day\"] only".into(),
            );
        }
        let requested =
            json_list(first(query, "metrics")).ok_or("metrics: must be a JSON list of strings")?;
        let mut metrics = Vec::with_capacity(requested.len());
        let mut invalid = Vec::new();
        for name in &requested {
            match KNOWN_METRICS.iter().find(|known| **known == name.as_str()) {
                Some(known) => metrics.push(*known),
                None => invalid.push(format!("'{name}'")),
            }
        }
        if !invalid.is_empty() {
            return Err(format!(
                "Please correct the information in invalid metric fields and try again. Invalid metric fields: [{}]. ",
                invalid.join(", ")
            ));
        }
        let date = |name: &str| -> Result<NaiveDate, String> {
            let value = first(query, name)
                .ok_or_else(|| format!("{name}: Missing data for required field."))?;
            NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map_err(|_| format!("{name}: Not a valid date (YYYY-MM-DD)."))
        };
        let start = date("start_date")?;
        let end = date("end_date")?;
        if end < start {
            return Err("end_date must be later than or equal to start_date".into());
        }
        if (end - start).num_days() + 1 > MAX_DAYS_PER_REQUEST {
            return Err("max time span is 30 days when use stat_time_day".into());
        }
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match first(query, name) {
                None => Ok(default),
                Some(value) => value
                    .parse()
                    .ok()
                    .filter(|number| *number > 0)
                    .ok_or_else(|| format!("{name}: Must be greater than or equal to 1.")),
            }
        };
        let page = number("page", 1)?;
        let page_size = number("page_size", 10)?;
        if page_size > 1000 {
            return Err("page_size: Must be between 1 and 1000.".into());
        }
        Ok(Request {
            advertiser,
            metrics,
            start,
            end,
            page,
            page_size,
        })
    }

    fn page(&self, request: &Request<'_>) -> (Response, usize) {
        let advertiser = request.advertiser;
        let page = self.ads.page(
            advertiser,
            request.start,
            request.end.min(self.ads.today(advertiser)),
            (request.page - 1).saturating_mul(request.page_size),
            request.page_size,
        );
        let total = page.total;
        let list: Vec<ReportRow> = page
            .rows
            .iter()
            .map(|row| {
                let metrics = request
                    .metrics
                    .iter()
                    .map(|name| (*name, metric(name, advertiser, row)))
                    .collect();
                ReportRow {
                    dimensions: Dimensions {
                        ad_id: row.ids.ad.clone(),
                        stat_time_day: format!("{} 00:00:00", row.date.format("%Y-%m-%d")),
                    },
                    metrics: Metrics(metrics),
                }
            })
            .collect();
        let rows = list.len();
        let data = ReportData {
            list,
            page_info: PageInfo {
                page: request.page,
                page_size: request.page_size,
                total_number: total,
                total_page: total.div_ceil(request.page_size),
            },
        };
        (self.envelope(StatusCode::OK, 0, "OK", data), rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::encode_query;
    use crate::test_support::get;
    use crate::{StandinConfig, router};

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn config(ads: usize) -> StandinConfig {
        let mut config = StandinConfig {
            today: Some(day("2026-11-30")),
            ..StandinConfig::default()
        };
        config.tiktok.advertisers[0].ads = ads;
        config
    }

    const METRICS: &str = r#"["spend","impressions","clicks","conversion","complete_payment","total_complete_payment_rate","campaign_id"]"#;

    fn uri(start: &str, end: &str, page: u32, page_size: u32) -> String {
        format!(
            "/tiktok/open_api/v1.3/report/integrated/get/?{}",
            encode_query([
                ("advertiser_id", DEFAULT_TIKTOK_ADVERTISER),
                ("report_type", "BASIC"),
                ("data_level", "AUCTION_AD"),
                ("dimensions", r#"["ad_id","stat_time_day"]"#),
                ("metrics", METRICS),
                ("start_date", start),
                ("end_date", end),
                ("page", &page.to_string()),
                ("page_size", &page_size.to_string()),
            ])
        )
    }

    const TOKEN: (&str, &str) = ("Access-Token", DEFAULT_TIKTOK_TOKEN);

    async fn walk(
        router: &Router,
        start: &str,
        end: &str,
        page_size: u32,
    ) -> Vec<serde_json::Value> {
        let mut rows = Vec::new();
        let mut page = 1;
        loop {
            let (status, _, body) = get(router, &uri(start, end, page, page_size), &[TOKEN]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body["code"], 0, "{body}");
            rows.extend(body["data"]["list"].as_array().unwrap().iter().cloned());
            let info = &body["data"]["page_info"];
            if info["page"].as_u64() >= info["total_page"].as_u64() {
                return rows;
            }
            page += 1;
        }
    }

    #[tokio::test]
    async fn pages_walk_every_row_exactly_once_with_strings_and_dashes() {
        let (router, handles) = router(&config(11), "http://standins.test");
        let (_, _, body) = get(&router, &uri("2026-11-01", "2026-11-05", 1, 20), &[TOKEN]).await;
        assert_eq!(body["message"], "OK");
        assert!(body["request_id"].is_string());
        assert_eq!(
            body["data"]["page_info"],
            serde_json::json!({"page": 1, "page_size": 20, "total_number": 55, "total_page": 3})
        );
        let rows = walk(&router, "2026-11-01", "2026-11-05", 20).await;
        assert_eq!(rows.len(), 55);
        let keys: std::collections::HashSet<String> = rows
            .iter()
            .map(|row| row["dimensions"].to_string())
            .collect();
        assert_eq!(keys.len(), 55);
        assert_eq!(
            rows[0]["dimensions"]["stat_time_day"],
            "2026-11-01 00:00:00"
        );
        let mut dashes = 0;
        for row in &rows {
            for (_, value) in row["metrics"].as_object().unwrap() {
                assert!(value.is_string());
            }
            if row["metrics"]["total_complete_payment_rate"] == "-" {
                dashes += 1;
                assert_eq!(row["metrics"]["complete_payment"], "-");
            }
        }
        assert!(dashes > 0 && dashes < 55, "{dashes}");
        let expected = handles.tiktok.expected_totals(
            DEFAULT_TIKTOK_ADVERTISER,
            day("2026-11-01"),
            day("2026-11-05"),
        );
        let conversions: u64 = rows
            .iter()
            .map(|row| {
                row["metrics"]["conversion"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(conversions, expected.purchases);
        assert_eq!(handles.tiktok.requests().last().unwrap().page, Some(3));

        // A page past the end is empty, not an error.
        let (_, _, body) = get(&router, &uri("2026-11-01", "2026-11-05", 9, 20), &[TOKEN]).await;
        assert_eq!(body["code"], 0);
        assert_eq!(body["data"]["list"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_report() {
        let (a, _) = router(&config(4), "http://a.test");
        let (b, _) = router(&config(4), "http://b.test");
        assert_eq!(
            walk(&a, "2026-11-01", "2026-11-03", 5).await,
            walk(&b, "2026-11-01", "2026-11-03", 5).await
        );
    }

    #[tokio::test]
    async fn more_than_thirty_days_is_refused_as_tiktok_does() {
        let (router, _) = router(&config(2), "http://standins.test");
        let (status, _, body) =
            get(&router, &uri("2026-10-01", "2026-10-30", 1, 10), &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["code"], 0);
        let (status, _, body) =
            get(&router, &uri("2026-10-01", "2026-10-31", 1, 10), &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["code"], 40002);
        assert_eq!(
            body["message"],
            "max time span is 30 days when use stat_time_day"
        );
        assert_eq!(body["data"], serde_json::json!({}));
    }

    #[tokio::test]
    async fn throttling_and_auth_failures_are_200s_with_codes() {
        let (router, handles) = router(&config(2), "http://standins.test");
        let request = uri("2026-11-01", "2026-11-02", 1, 10);
        handles.tiktok.throttle_next(1);
        let (status, _, body) = get(&router, &request, &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["code"], 40100);
        let (_, _, body) = get(&router, &request, &[TOKEN]).await;
        assert_eq!(body["code"], 0);

        handles.tiktok.expire_token();
        let (status, _, body) = get(&router, &request, &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["code"], 40105);
        assert_eq!(
            body["message"],
            "Access token is incorrect or has been revoked."
        );
        handles.tiktok.renew_token();
        let bearer = format!("Bearer {DEFAULT_TIKTOK_TOKEN}");
        let (_, _, body) = get(&router, &request, &[("Access-Token", &bearer)]).await;
        assert_eq!(body["code"], 40105);
        assert_eq!(handles.tiktok.count(Outcome::AuthFailed), 2);
        assert_eq!(handles.tiktok.count(Outcome::Throttled), 1);
    }

    #[tokio::test]
    async fn a_page_fails_once_and_unknown_metrics_are_named() {
        let (router, handles) = router(&config(3), "http://standins.test");
        handles.tiktok.fail_at_page(2);
        let (status, _, body) =
            get(&router, &uri("2026-11-01", "2026-11-03", 2, 4), &[TOKEN]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["code"], 50000);
        let (status, _, _) = get(&router, &uri("2026-11-01", "2026-11-03", 2, 4), &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);

        let bad = uri("2026-11-01", "2026-11-03", 1, 4).replace("clicks", "clickz");
        let (_, _, body) = get(&router, &bad, &[TOKEN]).await;
        assert_eq!(body["code"], 40002);
        assert!(body["message"].as_str().unwrap().contains("'clickz'"));
    }

    #[tokio::test]
    async fn a_restated_day_returns_more_conversions() {
        let (router, handles) = router(&config(5), "http://standins.test");
        let before = walk(&router, "2026-11-10", "2026-11-10", 100).await;
        handles.tiktok.restate_day(day("2026-11-10"));
        let after = walk(&router, "2026-11-10", "2026-11-10", 100).await;
        for (old, new) in before.iter().zip(&after) {
            assert_eq!(old["metrics"]["spend"], new["metrics"]["spend"]);
            let count = |row: &serde_json::Value| {
                row["metrics"]["conversion"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            };
            assert!(count(new) > count(old));
        }
    }
}
