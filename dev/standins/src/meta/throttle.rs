//! Meta's rate limiting as a client meets it: a throttled request is refused with one of
//! the four `OAuthException` codes ([`MetaThrottle`]) and usage at 100 %, and every answer
//! carries the usage headers (`X-Business-Use-Case-Usage`, `X-Ad-Account-Usage`,
//! `X-FB-Ads-Insights-Throttle`) a careful client slows down by.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::response::Response;
use serde_json::json;

use super::Account;
use super::faults::{MetaFaults, MetaState};
use super::graph_error::GraphError;
use crate::lock;
use crate::reply::set_header;

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

/// Usage that rises with every call and falls back once the client pauses: each call adds
/// `step` percent to the usage the headers report; a call that comes `cooldown` or more after
/// the previous one finds usage back at the base ([`MetaFaults::set_usage_pct`]). A call
/// that would take usage past 100 % is throttled.
pub(super) struct UsageRamp {
    step: u32,
    cooldown: Duration,
    usage: u32,
    last: Option<Instant>,
}

impl MetaFaults {
    /// Usage rises by `step_pct` per call and resets after a pause of `cooldown` (see
    /// `UsageRamp`), so a client that does not slow down as usage nears 100 % is throttled.
    pub fn ramp_usage(&self, step_pct: u32, cooldown: Duration) {
        *lock::unpoisoned(&self.0.usage_ramp) = Some(UsageRamp {
            step: step_pct,
            cooldown,
            usage: 0,
            last: None,
        });
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
}

impl MetaState {
    /// Counts one call against the usage ramp; the usage it reports, when a ramp is set.
    pub(super) fn ramp_tick(&self) -> Option<u32> {
        let mut ramp = lock::unpoisoned(&self.usage_ramp);
        let ramp = ramp.as_mut()?;
        let now = Instant::now();
        if ramp
            .last
            .is_none_or(|last| now.duration_since(last) >= ramp.cooldown)
        {
            ramp.usage = self.usage_pct.load(Ordering::SeqCst);
        }
        ramp.last = Some(now);
        ramp.usage = ramp.usage.saturating_add(ramp.step);
        Some(ramp.usage)
    }

    /// The throttling error, when the switch throttles this request or the ramp's usage
    /// (`ramped`) is past 100 %.
    pub(super) fn throttled(&self, account: &Account, ramped: Option<u32>) -> Option<Response> {
        let over_quota = ramped.is_some_and(|usage| usage > 100);
        if !over_quota && !self.switches.take_throttle() {
            return None;
        }
        let (kind, regain) = *lock::unpoisoned(&self.throttle);
        let error = GraphError::oauth(kind.code(), kind.message())
            .subcode(kind.subcode())
            .transient();
        let mut response = self.error(error);
        self.usage_headers(&mut response, account, 100, regain);
        Some(response)
    }

    /// The usage headers of an answer served: the ramp's usage (`ramped`) when a ramp is
    /// set, else the configured utilisation.
    pub(super) fn report_usage(
        &self,
        response: &mut Response,
        account: &Account,
        ramped: Option<u32>,
    ) {
        let pct = ramped.unwrap_or_else(|| self.usage_pct.load(Ordering::SeqCst));
        self.usage_headers(response, account, pct.min(100), 0);
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
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::super::DEFAULT_META_ACCOUNT;
    use super::super::test_support::{config, first_uri};
    use super::*;
    use crate::test_support::get;
    use crate::{Outcome, router};

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
}
