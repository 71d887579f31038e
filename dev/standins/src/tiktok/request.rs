//! The report query, checked: the advertiser, the one report shape the stand-in models
//! (`BASIC`, `AUCTION_AD`, by ad and day), known metrics, a date span of at most
//! [`MAX_DAYS_PER_REQUEST`] days and the page; anything else is the message of TikTok's
//! code 40002.

use chrono::NaiveDate;

use super::faults::TikTokState;
use super::{Advertiser, MAX_DAYS_PER_REQUEST};
use crate::ad_day::DELIVERY_METRICS;
use crate::query::first;

/// The metrics the stand-in knows besides the delivery metrics (attribute metrics
/// included).
const OTHER_METRICS: [&str; 13] = [
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

/// The query, checked.
pub(super) struct ReportQuery<'a> {
    pub(super) advertiser: &'a Advertiser,
    pub(super) metrics: Vec<&'static str>,
    pub(super) start: NaiveDate,
    pub(super) end: NaiveDate,
    pub(super) page: u64,
    pub(super) page_size: u64,
}

fn json_list(value: Option<&str>) -> Option<Vec<String>> {
    serde_json::from_str(value?).ok()
}

impl TikTokState {
    pub(super) fn parse<'a>(
        &'a self,
        query: &[(String, String)],
    ) -> Result<ReportQuery<'a>, String> {
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
            let mut known = DELIVERY_METRICS.iter().chain(&OTHER_METRICS);
            match known.find(|known| **known == name.as_str()) {
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
        Ok(ReportQuery {
            advertiser,
            metrics,
            start,
            end,
            page,
            page_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::super::test_support::{TOKEN, config, uri};
    use crate::router;
    use crate::test_support::get;

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
}
