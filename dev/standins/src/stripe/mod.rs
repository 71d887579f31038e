//! A stand-in for Stripe's API, for the billing agent's backfill: the nine list endpoints it
//! pages (`GET /v1/customers`, `/v1/products`, `/v1/prices`, `/v1/subscriptions`,
//! `/v1/invoices`, `/v1/charges`, `/v1/refunds`, `/v1/payment_intents`, `/v1/disputes`) over
//! one account, on a server of its own (`127.0.0.1:0`, stopped on drop).
//!
//! The wire is Stripe's: `Authorization: Bearer sk_…` (else 401), `limit` (1–100, default 10)
//! and `starting_after` (an id of that list, else 400 `resource_missing`), newest first,
//! answered `{"object":"list","data":[…],"has_more":…,"url":"/v1/…"}` with `Request-Id`,
//! `Stripe-Version` and a `Date` header carrying the account's clock (the moment the read is
//! "as of"); errors are `{"error":{"type","code","message","param"}}`. Subscriptions are
//! listed without canceled ones unless `status=all`, as Stripe does; deleted customers,
//! products and prices are never listed.
//!
//! The account ([`StripeAccount`]) is either seeded ([`StripeAccount::seeded`]: N objects,
//! a pure function of the seed) or given object by object ([`StripeAccount::from_objects`]),
//! which is how a test serves the state the webhook generator (`tests/src/stripe_events.rs`)
//! says the account had at some moment and then replays that generator's later events as
//! webhooks: one source for both, so they agree. Objects are serialised once, when the
//! account is built, so a page costs the stand-in a concatenation.
//!
//! Faults ([`StripeFaults`]) are switched at run time: throttle the next N requests (429
//! `rate_limit` with `Stripe-Should-Retry: true` and `Retry-After`), fail the K-th next
//! request once (500 `api_error`, `Stripe-Should-Retry: true`), or refuse every request after
//! the next K pages (500 with `Stripe-Should-Retry: false`) until cleared. Every request is
//! logged (path, `starting_after`, status).
//!
//! Approximations: error messages are close to Stripe's but not verified word for word;
//! `ending_before`, search, expansion beyond `data.items` (always included, as Stripe does)
//! and every write endpoint are left out.

mod account;

pub use account::{Resource, StripeAccount};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::lock::unpoisoned as lock;
use crate::query::parse_query;
use crate::reply::{json_body, json_response, set_header};

/// The API version the stand-in says it speaks (`Stripe-Version`).
pub const API_VERSION: &str = "2025-03-31.basil";

/// One request the stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeRequest {
    pub path: String,
    pub starting_after: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct FaultState {
    /// Requests still to answer 429, and the `Retry-After` they carry.
    throttle: u32,
    retry_after_secs: u32,
    /// Counts down to the request that fails once with a retryable 500.
    fail_in: Option<u32>,
    /// Pages still served before every request is refused (`Stripe-Should-Retry: false`).
    refuse_after: Option<u32>,
    log: Vec<StripeRequest>,
}

/// Run-time switches and the request log of one stand-in.
#[derive(Clone, Default)]
pub struct StripeFaults(Arc<Mutex<FaultState>>);

impl StripeFaults {
    /// The next `requests` requests answer 429, asking to retry after `retry_after_secs`.
    pub fn throttle(&self, requests: u32, retry_after_secs: u32) {
        let mut state = lock(&self.0);
        state.throttle = requests;
        state.retry_after_secs = retry_after_secs;
    }

    /// The `nth` next request (1 = the next one) fails once with a retryable 500.
    pub fn fail_once(&self, nth: u32) {
        lock(&self.0).fail_in = Some(nth.max(1));
    }

    /// After `pages` more pages, every request is refused with `Stripe-Should-Retry: false`
    /// until [`StripeFaults::clear`].
    pub fn refuse_after(&self, pages: u32) {
        lock(&self.0).refuse_after = Some(pages);
    }

    /// Every fault off (the log stays).
    pub fn clear(&self) {
        let mut state = lock(&self.0);
        state.throttle = 0;
        state.fail_in = None;
        state.refuse_after = None;
    }

    pub fn requests(&self) -> Vec<StripeRequest> {
        lock(&self.0).log.clone()
    }

    /// The fault this request meets, if any (and the switches move on).
    fn fault(&self) -> Option<Response> {
        let mut state = lock(&self.0);
        if state.refuse_after == Some(0) {
            return Some(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "The request could not be completed (stand-in: refused until cleared).",
                None,
                Some("false"),
            ));
        }
        if state.throttle > 0 {
            state.throttle -= 1;
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_request_error",
                Some("rate_limit"),
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                None,
                Some("true"),
            );
            set_header(
                &mut response,
                "retry-after",
                &state.retry_after_secs.to_string(),
            );
            return Some(response);
        }
        if let Some(left) = state.fail_in {
            if left <= 1 {
                state.fail_in = None;
                return Some(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    None,
                    "An unknown error occurred (stand-in: failed once).",
                    None,
                    Some("true"),
                ));
            }
            state.fail_in = Some(left - 1);
        }
        None
    }

    /// A page was served: counts down to the refusal.
    fn served_page(&self) {
        let mut state = lock(&self.0);
        if let Some(left) = state.refuse_after.as_mut() {
            *left = left.saturating_sub(1);
        }
    }

    fn log(&self, request: StripeRequest) {
        lock(&self.0).log.push(request);
    }
}

/// Stripe's error envelope.
fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
    should_retry: Option<&str>,
) -> Response {
    let mut body = json!({"type": kind, "message": message});
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    if let Some(param) = param {
        body["param"] = json!(param);
    }
    let mut response = json_body(status, &json!({ "error": body }));
    if let Some(should_retry) = should_retry {
        set_header(&mut response, "stripe-should-retry", should_retry);
    }
    response
}

#[derive(Clone)]
struct ApiState {
    account: Arc<StripeAccount>,
    api_key: Arc<str>,
    faults: StripeFaults,
}

/// The list routes over `account`, for `api_key`.
pub fn router(account: Arc<StripeAccount>, api_key: &str, faults: StripeFaults) -> Router {
    Router::new()
        .route("/v1/{resource}", get(list))
        .with_state(ApiState {
            account,
            api_key: api_key.into(),
            faults,
        })
}

async fn list(
    State(state): State<ApiState>,
    Path(resource): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = parse_query(query.as_deref());
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let starting_after = param("starting_after");
    let response = answer(&state, &resource, &headers, &param);
    state.faults.log(StripeRequest {
        path: format!("/v1/{resource}"),
        starting_after,
        status: response.status().as_u16(),
    });
    response
}

fn answer(
    state: &ApiState,
    resource: &str,
    headers: &HeaderMap,
    param: &dyn Fn(&str) -> Option<String>,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                None,
                None,
            );
        }
        Some(key) if key != &*state.api_key => {
            let tail: String = key
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                &format!("Invalid API Key provided: sk_****{tail}"),
                None,
                None,
            );
        }
        Some(_) => {}
    }
    let Some(resource) = Resource::from_path(resource) else {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            &format!("Unrecognized request URL (GET: /v1/{resource})."),
            None,
            None,
        );
    };
    if let Some(fault) = state.faults.fault() {
        return fault;
    }
    let limit = match param("limit").map(|limit| limit.parse::<usize>()) {
        None => 10,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid_integer"),
                "Invalid integer: limit must be between 1 and 100.",
                Some("limit"),
                Some("false"),
            );
        }
    };
    let include_canceled = param("status").as_deref() == Some("all");
    let page = match state.account.page(
        resource,
        param("starting_after").as_deref(),
        limit,
        include_canceled,
    ) {
        Ok(page) => page,
        Err(missing) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such {}: '{missing}'", resource.object()),
                Some("starting_after"),
                Some("false"),
            );
        }
    };
    state.faults.served_page();
    let mut body = String::with_capacity(page.bytes + 96);
    body.push_str(r#"{"object":"list","data":["#);
    for (index, object) in page.objects.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(object);
    }
    body.push_str(&format!(
        r#"],"has_more":{},"url":"/v1/{}"}}"#,
        page.has_more,
        resource.path()
    ));
    let mut response = json_response(StatusCode::OK, body.into_bytes());
    set_header(&mut response, "stripe-version", API_VERSION);
    set_header(
        &mut response,
        "request-id",
        &format!("req_standin{:08}", state.faults.requests().len()),
    );
    if let Some(now) = chrono::DateTime::from_timestamp(state.account.now(), 0) {
        set_header(
            &mut response,
            "date",
            &now.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
    }
    response
}

/// A running Stripe stand-in; dropping it stops the server.
pub struct StripeStandin {
    addr: SocketAddr,
    api_key: String,
    account: Arc<StripeAccount>,
    faults: StripeFaults,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl StripeStandin {
    /// Binds `127.0.0.1:0` and serves `account` to requests bearing `api_key`.
    pub async fn start(account: StripeAccount, api_key: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("bind the Stripe stand-in to 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let account = Arc::new(account);
        let faults = StripeFaults::default();
        let router = router(account.clone(), api_key, faults.clone());
        let (shutdown, task) = crate::server::serve(listener, router, "the Stripe stand-in");
        Ok(Self {
            addr,
            api_key: api_key.to_string(),
            account,
            faults,
            shutdown,
            task: Some(task),
        })
    }

    /// Stands for `https://api.stripe.com` (what `STRIPE_API_BASE_URL` takes).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    pub fn account(&self) -> &StripeAccount {
        &self.account
    }

    pub fn faults(&self) -> &StripeFaults {
        &self.faults
    }
}

impl Drop for StripeStandin {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt;

    const KEY: &str = "sk_test_standin";

    async fn get(router: &Router, uri: &str, key: Option<&str>) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::get(uri);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    fn api(objects: usize) -> (Router, StripeFaults) {
        let faults = StripeFaults::default();
        let account = Arc::new(StripeAccount::seeded(7, objects, 1_765_000_000));
        (router(account, KEY, faults.clone()), faults)
    }

    #[tokio::test]
    async fn pages_every_object_once_newest_first() {
        let (router, _) = api(2_000);
        for resource in Resource::ALL {
            let mut seen = std::collections::HashSet::new();
            let mut after: Option<String> = None;
            let mut last_created = i64::MAX;
            loop {
                let uri = match &after {
                    Some(id) => format!(
                        "/v1/{}?limit=100&status=all&starting_after={id}",
                        resource.path()
                    ),
                    None => format!("/v1/{}?limit=100&status=all", resource.path()),
                };
                let (status, headers, page) = get(&router, &uri, Some(KEY)).await;
                assert_eq!(status, StatusCode::OK, "{page}");
                assert!(headers.get("date").is_some());
                assert_eq!(page["object"], "list");
                let data = page["data"].as_array().unwrap();
                for object in data {
                    assert_eq!(object["object"], resource.object());
                    let created = object["created"].as_i64().unwrap();
                    assert!(created <= last_created);
                    last_created = created;
                    assert!(seen.insert(object["id"].as_str().unwrap().to_string()));
                }
                if !page["has_more"].as_bool().unwrap() {
                    break;
                }
                after = data.last().map(|o| o["id"].as_str().unwrap().to_string());
            }
            assert_eq!(
                seen.len(),
                StripeAccount::seeded(7, 2_000, 0).count(resource, true),
                "{resource:?}"
            );
        }
    }

    #[tokio::test]
    async fn refuses_bad_keys_limits_and_cursors_in_stripes_shape() {
        let (router, _) = api(100);
        let (status, _, body) = get(&router, "/v1/customers", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let (status, _, body) = get(&router, "/v1/customers", Some("sk_test_wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!body.to_string().contains("sk_test_wrong"));
        let (status, _, body) = get(&router, "/v1/customers?limit=101", Some(KEY)).await;
        assert_eq!(
            (status, &body["error"]["param"]),
            (StatusCode::BAD_REQUEST, &json!("limit"))
        );
        let (status, _, body) =
            get(&router, "/v1/customers?starting_after=cus_nope", Some(KEY)).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::BAD_REQUEST, &json!("resource_missing"))
        );
    }

    #[tokio::test]
    async fn canceled_subscriptions_need_status_all() {
        let (router, _) = api(2_000);
        let account = StripeAccount::seeded(7, 2_000, 0);
        let all = account.count(Resource::Subscriptions, true);
        let live = account.count(Resource::Subscriptions, false);
        assert!(live < all, "the seeded account has canceled subscriptions");
        let (_, _, page) = get(&router, "/v1/subscriptions?limit=100", Some(KEY)).await;
        assert!(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["status"] != "canceled")
        );
    }

    #[tokio::test]
    async fn faults_throttle_fail_once_and_refuse() {
        let (router, faults) = api(300);
        faults.throttle(2, 3);
        for _ in 0..2 {
            let response = router
                .clone()
                .oneshot(
                    Request::get("/v1/customers")
                        .header("authorization", format!("Bearer {KEY}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(response.headers()["stripe-should-retry"], "true");
            assert_eq!(response.headers()["retry-after"], "3");
        }
        assert_eq!(
            get(&router, "/v1/customers", Some(KEY)).await.0,
            StatusCode::OK
        );
        faults.fail_once(2);
        assert_eq!(
            get(&router, "/v1/customers", Some(KEY)).await.0,
            StatusCode::OK
        );
        let (status, headers, _) = get(&router, "/v1/customers", Some(KEY)).await;
        assert_eq!(
            (status, &headers["stripe-should-retry"]),
            (StatusCode::INTERNAL_SERVER_ERROR, &"true".parse().unwrap())
        );
        assert_eq!(
            get(&router, "/v1/customers", Some(KEY)).await.0,
            StatusCode::OK
        );
        faults.refuse_after(1);
        assert_eq!(
            get(&router, "/v1/customers", Some(KEY)).await.0,
            StatusCode::OK
        );
        let (status, headers, _) = get(&router, "/v1/customers", Some(KEY)).await;
        assert_eq!(
            (status, &headers["stripe-should-retry"]),
            (StatusCode::INTERNAL_SERVER_ERROR, &"false".parse().unwrap())
        );
        faults.clear();
        assert_eq!(
            get(&router, "/v1/customers", Some(KEY)).await.0,
            StatusCode::OK
        );
        assert_eq!(faults.requests().len(), 9);
    }
}
