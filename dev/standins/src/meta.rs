//! Meta Marketing API stand-in: `GET /{version}/act_{account_id}/insights` at ad level,
//! one row per ad per day, as `https://graph.facebook.com` answers it.
//!
//! Modelled:
//! * Parameters: `level=ad`, `time_increment=1`, `time_range={"since","until"}` (JSON, or
//!   the `time_range[since]`/`time_range[until]` form), `fields` (validated; only the
//!   requested fields come back, plus `date_start`/`date_stop`; default
//!   `spend,impressions`), `limit` (default 25), `after`/`before` cursors, the token as
//!   `Authorization: Bearer` (or `access_token`), and — when the scenario has an app
//!   secret, as a Meta app with "Require App Secret" does — `appsecret_proof`, the hex
//!   HMAC-SHA256 of the token keyed by the app secret: missing or wrong, it is Meta's HTTP
//!   400 `GraphMethodException` code 100 ("API calls from the server require an
//!   appsecret_proof argument" / "Invalid appsecret_proof provided in the API argument").
//! * Answers: `{"data":[…],"paging":{"cursors":{"before","after"},"next","previous"}}`,
//!   `next` a full URL repeating every parameter and the token as `access_token=` (as
//!   Meta's do, whichever way the token came), absent on the last page; numbers as strings (`"spend":"12.3"`, trailing zeros trimmed as Meta does);
//!   `actions`/`action_values` carry the same purchases under three action types
//!   (`offsite_conversion.fb_pixel_purchase`, `purchase`, `omni_purchase`) — a consumer
//!   must pick one — and omit zero-valued types (no `actions` at all on a day without any);
//!   `purchase_roas` under `omni_purchase`. Rows run date by date, ads in a fixed order;
//!   days after the account's "today" (its own timezone) have no rows.
//! * Usage headers on every answer: `X-Business-Use-Case-Usage` (keyed by account, with
//!   `estimated_time_to_regain_access` in minutes), `X-Ad-Account-Usage`,
//!   `X-FB-Ads-Insights-Throttle`.
//! * Faults: throttling as HTTP 400 with `OAuthException` code 4 / 17 / 613 / 80000 (and
//!   their subcodes, `is_transient: true`) and usage at 100 %; an expired token as 400
//!   code 190 subcode 463 (a wrong one: 190 without subcode; none: 104); HTTP 500 code 1
//!   subcode 99 "An unknown error occurred"; restated days (more late-attributed purchases,
//!   same spend); 400 code 3018 for a start date beyond 37 months; 500 code 1 "Please reduce
//!   the amount of data" for `limit` over 10,000.
//!
//! Left out: other levels, breakdowns, `action_breakdowns` other than `action_type`,
//! `date_preset`/`time_ranges`, async report runs (`POST …/insights`, `report_run_id`),
//! attribution-window keys (`1d_click`, …), `filtering` (accepted and ignored, as are
//! `action_attribution_windows`, `action_report_time` and `use_*_attribution_setting`),
//! entity endpoints (campaigns, ad sets, ads), and per-hour quotas (throttling happens only
//! when switched on). Error texts other than the throttling ones are approximations.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Months, NaiveDate};
use serde::Serialize;
use serde_json::json;

use crate::ad_accounts::{
    AdAccounts, AdDayFacts, AdDayRow, AdTotals, IdScheme, ReportPage, SeededAccount,
    impl_ad_account_spec,
};
use crate::ad_day::AdDay;
use crate::answer::{Answer, serve};
use crate::config::StandinConfig;
use crate::faults::{Switches, fault_handle};
use crate::lock;
use crate::money::money_trimmed;
use crate::query::{encode_query, first};
use crate::reply::{json_body, set_header};
use crate::request_log::{Api, Outcome};
use crate::seeded::mix64;

/// The token the stand-in accepts unless the scenario says otherwise.
pub const DEFAULT_META_TOKEN: &str = "meta-local-token";
/// The app secret `appsecret_proof` is checked against unless the scenario says otherwise.
pub const DEFAULT_META_APP_SECRET: &str = "meta-local-app-secret";
/// The ad account of the default scenario (used as `act_1029384756`).
pub const DEFAULT_META_ACCOUNT: &str = "1029384756";

/// The part of [`StandinConfig`] that shapes the Meta stand-in.
#[derive(Debug, Clone)]
pub struct MetaScenario {
    pub accounts: Vec<MetaAccount>,
    /// The only token accepted.
    pub access_token: String,
    /// The app secret every request's `appsecret_proof` must be signed with; `None`
    /// accepts requests without a proof (an app that does not require one).
    pub app_secret: Option<String>,
    /// Which throttling error `throttle_next` produces (changeable at run time).
    pub throttle: MetaThrottle,
    /// `estimated_time_to_regain_access` (minutes) in the usage header of a throttled answer.
    pub regain_access_minutes: u32,
}

impl Default for MetaScenario {
    fn default() -> Self {
        MetaScenario {
            accounts: vec![MetaAccount::new(DEFAULT_META_ACCOUNT, 20)],
            access_token: DEFAULT_META_TOKEN.into(),
            app_secret: Some(DEFAULT_META_APP_SECRET.into()),
            throttle: MetaThrottle::UserLimit,
            regain_access_minutes: 1,
        }
    }
}

/// One ad account: how many ads deliver every day, and its currency and timezone (dates
/// are the account's own; DST is not modelled, the offset is fixed).
#[derive(Debug, Clone)]
pub struct MetaAccount {
    /// Without the `act_` prefix.
    pub id: String,
    pub name: String,
    pub ads: usize,
    pub currency: String,
    pub timezone_name: String,
    pub utc_offset_minutes: i32,
}

impl MetaAccount {
    pub fn new(id: impl Into<String>, ads: usize) -> Self {
        MetaAccount {
            id: id.into(),
            name: "Local Demo Store".into(),
            ads,
            currency: "USD".into(),
            timezone_name: "America/Los_Angeles".into(),
            utc_offset_minutes: -8 * 60,
        }
    }
}

impl_ad_account_spec!(MetaAccount);

/// Meta's ids are 18 digits under a prefix per kind; 12 ads a campaign, 4 an ad set.
const IDS: IdScheme = IdScheme {
    prefixes: [
        120_200_000_000_000_000,
        120_210_000_000_000_000,
        120_220_000_000_000_000,
    ],
    ids_per_account: 100_000,
    ads_per_campaign: 12,
    ads_per_adset: 4,
};

/// The throttling errors Meta answers with (HTTP 400, `OAuthException`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaThrottle {
    /// Code 4, subcode 1504022: application request limit.
    AppLimit,
    /// Code 17, subcode 2446079: user request limit (ad-account level).
    UserLimit,
    /// Code 613, subcode 1487742: too many calls from this ad account.
    AccountLimit,
    /// Code 80000, subcode 2446079: the Ads Insights business-use-case limit.
    AdsInsightsBuc,
}

impl MetaThrottle {
    pub fn code(self) -> u32 {
        match self {
            MetaThrottle::AppLimit => 4,
            MetaThrottle::UserLimit => 17,
            MetaThrottle::AccountLimit => 613,
            MetaThrottle::AdsInsightsBuc => 80000,
        }
    }

    pub fn subcode(self) -> u32 {
        match self {
            MetaThrottle::AppLimit => 1_504_022,
            MetaThrottle::UserLimit | MetaThrottle::AdsInsightsBuc => 2_446_079,
            MetaThrottle::AccountLimit => 1_487_742,
        }
    }

    fn message(self) -> &'static str {
        match self {
            MetaThrottle::AppLimit => "(#4) Application request limit reached",
            MetaThrottle::UserLimit => "(#17) User request limit reached",
            MetaThrottle::AccountLimit => "(#613) Calls to this api have exceeded the rate limit.",
            MetaThrottle::AdsInsightsBuc => {
                "(#80000) There have been too many calls from this ad-account. Wait a bit and try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting#ads-insights."
            }
        }
    }
}

type Account = SeededAccount<MetaAccount>;

struct MetaState {
    base_url: String,
    ads: AdAccounts<MetaAccount>,
    token: String,
    app_secret: Option<String>,
    throttle: Mutex<(MetaThrottle, u32)>,
    usage_pct: AtomicU32,
    switches: Switches,
    traces: AtomicU64,
}

fault_handle! {
    /// The run-time handle of the Meta stand-in; dereferences to its [`Switches`].
    MetaFaults(MetaState)
}

impl MetaFaults {
    pub(crate) fn new(config: &StandinConfig, base_url: &str) -> Self {
        let scenario = &config.meta;
        MetaFaults(Arc::new(MetaState {
            base_url: base_url.to_string(),
            ads: AdAccounts::new(config, "meta", &scenario.accounts, &IDS),
            token: scenario.access_token.clone(),
            app_secret: scenario.app_secret.clone(),
            throttle: Mutex::new((scenario.throttle, scenario.regain_access_minutes)),
            usage_pct: AtomicU32::new(3),
            switches: Switches::default(),
            traces: AtomicU64::new(0),
        }))
    }

    /// Stands for `https://graph.facebook.com`.
    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    /// Which throttling error the next throttled answers carry.
    pub fn set_throttle(&self, kind: MetaThrottle) {
        lock::unpoisoned(&self.0.throttle).0 = kind;
    }

    /// `estimated_time_to_regain_access` (minutes) of throttled answers.
    pub fn set_regain_access_minutes(&self, minutes: u32) {
        lock::unpoisoned(&self.0.throttle).1 = minutes;
    }

    /// The utilisation (percent) the usage headers of normal answers report, e.g. 96 to
    /// see whether a client slows down before it is throttled.
    pub fn set_usage_pct(&self, pct: u32) {
        self.0.usage_pct.store(pct.min(100), Ordering::SeqCst);
    }

    /// Restates `date` for every account: each ad gets one or two more late-attributed
    /// purchases (and their value); spend, impressions and clicks stay. Returns how many
    /// times the day has been restated.
    pub fn restate_day(&self, date: NaiveDate) -> u32 {
        self.0.ads.restate_day(date)
    }

    /// The ad ids of an account, in the order rows come.
    pub fn ad_ids(&self, account_id: &str) -> Vec<String> {
        self.0.ads.ad_ids(account_id)
    }

    /// What a full sync of `since..=until` must store: one entry per served row, with the
    /// canonical purchase count and value, as of now (restatements included).
    pub fn expected_rows(
        &self,
        account_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Vec<AdDayFacts> {
        self.0
            .ads
            .expected_rows(account_id, since, until, |_, row| {
                Some(row.numbers.purchase_value_cents)
            })
    }

    /// Sums of [`MetaFaults::expected_rows`].
    pub fn expected_totals(
        &self,
        account_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> AdTotals {
        AdTotals::of(&self.expected_rows(account_id, since, until))
    }
}

pub(crate) fn routes(faults: &MetaFaults) -> Router {
    Router::new()
        .route("/meta/{version}/{node}/insights", get(insights))
        .with_state(faults.clone())
}

async fn insights(
    State(faults): State<MetaFaults>,
    Path((version, node)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let state = &faults.0;
    serve(
        &state.switches,
        Api::Meta,
        format!("/meta/{version}/{node}/insights"),
        &uri,
        &headers,
        |query| state.answer(&version, &node, query, &headers),
    )
}

const OBJECTIVES: [&str; 5] = [
    "Prospecting",
    "Retargeting",
    "Advantage+ Shopping",
    "Lookalike 1%",
    "Catalog Sales",
];
const AUDIENCES: [&str; 6] = [
    "Broad US",
    "Women 25-44",
    "Men 18-34",
    "Site visitors 30d",
    "Cart abandoners 14d",
    "Interest: Fitness",
];
const PLACEMENTS: [&str; 3] = ["Advantage+ placements", "Feeds only", "Reels only"];
const CREATIVES: [&str; 6] = [
    "UGC video",
    "Carousel",
    "Static image",
    "Founder story",
    "Unboxing reel",
    "Testimonial",
];
const OFFERS: [&str; 5] = [
    "Free shipping",
    "20% off",
    "Bundle & save",
    "New arrivals",
    "Bestsellers",
];

fn pick<'a>(list: &[&'a str], account_key: u64, salt: u64, index: u64) -> &'a str {
    list[(mix64(account_key ^ salt ^ index.wrapping_mul(0x9E37)) % list.len() as u64) as usize]
}

fn campaign_name(account_key: u64, campaign: u64) -> String {
    format!(
        "{} | {} #{}",
        OBJECTIVES[(campaign % OBJECTIVES.len() as u64) as usize],
        pick(&AUDIENCES, account_key, 11, campaign),
        campaign + 1
    )
}

fn adset_name(account_key: u64, adset: u64) -> String {
    format!(
        "{} – {}",
        pick(&AUDIENCES, account_key, 12, adset),
        PLACEMENTS[(adset % PLACEMENTS.len() as u64) as usize]
    )
}

fn ad_name(account_key: u64, ad: u64) -> String {
    format!(
        "{} {:02} – {}",
        pick(&CREATIVES, account_key, 13, ad),
        ad + 1,
        pick(&OFFERS, account_key, 14, ad)
    )
}

/// The fields the stand-in knows; anything else is Meta's error 100.
const KNOWN_FIELDS: [&str; 21] = [
    "account_id",
    "account_name",
    "account_currency",
    "campaign_id",
    "campaign_name",
    "adset_id",
    "adset_name",
    "ad_id",
    "ad_name",
    "date_start",
    "date_stop",
    "spend",
    "impressions",
    "clicks",
    "reach",
    "ctr",
    "cpc",
    "cpm",
    "actions",
    "action_values",
    "purchase_roas",
];

/// Which fields were asked for, as a bit set over [`KNOWN_FIELDS`].
#[derive(Clone, Copy)]
struct Fields(u32);

impl Fields {
    fn parse(value: Option<&str>) -> Result<Self, String> {
        let list = value.unwrap_or("spend,impressions");
        let mut bits = 0;
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            match KNOWN_FIELDS.iter().position(|known| *known == name) {
                Some(at) => bits |= 1 << at,
                None => {
                    return Err(format!(
                        "(#100) {name} is not valid for fields param. please check https://developers.facebook.com/docs/marketing-api/reference/ads-insights/ for all valid values"
                    ));
                }
            }
        }
        Ok(Fields(bits))
    }

    fn has(self, name: &str) -> bool {
        KNOWN_FIELDS
            .iter()
            .position(|known| *known == name)
            .is_some_and(|at| self.0 & (1 << at) != 0)
    }
}

#[derive(Serialize)]
struct ActionValue {
    action_type: &'static str,
    value: String,
}

#[derive(Serialize, Default)]
struct Row<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adset_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adset_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    impressions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clicks: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reach: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ctr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actions: Option<Vec<ActionValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_values: Option<Vec<ActionValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purchase_roas: Option<Vec<ActionValue>>,
    date_start: String,
    date_stop: String,
}

#[derive(Serialize)]
struct Cursors {
    before: String,
    after: String,
}

#[derive(Serialize)]
struct Paging {
    cursors: Cursors,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Serialize)]
struct Page<'a> {
    data: Vec<Row<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paging: Option<Paging>,
}

/// The purchase action types Meta reports the same purchases under.
const PURCHASE_TYPES: [&str; 3] = [
    "offsite_conversion.fb_pixel_purchase",
    "purchase",
    "omni_purchase",
];

fn actions(day: &AdDay) -> Option<Vec<ActionValue>> {
    let counts = [
        ("link_click", day.link_clicks),
        ("landing_page_view", day.landing_page_views),
        ("add_to_cart", day.add_to_carts),
        (PURCHASE_TYPES[0], day.purchases),
        (PURCHASE_TYPES[1], day.purchases),
        (PURCHASE_TYPES[2], day.purchases),
    ];
    let list: Vec<ActionValue> = counts
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(action_type, count)| ActionValue {
            action_type,
            value: count.to_string(),
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

fn action_values(day: &AdDay) -> Option<Vec<ActionValue>> {
    (day.purchases > 0).then(|| {
        PURCHASE_TYPES
            .iter()
            .map(|action_type| ActionValue {
                action_type,
                value: money_trimmed(day.purchase_value_cents),
            })
            .collect()
    })
}

fn ratio(numerator: f64, denominator: f64) -> Option<String> {
    (denominator > 0.0).then(|| format!("{:.6}", numerator / denominator))
}

/// The query, checked.
struct Request {
    since: NaiveDate,
    until: NaiveDate,
    fields: Fields,
    limit: u64,
    /// Index of the first row of the page.
    offset: u64,
}

#[derive(serde::Deserialize)]
struct TimeRange {
    since: String,
    until: String,
}

/// `appsecret_proof` as Meta computes it: the lowercase hex HMAC-SHA256 of the token, keyed
/// by the app secret.
pub fn appsecret_proof(token: &str, app_secret: &str) -> String {
    shared::webhook::hmac_sha256(app_secret.as_bytes(), &[token.as_bytes()])
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn parse_date(value: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| format!("(#100) Invalid date in time_range: {value}"))
}

fn encode_cursor(offset: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("row:{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<u64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("row:")?
        .parse()
        .ok()
}

impl MetaState {
    fn trace_id(&self) -> String {
        let n = self.traces.fetch_add(1, Ordering::Relaxed);
        URL_SAFE_NO_PAD.encode(mix64(n ^ 0xFB).to_be_bytes())
    }

    fn error(
        &self,
        status: StatusCode,
        message: &str,
        kind: &str,
        code: u32,
        subcode: Option<u32>,
        transient: bool,
    ) -> Response {
        let mut error = json!({
            "message": message,
            "type": kind,
            "code": code,
            "fbtrace_id": self.trace_id(),
        });
        if let Some(subcode) = subcode {
            error["error_subcode"] = json!(subcode);
        }
        if transient {
            error["is_transient"] = json!(true);
        }
        json_body(status, &json!({ "error": error }))
    }

    fn invalid(&self, message: &str) -> Response {
        self.error(
            StatusCode::BAD_REQUEST,
            message,
            "OAuthException",
            100,
            None,
            false,
        )
    }

    fn usage_headers(&self, response: &mut Response, account: &Account, pct: u32, regain: u32) {
        let tier = "standard_access";
        let buc = json!({
            account.spec.id.as_str(): [{
                "type": "ads_insights",
                "call_count": pct,
                "total_cputime": pct.min(100) / 2,
                "total_time": pct.min(100) / 2,
                "estimated_time_to_regain_access": regain,
                "ads_api_access_tier": tier,
            }]
        });
        set_header(response, "x-business-use-case-usage", &buc.to_string());
        set_header(
            response,
            "x-ad-account-usage",
            &json!({"acc_id_util_pct": pct, "reset_time_duration": regain * 60, "ads_api_access_tier": tier})
                .to_string(),
        );
        set_header(
            response,
            "x-fb-ads-insights-throttle",
            &json!({"app_id_util_pct": pct, "acc_id_util_pct": pct, "ads_api_access_tier": tier})
                .to_string(),
        );
    }

    /// The refusal of a request whose `appsecret_proof` is missing or wrong, when the app
    /// requires one. Called after the token was accepted, as Meta checks it.
    fn check_proof(&self, query: &[(String, String)]) -> Option<Response> {
        let secret = self.app_secret.as_deref()?;
        let expected = appsecret_proof(&self.token, secret);
        let message = match first(query, "appsecret_proof") {
            None => "API calls from the server require an appsecret_proof argument",
            Some(proof) if proof.eq_ignore_ascii_case(&expected) => return None,
            Some(_) => "Invalid appsecret_proof provided in the API argument",
        };
        Some(self.error(
            StatusCode::BAD_REQUEST,
            message,
            "GraphMethodException",
            100,
            None,
            false,
        ))
    }

    /// The token a request carries: `access_token`, else `Authorization: Bearer`.
    fn token_of(query: &[(String, String)], headers: &HeaderMap) -> Option<String> {
        first(query, "access_token").map(str::to_owned).or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
    }

    fn answer(
        &self,
        version: &str,
        node: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Answer {
        match Self::token_of(query, headers) {
            None => {
                return Answer::refused(
                    self.error(
                        StatusCode::BAD_REQUEST,
                        "An access token is required to request this resource.",
                        "OAuthException",
                        104,
                        None,
                        false,
                    ),
                    Outcome::AuthFailed,
                );
            }
            Some(token) if token != self.token => {
                return Answer::refused(
                    self.error(
                        StatusCode::BAD_REQUEST,
                        "Invalid OAuth access token - Cannot parse access token",
                        "OAuthException",
                        190,
                        None,
                        false,
                    ),
                    Outcome::AuthFailed,
                );
            }
            Some(_) if self.switches.token_expired() => {
                return Answer::refused(
                    self.error(
                        StatusCode::BAD_REQUEST,
                        "Error validating access token: Session has expired on Monday, 30-Nov-26 09:00:00 PST. The current time is Tuesday, 01-Dec-26 06:00:00 PST.",
                        "OAuthException",
                        190,
                        Some(463),
                        false,
                    ),
                    Outcome::AuthFailed,
                );
            }
            Some(_) => {}
        }
        if let Some(refusal) = self.check_proof(query) {
            return Answer::refused(refusal, Outcome::AuthFailed);
        }
        if !version.starts_with('v') {
            return Answer::refused(
                self.error(
                    StatusCode::BAD_REQUEST,
                    &format!("Unknown path components: /{version}/{node}/insights"),
                    "OAuthException",
                    2500,
                    None,
                    false,
                ),
                Outcome::Rejected,
            );
        }
        let Some(account) = node.strip_prefix("act_").and_then(|id| self.ads.find(id)) else {
            return Answer::refused(
                self.error(
                    StatusCode::BAD_REQUEST,
                    &format!("Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"),
                    "GraphMethodException",
                    100,
                    Some(33),
                    false,
                ),
                Outcome::Rejected,
            );
        };
        if self.switches.take_throttle() {
            let (kind, regain) = *lock::unpoisoned(&self.throttle);
            let mut response = self.error(
                StatusCode::BAD_REQUEST,
                kind.message(),
                "OAuthException",
                kind.code(),
                Some(kind.subcode()),
                true,
            );
            self.usage_headers(&mut response, account, 100, regain);
            return Answer::refused(response, Outcome::Throttled);
        }
        let today = self.ads.today(account);
        let request = match self.parse(query, today) {
            Ok(request) => request,
            Err(response) => return Answer::refused(*response, Outcome::Rejected),
        };
        let page = u32::try_from(request.offset / request.limit + 1).unwrap_or(u32::MAX);
        let failure = self.switches.injected_failure(page, || {
            self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unknown error occurred",
                "OAuthException",
                1,
                Some(99),
                true,
            )
        });
        if let Some(failure) = failure {
            return failure;
        }
        let (mut response, rows) = self.page(version, node, account, query, &request, today);
        let pct = self.usage_pct.load(Ordering::SeqCst);
        self.usage_headers(&mut response, account, pct, 0);
        set_header(&mut response, "facebook-api-version", version);
        Answer::served(response, Some(page), rows)
    }

    fn parse(
        &self,
        query: &[(String, String)],
        today: NaiveDate,
    ) -> Result<Request, Box<Response>> {
        let invalid = |message: &str| Box::new(self.invalid(message));
        let unsupported = |what: &str| {
            invalid(&format!(
                "(#100) the Meta stand-in does not model {what}; see the standins crate, module meta"
            ))
        };
        if first(query, "level") != Some("ad") {
            return Err(unsupported("levels other than level=ad"));
        }
        if first(query, "time_increment") != Some("1") {
            return Err(unsupported("time_increment other than 1"));
        }
        if first(query, "breakdowns").is_some_and(|value| !value.is_empty()) {
            return Err(unsupported("breakdowns"));
        }
        if first(query, "action_breakdowns")
            .is_some_and(|value| !value.is_empty() && value != "action_type")
        {
            return Err(unsupported("action_breakdowns other than action_type"));
        }
        if first(query, "date_preset").is_some() || first(query, "time_ranges").is_some() {
            return Err(unsupported("date_preset or time_ranges (send time_range)"));
        }
        let range = match (
            first(query, "time_range"),
            first(query, "time_range[since]"),
            first(query, "time_range[until]"),
        ) {
            (Some(json), _, _) => serde_json::from_str::<TimeRange>(json).map_err(|_| {
                invalid("(#100) param time_range must be a JSON object with since and until")
            })?,
            (None, Some(since), Some(until)) => TimeRange {
                since: since.to_string(),
                until: until.to_string(),
            },
            _ => return Err(unsupported("a request without time_range")),
        };
        let since = parse_date(&range.since).map_err(|message| invalid(&message))?;
        let until = parse_date(&range.until).map_err(|message| invalid(&message))?;
        if since > until {
            return Err(invalid("(#100) time_range: since must not be after until"));
        }
        if today
            .checked_sub_months(Months::new(37))
            .is_some_and(|limit| since < limit)
        {
            return Err(Box::new(self.error(
                StatusCode::BAD_REQUEST,
                "(#3018) The start date of the time range cannot be beyond 37 months from the current date",
                "OAuthException",
                3018,
                None,
                false,
            )));
        }
        let fields = Fields::parse(first(query, "fields")).map_err(|message| invalid(&message))?;
        let limit: u64 = match first(query, "limit") {
            None => 25,
            Some(value) => value
                .parse()
                .ok()
                .filter(|limit| *limit > 0)
                .ok_or_else(|| invalid("(#100) param limit must be a positive integer"))?,
        };
        if limit > 10_000 {
            return Err(Box::new(self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Please reduce the amount of data you're asking for, then retry your request",
                "OAuthException",
                1,
                None,
                true,
            )));
        }
        let cursor = |name: &str| -> Result<Option<u64>, Box<Response>> {
            match first(query, name) {
                None => Ok(None),
                Some(value) => decode_cursor(value)
                    .map(Some)
                    .ok_or_else(|| invalid(&format!("(#100) The {name} cursor is invalid"))),
            }
        };
        let offset = match (cursor("after")?, cursor("before")?) {
            (Some(after), _) => after + 1,
            (None, Some(before)) => before.saturating_sub(limit),
            (None, None) => 0,
        };
        Ok(Request {
            since,
            until,
            fields,
            limit,
            offset,
        })
    }

    /// One page of rows, generated from the seed; returns the response and its row count.
    fn page(
        &self,
        version: &str,
        node: &str,
        account: &Account,
        query: &[(String, String)],
        request: &Request,
        today: NaiveDate,
    ) -> (Response, usize) {
        let ReportPage {
            total,
            start,
            end,
            rows,
        } = self.ads.page(
            account,
            request.since,
            request.until.min(today),
            request.offset,
            request.limit,
        );
        let fields = request.fields;
        let spec = &account.spec;
        let data: Vec<Row> = rows
            .into_iter()
            .map(
                |AdDayRow {
                     date,
                     ad,
                     ids,
                     numbers: day,
                 }| {
                    let spend = day.spend_cents as f64 / 100.0;
                    let date_text = date.format("%Y-%m-%d").to_string();
                    Row {
                        account_id: fields.has("account_id").then_some(spec.id.as_str()),
                        account_name: fields.has("account_name").then_some(spec.name.as_str()),
                        account_currency: fields
                            .has("account_currency")
                            .then_some(spec.currency.as_str()),
                        campaign_id: fields.has("campaign_id").then_some(ids.campaign),
                        campaign_name: fields
                            .has("campaign_name")
                            .then(|| campaign_name(account.key, IDS.campaign_of(ad))),
                        adset_id: fields.has("adset_id").then_some(ids.adset),
                        adset_name: fields
                            .has("adset_name")
                            .then(|| adset_name(account.key, IDS.adset_of(ad))),
                        ad_id: fields.has("ad_id").then_some(ids.ad),
                        ad_name: fields.has("ad_name").then(|| ad_name(account.key, ad)),
                        spend: fields.has("spend").then(|| money_trimmed(day.spend_cents)),
                        impressions: fields
                            .has("impressions")
                            .then(|| day.impressions.to_string()),
                        clicks: fields.has("clicks").then(|| day.clicks.to_string()),
                        reach: fields.has("reach").then(|| day.reach.to_string()),
                        ctr: fields
                            .has("ctr")
                            .then(|| ratio(day.clicks as f64 * 100.0, day.impressions as f64))
                            .flatten(),
                        cpc: fields
                            .has("cpc")
                            .then(|| ratio(spend, day.clicks as f64))
                            .flatten(),
                        cpm: fields
                            .has("cpm")
                            .then(|| ratio(spend * 1000.0, day.impressions as f64))
                            .flatten(),
                        actions: fields.has("actions").then(|| actions(&day)).flatten(),
                        action_values: fields
                            .has("action_values")
                            .then(|| action_values(&day))
                            .flatten(),
                        purchase_roas: fields
                            .has("purchase_roas")
                            .then(|| {
                                (day.purchases > 0).then(|| {
                                    vec![ActionValue {
                                        action_type: "omni_purchase",
                                        value: format!(
                                            "{:.6}",
                                            day.purchase_value_cents as f64
                                                / day.spend_cents.max(1) as f64
                                        ),
                                    }]
                                })
                            })
                            .flatten(),
                        date_start: date_text.clone(),
                        date_stop: date_text,
                    }
                },
            )
            .collect();
        let rows = data.len();
        let paging = (end > start).then(|| {
            let link = |cursor_name: &str, cursor: &str| {
                // Meta's links repeat the token in the query whether it came as a
                // parameter or a header: a client must not follow them as they are.
                let mut pairs: Vec<(&str, &str)> = query
                    .iter()
                    .filter(|(key, _)| {
                        !matches!(key.as_str(), "after" | "before" | "limit" | "access_token")
                    })
                    .map(|(key, value)| (key.as_str(), value.as_str()))
                    .collect();
                let limit = request.limit.to_string();
                pairs.push(("limit", &limit));
                pairs.push(("access_token", &self.token));
                pairs.push((cursor_name, cursor));
                format!(
                    "{}/{version}/{node}/insights?{}",
                    self.base_url,
                    encode_query(pairs)
                )
            };
            let before = encode_cursor(start);
            let after = encode_cursor(end - 1);
            Paging {
                previous: (start > 0).then(|| link("before", &before)),
                next: (end < total).then(|| link("after", &after)),
                cursors: Cursors { before, after },
            }
        });
        (json_body(StatusCode::OK, &Page { data, paging }), rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{get, path_of};
    use crate::{StandinConfig, router};

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn config(ads: usize) -> StandinConfig {
        let mut config = StandinConfig {
            today: Some(day("2026-11-30")),
            ..StandinConfig::default()
        };
        config.meta.accounts[0].ads = ads;
        config
    }

    const FIELDS: &str = "account_id,campaign_id,campaign_name,adset_id,ad_id,ad_name,spend,impressions,clicks,actions,action_values";

    fn first_uri(since: &str, until: &str, limit: u32) -> String {
        format!(
            "/meta/v21.0/act_{DEFAULT_META_ACCOUNT}/insights?{}",
            encode_query([
                ("level", "ad"),
                ("time_increment", "1"),
                (
                    "time_range",
                    &format!(r#"{{"since":"{since}","until":"{until}"}}"#)
                ),
                ("fields", FIELDS),
                ("limit", &limit.to_string()),
                ("access_token", DEFAULT_META_TOKEN),
                ("appsecret_proof", &proof(DEFAULT_META_TOKEN)),
            ])
        )
    }

    fn proof(token: &str) -> String {
        appsecret_proof(token, DEFAULT_META_APP_SECRET)
    }

    /// Follows `paging.next` to the end; returns every row.
    async fn walk(router: &Router, uri: String) -> Vec<serde_json::Value> {
        let mut rows = Vec::new();
        let mut next = Some(uri);
        while let Some(uri) = next.take() {
            let (status, _, body) = get(router, &uri, &[]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            rows.extend(body["data"].as_array().unwrap().iter().cloned());
            next = body["paging"]["next"].as_str().map(path_of);
        }
        rows
    }

    #[tokio::test]
    async fn pagination_walks_every_row_exactly_once() {
        let (router, handles) = router(&config(7), "http://standins.test");
        let rows = walk(&router, first_uri("2026-11-01", "2026-11-10", 9)).await;
        assert_eq!(rows.len(), 70);
        let keys: std::collections::HashSet<(String, String)> = rows
            .iter()
            .map(|row| {
                (
                    row["ad_id"].as_str().unwrap().to_string(),
                    row["date_start"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(keys.len(), 70);
        assert_eq!(handles.meta.pages_served(), 8);
        let requests = handles.meta.requests();
        assert_eq!(requests.len(), 8);
        assert_eq!(requests[7].page, Some(8));
        assert!(requests[1].param("after").is_some());
        assert_eq!(requests[1].param("access_token"), Some(DEFAULT_META_TOKEN));

        // Numbers are strings; the three purchase types agree; totals match the truth.
        let expected = handles.meta.expected_totals(
            DEFAULT_META_ACCOUNT,
            day("2026-11-01"),
            day("2026-11-10"),
        );
        let mut spend_cents = 0;
        let mut purchases = 0;
        for row in &rows {
            assert_eq!(row["date_start"], row["date_stop"]);
            let spend = row["spend"].as_str().unwrap();
            let (units, fraction) = spend.split_once('.').unwrap_or((spend, ""));
            let fraction = format!("{fraction:0<2}");
            spend_cents += units.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap();
            assert!(row["impressions"].is_string());
            let by_type = |list: &serde_json::Value, kind: &str| {
                list.as_array().and_then(|items| {
                    items
                        .iter()
                        .find(|item| item["action_type"] == kind)
                        .map(|item| item["value"].as_str().unwrap().to_string())
                })
            };
            let canonical = by_type(&row["actions"], "omni_purchase");
            assert_eq!(canonical, by_type(&row["actions"], "purchase"));
            assert_eq!(
                canonical,
                by_type(&row["actions"], "offsite_conversion.fb_pixel_purchase")
            );
            purchases += canonical.map_or(0, |count| count.parse::<u64>().unwrap());
        }
        assert_eq!(expected.rows, 70);
        assert_eq!(spend_cents, expected.spend_cents);
        assert_eq!(purchases, expected.purchases);
        assert!(purchases > 0);
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_rows_and_another_seed_does_not() {
        let uri = first_uri("2026-11-01", "2026-11-03", 100);
        let (a, _) = router(&config(5), "http://a.test");
        let (b, _) = router(&config(5), "http://b.test");
        let mut other = config(5);
        other.seed = 7;
        let (c, _) = router(&other, "http://c.test");
        let rows_a = walk(&a, uri.clone()).await;
        assert_eq!(rows_a, walk(&b, uri.clone()).await);
        assert_ne!(rows_a, walk(&c, uri).await);
    }

    #[tokio::test]
    async fn days_after_today_have_no_rows() {
        let (router, _) = router(&config(4), "http://standins.test");
        let rows = walk(&router, first_uri("2026-11-29", "2026-12-05", 50)).await;
        assert_eq!(rows.len(), 8);
        let (status, _, body) = get(&router, &first_uri("2026-12-01", "2026-12-05", 50), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"data": []}));
    }

    #[tokio::test]
    async fn throttling_is_a_400_with_the_code_and_usage_headers() {
        let (router, handles) = router(&config(3), "http://standins.test");
        handles.meta.throttle_next(2);
        handles.meta.set_throttle(MetaThrottle::AdsInsightsBuc);
        handles.meta.set_regain_access_minutes(3);
        let uri = first_uri("2026-11-01", "2026-11-02", 10);
        for _ in 0..2 {
            let (status, headers, body) = get(&router, &uri, &[]).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(body["error"]["code"], 80000);
            assert_eq!(body["error"]["error_subcode"], 2446079);
            assert_eq!(body["error"]["type"], "OAuthException");
            assert_eq!(body["error"]["is_transient"], true);
            assert!(body["error"]["fbtrace_id"].is_string());
            let usage: serde_json::Value =
                serde_json::from_str(headers["x-business-use-case-usage"].to_str().unwrap())
                    .unwrap();
            let entry = &usage[DEFAULT_META_ACCOUNT][0];
            assert_eq!(entry["type"], "ads_insights");
            assert_eq!(entry["call_count"], 100);
            assert_eq!(entry["estimated_time_to_regain_access"], 3);
            assert!(headers.contains_key("x-fb-ads-insights-throttle"));
        }
        let (status, headers, _) = get(&router, &uri, &[]).await;
        assert_eq!(status, StatusCode::OK);
        let usage: serde_json::Value =
            serde_json::from_str(headers["x-business-use-case-usage"].to_str().unwrap()).unwrap();
        assert_eq!(
            usage[DEFAULT_META_ACCOUNT][0]["estimated_time_to_regain_access"],
            0
        );
        assert_eq!(handles.meta.count(Outcome::Throttled), 2);

        handles.meta.set_throttle(MetaThrottle::UserLimit);
        handles.meta.throttle_next(1);
        let (_, _, body) = get(&router, &uri, &[]).await;
        assert_eq!(body["error"]["code"], 17);
        assert_eq!(body["error"]["message"], "(#17) User request limit reached");
    }

    #[tokio::test]
    async fn tokens_missing_wrong_or_expired_get_oauth_errors() {
        let (router, handles) = router(&config(3), "http://standins.test");
        let uri = first_uri("2026-11-01", "2026-11-02", 10);
        handles.meta.expire_token();
        let (status, _, body) = get(&router, &uri, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], 190);
        assert_eq!(body["error"]["error_subcode"], 463);
        assert_eq!(body["error"]["type"], "OAuthException");
        handles.meta.renew_token();

        let wrong = uri.replace(DEFAULT_META_TOKEN, "nope");
        let (_, _, body) = get(&router, &wrong, &[]).await;
        assert_eq!(body["error"]["code"], 190);
        assert!(body["error"].get("error_subcode").is_none());

        let bearer = uri.replace(&format!("&access_token={DEFAULT_META_TOKEN}"), "");
        let (status, _, body) = get(&router, &bearer, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], 104);
        let auth = format!("Bearer {DEFAULT_META_TOKEN}");
        let (status, _, _) = get(&router, &bearer, &[("authorization", &auth)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(handles.meta.count(Outcome::AuthFailed), 3);
        // The next page repeats the token, as Meta's links do, though it came as a header.
        let paged = first_uri("2026-11-01", "2026-11-02", 2)
            .replace(&format!("&access_token={DEFAULT_META_TOKEN}"), "");
        let (_, _, body) = get(&router, &paged, &[("authorization", &auth)]).await;
        let next = body["paging"]["next"].as_str().unwrap();
        assert!(
            next.contains(&format!("access_token={DEFAULT_META_TOKEN}")),
            "{next}"
        );
    }

    #[tokio::test]
    async fn the_app_secret_proof_is_required_and_checked() {
        let (router, handles) = router(&config(3), "http://standins.test");
        let uri = first_uri("2026-11-01", "2026-11-02", 10);
        let unsigned = uri.replace(
            &format!("&appsecret_proof={}", proof(DEFAULT_META_TOKEN)),
            "",
        );
        let (status, _, body) = get(&router, &unsigned, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], 100);
        assert_eq!(body["error"]["type"], "GraphMethodException");
        assert_eq!(
            body["error"]["message"],
            "API calls from the server require an appsecret_proof argument"
        );
        let forged = uri.replace(&proof(DEFAULT_META_TOKEN), &proof("another-token"));
        let (status, _, body) = get(&router, &forged, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["error"]["message"],
            "Invalid appsecret_proof provided in the API argument"
        );
        assert_eq!(handles.meta.count(Outcome::AuthFailed), 2);
        let (status, _, _) = get(&router, &uri, &[]).await;
        assert_eq!(status, StatusCode::OK);

        // An app that does not require the proof takes requests without one.
        let mut open = config(3);
        open.meta.app_secret = None;
        let (router, _) = crate::router(&open, "http://standins.test");
        let (status, _, _) = get(&router, &unsigned, &[]).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_page_fails_once_with_a_500() {
        let (router, handles) = router(&config(4), "http://standins.test");
        handles.meta.fail_at_page(2);
        let (_, _, first_page) = get(&router, &first_uri("2026-11-01", "2026-11-04", 5), &[]).await;
        let next = path_of(first_page["paging"]["next"].as_str().unwrap());
        let (status, _, body) = get(&router, &next, &[]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], 1);
        assert_eq!(body["error"]["is_transient"], true);
        let (status, _, body) = get(&router, &next, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"].as_array().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_restated_day_returns_more_purchases_and_other_days_stay() {
        let (router, handles) = router(&config(6), "http://standins.test");
        let uri = first_uri("2026-11-01", "2026-11-02", 100);
        let before = walk(&router, uri.clone()).await;
        assert_eq!(handles.meta.restate_day(day("2026-11-02")), 1);
        let after = walk(&router, uri).await;
        for (old, new) in before.iter().zip(&after) {
            assert_eq!(old["spend"], new["spend"]);
            if old["date_start"] == "2026-11-01" {
                assert_eq!(old, new);
            } else {
                assert_ne!(old["actions"], new["actions"]);
                assert_ne!(old["action_values"], new["action_values"]);
            }
        }
    }

    #[tokio::test]
    async fn unknown_fields_accounts_and_old_dates_are_rejected() {
        let (router, _) = router(&config(2), "http://standins.test");
        let uri = first_uri("2026-11-01", "2026-11-02", 10);
        let (status, _, body) = get(&router, &uri.replace("ad_name", "ad_nmae"), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], 100);
        let (_, _, body) = get(&router, &uri.replace(DEFAULT_META_ACCOUNT, "999"), &[]).await;
        assert_eq!(body["error"]["error_subcode"], 33);
        let (_, _, body) = get(&router, &first_uri("2023-01-01", "2023-01-02", 10), &[]).await;
        assert_eq!(body["error"]["code"], 3018);
    }
}
