//! The insights endpoints: `GET /meta/{version}/act_{id}/insights` (a synchronous read),
//! `POST` of the same (a report run, `report_runs`), `GET /meta/{version}/{run_id}` (its
//! status) and `GET /meta/{version}/{run_id}/insights` (its rows). An answer passes the
//! checks in Meta's order — credentials, the path and version, the account, throttling,
//! the query, the size of a synchronous read, an injected failure — and then serves one
//! page of rows with its `paging`: cursors, and `previous`/`next` links that repeat the
//! query and the token.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use chrono::NaiveDate;
use serde::Serialize;

use super::Account;
use super::faults::{MetaFaults, MetaState};
use super::graph_error::GraphError;
use super::request::{InsightsQuery, encode_cursor};
use super::rows::Row;
use crate::ad_accounts::ReportPage;
use crate::answer::{Answer, serve};
use crate::query::encode_query;
use crate::reply::{json_body, set_header};
use crate::request_log::{Api, Outcome};

pub(crate) fn routes(faults: &MetaFaults) -> Router {
    Router::new()
        .route(
            "/meta/{version}/{node}/insights",
            get(insights).post(create_report_run),
        )
        .route("/meta/{version}/{node}", get(report_run))
        .with_state(faults.clone())
}

/// What a request to `…/insights` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// `GET act_{id}/insights`, or `GET {run_id}/insights` for a run's rows.
    Rows,
    /// `POST act_{id}/insights`.
    CreateRun,
}

async fn insights(
    State(faults): State<MetaFaults>,
    Path((version, node)): Path<(String, String)>,
    request: Request,
) -> Response {
    let path = format!("/meta/{version}/{node}/insights");
    serve(&faults.0.switches, Api::Meta, path, &request, |query| {
        faults
            .0
            .answer(Read::Rows, &version, &node, query, request.headers())
    })
}

async fn create_report_run(
    State(faults): State<MetaFaults>,
    Path((version, node)): Path<(String, String)>,
    request: Request,
) -> Response {
    let path = format!("/meta/{version}/{node}/insights");
    serve(&faults.0.switches, Api::Meta, path, &request, |query| {
        faults
            .0
            .answer(Read::CreateRun, &version, &node, query, request.headers())
    })
}

async fn report_run(
    State(faults): State<MetaFaults>,
    Path((version, node)): Path<(String, String)>,
    request: Request,
) -> Response {
    let path = format!("/meta/{version}/{node}");
    serve(&faults.0.switches, Api::Meta, path, &request, |query| {
        if let Some(refusal) = faults.0.refuse_version(&version, &node) {
            return refusal;
        }
        faults.0.poll_report_run(&node, query, request.headers())
    })
}

/// The oldest major version served; older ones are refused as expired.
const OLDEST_SERVED_MAJOR: u32 = 25;

#[derive(Serialize)]
struct Cursors {
    before: String,
    after: String,
}

#[derive(Serialize)]
struct Paging {
    cursors: Cursors,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Serialize)]
struct Page<'a> {
    data: Vec<Row<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paging: Option<Paging>,
}

impl MetaState {
    /// The refusal of a path whose version is not `v{major}.{minor}` or has expired.
    pub(super) fn refuse_version(&self, version: &str, node: &str) -> Option<Answer> {
        let major = version
            .strip_prefix('v')
            .and_then(|rest| rest.split_once('.'))
            .filter(|(_, minor)| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(major, _)| major.parse::<u32>().ok());
        let Some(major) = major else {
            let message = format!("Unknown path components: /{version}/{node}");
            return Some(Answer::refused(
                self.error(GraphError::oauth(2500, &message)),
                Outcome::Rejected,
            ));
        };
        (major < OLDEST_SERVED_MAJOR).then(|| {
            let message = format!(
                "(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version: v27.0. ({version} is no longer served)"
            );
            Answer::refused(
                self.error(GraphError::oauth(2635, &message)),
                Outcome::Rejected,
            )
        })
    }

    fn answer(
        &self,
        read: Read,
        version: &str,
        node: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Answer {
        if let Some(refusal) = self.refuse_credentials(query, headers) {
            return Answer::refused(refusal, Outcome::AuthFailed);
        }
        if let Some(refusal) = self.refuse_version(version, node) {
            return refusal;
        }
        // A run's rows are read with the run's own parameters.
        let (account_id, run_query) = match node.strip_prefix("act_") {
            Some(id) => (id.to_string(), None),
            None if read == Read::Rows => match self.report_run_rows(node, query) {
                Ok((account_id, merged)) => (account_id, Some(merged)),
                Err(refusal) => return *refusal,
            },
            None => return Answer::refused(self.unknown_object(node), Outcome::Rejected),
        };
        let query = run_query.as_deref().unwrap_or(query);
        let Some(account) = self.ads.find(&account_id) else {
            return Answer::refused(self.unknown_object(node), Outcome::Rejected);
        };
        let ramped = self.ramp_tick();
        if let Some(throttled) = self.throttled(account, ramped) {
            return Answer::refused(throttled, Outcome::Throttled);
        }
        let today = self.ads.today(account);
        let request = match self.parse(query, today) {
            Ok(request) => request,
            Err(response) => return Answer::refused(*response, Outcome::Rejected),
        };
        if read == Read::CreateRun {
            let mut created =
                self.create_report_run(&account_id, query, request.since, request.until);
            self.report_usage(&mut created.response, account, ramped);
            return created;
        }
        if run_query.is_none() {
            let rows = self
                .ads
                .page(account, request.since, request.until.min(today), 0, 0)
                .total;
            if let Some(refusal) = self.too_much_for_sync(rows) {
                return refusal;
            }
        }
        let page = u32::try_from(request.offset / request.limit + 1).unwrap_or(u32::MAX);
        let failure = self.switches.injected_failure(page, || {
            let unknown = GraphError::oauth(1, "An unknown error occurred")
                .subcode(99)
                .transient()
                .status(StatusCode::INTERNAL_SERVER_ERROR);
            self.error(unknown)
        });
        if let Some(failure) = failure {
            return failure;
        }
        let (mut response, rows) = self.page(version, node, account, query, &request, today);
        self.report_usage(&mut response, account, ramped);
        set_header(&mut response, "facebook-api-version", version);
        Answer::served(response, Some(page), rows)
    }

    /// One page of rows, generated from the seed; returns the response and its row count.
    fn page(
        &self,
        version: &str,
        node: &str,
        account: &Account,
        query: &[(String, String)],
        request: &InsightsQuery,
        today: NaiveDate,
    ) -> (Response, usize) {
        let ReportPage {
            total,
            start,
            end,
            rows,
        } = self.ads.page(
            account,
            request.since,
            request.until.min(today),
            request.offset,
            request.limit,
        );
        let data: Vec<Row> = rows
            .into_iter()
            .map(|row| Row::of(account, row, request.fields))
            .collect();
        let rows = data.len();
        let paging = (end > start).then(|| {
            let link = |cursor_name: &str, cursor: &str| {
                // Meta's links repeat the token in the query whether it came as a
                // parameter or a header: a client must not follow them as they are.
                let mut pairs: Vec<(&str, &str)> = query
                    .iter()
                    .filter(|(key, _)| {
                        !matches!(key.as_str(), "after" | "before" | "limit" | "access_token")
                    })
                    .map(|(key, value)| (key.as_str(), value.as_str()))
                    .collect();
                let limit = request.limit.to_string();
                pairs.push(("limit", &limit));
                pairs.push(("access_token", &self.token));
                pairs.push((cursor_name, cursor));
                format!(
                    "{}/{version}/{node}/insights?{}",
                    self.base_url,
                    encode_query(pairs)
                )
            };
            let before = encode_cursor(start);
            let after = encode_cursor(end - 1);
            Paging {
                previous: (start > 0).then(|| link("before", &before)),
                next: (end < total).then(|| link("after", &after)),
                cursors: Cursors { before, after },
            }
        });
        (json_body(StatusCode::OK, &Page { data, paging }), rows)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use super::super::test_support::{config, first_uri, walk};
    use super::super::{DEFAULT_META_ACCOUNT, DEFAULT_META_TOKEN};
    use crate::router;
    use crate::test_support::{day, get, path_of};

    #[tokio::test]
    async fn pagination_walks_every_row_exactly_once() {
        let (router, handles) = router(&config(7), "http://standins.test");
        let rows = walk(&router, first_uri("2026-11-01", "2026-11-10", 9)).await;
        assert_eq!(rows.len(), 70);
        let keys: std::collections::HashSet<(String, String)> = rows
            .iter()
            .map(|row| {
                (
                    row["ad_id"].as_str().unwrap().to_string(),
                    row["date_start"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(keys.len(), 70);
        assert_eq!(handles.meta.pages_served(), 8);
        let requests = handles.meta.requests();
        assert_eq!(requests.len(), 8);
        assert_eq!(requests[7].page, Some(8));
        assert!(requests[1].param("after").is_some());
        assert_eq!(requests[1].param("access_token"), Some(DEFAULT_META_TOKEN));

        // Numbers are strings; the three purchase types agree; totals match the truth.
        let expected = handles.meta.expected_totals(
            DEFAULT_META_ACCOUNT,
            day("2026-11-01"),
            day("2026-11-10"),
        );
        let mut spend_cents = 0;
        let mut purchases = 0;
        for row in &rows {
            assert_eq!(row["date_start"], row["date_stop"]);
            let spend = row["spend"].as_str().unwrap();
            let (units, fraction) = spend.split_once('.').unwrap_or((spend, ""));
            let fraction = format!("{fraction:0<2}");
            spend_cents += units.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap();
            assert!(row["impressions"].is_string());
            let by_type = |list: &serde_json::Value, kind: &str| {
                list.as_array().and_then(|items| {
                    items
                        .iter()
                        .find(|item| item["action_type"] == kind)
                        .map(|item| item["value"].as_str().unwrap().to_string())
                })
            };
            let canonical = by_type(&row["actions"], "omni_purchase");
            assert_eq!(canonical, by_type(&row["actions"], "purchase"));
            assert_eq!(
                canonical,
                by_type(&row["actions"], "offsite_conversion.fb_pixel_purchase")
            );
            purchases += canonical.map_or(0, |count| count.parse::<u64>().unwrap());
        }
        assert_eq!(expected.rows, 70);
        assert_eq!(spend_cents, expected.spend_cents);
        assert_eq!(purchases, expected.purchases);
        assert!(purchases > 0);
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_rows_and_another_seed_does_not() {
        let uri = first_uri("2026-11-01", "2026-11-03", 100);
        let (a, _) = router(&config(5), "http://a.test");
        let (b, _) = router(&config(5), "http://b.test");
        let mut other = config(5);
        other.seed = 7;
        let (c, _) = router(&other, "http://c.test");
        let rows_a = walk(&a, uri.clone()).await;
        assert_eq!(rows_a, walk(&b, uri.clone()).await);
        assert_ne!(rows_a, walk(&c, uri).await);
    }

    #[tokio::test]
    async fn days_after_today_have_no_rows() {
        let (router, _) = router(&config(4), "http://standins.test");
        let rows = walk(&router, first_uri("2026-11-29", "2026-12-05", 50)).await;
        assert_eq!(rows.len(), 8);
        let (status, _, body) = get(&router, &first_uri("2026-12-01", "2026-12-05", 50), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"data": []}));
    }

    #[tokio::test]
    async fn a_page_fails_once_with_a_500() {
        let (router, handles) = router(&config(4), "http://standins.test");
        handles.meta.fail_at_page(2);
        let (_, _, first_page) = get(&router, &first_uri("2026-11-01", "2026-11-04", 5), &[]).await;
        let next = path_of(first_page["paging"]["next"].as_str().unwrap());
        let (status, _, body) = get(&router, &next, &[]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], 1);
        assert_eq!(body["error"]["is_transient"], true);
        let (status, _, body) = get(&router, &next, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"].as_array().unwrap().len(), 5);
    }
}
