//! Meta Ads Insights at ad level, one row per ad and day (`time_increment=1`).
//!
//! Pages follow `paging.next`. Throttling arrives as HTTP 400 with error codes 4, 17, 613,
//! 2 or 80000–80014 and is retried, waiting at least `estimated_time_to_regain_access` from
//! the usage header; an expired or invalid token (190) fails the run at once. Purchases are
//! read from one canonical action type, because Meta repeats the same purchases under several
//! (`omni_purchase`, `purchase`, `offsite_conversion.fb_pixel_purchase`…) and adding them up
//! would double count.

use std::time::{Duration, SystemTime};

use chrono::NaiveDate;
use reqwest::header::HeaderMap;
use rust_decimal::Decimal;
use serde_json::Value;
use shared::retry::RetryClass;

use crate::{AdRow, ExtractError, Page};

/// The Graph API version the requests name.
pub const API_VERSION: &str = "v21.0";

/// Purchase action types, most inclusive first; the first one present is counted.
const PURCHASE_TYPES: &[&str] = &[
    "omni_purchase",
    "purchase",
    "offsite_conversion.fb_pixel_purchase",
];

const FIELDS: &str = "account_id,campaign_id,adset_id,ad_id,date_start,date_stop,spend,impressions,clicks,actions,action_values";

/// The first page's URL for an account and window.
pub fn first_page(
    base_url: &str,
    account_id: &str,
    since: NaiveDate,
    until: NaiveDate,
    token: &str,
) -> String {
    let time_range = format!(r#"{{"since":"{since}","until":"{until}"}}"#);
    let query: String = form_query(&[
        ("level", "ad"),
        ("time_increment", "1"),
        ("time_range", &time_range),
        ("fields", FIELDS),
        ("limit", "500"),
        ("access_token", token),
    ]);
    format!("{base_url}/{API_VERSION}/act_{account_id}/insights?{query}")
}

/// `key=value&…`, percent-encoding values.
pub(crate) fn form_query(pairs: &[(&str, &str)]) -> String {
    let mut query = String::new();
    for (index, (key, value)) in pairs.iter().enumerate() {
        if index > 0 {
            query.push('&');
        }
        query.push_str(key);
        query.push('=');
        for byte in value.bytes() {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                query.push(byte as char);
            } else {
                query.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    query
}

fn decimal(value: Option<&Value>) -> Option<Decimal> {
    match value? {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.to_string().parse().ok(),
        _ => None,
    }
}

fn canonical_purchases(list: Option<&Value>) -> Option<Decimal> {
    let entries = list?.as_array()?;
    PURCHASE_TYPES.iter().find_map(|wanted| {
        entries
            .iter()
            .find(|entry| entry.get("action_type").and_then(Value::as_str) == Some(wanted))
            .and_then(|entry| decimal(entry.get("value")))
    })
}

fn text(row: &Value, key: &str) -> Option<String> {
    row.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Reads one page of insights.
pub fn parse_page(body: &Value) -> Result<Page, ExtractError> {
    let data = body
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| ExtractError::Malformed("insights answer without `data`".into()))?;
    let mut rows = Vec::with_capacity(data.len());
    for row in data {
        let date = text(row, "date_start")
            .and_then(|date| date.parse::<NaiveDate>().ok())
            .ok_or_else(|| ExtractError::Malformed("insights row without a `date_start`".into()))?;
        rows.push(AdRow {
            ad_id: text(row, "ad_id")
                .ok_or_else(|| ExtractError::Malformed("insights row without `ad_id`".into()))?,
            campaign_id: text(row, "campaign_id"),
            adset_id: text(row, "adset_id"),
            date,
            spend: decimal(row.get("spend")).unwrap_or_default(),
            impressions: decimal(row.get("impressions"))
                .and_then(|d| d.try_into().ok())
                .unwrap_or(0),
            clicks: decimal(row.get("clicks"))
                .and_then(|d| d.try_into().ok())
                .unwrap_or(0),
            conversions: canonical_purchases(row.get("actions")),
            conversion_value: canonical_purchases(row.get("action_values")),
        });
    }
    let next = body
        .pointer("/paging/next")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Page { rows, next })
}

/// The longest wait Meta asks for in its usage headers, if any.
fn regain_access(headers: &HeaderMap) -> Option<Duration> {
    let usage: Value =
        serde_json::from_str(headers.get("x-business-use-case-usage")?.to_str().ok()?).ok()?;
    usage
        .as_object()?
        .values()
        .flat_map(|entries| entries.as_array().cloned().unwrap_or_default())
        .filter_map(|entry| entry.get("estimated_time_to_regain_access")?.as_u64())
        .max()
        .map(|minutes| Duration::from_secs(minutes * 60))
}

/// Classifies an error answer: throttling is transient, an invalid token is not.
pub fn classify(status: reqwest::StatusCode, headers: &HeaderMap, body: &str) -> ExtractError {
    let error: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = error.pointer("/error/code").and_then(Value::as_u64);
    let message = error
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or(body)
        .to_string();
    match code {
        Some(190 | 102 | 104) => ExtractError::Auth(format!(
            "Meta error {}: {message}",
            code.unwrap_or_default()
        )),
        Some(2 | 4 | 17 | 613 | 80000..=80014) => ExtractError::Throttled {
            message: format!("Meta error {}: {message}", code.unwrap_or_default()),
            retry_after: regain_access(headers),
        },
        _ => match shared::retry::classify_http(status, headers, SystemTime::now()) {
            RetryClass::Transient { retry_after } => ExtractError::Throttled {
                message: format!("Meta HTTP {status}: {message}"),
                retry_after,
            },
            RetryClass::Permanent => ExtractError::Api(format!("Meta HTTP {status}: {message}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn purchases_are_counted_once() {
        let page = parse_page(&json!({"data": [{
            "ad_id": "1", "date_start": "2026-11-01", "spend": "12.30", "impressions": "1000", "clicks": "25",
            "actions": [{"action_type": "link_click", "value": "25"}, {"action_type": "offsite_conversion.fb_pixel_purchase", "value": "3"},
                        {"action_type": "purchase", "value": "3"}, {"action_type": "omni_purchase", "value": "3"}],
            "action_values": [{"action_type": "purchase", "value": "99.5"}, {"action_type": "omni_purchase", "value": "99.5"}]
        }], "paging": {"next": "https://graph/next"}}))
        .unwrap();
        let row = &page.rows[0];
        assert_eq!(row.conversions, Some(Decimal::from(3)));
        assert_eq!(row.conversion_value, Some(Decimal::new(995, 1)));
        assert_eq!(row.spend, Decimal::new(1230, 2));
        assert_eq!((row.impressions, row.clicks), (1000, 25));
        assert_eq!(page.next.as_deref(), Some("https://graph/next"));
    }

    #[test]
    fn errors_are_classified() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-business-use-case-usage",
            r#"{"1":[{"type":"ads_insights","estimated_time_to_regain_access":2}]}"#
                .parse()
                .unwrap(),
        );
        let throttled = classify(
            reqwest::StatusCode::BAD_REQUEST,
            &headers,
            r#"{"error":{"code":17,"message":"User request limit reached"}}"#,
        );
        assert!(
            matches!(throttled, ExtractError::Throttled { retry_after: Some(wait), .. } if wait == Duration::from_secs(120))
        );
        let expired = classify(
            reqwest::StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            r#"{"error":{"code":190,"message":"Session has expired"}}"#,
        );
        assert!(matches!(expired, ExtractError::Auth(_)));
        let broken = classify(
            reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            &HeaderMap::new(),
            "oops",
        );
        assert!(matches!(broken, ExtractError::Throttled { .. }));
        let bad = classify(
            reqwest::StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            r#"{"error":{"code":100,"message":"Invalid parameter"}}"#,
        );
        assert!(matches!(bad, ExtractError::Api(_)));
    }

    #[test]
    fn first_page_names_the_window_and_level() {
        let url = first_page(
            "http://x/meta",
            "42",
            "2026-11-01".parse().unwrap(),
            "2026-11-30".parse().unwrap(),
            "tok",
        );
        assert!(url.starts_with(
            "http://x/meta/v21.0/act_42/insights?level=ad&time_increment=1&time_range="
        ));
        assert!(url.contains("%222026-11-01%22"));
    }
}
