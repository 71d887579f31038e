//! The HTTP edge every agent's router stands behind, written once.
//!
//! * [`ApiError`] — the one shape of a refusal or failure: a status, a JSON reason, whether
//!   retrying may help, and `Retry-After` when it may. Handlers return
//!   `Result<_, ApiError>`; a database error becomes one through the single mapping in
//!   `From<DbError>` (a value the database refuses is the caller's: 400 with the server's
//!   reason; anything else may pass: 503 with `Retry-After`).
//! * [`BearerToken`] and [`SupabaseUser`] — extractors for `Authorization: Bearer …` and for
//!   a signed-in member, whose token is verified by [`crate::jwt`] against the agent's clock.
//! * [`limit_body`], [`cors`] and [`public_cors`] — the body limit (413 with a reason,
//!   whether the size is announced or not), the CORS policy of the member APIs (the app's
//!   origins only) and that of the capture routes (any website).
//! * [`edge`] — keeps one request's failure inside that request: a panic becomes a 500 and
//!   the process goes on serving (the release profile unwinds rather than aborts for this
//!   reason), and a request that cannot finish within [`REQUEST_DEADLINE`] is answered 503
//!   with `Retry-After` before API Gateway's own 29 s cut-off would answer a bare 504.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::clock::Clock;
use crate::db::DbError;
use crate::jwt::{AccessClaims, JwtError, JwtVerifier};
use crate::retry::{RetryClass, Retryable};

/// How long a request may take before it is answered 503 (API Gateway gives up at 29 s).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(25);
/// What a transient failure asks the caller to wait before retrying.
pub const RETRY_AFTER_SECS: u32 = 5;

/// A refusal or failure, as the caller receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
    retry_after: Option<u32>,
    /// Fields a platform's protocol adds to its error bodies (PostHog's and Mixpanel's
    /// `status`, a quarantine id).
    fields: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            retry_after: None,
            fields: Map::new(),
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, reason)
    }

    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason)
    }

    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }

    pub fn payload_too_large(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, reason)
    }

    pub fn too_many_requests(reason: impl Into<String>, retry_after_secs: u32) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, reason).retry_after(retry_after_secs)
    }

    /// Our failure, and it may pass: 503 with `Retry-After`.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, reason).retry_after(RETRY_AFTER_SECS)
    }

    /// Our failure to record `what`, as its sender should hear it: 503 with `Retry-After`
    /// when it may pass (the other side's own wait when it named one, within an hour), 500
    /// when it will not. Either way the failure is logged here, once.
    pub fn failed_to_record(what: &str, error: &(impl Retryable + std::fmt::Display)) -> Self {
        match error.retry_class() {
            RetryClass::Transient { retry_after } => {
                tracing::warn!(%error, what, "not recorded for now; the sender will retry");
                let seconds = retry_after.map_or(u64::from(RETRY_AFTER_SECS), |wait| {
                    wait.as_secs().clamp(1, 3_600)
                });
                Self::unavailable(format!("{what} could not be recorded now; retry later"))
                    .retry_after(u32::try_from(seconds).unwrap_or(RETRY_AFTER_SECS))
            }
            RetryClass::Permanent => {
                tracing::error!(%error, what, "not recorded");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{what} could not be recorded; retry later"),
                )
            }
        }
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a field to the JSON body beside `error` and `retryable`.
    pub fn with_field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_string(), value.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether sending the same request again may succeed: our failures and rate limits,
    /// never a refusal of the request itself.
    pub fn retryable(&self) -> bool {
        self.status.is_server_error() || self.status == StatusCode::TOO_MANY_REQUESTS
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retryable = self.retryable();
        let mut body = self.fields;
        body.insert("error".into(), Value::String(self.reason));
        body.insert("retryable".into(), Value::Bool(retryable));
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        if let Some(reason) = error.refused_reason() {
            return Self::bad_request(format!("the database refused a value: {reason}"));
        }
        tracing::error!(%error, "database failure answered 503");
        Self::unavailable("the database is unavailable; retry later")
    }
}

/// The token of `Authorization: Bearer <token>`; 401 naming what is missing otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerToken(pub String);

impl BearerToken {
    /// The token in `headers`, if they carry one.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<Self> {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(|token| Self(token.to_string()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Self::from_headers(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("Authorization: Bearer <token> is required"))
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for BearerToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

/// What an API needs to know who is calling: the project's verifier and the agent's clock.
pub trait VerifiesMembers {
    fn verifier(&self) -> &JwtVerifier;
    fn clock(&self) -> &Clock;
}

/// A signed-in Supabase user, from a valid access token; 401 naming what failed otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupabaseUser {
    pub id: Uuid,
    pub claims: AccessClaims,
}

impl SupabaseUser {
    /// Verifies `token` as of `now`.
    pub async fn verify(
        verifier: &JwtVerifier,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Self, ApiError> {
        let claims = verifier.verify(token, now).await?;
        let id = claims
            .sub
            .parse()
            .map_err(|_| ApiError::unauthorized("the access token's subject is not a user id"))?;
        Ok(Self { id, claims })
    }
}

impl<D: VerifiesMembers + Send + Sync> FromRequestParts<Arc<D>> for SupabaseUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, deps: &Arc<D>) -> Result<Self, Self::Rejection> {
        let BearerToken(token) = BearerToken::from_headers(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("a Supabase access token is required"))?;
        Self::verify(deps.verifier(), &token, deps.clock().now()).await
    }
}

/// A refused token is the caller's to fix (401); keys that could not be fetched may pass.
impl From<JwtError> for ApiError {
    fn from(error: JwtError) -> Self {
        if error.retry_class().is_transient() {
            ApiError::unavailable(error.to_string())
        } else {
            ApiError::unauthorized(error.to_string())
        }
    }
}

/// `router` refusing bodies over `max_bytes` with 413 and a reason: at once when the size is
/// announced (`Content-Length`), and when a streamed body reaches the limit.
pub fn limit_body<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    max_bytes: usize,
) -> Router<S> {
    router
        .layer(DefaultBodyLimit::max(max_bytes))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| async move {
                let announced = request
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<u64>().ok());
                if announced.is_some_and(|length| length > max_bytes as u64) {
                    return too_large(max_bytes).into_response();
                }
                let response = next.run(request).await;
                if response.status() == StatusCode::PAYLOAD_TOO_LARGE
                    && response.headers().get(header::CONTENT_TYPE)
                        != Some(&HeaderValue::from_static("application/json"))
                {
                    return too_large(max_bytes).into_response();
                }
                response
            },
        ))
}

fn too_large(max_bytes: usize) -> ApiError {
    ApiError::payload_too_large(format!("the body is larger than {max_bytes} bytes"))
}

/// Where a frontend runs locally (the Supabase CLI project's `site_url`, see
/// `supabase/config.toml`): the local stack's member APIs let these origins read them.
pub fn local_app_origins() -> Vec<String> {
    vec![
        "http://localhost:3000".into(),
        "http://127.0.0.1:3000".into(),
    ]
}

/// The CORS policy of routes a browser calls: `origins` (exact, e.g.
/// `https://app.example.com`) may send GET and POST with a bearer token and JSON; any other
/// origin gets no CORS headers, so its browser keeps the answer from it.
pub fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// The CORS policy of routes any website may call, as PostHog's and Mixpanel's ingestion
/// answer them: any origin (mirrored, since mixpanel-browser sends credentials and a browser
/// refuses `*` then), the headers the preflight asks for, GET and POST, a day's preflight
/// cache. Safe because these routes read no cookie: their only credential is a public
/// project token in the body.
pub fn public_cors() -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowHeaders, AllowOrigin};
    tower_http::cors::CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(AllowHeaders::mirror_request())
        .max_age(Duration::from_secs(86_400))
}

/// `router` with panics caught and a deadline on every request.
pub fn edge(router: Router) -> Router {
    edge_with_deadline(router, REQUEST_DEADLINE)
}

/// [`edge`] with another deadline (tests shorten it).
pub fn edge_with_deadline(router: Router, deadline: Duration) -> Router {
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| async move {
                match tokio::time::timeout(deadline, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => {
                        tracing::error!(
                            deadline_ms = deadline.as_millis() as u64,
                            "request exceeded its deadline"
                        );
                        ApiError::unavailable("the request took too long; retry later")
                            .into_response()
                    }
                }
            },
        ))
}

fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!(
        panic = %crate::telemetry::panic_message(panic.as_ref()),
        "a request handler panicked; the process goes on"
    );
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use serde_json::json;
    use tower::ServiceExt;

    async fn body_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn an_error_answers_its_status_reason_and_whether_to_retry() {
        let refused = ApiError::bad_request("workspace is required")
            .with_field("status", 0)
            .into_response();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(refused.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(
            body_of(refused).await,
            json!({ "error": "workspace is required", "retryable": false, "status": 0 })
        );

        let unavailable = ApiError::unavailable("later").into_response();
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.headers()[header::RETRY_AFTER], "5");
        assert_eq!(body_of(unavailable).await["retryable"], true);
        assert!(ApiError::too_many_requests("slow down", 60).retryable());
        assert!(!ApiError::forbidden("no").retryable());
    }

    #[tokio::test]
    async fn bearer_tokens_are_required_and_read() {
        let router: Router = Router::new().route(
            "/",
            post(|BearerToken(token): BearerToken| async move { token }),
        );
        let ask = |authorization: Option<&str>| {
            let mut request = Request::post("/");
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            router.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        let missing = ask(None).await.unwrap();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert!(
            body_of(missing).await["error"]
                .as_str()
                .unwrap()
                .contains("Bearer")
        );
        assert_eq!(
            ask(Some("Basic abc")).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ask(Some("Bearer ")).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        let ok = ask(Some("Bearer t0ken")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(ok.into_body(), 64).await.unwrap();
        assert_eq!(&bytes[..], b"t0ken");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_with_a_reason_announced_or_streamed() {
        let router: Router = limit_body(
            Router::new().route(
                "/",
                post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            ),
            16,
        );
        let announced = router
            .clone()
            .oneshot(
                Request::post("/")
                    .header(header::CONTENT_LENGTH, "17")
                    .body(Body::from(vec![b'x'; 17]))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(announced.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            body_of(announced).await["error"]
                .as_str()
                .unwrap()
                .contains("16 bytes")
        );

        let chunks = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(vec![b'x'; 10]),
            Ok(vec![b'x'; 10]),
        ]);
        let streamed = router
            .clone()
            .oneshot(Request::post("/").body(Body::from_stream(chunks)).unwrap())
            .await
            .unwrap();
        assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body_of(streamed).await["retryable"], false);

        let within = router
            .oneshot(Request::post("/").body(Body::from(vec![b'x'; 16])).unwrap())
            .await
            .unwrap();
        assert_eq!(within.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn only_listed_origins_get_cors_headers() {
        let router: Router = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .layer(cors(&["https://app.example.com".to_string()]));
        let from = |origin: &str| {
            router.clone().oneshot(
                Request::get("/")
                    .header(header::ORIGIN, origin)
                    .body(Body::empty())
                    .unwrap(),
            )
        };
        let listed = from("https://app.example.com").await.unwrap();
        assert_eq!(
            listed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        let other = from("https://evil.example").await.unwrap();
        assert!(
            other
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_a_slow_one_503() {
        let router = edge_with_deadline(
            Router::new()
                .route(
                    "/panic",
                    post(|| async {
                        if std::hint::black_box(true) {
                            panic!("boom");
                        }
                        "unreachable"
                    }),
                )
                .route(
                    "/slow",
                    post(|| async {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        "late"
                    }),
                ),
            Duration::from_millis(50),
        );
        let call = |path: &str| {
            router
                .clone()
                .oneshot(Request::post(path).body(Body::empty()).unwrap())
        };
        assert_eq!(
            call("/panic").await.unwrap().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let slow = call("/slow").await.unwrap();
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(slow.headers()[header::RETRY_AFTER], "5");
    }
}
