//! What the TikTok stand-in's tests share: a pinned configuration, a report request as the
//! ETL agent sends it, and a walk through every page.

use axum::Router;
use axum::http::StatusCode;

use super::{DEFAULT_TIKTOK_ADVERTISER, DEFAULT_TIKTOK_TOKEN};
use crate::StandinConfig;
use crate::query::encode_query;
use crate::test_support::{get, pinned_config};

/// Today pinned, and `ads` ads on the default advertiser.
pub(super) fn config(ads: usize) -> StandinConfig {
    let mut config = pinned_config();
    config.tiktok.advertisers[0].ads = ads;
    config
}

const METRICS: &str = r#"["spend","impressions","clicks","conversion","complete_payment","total_complete_payment_rate","campaign_id"]"#;

pub(super) fn uri(start: &str, end: &str, page: u32, page_size: u32) -> String {
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

pub(super) const TOKEN: (&str, &str) = ("Access-Token", DEFAULT_TIKTOK_TOKEN);

pub(super) async fn walk(
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
