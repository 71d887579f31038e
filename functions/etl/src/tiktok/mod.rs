//! TikTok's synchronous report at ad level by day (`AUCTION_AD`, `stat_time_day`).
//!
//! Windows longer than 30 days are split, since daily reports may span at most 30 days.
//! Pages are walked until `page_info.total_page`. TikTok answers HTTP 200 even for errors, so
//! the envelope's `code` decides: 40100 (rate limit) is retried, 40105 (token revoked or
//! wrong) fails the run at once. Every metric arrives as a string, `"-"` meaning no value.
//! An empty page ends a chunk whatever `total_page` claims, so a report that keeps promising
//! pages cannot keep a run walking.
//!
//! A 40100 asks to back off: the retry waits [`TikTokSettings::throttle_wait`] (TikTok
//! documents about five minutes after a per-minute limit). Long windows are read through
//! asynchronous report tasks instead of pages ([`task`]).

use std::time::{Duration, SystemTime};

use chrono::NaiveDate;
use reqwest::header::HeaderMap;
use rust_decimal::Decimal;
use serde_json::Value;
use shared::retry::RetryClass;

use crate::{AdRow, ExtractError, MAX_QUOTED_BODY, Page};

pub mod creation_limit;
pub mod task;

/// The longest span of one daily report request, inclusive.
pub const MAX_DAYS_PER_REQUEST: i64 = 30;
const PAGE_SIZE: u32 = 1000;
const METRICS: &str = r#"["spend","impressions","clicks","conversion","total_complete_payment_rate","campaign_id","adgroup_id"]"#;

/// What is configurable about reading TikTok (see `crate::Config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TikTokSettings {
    /// How long a 40100 asks to wait (`TIKTOK_THROTTLE_WAIT_SECS`, default 300). A wait
    /// longer than the retry policy's `max_retry_after` is not slept through: the run fails
    /// as throttled and the next schedule tries again.
    pub throttle_wait: Duration,
    /// Windows longer than this many days are read through report tasks
    /// (`TIKTOK_ASYNC_AFTER_DAYS`, default 60).
    pub async_after_days: i64,
    /// How long to wait between two checks of a task.
    pub task_poll_interval: Duration,
    /// How long a task may take, from creation to `SUCCESS`.
    pub task_deadline: Duration,
}

impl Default for TikTokSettings {
    fn default() -> Self {
        Self {
            throttle_wait: Duration::from_secs(300),
            async_after_days: 60,
            task_poll_interval: Duration::from_secs(5),
            task_deadline: Duration::from_secs(600),
        }
    }
}

impl TikTokSettings {
    /// Whether a window of `since..=until` is read through report tasks.
    pub fn reads_async(&self, since: NaiveDate, until: NaiveDate) -> bool {
        (until - since).num_days() + 1 > self.async_after_days
    }
}

/// The ≤ 30-day chunks of a window, in order.
pub fn chunks(since: NaiveDate, until: NaiveDate) -> Vec<(NaiveDate, NaiveDate)> {
    let mut chunks = Vec::new();
    let mut start = since;
    while start <= until {
        let end = start
            .checked_add_signed(chrono::Duration::days(MAX_DAYS_PER_REQUEST - 1))
            .map_or(until, |end| end.min(until));
        chunks.push((start, end));
        // The last representable day ends the walk instead of overflowing past it.
        let Some(next) = end.succ_opt() else {
            break;
        };
        start = next;
    }
    chunks
}

/// The first page of every ≤ 30-day chunk of the window.
pub fn first_pages(
    base_url: &str,
    advertiser_id: &str,
    since: NaiveDate,
    until: NaiveDate,
) -> Vec<String> {
    chunks(since, until)
        .into_iter()
        .map(|(start, end)| page_url(base_url, advertiser_id, start, end, 1))
        .collect()
}

fn page_url(
    base_url: &str,
    advertiser_id: &str,
    start: NaiveDate,
    end: NaiveDate,
    page: u32,
) -> String {
    let query = crate::meta::form_query(&[
        ("advertiser_id", advertiser_id),
        ("report_type", "BASIC"),
        ("data_level", "AUCTION_AD"),
        ("dimensions", r#"["ad_id","stat_time_day"]"#),
        ("metrics", METRICS),
        ("start_date", &start.to_string()),
        ("end_date", &end.to_string()),
        ("page", &page.to_string()),
        ("page_size", &PAGE_SIZE.to_string()),
    ]);
    format!("{base_url}/open_api/v1.3/report/integrated/get/?{query}")
}

/// A metric: a decimal string, or `"-"` for none.
fn metric(metrics: &Value, key: &str) -> Option<Decimal> {
    match metrics.get(key)? {
        Value::String(text) if text.trim() == "-" => None,
        Value::String(text) => text.trim().parse().ok(),
        Value::Number(number) => number.to_string().parse().ok(),
        _ => None,
    }
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        Value::String(text) if text != "-" => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The same request for another page.
fn with_page(url: &str, page: u32) -> Option<String> {
    let mut parsed = reqwest::Url::parse(url).ok()?;
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(key, value)| {
            let value = if key == "page" {
                page.to_string()
            } else {
                value.into_owned()
            };
            (key.into_owned(), value)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    Some(parsed.into())
}

/// The error an envelope carries, if its `code` is not 0 (TikTok answers errors with HTTP
/// 200): 40100 is throttling, 40001/40104/40105 a refused token, anything else an API error.
pub fn envelope_error(body: &Value) -> Option<ExtractError> {
    let code = body.get("code").and_then(Value::as_i64).unwrap_or(-1);
    let message = shared::text::clip(
        body.get("message")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        MAX_QUOTED_BODY,
    );
    match code {
        0 => None,
        40100 => Some(ExtractError::Throttled {
            message: format!("TikTok {code}: {message}"),
            retry_after: None,
        }),
        40001 | 40104 | 40105 => Some(ExtractError::Auth(format!("TikTok {code}: {message}"))),
        _ => Some(ExtractError::Api(format!("TikTok {code}: {message}"))),
    }
}

/// One report row, `{"dimensions": {"ad_id", "stat_time_day"}, "metrics": {…}}`.
pub fn ad_row(row: &Value) -> Result<AdRow, ExtractError> {
    let day = text(row, "/dimensions/stat_time_day")
        .and_then(|stamp| {
            stamp
                .get(..10)
                .and_then(|date| date.parse::<NaiveDate>().ok())
        })
        .ok_or_else(|| ExtractError::Malformed("report row without `stat_time_day`".into()))?;
    let metrics = row.get("metrics").cloned().unwrap_or(Value::Null);
    let whole = |key| {
        metric(&metrics, key)
            .and_then(|d| i64::try_from(d).ok())
            .unwrap_or(0)
    };
    Ok(AdRow {
        ad_id: text(row, "/dimensions/ad_id")
            .ok_or_else(|| ExtractError::Malformed("report row without `ad_id`".into()))?,
        campaign_id: text(&metrics, "/campaign_id"),
        adset_id: text(&metrics, "/adgroup_id"),
        date: day,
        spend: metric(&metrics, "spend").unwrap_or_default(),
        impressions: whole("impressions"),
        clicks: whole("clicks"),
        conversions: metric(&metrics, "conversion"),
        conversion_value: metric(&metrics, "total_complete_payment_rate"),
    })
}

/// Reads one page (the whole envelope) of the request `url`; `next` is the following page
/// of the same chunk.
pub fn parse_page(body: &Value, url: &str) -> Result<Page, ExtractError> {
    if let Some(error) = envelope_error(body) {
        return Err(error);
    }
    let list = body
        .pointer("/data/list")
        .and_then(Value::as_array)
        .ok_or_else(|| ExtractError::Malformed("report without `data.list`".into()))?;
    let rows = list.iter().map(ad_row).collect::<Result<Vec<_>, _>>()?;
    let number = |pointer: &str| {
        body.pointer(pointer)
            .and_then(Value::as_u64)
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    let (page, total) = (
        number("/data/page_info/page"),
        number("/data/page_info/total_page"),
    );
    let next = if page < total && !rows.is_empty() {
        page.checked_add(1).and_then(|next| with_page(url, next))
    } else {
        None
    };
    Ok(Page { rows, next })
}

/// Classifies a non-2xx answer (TikTok's errors usually arrive as HTTP 200 envelopes, read
/// by [`parse_page`]): 429 and 5xx are transient, the rest permanent.
pub fn classify(status: reqwest::StatusCode, headers: &HeaderMap, body: &str) -> ExtractError {
    match shared::retry::classify_http(status, headers, SystemTime::now()) {
        RetryClass::Transient { retry_after } => ExtractError::Throttled {
            message: format!("TikTok HTTP {status}"),
            retry_after,
        },
        RetryClass::Permanent => ExtractError::Api(format!(
            "TikTok HTTP {status}: {}",
            shared::text::clip(body, MAX_QUOTED_BODY)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn windows_are_split_into_30_day_requests() {
        let pages = first_pages(
            "http://x/tiktok",
            "7",
            "2026-09-01".parse().unwrap(),
            "2026-11-30".parse().unwrap(),
        );
        assert_eq!(pages.len(), 4, "91 days");
        assert!(
            pages[0].contains("start_date=2026-09-01") && pages[0].contains("end_date=2026-09-30")
        );
        assert!(
            pages[3].contains("start_date=2026-11-30") && pages[3].contains("end_date=2026-11-30")
        );
    }

    #[test]
    fn dashes_are_nulls_strings_are_decimals_and_pages_continue() {
        let url = &first_pages(
            "http://x/tiktok",
            "7",
            "2026-11-01".parse().unwrap(),
            "2026-11-02".parse().unwrap(),
        )[0];
        let page = parse_page(
            &json!({"code": 0, "message": "OK", "data": {"list": [{"dimensions": {"ad_id": "9", "stat_time_day": "2026-11-01 00:00:00"},
                "metrics": {"spend": "12.30", "impressions": "1000", "clicks": "25", "conversion": "3", "total_complete_payment_rate": "-",
                            "campaign_id": "c", "adgroup_id": "g"}}],
                "page_info": {"page": 1, "total_page": 2}}}),
            url,
        )
        .unwrap();
        let row = &page.rows[0];
        assert_eq!(
            (row.spend, row.impressions, row.conversion_value),
            (Decimal::new(1230, 2), 1000, None)
        );
        assert_eq!(row.date, "2026-11-01".parse::<NaiveDate>().unwrap());
        assert!(page.next.unwrap().contains("page=2"));
    }

    #[test]
    fn windows_at_the_end_of_the_calendar_do_not_overflow() {
        let pages = first_pages("http://x/tiktok", "7", NaiveDate::MAX, NaiveDate::MAX);
        assert_eq!(pages.len(), 1);
        let near = NaiveDate::MAX - chrono::Duration::days(40);
        assert_eq!(
            first_pages("http://x/tiktok", "7", near, NaiveDate::MAX).len(),
            2
        );
    }

    #[test]
    fn an_empty_page_ends_the_chunk() {
        let page = parse_page(
            &json!({"code": 0, "data": {"list": [], "page_info": {"page": 1, "total_page": 4000000000u64}}}),
            "http://x/tiktok/open_api/v1.3/report/integrated/get/?page=1",
        )
        .unwrap();
        assert_eq!(page.next, None);
    }

    #[test]
    fn envelope_codes_are_classified() {
        let envelope = |code| json!({"code": code, "message": "m", "data": {}});
        assert!(matches!(
            parse_page(&envelope(40100), "http://x/"),
            Err(ExtractError::Throttled { .. })
        ));
        assert!(matches!(
            parse_page(&envelope(40105), "http://x/"),
            Err(ExtractError::Auth(_))
        ));
        assert!(matches!(
            parse_page(&envelope(40002), "http://x/"),
            Err(ExtractError::Api(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_report_answer_is_a_page_or_a_typed_error(body in crate::strategies::json(), url in ".{0,60}") {
            let _ = parse_page(&body, &url);
            let envelope = json!({"code": 0, "data": {"list": [body.clone()], "page_info": body}});
            let _ = parse_page(&envelope, "http://x/tiktok/open_api/v1.3/report/integrated/get/?page=1");
        }

        #[test]
        fn page_counts_at_the_edges_end_the_walk(page in any::<u64>(), total in any::<u64>()) {
            let envelope = json!({"code": 0, "data": {
                "list": [{"dimensions": {"ad_id": "9", "stat_time_day": "2026-11-01 00:00:00"}, "metrics": {}}],
                "page_info": {"page": page, "total_page": total}}});
            let parsed = parse_page(&envelope, "http://x/tiktok/open_api/v1.3/report/integrated/get/?page=1");
            prop_assert!(parsed.is_ok());
        }

        #[test]
        fn any_error_answer_is_classified(code in 100u16..600, body in ".{0,400}") {
            let status = reqwest::StatusCode::from_u16(code).unwrap_or(reqwest::StatusCode::BAD_REQUEST);
            let error = classify(status, &HeaderMap::new(), &body);
            if let ExtractError::Api(message) = error {
                prop_assert!(message.len() <= MAX_QUOTED_BODY + 80);
            }
        }
    }
}
