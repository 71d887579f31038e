//! The faults every stand-in can inject, switched at run time by tests: throttling, HTTP
//! 500s (the next N requests, or one page once), an expired token, and an echo of the
//! request's credentials. [`Switches`] holds them together with the stand-in's
//! [`RequestLog`]; each platform's fault handle dereferences to its own `Switches`, and
//! the platform asks it at each step of an answer whether to fail there instead.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;

use crate::answer::Answer;
use crate::query::parse_query;
use crate::request_log::{Api, LoggedRequest, Outcome, RequestLog};

/// Declares a platform's fault handle: a cheap clone of the platform's shared state that
/// dereferences to the state's `switches`, so every handle offers the shared faults and
/// the request log besides its own knobs. The state is open to the platform's module (the
/// parent of where the handle is declared), which serves and configures it.
macro_rules! fault_handle {
    ($(#[$attr:meta])* $handle:ident($state:ty)) => {
        $(#[$attr])*
        #[derive(Clone)]
        pub struct $handle(pub(super) std::sync::Arc<$state>);

        impl std::ops::Deref for $handle {
            type Target = $crate::faults::Switches;

            fn deref(&self) -> &$crate::faults::Switches {
                &self.0.switches
            }
        }
    };
}
pub(crate) use fault_handle;

/// The switches every stand-in has. Each fault handle dereferences to its own `Switches`.
#[derive(Debug, Default)]
pub struct Switches {
    throttle: AtomicU32,
    fail: AtomicU32,
    fail_page: AtomicU32,
    token_expired: AtomicBool,
    echo: AtomicU32,
    log: RequestLog,
}

impl Switches {
    /// Answers the next `n` requests (that pass authentication) with the platform's
    /// throttling signal. Replaces any count still pending; `0` switches it off.
    pub fn throttle_next(&self, n: u32) {
        self.throttle.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` valid requests with HTTP 500.
    pub fn fail_next(&self, n: u32) {
        self.fail.store(n, Ordering::SeqCst);
    }

    /// Answers the first request for page `page` (1-based) with HTTP 500, once; `0` clears.
    pub fn fail_at_page(&self, page: u32) {
        self.fail_page.store(page, Ordering::SeqCst);
    }

    /// From now on the configured token is rejected as expired (Meta 190/463, TikTok
    /// 40105, Shopify 401), until [`Switches::renew_token`].
    pub fn expire_token(&self) {
        self.token_expired.store(true, Ordering::SeqCst);
    }

    pub fn renew_token(&self) {
        self.token_expired.store(false, Ordering::SeqCst);
    }

    pub fn token_expired(&self) -> bool {
        self.token_expired.load(Ordering::SeqCst)
    }

    /// Answers the next `n` requests with HTTP 400 and a plain-text body that repeats the
    /// request — its URL and every credential header — the way a careless proxy or a
    /// verbose error page does. For proving that no error a client stores quotes them.
    pub fn echo_next(&self, n: u32) {
        self.echo.store(n, Ordering::SeqCst);
    }

    /// The echo answer, when [`Switches::echo_next`] asks for one; the request is logged as
    /// rejected.
    pub(crate) fn take_echo(&self, api: Api, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
        if !take_one(&self.echo) {
            return None;
        }
        let mut text = format!("could not serve GET {uri}\n");
        for name in ["authorization", "access-token", "x-shopify-access-token"] {
            for value in headers.get_all(name) {
                text.push_str(&format!(
                    "{name}: {}\n",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
        }
        self.record(LoggedRequest {
            api,
            path: uri.path().to_string(),
            query: parse_query(uri.query()),
            page: None,
            outcome: Outcome::Rejected,
            rows: 0,
        });
        let mut response = Response::new(Body::from(text));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Some(response)
    }

    /// Every request received since start (or since [`Switches::clear_requests`]), oldest
    /// first (at most the last 20,000).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.entries()
    }

    /// How many requests were received in total (not capped).
    pub fn request_count(&self) -> u64 {
        self.log.received()
    }

    /// How many logged requests were answered with data.
    pub fn pages_served(&self) -> usize {
        self.log.count(Outcome::Ok)
    }

    /// How many logged requests ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.log.count(outcome)
    }

    pub fn clear_requests(&self) {
        self.log.clear();
    }

    pub(crate) fn take_throttle(&self) -> bool {
        take_one(&self.throttle)
    }

    /// Whether this request (for `page`) must fail with HTTP 500.
    pub(crate) fn take_failure(&self, page: u32) -> bool {
        take_one(&self.fail)
            || (page != 0
                && self
                    .fail_page
                    .compare_exchange(page, 0, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok())
    }

    /// The answer of a request (for `page`, `0` when it has none) that must fail with
    /// HTTP 500; `response` says so the platform's way.
    pub(crate) fn injected_failure(
        &self,
        page: u32,
        response: impl FnOnce() -> Response,
    ) -> Option<Answer> {
        self.take_failure(page).then(|| Answer {
            response: response(),
            outcome: Outcome::ServerError,
            page: Some(page),
            rows: 0,
        })
    }

    pub(crate) fn record(&self, entry: LoggedRequest) {
        self.log.record(entry);
    }
}

/// Counts a switch down by one; whether it was still on.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_count_down_and_fail_a_page_once() {
        let switches = Switches::default();
        switches.throttle_next(2);
        assert!(switches.take_throttle());
        assert!(switches.take_throttle());
        assert!(!switches.take_throttle());
        switches.fail_at_page(3);
        assert!(!switches.take_failure(2));
        assert!(switches.take_failure(3));
        assert!(!switches.take_failure(3));
    }

    #[tokio::test]
    async fn an_echo_repeats_the_request_and_its_credentials_once() {
        let switches = Switches::default();
        let uri: Uri = "/meta/v21.0/act_1/insights?appsecret_proof=p"
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer secret-token".parse().unwrap());
        assert!(switches.take_echo(Api::Meta, &uri, &headers).is_none());
        switches.echo_next(1);
        let response = switches.take_echo(Api::Meta, &uri, &headers).unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.contains("appsecret_proof=p") && body.contains("Bearer secret-token"),
            "{body}"
        );
        assert!(switches.take_echo(Api::Meta, &uri, &headers).is_none());
        assert_eq!(switches.count(Outcome::Rejected), 1);
    }
}
