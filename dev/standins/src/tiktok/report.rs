//! The report endpoint: `GET /tiktok/open_api/{version}/report/integrated/get/`. An answer
//! passes the checks in TikTok's order — the version, the token, throttling, the query,
//! an injected failure — and then serves one page of rows, date by date and ads in order,
//! with `page_info`.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use super::envelope::Empty;
use super::faults::{TikTokFaults, TikTokState};
use super::metrics::{Metrics, metric};
use super::request::ReportQuery;
use crate::answer::{Answer, serve};
use crate::reply::json_response;
use crate::request_log::{Api, Outcome};

pub(crate) fn routes(faults: &TikTokFaults) -> Router {
    Router::new()
        .route(
            "/tiktok/open_api/{version}/report/integrated/get/",
            get(report),
        )
        .with_state(faults.clone())
}

async fn report(
    State(faults): State<TikTokFaults>,
    Path(version): Path<String>,
    request: Request,
) -> Response {
    let path = format!("/tiktok/open_api/{version}/report/integrated/get/");
    serve(&faults.0.switches, Api::TikTok, path, &request, |query| {
        faults.0.answer(&version, query, request.headers())
    })
}

#[derive(Serialize)]
struct Dimensions {
    ad_id: String,
    stat_time_day: String,
}

#[derive(Serialize)]
struct ReportRow {
    dimensions: Dimensions,
    metrics: Metrics,
}

#[derive(Serialize)]
struct PageInfo {
    page: u64,
    page_size: u64,
    total_number: u64,
    total_page: u64,
}

#[derive(Serialize)]
struct ReportData {
    list: Vec<ReportRow>,
    page_info: PageInfo,
}

impl TikTokState {
    fn answer(&self, version: &str, query: &[(String, String)], headers: &HeaderMap) -> Answer {
        if version != "v1.3" {
            return Answer::refused(
                json_response(
                    StatusCode::NOT_FOUND,
                    br#"{"message":"Not Found"}"#.to_vec(),
                ),
                Outcome::Rejected,
            );
        }
        let token = headers
            .get("access-token")
            .and_then(|value| value.to_str().ok());
        if token != Some(self.token.as_str()) || self.switches.token_expired() {
            return Answer::refused(
                self.error(40105, "Access token is incorrect or has been revoked."),
                Outcome::AuthFailed,
            );
        }
        if self.switches.take_throttle() {
            return Answer::refused(
                self.error(40100, "App reaches the QPS limit."),
                Outcome::Throttled,
            );
        }
        let request = match self.parse(query) {
            Ok(request) => request,
            Err(message) => return Answer::refused(self.error(40002, &message), Outcome::Rejected),
        };
        let page = u32::try_from(request.page).unwrap_or(u32::MAX);
        let failure = self.switches.injected_failure(page, || {
            self.envelope(
                StatusCode::INTERNAL_SERVER_ERROR,
                50000,
                "Internal service error. Please try again later.",
                Empty {},
            )
        });
        if let Some(failure) = failure {
            return failure;
        }
        let (response, rows) = self.page(&request);
        Answer::served(response, Some(page), rows)
    }

    fn page(&self, request: &ReportQuery<'_>) -> (Response, usize) {
        let advertiser = request.advertiser;
        let page = self.ads.page(
            advertiser,
            request.start,
            request.end.min(self.ads.today(advertiser)),
            (request.page - 1).saturating_mul(request.page_size),
            request.page_size,
        );
        let total = page.total;
        let list: Vec<ReportRow> = page
            .rows
            .iter()
            .map(|row| {
                let metrics = request
                    .metrics
                    .iter()
                    .map(|name| (*name, metric(name, advertiser, row)))
                    .collect();
                ReportRow {
                    dimensions: Dimensions {
                        ad_id: row.ids.ad.clone(),
                        stat_time_day: format!("{} 00:00:00", row.date.format("%Y-%m-%d")),
                    },
                    metrics: Metrics(metrics),
                }
            })
            .collect();
        let rows = list.len();
        let data = ReportData {
            list,
            page_info: PageInfo {
                page: request.page,
                page_size: request.page_size,
                total_number: total,
                total_page: total.div_ceil(request.page_size),
            },
        };
        (self.envelope(StatusCode::OK, 0, "OK", data), rows)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::super::test_support::{TOKEN, config, uri, walk};
    use super::super::{DEFAULT_TIKTOK_ADVERTISER, DEFAULT_TIKTOK_TOKEN};
    use crate::test_support::{day, get};
    use crate::{Outcome, router};

    #[tokio::test]
    async fn pages_walk_every_row_exactly_once_with_strings_and_dashes() {
        let (router, handles) = router(&config(11), "http://standins.test");
        let (_, _, body) = get(&router, &uri("2026-11-01", "2026-11-05", 1, 20), &[TOKEN]).await;
        assert_eq!(body["message"], "OK");
        assert!(body["request_id"].is_string());
        assert_eq!(
            body["data"]["page_info"],
            serde_json::json!({"page": 1, "page_size": 20, "total_number": 55, "total_page": 3})
        );
        let rows = walk(&router, "2026-11-01", "2026-11-05", 20).await;
        assert_eq!(rows.len(), 55);
        let keys: std::collections::HashSet<String> = rows
            .iter()
            .map(|row| row["dimensions"].to_string())
            .collect();
        assert_eq!(keys.len(), 55);
        assert_eq!(
            rows[0]["dimensions"]["stat_time_day"],
            "2026-11-01 00:00:00"
        );
        let mut dashes = 0;
        for row in &rows {
            for (_, value) in row["metrics"].as_object().unwrap() {
                assert!(value.is_string());
            }
            if row["metrics"]["total_complete_payment_rate"] == "-" {
                dashes += 1;
                assert_eq!(row["metrics"]["complete_payment"], "-");
            }
        }
        assert!(dashes > 0 && dashes < 55, "{dashes}");
        let expected = handles.tiktok.expected_totals(
            DEFAULT_TIKTOK_ADVERTISER,
            day("2026-11-01"),
            day("2026-11-05"),
        );
        let conversions: u64 = rows
            .iter()
            .map(|row| {
                row["metrics"]["conversion"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(conversions, expected.purchases);
        assert_eq!(handles.tiktok.requests().last().unwrap().page, Some(3));

        // A page past the end is empty, not an error.
        let (_, _, body) = get(&router, &uri("2026-11-01", "2026-11-05", 9, 20), &[TOKEN]).await;
        assert_eq!(body["code"], 0);
        assert_eq!(body["data"]["list"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_report() {
        let (a, _) = router(&config(4), "http://a.test");
        let (b, _) = router(&config(4), "http://b.test");
        assert_eq!(
            walk(&a, "2026-11-01", "2026-11-03", 5).await,
            walk(&b, "2026-11-01", "2026-11-03", 5).await
        );
    }

    #[tokio::test]
    async fn throttling_and_auth_failures_are_200s_with_codes() {
        let (router, handles) = router(&config(2), "http://standins.test");
        let request = uri("2026-11-01", "2026-11-02", 1, 10);
        handles.tiktok.throttle_next(1);
        let (status, _, body) = get(&router, &request, &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["code"], 40100);
        let (_, _, body) = get(&router, &request, &[TOKEN]).await;
        assert_eq!(body["code"], 0);

        handles.tiktok.expire_token();
        let (status, _, body) = get(&router, &request, &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["code"], 40105);
        assert_eq!(
            body["message"],
            "Access token is incorrect or has been revoked."
        );
        handles.tiktok.renew_token();
        let bearer = format!("Bearer {DEFAULT_TIKTOK_TOKEN}");
        let (_, _, body) = get(&router, &request, &[("Access-Token", &bearer)]).await;
        assert_eq!(body["code"], 40105);
        assert_eq!(handles.tiktok.count(Outcome::AuthFailed), 2);
        assert_eq!(handles.tiktok.count(Outcome::Throttled), 1);
    }

    #[tokio::test]
    async fn a_page_fails_once_and_unknown_metrics_are_named() {
        let (router, handles) = router(&config(3), "http://standins.test");
        handles.tiktok.fail_at_page(2);
        let (status, _, body) =
            get(&router, &uri("2026-11-01", "2026-11-03", 2, 4), &[TOKEN]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["code"], 50000);
        let (status, _, _) = get(&router, &uri("2026-11-01", "2026-11-03", 2, 4), &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);

        let bad = uri("2026-11-01", "2026-11-03", 1, 4).replace("clicks", "clickz");
        let (_, _, body) = get(&router, &bad, &[TOKEN]).await;
        assert_eq!(body["code"], 40002);
        assert!(body["message"].as_str().unwrap().contains("'clickz'"));
    }
}
