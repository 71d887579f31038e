//! The insights query, checked: what the stand-in models (`level=ad`, `time_increment=1`,
//! a `time_range`, known `fields`, a `limit` up to 10,000, `after`/`before` cursors) is
//! turned into an [`InsightsQuery`]; anything else is refused with the Graph error Meta
//! would send, or — for what Meta accepts but the stand-in does not model — a code 100
//! that says so.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Months, NaiveDate};

use super::faults::MetaState;
use super::graph_error::GraphError;
use crate::ad_day::DELIVERY_METRICS;
use crate::query::first;

/// The query, checked.
pub(super) struct InsightsQuery {
    pub(super) since: NaiveDate,
    pub(super) until: NaiveDate,
    pub(super) fields: Fields,
    pub(super) limit: u64,
    /// Index of the first row of the page.
    pub(super) offset: u64,
}

#[derive(serde::Deserialize)]
struct TimeRange {
    since: String,
    until: String,
}

fn parse_date(value: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| format!("(#100) Invalid date in time_range: {value}"))
}

/// A row's cursor: its index in the whole report, opaque as Meta's are.
pub(super) fn encode_cursor(offset: u64) -> String {
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

/// The fields that name an ad and its day.
const ENTITY_FIELDS: [&str; 11] = [
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
];

/// The attribution windows Meta serves; `7d_view` and `28d_view` are no longer returned
/// since 2026-01-12 and are refused here.
const ATTRIBUTION_WINDOWS: [&str; 5] = ["1d_click", "7d_click", "28d_click", "1d_ev", "1d_view"];

/// The fields that carry purchases.
const CONVERSION_FIELDS: [&str; 3] = ["actions", "action_values", "purchase_roas"];

/// The fields the stand-in knows, in the order of the bits of [`Fields`]; anything else
/// is Meta's error 100.
fn known_fields() -> impl Iterator<Item = &'static str> {
    ENTITY_FIELDS
        .into_iter()
        .chain(DELIVERY_METRICS)
        .chain(CONVERSION_FIELDS)
}

/// Which fields were asked for, as a bit set over [`known_fields`].
#[derive(Clone, Copy)]
pub(super) struct Fields(u32);

impl Fields {
    fn parse(value: Option<&str>) -> Result<Self, String> {
        let list = value.unwrap_or("spend,impressions");
        let mut bits = 0;
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            match known_fields().position(|known| known == name) {
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

    pub(super) fn has(self, name: &str) -> bool {
        known_fields()
            .position(|known| known == name)
            .is_some_and(|at| self.0 & (1 << at) != 0)
    }
}

impl MetaState {
    pub(super) fn parse(
        &self,
        query: &[(String, String)],
        today: NaiveDate,
    ) -> Result<InsightsQuery, Box<Response>> {
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
            return Err(Box::new(self.error(GraphError::oauth(
                3018,
                "(#3018) The start date of the time range cannot be beyond 37 months from the current date",
            ))));
        }
        if let Some(windows) = first(query, "action_attribution_windows") {
            let names: Vec<String> = serde_json::from_str(windows).map_err(|_| {
                invalid("(#100) param action_attribution_windows must be a JSON list")
            })?;
            if let Some((at, _)) = names
                .iter()
                .enumerate()
                .find(|(_, name)| !ATTRIBUTION_WINDOWS.contains(&name.as_str()))
            {
                return Err(invalid(&format!(
                    "(#100) action_attribution_windows[{at}] must be one of the following values: {}",
                    ATTRIBUTION_WINDOWS.join(", ")
                )));
            }
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
            let too_much = GraphError::oauth(
                1,
                "Please reduce the amount of data you're asking for, then retry your request",
            )
            .transient()
            .status(StatusCode::INTERNAL_SERVER_ERROR);
            return Err(Box::new(self.error(too_much)));
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
        Ok(InsightsQuery {
            since,
            until,
            fields,
            limit,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::super::DEFAULT_META_ACCOUNT;
    use super::super::test_support::{config, first_uri};
    use crate::router;
    use crate::test_support::get;

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
