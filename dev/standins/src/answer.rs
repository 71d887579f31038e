//! One request's way through a stand-in, the same on every platform: the echo fault
//! answers before anything else (as a careless proxy in front of the API would), the
//! platform's endpoint turns the decoded query into an [`Answer`], and the answer is
//! logged before it is sent.

use axum::extract::Request;
use axum::response::Response;

use crate::faults::Switches;
use crate::query::parse_query;
use crate::request_log::{Api, LoggedRequest, Outcome};

/// What a stand-in decided about one request: the response, and what the request log
/// says about it.
pub(crate) struct Answer {
    pub(crate) response: Response,
    pub(crate) outcome: Outcome,
    /// The 1-based page asked for, once the request got far enough to say.
    pub(crate) page: Option<u32>,
    pub(crate) rows: usize,
}

impl Answer {
    /// Turned away before a page was reached (token, throttling, parameters).
    pub(crate) fn refused(response: Response, outcome: Outcome) -> Self {
        Answer {
            response,
            outcome,
            page: None,
            rows: 0,
        }
    }

    /// Data served: `rows` rows, of `page` when the endpoint pages.
    pub(crate) fn served(response: Response, page: Option<u32>, rows: usize) -> Self {
        Answer {
            response,
            outcome: Outcome::Ok,
            page,
            rows,
        }
    }
}

/// Serves one request: the echo when one is switched on, else what `endpoint` answers to
/// the decoded query, logged under `path`.
pub(crate) fn serve(
    switches: &Switches,
    api: Api,
    path: String,
    request: &Request,
    endpoint: impl FnOnce(&[(String, String)]) -> Answer,
) -> Response {
    if let Some(echo) = switches.take_echo(api, request.uri(), request.headers()) {
        return echo;
    }
    let query = parse_query(request.uri().query());
    let answer = endpoint(&query);
    switches.record(LoggedRequest {
        api,
        path,
        query,
        page: answer.page,
        outcome: answer.outcome,
        rows: answer.rows,
    });
    answer.response
}
