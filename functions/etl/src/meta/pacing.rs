//! Slowing down before Meta throttles, from the usage it reports on every answer.
//!
//! Meta sends `x-business-use-case-usage` (per business: `call_count`, `total_cputime`,
//! `total_time` in percent of the quota, and `estimated_time_to_regain_access` in minutes)
//! and `x-fb-ads-insights-throttle` (`app_id_util_pct`, `acc_id_util_pct`). Once any of
//! them reaches 100 % the next call is refused with a throttling error, which costs a
//! failed call and a longer wait than slowing down in time. The rule, applied after every
//! answer:
//!
//! 1. No readable usage header: no pause (the answer tells us nothing).
//! 2. The highest utilisation in either header at or below [`PACE_ABOVE_PCT`]: no pause.
//! 3. Above it, and Meta names a time to regain access: that time.
//! 4. Above it otherwise: the configured pause.
//!
//! Every pause is at most [`MAX_PACING_PAUSE`]: a longer one is better spent as a throttling
//! error's retry, which the run's retry policy bounds.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

/// Utilisation (percent) above which the next call waits; Airbyte's Meta connector uses the
/// same threshold.
pub const PACE_ABOVE_PCT: f64 = 95.0;

/// The longest pause the rule asks for.
pub const MAX_PACING_PAUSE: Duration = Duration::from_secs(300);

/// What an answer's usage headers say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// The highest of every percentage in both headers.
    pub highest_pct: f64,
    /// The longest `estimated_time_to_regain_access`, when one is above zero.
    pub regain_access: Option<Duration>,
}

/// Reads the usage headers; `None` when neither is present and readable.
pub fn usage(headers: &HeaderMap) -> Option<Usage> {
    let json = |name: &str| -> Option<Value> {
        serde_json::from_str(headers.get(name)?.to_str().ok()?).ok()
    };
    let business = json("x-business-use-case-usage");
    let insights = json("x-fb-ads-insights-throttle");
    if business.is_none() && insights.is_none() {
        return None;
    }
    let number = |value: Option<&Value>| -> Option<f64> {
        match value? {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
        .filter(|number| number.is_finite())
    };
    let entries: Vec<&Value> = business
        .as_ref()
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|businesses| businesses.values())
        .filter_map(Value::as_array)
        .flatten()
        .collect();
    let percentages = entries
        .iter()
        .flat_map(|entry| {
            ["call_count", "total_cputime", "total_time"].map(|key| number(entry.get(key)))
        })
        .chain(
            ["app_id_util_pct", "acc_id_util_pct"]
                .map(|key| number(insights.as_ref().and_then(|insights| insights.get(key)))),
        )
        .flatten();
    let highest_pct = percentages.fold(0.0, f64::max);
    let regain_access = entries
        .iter()
        .filter_map(|entry| number(entry.get("estimated_time_to_regain_access")))
        .filter(|minutes| *minutes > 0.0)
        .fold(None, |longest: Option<f64>, minutes| {
            Some(longest.map_or(minutes, |longest| longest.max(minutes)))
        })
        .map(|minutes| {
            Duration::from_secs_f64((minutes * 60.0).min(MAX_PACING_PAUSE.as_secs_f64()))
        });
    Some(Usage {
        highest_pct,
        regain_access,
    })
}

/// How long to wait before the next call, by the rule above; `configured` is rule 4's pause.
pub fn pause(usage: Option<Usage>, configured: Duration) -> Option<Duration> {
    let usage = usage?;
    if usage.highest_pct <= PACE_ABOVE_PCT {
        return None;
    }
    Some(
        usage
            .regain_access
            .unwrap_or(configured)
            .min(MAX_PACING_PAUSE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(business: Option<&str>, insights: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = business {
            headers.insert("x-business-use-case-usage", value.parse().unwrap());
        }
        if let Some(value) = insights {
            headers.insert("x-fb-ads-insights-throttle", value.parse().unwrap());
        }
        headers
    }

    fn business(call_count: u32, regain_minutes: u32) -> String {
        format!(
            r#"{{"42":[{{"type":"ads_insights","call_count":{call_count},"total_cputime":10,"total_time":10,"estimated_time_to_regain_access":{regain_minutes}}}]}}"#
        )
    }

    const PAUSE: Duration = Duration::from_secs(30);

    #[test]
    fn rule_1_no_usage_header_no_pause() {
        assert_eq!(pause(usage(&headers(None, None)), PAUSE), None);
        assert_eq!(pause(usage(&headers(Some("not json"), None)), PAUSE), None);
    }

    #[test]
    fn rule_2_at_or_below_the_threshold_no_pause() {
        assert_eq!(
            pause(usage(&headers(Some(&business(95, 0)), None)), PAUSE),
            None
        );
        let calm = headers(
            Some(&business(40, 0)),
            Some(r#"{"app_id_util_pct":12.5,"acc_id_util_pct":3}"#),
        );
        assert_eq!(usage(&calm).unwrap().highest_pct, 40.0);
        assert_eq!(pause(usage(&calm), PAUSE), None);
    }

    #[test]
    fn rule_3_above_it_the_time_meta_names() {
        let busy = headers(Some(&business(97, 2)), None);
        assert_eq!(pause(usage(&busy), PAUSE), Some(Duration::from_secs(120)));
        let very_long = headers(Some(&business(100, 600)), None);
        assert_eq!(pause(usage(&very_long), PAUSE), Some(MAX_PACING_PAUSE));
    }

    #[test]
    fn rule_4_above_it_otherwise_the_configured_pause_from_either_header() {
        assert_eq!(
            pause(usage(&headers(Some(&business(96, 0)), None)), PAUSE),
            Some(PAUSE)
        );
        let insights_only = headers(
            None,
            Some(r#"{"app_id_util_pct":20,"acc_id_util_pct":"99"}"#),
        );
        assert_eq!(pause(usage(&insights_only), PAUSE), Some(PAUSE));
    }

    proptest! {
        #[test]
        fn any_header_gives_a_bounded_pause_or_none(business in ".{0,80}", insights in ".{0,80}", pct in any::<u64>(), minutes in any::<u64>()) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = business.parse() { headers.insert("x-business-use-case-usage", value); }
            if let Ok(value) = insights.parse() { headers.insert("x-fb-ads-insights-throttle", value); }
            if let Some(wait) = pause(usage(&headers), PAUSE) { prop_assert!(wait <= MAX_PACING_PAUSE); }
            let numbers = format!(r#"{{"1":[{{"call_count":{pct},"estimated_time_to_regain_access":{minutes}}}]}}"#);
            let headers = self::headers(Some(&numbers), None);
            if let Some(wait) = pause(usage(&headers), PAUSE) { prop_assert!(wait <= MAX_PACING_PAUSE); }
        }
    }
}
