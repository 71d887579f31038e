//! Meta Ads Insights at ad level, one row per ad and day (`time_increment=1`).
//!
//! Authentication: the token in `Authorization: Bearer`, never in the URL, and
//! `appsecret_proof` (hex HMAC-SHA256 of the token keyed by the app secret, as Meta's
//! "securing requests" guide specifies) as a query parameter when the app secret is
//! configured. Meta's `paging.next` repeats the token as `access_token=`: [`next_page`]
//! takes it out (and re-signs the proof) before the URL is followed, and follows it only on
//! the Graph API's own host.
//!
//! Pages follow `paging.next`. Throttling arrives as HTTP 400 with error codes 4, 17, 613,
//! 2 or 80000–80014 and is retried, waiting at least `estimated_time_to_regain_access` from
//! the usage header; an expired or invalid token (190) fails the run at once; code 100 with
//! subcode 1487534 ("reduce the amount of data") is [`ExtractError::TooMuchData`], which
//! sends the window through an asynchronous report run instead. Purchases are read from one
//! canonical action type, because Meta repeats the same purchases under several
//! (`omni_purchase`, `purchase`, `offsite_conversion.fb_pixel_purchase`…) and adding them up
//! would double count.
//!
//! Parts: [`version`] (which Marketing API version is named), [`attribution`] (the
//! connection's `action_attribution_windows`), [`pacing`] (slowing down as usage nears the
//! quota), [`report_run`] (the asynchronous report runs' wire); [`MetaSettings`] gathers
//! what is configurable.

use std::time::{Duration, SystemTime};

use chrono::NaiveDate;
use reqwest::header::HeaderMap;
use rust_decimal::Decimal;
use serde_json::Value;
use shared::retry::RetryClass;

use crate::{AdRow, ExtractError, MAX_QUOTED_BODY, Page};

pub mod attribution;
pub mod pacing;
pub mod report_run;
pub mod version;

pub use version::ApiVersion;

/// Meta's error code and subcode for "Please reduce the amount of data you're asking for":
/// the synchronous read is too large, an asynchronous report run is not.
pub const REDUCE_DATA: (u64, u64) = (100, 1_487_534);

/// What is configurable about reading Meta (see `crate::Config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetaSettings {
    /// `META_API_VERSION`.
    pub api_version: ApiVersion,
    /// Windows longer than this many days are read through a report run from the start
    /// (`META_ASYNC_AFTER_DAYS`); shorter ones synchronously, and through a report run only
    /// when Meta asks to reduce the data. Longer than the 28-day lookback, so scheduled runs
    /// stay synchronous and backfills go asynchronous.
    pub async_after_days: i64,
    /// How long to wait between two polls of a report run.
    pub report_poll_interval: Duration,
    /// How long a report run may take, from creation to "Job Completed".
    pub report_deadline: Duration,
    /// Rule 4 of [`pacing`]: the pause when usage is high and Meta names no time.
    pub pacing_pause: Duration,
}

impl Default for MetaSettings {
    fn default() -> Self {
        Self {
            api_version: ApiVersion::default(),
            async_after_days: 35,
            report_poll_interval: Duration::from_secs(5),
            report_deadline: Duration::from_secs(600),
            pacing_pause: Duration::from_secs(60),
        }
    }
}

impl MetaSettings {
    /// Whether a window of `since..=until` is read through a report run from the start.
    pub fn reads_async(&self, since: NaiveDate, until: NaiveDate) -> bool {
        (until - since).num_days() + 1 > self.async_after_days
    }
}

/// Purchase action types, most inclusive first; the first one present is counted.
const PURCHASE_TYPES: &[&str] = &[
    "omni_purchase",
    "purchase",
    "offsite_conversion.fb_pixel_purchase",
];

const FIELDS: &str = "account_id,campaign_id,adset_id,ad_id,date_start,date_stop,spend,impressions,clicks,actions,action_values";

/// Query parameters that carry a credential, dropped from a `paging.next` before it is
/// followed (the proof is added back, freshly computed).
const CREDENTIAL_PARAMETERS: &[&str] = &["access_token", "appsecret_proof", "appsecret_time"];

/// What one insights read asks for.
#[derive(Debug, Clone, Copy)]
pub struct InsightsRequest<'a> {
    pub version: ApiVersion,
    pub account_id: &'a str,
    pub since: NaiveDate,
    pub until: NaiveDate,
    /// `action_attribution_windows` ([`attribution::windows`]).
    pub windows: &'a [&'a str],
}

/// The first page's URL for an account and window; `proof` is the token's
/// [`appsecret_proof`] when the app secret is configured. The token itself goes in the
/// `Authorization` header. POSTed, the same URL creates a report run ([`report_run`]).
pub fn first_page(base_url: &str, request: &InsightsRequest<'_>, proof: Option<&str>) -> String {
    let InsightsRequest {
        version,
        account_id,
        since,
        until,
        windows,
    } = *request;
    let time_range = format!(r#"{{"since":"{since}","until":"{until}"}}"#);
    let windows = attribution::parameter(windows);
    let mut pairs = vec![
        ("level", "ad"),
        ("time_increment", "1"),
        ("time_range", time_range.as_str()),
        ("fields", FIELDS),
        ("action_attribution_windows", windows.as_str()),
        ("limit", "500"),
    ];
    pairs.extend(proof.map(|proof| ("appsecret_proof", proof)));
    let query: String = form_query(&pairs);
    format!("{base_url}/{version}/act_{account_id}/insights?{query}")
}

/// `appsecret_proof`: the lowercase hex HMAC-SHA256 of `token`, keyed by the app secret.
pub fn appsecret_proof(token: &str, app_secret: &str) -> String {
    hex::encode(shared::webhook::hmac_sha256(
        app_secret.as_bytes(),
        &[token.as_bytes()],
    ))
}

/// The URL to follow for Meta's `paging.next`: only on the host of `base_url` (a link
/// elsewhere would receive the bearer token), without the `access_token` Meta repeats in
/// it, with `proof` as its `appsecret_proof`.
pub fn next_page(next: &str, base_url: &str, proof: Option<&str>) -> Result<String, ExtractError> {
    let mut url = reqwest::Url::parse(next)
        .map_err(|_| ExtractError::Malformed("paging.next is not a URL".into()))?;
    let base = reqwest::Url::parse(base_url)
        .map_err(|_| ExtractError::Malformed("the configured Meta base URL is not a URL".into()))?;
    if url.origin() != base.origin() {
        return Err(ExtractError::Malformed(format!(
            "paging.next points at {}, not at the Graph API's {}",
            url.origin().ascii_serialization(),
            base.origin().ascii_serialization()
        )));
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| {
            !CREDENTIAL_PARAMETERS
                .iter()
                .any(|credential| key.eq_ignore_ascii_case(credential))
        })
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    url.set_fragment(None);
    {
        let mut query = url.query_pairs_mut();
        query.clear().extend_pairs(kept);
        if let Some(proof) = proof {
            query.append_pair("appsecret_proof", proof);
        }
    }
    Ok(url.into())
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
                query.push(char::from(byte));
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
        .map(|minutes| Duration::from_secs(minutes.saturating_mul(60)))
}

/// Classifies an error answer: throttling is transient, an invalid token is not.
pub fn classify(status: reqwest::StatusCode, headers: &HeaderMap, body: &str) -> ExtractError {
    let error: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = error.pointer("/error/code").and_then(Value::as_u64);
    let subcode = error
        .pointer("/error/error_subcode")
        .and_then(Value::as_u64);
    let message = shared::text::clip(
        error
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or(body),
        MAX_QUOTED_BODY,
    )
    .to_string();
    if code.zip(subcode) == Some(REDUCE_DATA) {
        return ExtractError::TooMuchData(format!("Meta error 100/1487534: {message}"));
    }
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
    use proptest::prelude::*;
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
        let too_much = classify(
            reqwest::StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            r#"{"error":{"code":100,"error_subcode":1487534,"message":"Please reduce the amount of data"}}"#,
        );
        assert!(
            matches!(too_much, ExtractError::TooMuchData(_)),
            "{too_much:?}"
        );
    }

    #[test]
    fn first_page_names_the_window_and_level_and_never_the_token() {
        let proof = appsecret_proof("tok", "app-secret");
        let request = InsightsRequest {
            version: ApiVersion::default(),
            account_id: "42",
            since: "2026-11-01".parse().unwrap(),
            until: "2026-11-30".parse().unwrap(),
            windows: &attribution::DEFAULT_WINDOWS,
        };
        let url = first_page("http://x/meta", &request, Some(&proof));
        assert!(url.starts_with(
            "http://x/meta/v27.0/act_42/insights?level=ad&time_increment=1&time_range="
        ));
        assert!(
            url.contains("&action_attribution_windows=%5B%227d_click%22%2C%221d_view%22%5D&"),
            "{url}"
        );
        assert!(url.contains("%222026-11-01%22"));
        assert!(url.ends_with(&format!("&appsecret_proof={proof}")));
        assert!(
            !url.contains("access_token") && !url.contains("tok&"),
            "{url}"
        );
        let unsigned = first_page("http://x/meta", &request, None);
        assert!(!unsigned.contains("appsecret_proof"));
    }

    #[test]
    fn the_proof_is_the_hex_hmac_of_the_token() {
        // The well-known HMAC-SHA256 example: key "key", the quick brown fox.
        assert_eq!(
            appsecret_proof("The quick brown fox jumps over the lazy dog", "key"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn next_pages_lose_the_token_and_stay_on_the_graph_host() {
        let next = "https://graph.facebook.com/v21.0/act_1/insights?fields=spend&access_token=EAAB123&Access_Token=EAAB456&appsecret_proof=old&limit=500&after=QVFI";
        let followed = next_page(next, "https://graph.facebook.com", Some("fresh")).unwrap();
        assert!(!followed.contains("EAAB"), "{followed}");
        assert!(!followed.contains("old"), "{followed}");
        assert!(followed.contains("fields=spend") && followed.contains("after=QVFI"));
        assert!(followed.ends_with("&appsecret_proof=fresh"), "{followed}");
        for elsewhere in [
            "https://graph.facebook.com.evil.example/v21.0/x?after=1",
            "http://graph.facebook.com/v21.0/x?after=1",
            "https://graph.facebook.com:8443/v21.0/x",
            "not a url",
        ] {
            assert!(
                matches!(
                    next_page(elsewhere, "https://graph.facebook.com", None),
                    Err(ExtractError::Malformed(_))
                ),
                "{elsewhere}"
            );
        }
    }

    fn status() -> impl Strategy<Value = reqwest::StatusCode> {
        (100u16..600).prop_map(|code| {
            reqwest::StatusCode::from_u16(code).unwrap_or(reqwest::StatusCode::BAD_REQUEST)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_insights_answer_is_a_page_or_a_typed_error(body in crate::strategies::json()) {
            let _ = parse_page(&body);
            let _ = parse_page(&json!({ "data": [body.clone()], "paging": body }));
        }

        #[test]
        fn any_error_answer_is_classified(
            status in status(),
            body in ".{0,400}",
            usage in ".{0,80}",
            minutes in any::<u64>(),
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = usage.parse() {
                headers.insert("x-business-use-case-usage", value);
            }
            let _ = classify(status, &headers, &body);
            let throttle = format!(r#"{{"1":[{{"estimated_time_to_regain_access":{minutes}}}]}}"#);
            headers.insert("x-business-use-case-usage", throttle.parse().unwrap());
            let error = classify(status, &headers, r#"{"error":{"code":17,"message":"m"}}"#);
            prop_assert!(matches!(error, ExtractError::Throttled { .. }), "{error:?}");
        }

        #[test]
        fn any_next_link_is_followed_only_without_the_token(
            path in "[a-z0-9/._%-]{0,40}",
            query in "[ -~]{0,60}",
            token in "[A-Za-z0-9]{12}",
        ) {
            let next = format!("https://graph.facebook.com/{path}?{query}&access_token={token}#{token}");
            if let Ok(url) = next_page(&next, "https://graph.facebook.com", Some("p")) {
                prop_assert!(!url.contains(&token), "{url}");
                prop_assert!(url.starts_with("https://graph.facebook.com/"));
            }
        }
    }
}
