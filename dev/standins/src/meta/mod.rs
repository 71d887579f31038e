//! Meta Marketing API stand-in: `GET /{version}/act_{account_id}/insights` at ad level,
//! one row per ad per day, as `https://graph.facebook.com` answers it, and the same report
//! asynchronously (`POST …/insights` → report run → `GET /{report_run_id}` → `GET
//! /{report_run_id}/insights`, module `report_runs`).
//!
//! Modelled:
//! * Versions: `v25.0` and later are served (December 2026: v27.0, v26.0, v25.0); `v24.0`
//!   and older are refused with code 2635 ("You are calling a deprecated version of the Ads
//!   API"), as Meta refuses expired versions.
//! * Size: a synchronous read of more rows than `max_sync_rows` is refused with code 100,
//!   subcode 1487534 ("Please reduce the amount of data you're asking for"), which a client
//!   answers with a report run.
//! * `action_attribution_windows`: checked (a JSON list of `1d_click`, `7d_click`,
//!   `28d_click`, `1d_ev`, `1d_view`; the retired `7d_view`/`28d_view` and anything else are
//!   code 100) and logged; the numbers served do not depend on it.
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
//! * Usage that rises per call ([`MetaFaults::ramp_usage`]): headers report it, and past
//!   100 % the call is throttled; a pause lets it fall back.
//!
//! Left out: other levels, breakdowns, `action_breakdowns` other than `action_type`,
//! `date_preset`/`time_ranges`, per-window values in `actions` (`"7d_click": …` keys),
//! `filtering` (accepted and ignored, as are `action_report_time` and
//! `use_*_attribution_setting`),
//! entity endpoints (campaigns, ad sets, ads), and per-hour quotas (throttling happens only
//! when switched on or ramped). Error texts other than the throttling ones are approximations.
//!
//! How the module fits together: [`MetaFaults`] (`faults`) holds the state behind the
//! routes `insights` and `report_runs` serve. An answer checks the token and the app-secret proof (`auth`),
//! the account, the throttling switch (`throttle`, which also writes the usage headers),
//! the query (`request`), and then builds the page (`insights`) from rows formatted by
//! `rows` with the names of `names`; every refusal is a Graph error (`graph_error`).

mod auth;
mod faults;
mod graph_error;
mod insights;
mod names;
mod report_runs;
mod request;
mod rows;
#[cfg(test)]
mod test_support;
mod throttle;

pub use auth::appsecret_proof;
pub use faults::MetaFaults;
pub(crate) use insights::routes;
pub use throttle::MetaThrottle;

use crate::ad_accounts::{IdScheme, SeededAccount, impl_ad_account_spec};

/// The token the stand-in accepts unless the scenario says otherwise.
pub const DEFAULT_META_TOKEN: &str = "meta-local-token";
/// The app secret `appsecret_proof` is checked against unless the scenario says otherwise.
pub const DEFAULT_META_APP_SECRET: &str = "meta-local-app-secret";
/// The ad account of the default scenario (used as `act_1029384756`).
pub const DEFAULT_META_ACCOUNT: &str = "1029384756";

/// The part of [`StandinConfig`](crate::StandinConfig) that shapes the Meta stand-in.
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
    /// Synchronous reads of more rows are refused with code 100 / subcode 1487534;
    /// `None` accepts any size (changeable at run time).
    pub max_sync_rows: Option<u64>,
}

impl Default for MetaScenario {
    fn default() -> Self {
        MetaScenario {
            accounts: vec![MetaAccount::new(DEFAULT_META_ACCOUNT, 20)],
            access_token: DEFAULT_META_TOKEN.into(),
            app_secret: Some(DEFAULT_META_APP_SECRET.into()),
            throttle: MetaThrottle::UserLimit,
            regain_access_minutes: 1,
            max_sync_rows: None,
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

type Account = SeededAccount<MetaAccount>;

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
