//! Reading Stripe's list API: one page at a time, as Stripe's contract says, for the backfill.
//!
//! A page is `GET {base}/v1/{resource}?limit=…&starting_after=…` with `Authorization: Bearer
//! sk_…`, answered `{"object":"list","data":[…],"has_more":…,"url":…}`. With it come the
//! moment the page was read (the `Date` header, else our clock) and the API version it was
//! rendered at (`Stripe-Version`).
//!
//! Failures follow Stripe's own advice: `Stripe-Should-Retry: true|false`, when present,
//! decides; otherwise 429 (rate limited) and 5xx may pass and other statuses will not.
//! `Retry-After` is waited for (up to a minute), else an exponential backoff. Errors carry
//! Stripe's `{"error":{"type","code","message"}}` but never the key: it travels only in the
//! header and is not logged.

use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, DATE, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use shared::retry::{RetryClass, RetryPolicy, Retryable, retry};
use shared::settings::{Env, SettingsError};

/// Stripe's API, as the production default of `STRIPE_API_BASE_URL`.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// How to reach Stripe's API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `STRIPE_API_BASE_URL`: `https://api.stripe.com`, or a stand-in locally.
    pub base_url: String,
    /// `STRIPE_API_KEY`: a secret (`sk_…`) or restricted (`rk_…`) key with read access.
    pub api_key: SecretString,
    /// Objects per page (Stripe allows 1–100).
    pub page_size: u32,
    /// Retries of one page after a transient failure.
    pub retry: RetryPolicy,
}

impl ApiConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Ok(Self::new(
            env.optional("STRIPE_API_BASE_URL")
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
            env.secret("STRIPE_API_KEY")?,
        ))
    }

    pub fn new(base_url: String, api_key: SecretString) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            page_size: 100,
            retry: RetryPolicy {
                max_retries: 8,
                first_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(30),
                max_retry_after: Duration::from_secs(60),
                jitter_seed: None,
            },
        }
    }
}

/// What went wrong reading a page.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Stripe answered an error (its `error.type`, `error.code` and `error.message`).
    #[error("Stripe answered {status} {kind}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Refused {
        status: u16,
        kind: String,
        code: Option<String>,
        message: String,
        /// `Stripe-Should-Retry`, when Stripe said.
        should_retry: Option<bool>,
        retry_after: Option<Duration>,
    },
    /// No answer (connection, timeout).
    #[error("Stripe could not be reached: {0}")]
    Transport(String),
    /// A 2xx that is not a list page.
    #[error("Stripe's answer is not a list page: {0}")]
    Malformed(String),
}

impl Retryable for ApiError {
    fn retry_class(&self) -> RetryClass {
        match self {
            ApiError::Refused {
                status,
                should_retry,
                retry_after,
                ..
            } => {
                let retryable = should_retry.unwrap_or(*status == 429 || *status >= 500);
                if retryable {
                    RetryClass::Transient {
                        retry_after: *retry_after,
                    }
                } else {
                    RetryClass::Permanent
                }
            }
            ApiError::Transport(_) => RetryClass::transient(),
            ApiError::Malformed(_) => RetryClass::Permanent,
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    pub data: Vec<Value>,
    pub has_more: bool,
    /// Unix second the page was read at: the state it shows is as of then.
    pub read_at: i64,
    /// The API version the objects are rendered at (`Stripe-Version`).
    pub api_version: Option<String>,
}

#[derive(Deserialize)]
struct ListBody {
    object: String,
    data: Vec<Value>,
    has_more: bool,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: StripeError,
}

#[derive(Deserialize, Default)]
struct StripeError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

/// A client of Stripe's list API.
#[derive(Clone)]
pub struct StripeApi {
    http: reqwest::Client,
    config: ApiConfig,
    clock: shared::clock::Clock,
}

impl StripeApi {
    pub fn new(config: ApiConfig, clock: shared::clock::Clock) -> Result<Self, ApiError> {
        // No redirects: a redirect to another host would carry the key with it.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| ApiError::Transport(error.to_string()))?;
        Ok(Self {
            http,
            config,
            clock,
        })
    }

    pub fn page_size(&self) -> u32 {
        self.config.page_size
    }

    /// One page of `/v1/{path}` after `starting_after`, with `extra` query parameters,
    /// retrying what may pass.
    pub async fn list(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        starting_after: Option<&str>,
    ) -> Result<Page, ApiError> {
        retry(self.config.retry, || {
            self.list_once(path, extra, starting_after)
        })
        .await
    }

    async fn list_once(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        starting_after: Option<&str>,
    ) -> Result<Page, ApiError> {
        let limit = self.config.page_size.clamp(1, 100).to_string();
        let mut query: Vec<(&str, &str)> = vec![("limit", &limit)];
        query.extend_from_slice(extra);
        if let Some(after) = starting_after {
            query.push(("starting_after", after));
        }
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&query)
            .finish();
        let response = self
            .http
            .get(format!("{}/v1/{path}?{query}", self.config.base_url))
            .header(
                AUTHORIZATION,
                format!("Bearer {}", self.config.api_key.expose_secret()),
            )
            .send()
            .await
            .map_err(|error| ApiError::Transport(error.without_url().to_string()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response).await?;
        if !status.is_success() {
            return Err(refusal(
                status.as_u16(),
                &headers,
                &body,
                self.clock.system_time(),
            ));
        }
        let list: ListBody = serde_json::from_slice(&body)
            .map_err(|error| ApiError::Malformed(error.to_string()))?;
        if list.object != "list" {
            return Err(ApiError::Malformed(format!(
                "`object` is {:?}, not \"list\"",
                list.object
            )));
        }
        Ok(Page {
            data: list.data,
            has_more: list.has_more,
            read_at: read_at(&headers).unwrap_or_else(|| self.clock.now().timestamp()),
            api_version: headers
                .get("stripe-version")
                .and_then(|value| value.to_str().ok())
                .map(str::to_string),
        })
    }
}

/// A page of 100 objects is a few hundred KiB; an answer this large is not one.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// The body, refused (not retried) past [`MAX_ANSWER_BYTES`] without reading further.
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| ApiError::Transport(error.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ApiError::Malformed(format!(
                "the answer is larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The second the answer was produced, from its `Date` header.
fn read_at(headers: &HeaderMap) -> Option<i64> {
    let date = headers.get(DATE)?.to_str().ok()?;
    chrono::DateTime::parse_from_rfc2822(date)
        .ok()
        .map(|date| date.timestamp())
}

fn refusal(status: u16, headers: &HeaderMap, body: &[u8], now: SystemTime) -> ApiError {
    let error = serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_default()
        .error;
    let should_retry = headers
        .get("stripe-should-retry")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| match value {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        });
    ApiError::Refused {
        status,
        kind: error.kind.unwrap_or_else(|| "unknown_error".into()),
        code: error.code,
        message: error
            .message
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into()),
        should_retry,
        retry_after: shared::retry::retry_after(headers, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn should_retry_decides_over_the_status() {
        let body = br#"{"error":{"type":"api_error","message":"boom"}}"#;
        let now = SystemTime::UNIX_EPOCH;
        let no = refusal(
            500,
            &headers(&[("stripe-should-retry", "false")]),
            body,
            now,
        );
        assert_eq!(no.retry_class(), RetryClass::Permanent);
        let yes = refusal(
            400,
            &headers(&[("stripe-should-retry", "true"), ("retry-after", "2")]),
            body,
            now,
        );
        assert_eq!(
            yes.retry_class(),
            RetryClass::Transient {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(
            refusal(429, &HeaderMap::new(), b"", now)
                .retry_class()
                .is_transient()
        );
        assert!(
            refusal(503, &HeaderMap::new(), b"", now)
                .retry_class()
                .is_transient()
        );
        assert_eq!(
            refusal(401, &HeaderMap::new(), body, now).retry_class(),
            RetryClass::Permanent
        );
    }

    #[test]
    fn a_refusal_names_stripes_type_code_and_message() {
        let body = br#"{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such customer: 'cus_x'"}}"#;
        let error = refusal(400, &HeaderMap::new(), body, SystemTime::UNIX_EPOCH);
        assert_eq!(
            error.to_string(),
            "Stripe answered 400 invalid_request_error (resource_missing): No such customer: 'cus_x'"
        );
    }

    #[test]
    fn the_read_time_is_the_answers_date() {
        let map = headers(&[("date", "Tue, 08 Dec 2026 00:40:33 GMT")]);
        assert_eq!(read_at(&map), Some(1_796_690_433));
        assert_eq!(read_at(&headers(&[("date", "yesterday")])), None);
    }
}
