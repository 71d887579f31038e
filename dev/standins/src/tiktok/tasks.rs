//! Asynchronous report tasks, as TikTok serves them under `/open_api/v1.3/report/task/`:
//! `POST create/` with a JSON body holding the synchronous report's parameters (without
//! `page`/`page_size`) answers `data.task_id`; `GET check/?advertiser_id&task_id` answers
//! `data.status` (`QUEUING`, `PROCESSING`, then `SUCCESS` or `FAILED`); `GET
//! download/?advertiser_id&task_id` of a finished task answers the report as CSV: a header
//! line naming `stat_time_day`, `ad_id` and the metrics, then one line per ad and day, the
//! same values as the synchronous report (`"-"` included).
//!
//! Modelled limits: task creation is limited to 2 per second (TikTok's 2 QPS on every tier);
//! a third within one second is refused with `code 40100`. A task finishes on its
//! [`TikTokFaults::set_task_polls_to_complete`]-th check (default 2). Faults:
//! [`TikTokFaults::fail_next_tasks`] (`FAILED`). Left out: the per-minute limit, task
//! expiry, and the exact wording of a not-ready download (`code 40002` here, unverified).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::NaiveDate;
use serde_json::{Value, json};

use super::faults::{TikTokFaults, TikTokState};
use super::metrics::metric;
use crate::answer::{Answer, serve};
use crate::lock;
use crate::request_log::{Api, Outcome};

/// TikTok's task-creation limit: this many per [`CREATION_WINDOW`].
const CREATIONS_PER_WINDOW: usize = 2;
const CREATION_WINDOW: Duration = Duration::from_secs(1);
/// The largest create body read.
const MAX_BODY_BYTES: usize = 64 * 1024;

struct Task {
    advertiser_id: String,
    metrics: Vec<&'static str>,
    start: NaiveDate,
    end: NaiveDate,
    fails: bool,
    checks: u32,
}

/// The tasks of one stand-in, the faults their creation takes from, and the recent
/// creations the rate limit counts.
pub(super) struct Tasks {
    next_id: u64,
    tasks: HashMap<String, Task>,
    fail_next: u32,
    polls_to_complete: u32,
    recent_creations: VecDeque<Instant>,
    refused_creations: usize,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks {
            next_id: 1,
            tasks: HashMap::new(),
            fail_next: 0,
            polls_to_complete: 2,
            recent_creations: VecDeque::new(),
            refused_creations: 0,
        }
    }
}

impl TikTokFaults {
    /// The next `n` tasks end as `FAILED`.
    pub fn fail_next_tasks(&self, n: u32) {
        lock::unpoisoned(&self.0.tasks).fail_next = n;
    }

    /// The check on which a task reports its end (at least 1).
    pub fn set_task_polls_to_complete(&self, polls: u32) {
        lock::unpoisoned(&self.0.tasks).polls_to_complete = polls.max(1);
    }

    /// How many tasks were created.
    pub fn tasks_created(&self) -> usize {
        lock::unpoisoned(&self.0.tasks).tasks.len()
    }

    /// How many creations the 2-per-second limit refused.
    pub fn task_creations_refused(&self) -> usize {
        lock::unpoisoned(&self.0.tasks).refused_creations
    }
}

pub(crate) fn routes(faults: &TikTokFaults) -> Router {
    Router::new()
        .route(
            "/tiktok/open_api/{version}/report/task/create/",
            post(create),
        )
        .route("/tiktok/open_api/{version}/report/task/check/", get(check))
        .route(
            "/tiktok/open_api/{version}/report/task/download/",
            get(download),
        )
        .with_state(faults.clone())
}

/// The JSON body's fields as query pairs (lists and numbers as their JSON text), so the
/// synchronous report's checks apply unchanged.
fn body_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let Value::Object(fields) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    Some(
        fields
            .into_iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                (key, text)
            })
            .collect(),
    )
}

async fn create(
    State(faults): State<TikTokFaults>,
    Path(version): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_BODY_BYTES).await.unwrap_or_default();
    let request = Request::from_parts(parts, Body::empty());
    let path = format!("/tiktok/open_api/{version}/report/task/create/");
    serve(&faults.0.switches, Api::TikTok, path, &request, |_| {
        faults.0.create(&version, &body, request.headers())
    })
}

async fn check(
    State(faults): State<TikTokFaults>,
    Path(version): Path<String>,
    request: Request,
) -> Response {
    let path = format!("/tiktok/open_api/{version}/report/task/check/");
    serve(&faults.0.switches, Api::TikTok, path, &request, |query| {
        faults.0.check(&version, query, request.headers())
    })
}

async fn download(
    State(faults): State<TikTokFaults>,
    Path(version): Path<String>,
    request: Request,
) -> Response {
    let path = format!("/tiktok/open_api/{version}/report/task/download/");
    serve(&faults.0.switches, Api::TikTok, path, &request, |query| {
        faults.0.download(&version, query, request.headers())
    })
}

impl TikTokState {
    fn create(&self, version: &str, body: &[u8], headers: &HeaderMap) -> Answer {
        if let Some(refusal) = self.refuse(version, headers) {
            return refusal;
        }
        let Some(query) = body_pairs(body) else {
            return Answer::refused(
                self.error(40002, "the request body must be a JSON object"),
                Outcome::Rejected,
            );
        };
        let request = match self.parse(&query) {
            Ok(request) => request,
            Err(message) => return Answer::refused(self.error(40002, &message), Outcome::Rejected),
        };
        let mut tasks = lock::unpoisoned(&self.tasks);
        let now = Instant::now();
        while tasks
            .recent_creations
            .front()
            .is_some_and(|at| now.duration_since(*at) >= CREATION_WINDOW)
        {
            tasks.recent_creations.pop_front();
        }
        if tasks.recent_creations.len() >= CREATIONS_PER_WINDOW {
            tasks.refused_creations += 1;
            drop(tasks);
            return Answer::refused(
                self.error(
                    40100,
                    "Too many requests. Task creation reaches the QPS limit.",
                ),
                Outcome::Throttled,
            );
        }
        tasks.recent_creations.push_back(now);
        let fails = tasks.fail_next > 0;
        tasks.fail_next = tasks.fail_next.saturating_sub(1);
        let id = format!("{}", 7_300_000_000_000_000_000_u64 + tasks.next_id);
        tasks.next_id += 1;
        tasks.tasks.insert(
            id.clone(),
            Task {
                advertiser_id: request.advertiser.spec.id.clone(),
                metrics: request.metrics.clone(),
                start: request.start,
                end: request.end,
                fails,
                checks: 0,
            },
        );
        drop(tasks);
        Answer::served(
            self.envelope(StatusCode::OK, 0, "OK", json!({ "task_id": id })),
            None,
            0,
        )
    }

    /// The version and token checks every task endpoint starts with.
    fn refuse(&self, version: &str, headers: &HeaderMap) -> Option<Answer> {
        if version != "v1.3" {
            return Some(Answer::refused(
                crate::reply::json_response(
                    StatusCode::NOT_FOUND,
                    br#"{"message":"Not Found"}"#.to_vec(),
                ),
                Outcome::Rejected,
            ));
        }
        let token = headers
            .get("access-token")
            .and_then(|value| value.to_str().ok());
        if token != Some(self.token.as_str()) || self.switches.token_expired() {
            return Some(Answer::refused(
                self.error(40105, "Access token is incorrect or has been revoked."),
                Outcome::AuthFailed,
            ));
        }
        if self.switches.take_throttle() {
            return Some(Answer::refused(
                self.error(40100, "App reaches the QPS limit."),
                Outcome::Throttled,
            ));
        }
        None
    }

    /// The task a check or download names, if it is the advertiser's.
    fn named_task<'a>(
        tasks: &'a mut Tasks,
        query: &[(String, String)],
    ) -> Option<(&'a mut Task, u32)> {
        let polls = tasks.polls_to_complete;
        let advertiser = crate::query::first(query, "advertiser_id")?;
        let id = crate::query::first(query, "task_id")?;
        let task = tasks.tasks.get_mut(id)?;
        (task.advertiser_id == advertiser).then_some((task, polls))
    }

    fn check(&self, version: &str, query: &[(String, String)], headers: &HeaderMap) -> Answer {
        if let Some(refusal) = self.refuse(version, headers) {
            return refusal;
        }
        let mut tasks = lock::unpoisoned(&self.tasks);
        let Some((task, polls)) = Self::named_task(&mut tasks, query) else {
            drop(tasks);
            return Answer::refused(
                self.error(40002, "task_id: no such task for this advertiser"),
                Outcome::Rejected,
            );
        };
        task.checks = task.checks.saturating_add(1);
        let status = match (task.checks >= polls, task.fails) {
            (false, _) if task.checks <= 1 => "QUEUING",
            (false, _) => "PROCESSING",
            (true, false) => "SUCCESS",
            (true, true) => "FAILED",
        };
        let id = crate::query::first(query, "task_id").unwrap_or_default();
        let data = json!({ "task_id": id, "status": status });
        drop(tasks);
        Answer::served(self.envelope(StatusCode::OK, 0, "OK", data), None, 0)
    }

    fn download(&self, version: &str, query: &[(String, String)], headers: &HeaderMap) -> Answer {
        if let Some(refusal) = self.refuse(version, headers) {
            return refusal;
        }
        let mut tasks = lock::unpoisoned(&self.tasks);
        let finished = Self::named_task(&mut tasks, query)
            .filter(|(task, polls)| task.checks >= *polls && !task.fails)
            .map(|(task, _)| {
                (
                    task.advertiser_id.clone(),
                    task.metrics.clone(),
                    task.start,
                    task.end,
                )
            });
        drop(tasks);
        let Some((advertiser_id, metrics, start, end)) = finished else {
            return Answer::refused(
                self.error(40002, "task_id: the task has not succeeded"),
                Outcome::Rejected,
            );
        };
        let Some(advertiser) = self.ads.find(&advertiser_id) else {
            return Answer::refused(
                self.error(40002, "advertiser_id: unknown"),
                Outcome::Rejected,
            );
        };
        let last = end.min(self.ads.today(advertiser));
        let report = self.ads.page(advertiser, start, last, 0, u64::MAX);
        let mut csv = String::from("stat_time_day,ad_id");
        for name in &metrics {
            csv.push(',');
            csv.push_str(name);
        }
        csv.push('\n');
        for row in &report.rows {
            csv.push_str(&format!(
                "{} 00:00:00,{}",
                row.date.format("%Y-%m-%d"),
                row.ids.ad
            ));
            for name in &metrics {
                csv.push(',');
                csv.push_str(&csv_field(&metric(name, advertiser, row)));
            }
            csv.push('\n');
        }
        let rows = report.rows.len();
        let response = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/csv")
            .body(Body::from(csv))
            .unwrap_or_default();
        Answer::served(response, Some(1), rows)
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::super::DEFAULT_TIKTOK_ADVERTISER;
    use super::super::test_support::{TOKEN, config, walk};
    use crate::router;
    use crate::test_support::get;

    fn create_body(start: &str, end: &str) -> String {
        serde_json::json!({
            "advertiser_id": DEFAULT_TIKTOK_ADVERTISER,
            "report_type": "BASIC",
            "data_level": "AUCTION_AD",
            "dimensions": ["ad_id", "stat_time_day"],
            "metrics": ["spend", "impressions", "clicks", "conversion", "total_complete_payment_rate", "campaign_id"],
            "start_date": start,
            "end_date": end,
        })
        .to_string()
    }

    async fn create(router: &axum::Router, start: &str, end: &str) -> serde_json::Value {
        let request = Request::post("/tiktok/open_api/v1.3/report/task/create/")
            .header(TOKEN.0, TOKEN.1)
            .header("content-type", "application/json")
            .body(Body::from(create_body(start, end)))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn task_uri(endpoint: &str, id: &str) -> String {
        format!(
            "/tiktok/open_api/v1.3/report/task/{endpoint}/?advertiser_id={DEFAULT_TIKTOK_ADVERTISER}&task_id={id}"
        )
    }

    async fn download(router: &axum::Router, id: &str) -> (StatusCode, String) {
        let request = Request::get(task_uri("download", id))
            .header(TOKEN.0, TOKEN.1)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_task_is_queued_then_succeeds_and_downloads_the_synchronous_rows_as_csv() {
        let (router, handles) = router(&config(3), "http://standins.test");
        let created = create(&router, "2026-11-01", "2026-11-05").await;
        assert_eq!(created["code"], 0, "{created}");
        let id = created["data"]["task_id"].as_str().unwrap().to_string();
        let (_, early) = download(&router, &id).await;
        assert!(early.contains("40002"), "{early}");
        let status = |body: serde_json::Value| body["data"]["status"].clone();
        assert_eq!(
            status(get(&router, &task_uri("check", &id), &[TOKEN]).await.2),
            "QUEUING"
        );
        assert_eq!(
            status(get(&router, &task_uri("check", &id), &[TOKEN]).await.2),
            "SUCCESS"
        );
        let (code, csv) = download(&router, &id).await;
        assert_eq!(code, StatusCode::OK);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "stat_time_day,ad_id,spend,impressions,clicks,conversion,total_complete_payment_rate,campaign_id"
        );
        assert_eq!(lines.len(), 16);
        let synchronous = walk(&router, "2026-11-01", "2026-11-05", 100).await;
        let first: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(first[0], synchronous[0]["dimensions"]["stat_time_day"]);
        assert_eq!(first[1], synchronous[0]["dimensions"]["ad_id"]);
        assert_eq!(first[2], synchronous[0]["metrics"]["spend"]);
        assert_eq!(handles.tiktok.tasks_created(), 1);
    }

    #[tokio::test]
    async fn creation_is_limited_to_two_a_second_and_tasks_fail_when_switched() {
        let (router, handles) = router(&config(2), "http://standins.test");
        handles.tiktok.fail_next_tasks(1);
        handles.tiktok.set_task_polls_to_complete(1);
        let failed = create(&router, "2026-11-01", "2026-11-02").await;
        let id = failed["data"]["task_id"].as_str().unwrap().to_string();
        assert_eq!(
            get(&router, &task_uri("check", &id), &[TOKEN]).await.2["data"]["status"],
            "FAILED"
        );
        assert_eq!(create(&router, "2026-11-01", "2026-11-02").await["code"], 0);
        let third = create(&router, "2026-11-01", "2026-11-02").await;
        assert_eq!(third["code"], 40100, "{third}");
        assert_eq!(handles.tiktok.task_creations_refused(), 1);
        tokio::time::sleep(super::CREATION_WINDOW).await;
        assert_eq!(create(&router, "2026-11-01", "2026-11-02").await["code"], 0);
        let too_long = create(&router, "2026-10-01", "2026-11-02").await;
        assert_eq!(too_long["code"], 40002);
    }
}
