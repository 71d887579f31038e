//! TikTok's synchronous report at ad level by day (`AUCTION_AD`, `stat_time_day`).
//!
//! Windows longer than 30 days are split, since daily reports may span at most 30 days.
//! Pages are walked until `page_info.total_page`. TikTok answers HTTP 200 even for errors, so
//! the envelope's `code` decides: 40100 (rate limit) is retried, 40105 (token revoked or
//! wrong) fails the run at once. Every metric arrives as a string, `"-"` meaning no value.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::{AdRow, ExtractError, Page};

/// The longest span of one daily report request, inclusive.
pub const MAX_DAYS_PER_REQUEST: i64 = 30;
const PAGE_SIZE: u32 = 1000;
const METRICS: &str = r#"["spend","impressions","clicks","conversion","total_complete_payment_rate","campaign_id","adgroup_id"]"#;

/// The first page of every ≤ 30-day chunk of the window.
pub fn first_pages(
    base_url: &str,
    advertiser_id: &str,
    since: NaiveDate,
    until: NaiveDate,
) -> Vec<String> {
    let mut pages = Vec::new();
    let mut start = since;
    while start <= until {
        let end = (start + chrono::Duration::days(MAX_DAYS_PER_REQUEST - 1)).min(until);
        pages.push(page_url(base_url, advertiser_id, start, end, 1));
        start = end + chrono::Duration::days(1);
    }
    pages
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

/// Reads one page (the whole envelope) of the request `url`; `next` is the following page
/// of the same chunk.
pub fn parse_page(body: &Value, url: &str) -> Result<Page, ExtractError> {
    let code = body.get("code").and_then(Value::as_i64).unwrap_or(-1);
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match code {
        0 => {}
        40100 => {
            return Err(ExtractError::Throttled {
                message: format!("TikTok {code}: {message}"),
                retry_after: None,
            });
        }
        40001 | 40104 | 40105 => {
            return Err(ExtractError::Auth(format!("TikTok {code}: {message}")));
        }
        _ => return Err(ExtractError::Api(format!("TikTok {code}: {message}"))),
    }
    let list = body
        .pointer("/data/list")
        .and_then(Value::as_array)
        .ok_or_else(|| ExtractError::Malformed("report without `data.list`".into()))?;
    let mut rows = Vec::with_capacity(list.len());
    for row in list {
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
        rows.push(AdRow {
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
        });
    }
    let page = body
        .pointer("/data/page_info/page")
        .and_then(Value::as_u64)
        .unwrap_or(1) as u32;
    let total = body
        .pointer("/data/page_info/total_page")
        .and_then(Value::as_u64)
        .unwrap_or(1) as u32;
    let next = if page < total {
        with_page(url, page + 1)
    } else {
        None
    };
    Ok(Page { rows, next })
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
