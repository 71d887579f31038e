//! Asynchronous insights ("report runs"), as Meta serves them: `POST
//! /{version}/act_{id}/insights` with the parameters of a synchronous read answers
//! `{"report_run_id": "…"}`; `GET /{version}/{report_run_id}` answers the `AdReportRun`
//! (`id`, `account_id`, `async_status`, `async_percent_completion`, `date_start`,
//! `date_stop`, `time_ref`); once it is "Job Completed", `GET
//! /{version}/{report_run_id}/insights` pages its rows exactly as a synchronous read of the
//! same parameters would.
//!
//! A run progresses one step per poll: "Job Not Started" at 0 %, "Job Running" at rising
//! percentages, then "Job Completed" at 100 % on poll [`MetaFaults::set_polls_to_complete`]
//! (default 3). Faults, decided when a run is created: [`MetaFaults::fail_next_report_runs`]
//! ("Job Failed" where it would complete), [`MetaFaults::skip_next_report_runs`] ("Job
//! Skipped"), [`MetaFaults::stall_report_runs`] (runs stay "Job Running" for ever).
//! Parameters only in the query (the form-encoded body Meta also accepts is not read); a
//! run's rows are generated when they are read, so a restatement after creation shows.
//! The refusal of an unready run's rows is an approximation (code 100).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::faults::{MetaFaults, MetaState};
use super::graph_error::GraphError;
use crate::answer::Answer;
use crate::lock;
use crate::reply::json_body;
use crate::request_log::Outcome;

/// How a run ends, decided at its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Complete,
    Fail,
    Skip,
    Stall,
}

struct ReportRun {
    account_id: String,
    /// The creation's parameters, without credentials, cursors or `limit`.
    query: Vec<(String, String)>,
    since: String,
    until: String,
    fate: Fate,
    polls: u32,
}

impl ReportRun {
    /// The status after `polls` polls of a run that completes on poll `complete_at`.
    fn status(&self, complete_at: u32) -> (&'static str, u32) {
        let complete_at = complete_at.max(1);
        if self.polls <= 1 && complete_at > 1 {
            return ("Job Not Started", 0);
        }
        if self.fate == Fate::Stall || self.polls < complete_at {
            let percent =
                (self.polls.min(complete_at.saturating_sub(1)) * 100 / complete_at).min(99);
            return ("Job Running", percent);
        }
        match self.fate {
            Fate::Complete => ("Job Completed", 100),
            Fate::Fail => ("Job Failed", 0),
            Fate::Skip | Fate::Stall => ("Job Skipped", 0),
        }
    }
}

/// The report runs of one stand-in and the faults their creation takes from.
pub(super) struct ReportRuns {
    next_id: u64,
    runs: HashMap<String, ReportRun>,
    fail_next: u32,
    skip_next: u32,
    stall: bool,
    polls_to_complete: u32,
}

impl Default for ReportRuns {
    fn default() -> Self {
        ReportRuns {
            next_id: 1,
            runs: HashMap::new(),
            fail_next: 0,
            skip_next: 0,
            stall: false,
            polls_to_complete: 3,
        }
    }
}

impl MetaFaults {
    /// The next `n` report runs end as "Job Failed".
    pub fn fail_next_report_runs(&self, n: u32) {
        lock::unpoisoned(&self.0.report_runs).fail_next = n;
    }

    /// The next `n` report runs end as "Job Skipped".
    pub fn skip_next_report_runs(&self, n: u32) {
        lock::unpoisoned(&self.0.report_runs).skip_next = n;
    }

    /// Report runs created from now on never finish (`false` lets later ones finish).
    pub fn stall_report_runs(&self, stall: bool) {
        lock::unpoisoned(&self.0.report_runs).stall = stall;
    }

    /// The poll on which a run reports its end (at least 1).
    pub fn set_polls_to_complete(&self, polls: u32) {
        lock::unpoisoned(&self.0.report_runs).polls_to_complete = polls.max(1);
    }

    /// How many report runs were created.
    pub fn report_runs_created(&self) -> usize {
        lock::unpoisoned(&self.0.report_runs).runs.len()
    }

    /// Synchronous reads of more rows than `rows` are refused with code 100, subcode
    /// 1487534 ("reduce the amount of data"); `None` accepts any size.
    pub fn set_max_sync_rows(&self, rows: Option<u64>) {
        self.0
            .max_sync_rows
            .store(rows.unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

/// A completed run's account and the parameters its rows are read with.
pub(super) type RunRows = (String, Vec<(String, String)>);

impl MetaState {
    /// The refusal of a synchronous read of `rows` rows, when that is more than allowed.
    pub(super) fn too_much_for_sync(&self, rows: u64) -> Option<Answer> {
        if rows <= self.max_sync_rows.load(Ordering::SeqCst) {
            return None;
        }
        let error = GraphError::oauth(
            100,
            "Please reduce the amount of data you're asking for, then retry your request",
        )
        .subcode(1_487_534);
        Some(Answer::refused(self.error(error), Outcome::Rejected))
    }

    /// Creates a run of the checked `query` for `account_id`.
    pub(super) fn create_report_run(
        &self,
        account_id: &str,
        query: &[(String, String)],
        since: chrono::NaiveDate,
        until: chrono::NaiveDate,
    ) -> Answer {
        let mut runs = lock::unpoisoned(&self.report_runs);
        let fate = if runs.stall {
            Fate::Stall
        } else if runs.fail_next > 0 {
            runs.fail_next -= 1;
            Fate::Fail
        } else if runs.skip_next > 0 {
            runs.skip_next -= 1;
            Fate::Skip
        } else {
            Fate::Complete
        };
        let id = format!("{}", 6_120_000_000_000_u64 + runs.next_id);
        runs.next_id += 1;
        let query = query
            .iter()
            .filter(|(key, _)| {
                !matches!(
                    key.as_str(),
                    "after" | "before" | "limit" | "access_token" | "appsecret_proof"
                )
            })
            .cloned()
            .collect();
        runs.runs.insert(
            id.clone(),
            ReportRun {
                account_id: account_id.to_string(),
                query,
                since: since.to_string(),
                until: until.to_string(),
                fate,
                polls: 0,
            },
        );
        Answer::served(
            json_body(StatusCode::OK, &json!({ "report_run_id": id })),
            None,
            0,
        )
    }

    /// `GET /{version}/{id}`: one poll of a run.
    pub(super) fn poll_report_run(
        &self,
        node: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Answer {
        if let Some(refusal) = self.refuse_credentials(query, headers) {
            return Answer::refused(refusal, Outcome::AuthFailed);
        }
        let mut runs = lock::unpoisoned(&self.report_runs);
        let complete_at = runs.polls_to_complete;
        let Some(run) = runs.runs.get_mut(node) else {
            drop(runs);
            return Answer::refused(self.unknown_object(node), Outcome::Rejected);
        };
        run.polls = run.polls.saturating_add(1);
        let (status, percent) = run.status(complete_at);
        let body = json!({
            "id": node,
            "account_id": run.account_id,
            "time_ref": 1_796_000_000_u64 + u64::from(run.polls),
            "async_status": status,
            "async_percent_completion": percent,
            "date_start": run.since,
            "date_stop": run.until,
        });
        let account_id = run.account_id.clone();
        drop(runs);
        let mut response = json_body(StatusCode::OK, &body);
        if let Some(account) = self.ads.find(&account_id) {
            let ramped = self.ramp_tick();
            if let Some(throttled) = self.throttled(account, ramped) {
                return Answer::refused(throttled, Outcome::Throttled);
            }
            self.report_usage(&mut response, account, ramped);
        }
        Answer::served(response, None, 0)
    }

    /// For `GET /{version}/{id}/insights`: the run's account and its parameters merged with
    /// this request's `limit` and cursors, when the run has completed; else the refusal.
    pub(super) fn report_run_rows(
        &self,
        node: &str,
        query: &[(String, String)],
    ) -> Result<RunRows, Box<Answer>> {
        let runs = lock::unpoisoned(&self.report_runs);
        let Some(run) = runs.runs.get(node) else {
            drop(runs);
            return Err(Box::new(Answer::refused(
                self.unknown_object(node),
                Outcome::Rejected,
            )));
        };
        if run.status(runs.polls_to_complete).0 != "Job Completed" {
            let error = GraphError::method(100, "(#100) The report run is not completed yet");
            return Err(Box::new(Answer::refused(
                self.error(error),
                Outcome::Rejected,
            )));
        }
        let mut merged = run.query.clone();
        merged.extend(
            query
                .iter()
                .filter(|(key, _)| {
                    matches!(
                        key.as_str(),
                        "after" | "before" | "limit" | "access_token" | "appsecret_proof"
                    )
                })
                .cloned(),
        );
        Ok((run.account_id.clone(), merged))
    }

    pub(super) fn unknown_object(&self, node: &str) -> axum::response::Response {
        let message = format!(
            "Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
        );
        self.error(GraphError::method(100, &message).subcode(33))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;

    use super::super::test_support::{config, first_uri, proof, walk};
    use super::super::{DEFAULT_META_ACCOUNT, DEFAULT_META_TOKEN};
    use crate::router;
    use crate::test_support::{day, get, post};

    fn status_uri(id: &str) -> String {
        format!(
            "/meta/v27.0/{id}?access_token={DEFAULT_META_TOKEN}&appsecret_proof={}",
            proof(DEFAULT_META_TOKEN)
        )
    }

    fn rows_uri(id: &str) -> String {
        format!(
            "/meta/v27.0/{id}/insights?limit=7&access_token={DEFAULT_META_TOKEN}&appsecret_proof={}",
            proof(DEFAULT_META_TOKEN)
        )
    }

    #[tokio::test]
    async fn a_run_progresses_over_polls_and_then_serves_the_same_rows_as_a_sync_read() {
        let (router, handles) = router(&config(4), "http://standins.test");
        let uri = first_uri("2026-11-01", "2026-11-10", 100);
        let (status, _, created) = post(&router, &uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let id = created["report_run_id"].as_str().unwrap().to_string();
        assert_eq!(handles.meta.report_runs_created(), 1);
        let (status, _, early) = get(&router, &rows_uri(&id), &[]).await;
        assert_eq!(
            (status, early["error"]["code"].as_u64()),
            (StatusCode::BAD_REQUEST, Some(100))
        );
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (_, headers, body) = get(&router, &status_uri(&id), &[]).await;
            assert!(headers.contains_key("x-business-use-case-usage"));
            assert_eq!(body["id"], id.as_str());
            seen.push((
                body["async_status"].as_str().unwrap().to_string(),
                body["async_percent_completion"].as_u64().unwrap(),
            ));
        }
        assert_eq!(seen[0], ("Job Not Started".into(), 0));
        assert_eq!(seen[1].0, "Job Running");
        assert_eq!(seen[2], ("Job Completed".into(), 100));
        let asynchronous = walk(&router, rows_uri(&id)).await;
        let synchronous = walk(&router, uri).await;
        assert_eq!(asynchronous.len(), 40);
        assert_eq!(asynchronous, synchronous);
        let expected = handles.meta.expected_totals(
            DEFAULT_META_ACCOUNT,
            day("2026-11-01"),
            day("2026-11-10"),
        );
        assert_eq!(expected.rows, 40);
    }

    #[tokio::test]
    async fn runs_fail_skip_or_stall_when_switched() {
        let (router, handles) = router(&config(2), "http://standins.test");
        handles.meta.set_polls_to_complete(1);
        let uri = first_uri("2026-11-01", "2026-11-02", 100);
        let ending = |id: String| {
            let router = router.clone();
            async move { get(&router, &status_uri(&id), &[]).await.2["async_status"].clone() }
        };
        let create = || async {
            post(&router, &uri, &[]).await.2["report_run_id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        handles.meta.fail_next_report_runs(1);
        assert_eq!(ending(create().await).await, "Job Failed");
        handles.meta.skip_next_report_runs(1);
        assert_eq!(ending(create().await).await, "Job Skipped");
        handles.meta.stall_report_runs(true);
        let stalled = create().await;
        for _ in 0..5 {
            assert_eq!(ending(stalled.clone()).await, "Job Running");
        }
        handles.meta.stall_report_runs(false);
        assert_eq!(ending(create().await).await, "Job Completed");
        let (_, _, unknown) = get(&router, &status_uri("999"), &[]).await;
        assert_eq!(unknown["error"]["error_subcode"], 33);
    }

    #[tokio::test]
    async fn a_large_sync_read_is_refused_with_reduce_the_data_and_expired_versions_are_refused() {
        let (router, handles) = router(&config(4), "http://standins.test");
        handles.meta.set_max_sync_rows(Some(10));
        let (status, _, body) =
            get(&router, &first_uri("2026-11-01", "2026-11-10", 100), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            (
                body["error"]["code"].as_u64(),
                body["error"]["error_subcode"].as_u64()
            ),
            (Some(100), Some(1_487_534))
        );
        let (status, _, _) = get(&router, &first_uri("2026-11-01", "2026-11-02", 100), &[]).await;
        assert_eq!(status, StatusCode::OK, "8 rows are within the limit");
        let (status, _, _) = post(&router, &first_uri("2026-11-01", "2026-11-10", 100), &[]).await;
        assert_eq!(status, StatusCode::OK, "a report run may be large");

        for (version, code) in [("v24.0", 2635), ("v21.0", 2635), ("x1", 2500)] {
            let uri = first_uri("2026-11-01", "2026-11-02", 10).replace("v27.0", version);
            let (status, _, body) = get(&router, &uri, &[]).await;
            assert_eq!(
                (status, body["error"]["code"].as_u64()),
                (StatusCode::BAD_REQUEST, Some(code)),
                "{version}"
            );
        }
        for served in ["v25.0", "v26.0"] {
            let uri = first_uri("2026-11-01", "2026-11-02", 10).replace("v27.0", served);
            assert_eq!(get(&router, &uri, &[]).await.0, StatusCode::OK, "{served}");
        }
        let retired = first_uri("2026-11-01", "2026-11-02", 10)
            + "&action_attribution_windows=%5B%227d_view%22%5D";
        assert_eq!(get(&router, &retired, &[]).await.2["error"]["code"], 100);
        let served = first_uri("2026-11-01", "2026-11-02", 10)
            + "&action_attribution_windows=%5B%227d_click%22%2C%221d_view%22%5D";
        assert_eq!(get(&router, &served, &[]).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn ramped_usage_rises_per_call_throttles_past_100_and_falls_after_a_pause() {
        let (router, handles) = router(&config(2), "http://standins.test");
        handles.meta.set_usage_pct(0);
        handles.meta.ramp_usage(40, Duration::from_millis(50));
        let uri = first_uri("2026-11-01", "2026-11-02", 10);
        let usage = |headers: &axum::http::HeaderMap| -> serde_json::Value {
            serde_json::from_str::<serde_json::Value>(
                headers["x-business-use-case-usage"].to_str().unwrap(),
            )
            .unwrap()[DEFAULT_META_ACCOUNT][0]["call_count"]
                .clone()
        };
        let (_, headers, _) = get(&router, &uri, &[]).await;
        assert_eq!(usage(&headers), 40);
        let (_, headers, _) = get(&router, &uri, &[]).await;
        assert_eq!(usage(&headers), 80);
        let (status, _, body) = get(&router, &uri, &[]).await;
        assert_eq!(
            (status, body["error"]["code"].as_u64()),
            (StatusCode::BAD_REQUEST, Some(17))
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        let (status, headers, _) = get(&router, &uri, &[]).await;
        assert_eq!(
            (status, usage(&headers)),
            (StatusCode::OK, serde_json::json!(40))
        );
    }
}
