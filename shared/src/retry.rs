//! Bounded retries for transient failures.
//!
//! A failure is retried only when its type says it is transient ([`Retryable`]): HTTP 429
//! and 5xx, Postgres serialization failures, deadlocks and lost connections. Everything else
//! (a bad signature, a malformed payload, a revoked token) fails at once, so permanent errors
//! are reported instead of hammering the other side. At most [`RetryPolicy::max_retries`]
//! retries, exponential delays with jitter so that many Lambdas throttled together do not
//! come back together, and a server's `Retry-After` wins over our own delay.
//!
//! Sleeping goes through a [`Sleeper`] so tests can record the delays instead of waiting.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable as _};
use http::HeaderMap;

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    Permanent,
    /// Worth retrying; `retry_after` is the other side's own instruction, when it gave one.
    Transient {
        retry_after: Option<Duration>,
    },
}

impl RetryClass {
    pub const fn transient() -> Self {
        Self::Transient { retry_after: None }
    }
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// Implemented by every error type that crosses an I/O boundary.
pub trait Retryable {
    fn retry_class(&self) -> RetryClass;
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: usize,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned so the
    /// caller (usually a queue redelivery) can come back later without holding a Lambda.
    pub max_retry_after: Duration,
    /// Fixes the jitter sequence; `None` in production.
    pub jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            jitter_seed: None,
        }
    }
}

/// Something that waits. Production uses tokio's timer; tests record the requested delays.
pub trait Sleeper: Clone + Send + Sync + 'static {
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(delay))
    }
}

/// Runs `operation` until it succeeds, fails permanently, or the retries are spent.
pub async fn retry<T, E, F, Fut>(policy: RetryPolicy, operation: F) -> Result<T, E>
where
    E: Retryable + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_with_sleeper(policy, TokioSleeper, operation).await
}

pub async fn retry_with_sleeper<T, E, F, Fut, S>(
    policy: RetryPolicy,
    sleeper: S,
    operation: F,
) -> Result<T, E>
where
    E: Retryable + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    S: Sleeper,
{
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(policy.first_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_jitter();
    if let Some(seed) = policy.jitter_seed {
        backoff = backoff.with_jitter_seed(seed);
    }
    operation
        .retry(backoff)
        .sleep(move |delay| sleeper.sleep(delay))
        .when(|error: &E| error.retry_class().is_transient())
        .adjust(
            move |error: &E, planned| match (error.retry_class(), planned) {
                (_, None) => None,
                (
                    RetryClass::Transient {
                        retry_after: Some(wait),
                    },
                    Some(_),
                ) => (wait <= policy.max_retry_after).then_some(wait),
                (_, planned) => planned,
            },
        )
        .notify(|error: &E, delay| tracing::warn!(%error, ?delay, "transient failure, retrying"))
        .await
}

/// Classifies an HTTP answer: 429 and 5xx are transient (with `Retry-After` if present),
/// other statuses are not failures of the transport and are left to the caller.
pub fn classify_http(status: http::StatusCode, headers: &HeaderMap, now: SystemTime) -> RetryClass {
    if status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        RetryClass::Transient {
            retry_after: retry_after(headers, now),
        }
    } else {
        RetryClass::Permanent
    }
}

/// Reads `Retry-After` in either of its forms: delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(date.with_timezone(&chrono::Utc));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Debug)]
    struct FakeError(RetryClass);
    impl std::fmt::Display for FakeError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl Retryable for FakeError {
        fn retry_class(&self) -> RetryClass {
            self.0
        }
    }

    #[derive(Clone, Default)]
    struct RecordingSleeper(Arc<Mutex<Vec<Duration>>>);
    impl Sleeper for RecordingSleeper {
        fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            self.0.lock().unwrap().push(delay);
            Box::pin(std::future::ready(()))
        }
    }

    fn seeded() -> RetryPolicy {
        RetryPolicy {
            jitter_seed: Some(7),
            ..RetryPolicy::default()
        }
    }

    async fn run(
        outcomes: Vec<Result<u32, FakeError>>,
    ) -> (Result<u32, FakeError>, usize, Vec<Duration>) {
        let sleeper = RecordingSleeper::default();
        let calls = Arc::new(Mutex::new(outcomes.into_iter()));
        let attempts = Arc::new(Mutex::new(0));
        let result = retry_with_sleeper(seeded(), sleeper.clone(), || {
            *attempts.lock().unwrap() += 1;
            let next = calls
                .lock()
                .unwrap()
                .next()
                .expect("no more scripted outcomes");
            async move { next }
        })
        .await;
        let attempts = *attempts.lock().unwrap();
        let delays = sleeper.0.lock().unwrap().clone();
        (result, attempts, delays)
    }

    fn transient() -> Result<u32, FakeError> {
        Err(FakeError(RetryClass::transient()))
    }

    #[tokio::test]
    async fn transient_failures_are_retried_three_times_then_given_up() {
        let (result, attempts, delays) =
            run(vec![transient(), transient(), transient(), transient()]).await;
        assert!(result.is_err());
        assert_eq!(attempts, 4, "one call plus three retries");
        assert_eq!(delays.len(), 3);
        // Exponential with jitter in [d, 2d): 200ms, 400ms, 800ms before jitter.
        for (delay, base) in delays.iter().zip([200u64, 400, 800]) {
            let base = Duration::from_millis(base);
            assert!(
                *delay >= base && *delay < base * 2,
                "{delay:?} not in [{base:?}, {:?})",
                base * 2
            );
        }
    }

    #[tokio::test]
    async fn success_after_a_transient_failure() {
        let (result, attempts, delays) = run(vec![transient(), Ok(5)]).await;
        assert_eq!(result.unwrap(), 5);
        assert_eq!(attempts, 2);
        assert_eq!(delays.len(), 1);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let (result, attempts, delays) =
            run(vec![Err(FakeError(RetryClass::Permanent)), Ok(1)]).await;
        assert!(result.is_err());
        assert_eq!(attempts, 1);
        assert!(delays.is_empty());
    }

    #[tokio::test]
    async fn retry_after_overrides_the_backoff() {
        let wait = Err(FakeError(RetryClass::Transient {
            retry_after: Some(Duration::from_secs(7)),
        }));
        let (result, _, delays) = run(vec![wait, Ok(1)]).await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(delays, vec![Duration::from_secs(7)]);
    }

    #[tokio::test]
    async fn retry_after_beyond_the_cap_is_not_waited_for() {
        let wait = Err(FakeError(RetryClass::Transient {
            retry_after: Some(Duration::from_secs(3600)),
        }));
        let (result, attempts, delays) = run(vec![wait, Ok(1)]).await;
        assert!(result.is_err());
        assert_eq!(attempts, 1);
        assert!(delays.is_empty());
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_delays() {
        let (_, _, first) = run(vec![transient(), transient(), Ok(1)]).await;
        let (_, _, second) = run(vec![transient(), transient(), Ok(1)]).await;
        assert_eq!(first, second);
    }

    #[test]
    fn http_statuses_are_classified() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_000);
        let mut headers = HeaderMap::new();
        assert_eq!(
            classify_http(http::StatusCode::BAD_REQUEST, &headers, now),
            RetryClass::Permanent
        );
        assert_eq!(
            classify_http(http::StatusCode::UNAUTHORIZED, &headers, now),
            RetryClass::Permanent
        );
        assert_eq!(
            classify_http(http::StatusCode::BAD_GATEWAY, &headers, now),
            RetryClass::transient()
        );
        headers.insert(http::header::RETRY_AFTER, "30".parse().unwrap());
        assert_eq!(
            classify_http(http::StatusCode::TOO_MANY_REQUESTS, &headers, now),
            RetryClass::Transient {
                retry_after: Some(Duration::from_secs(30))
            }
        );
    }

    #[test]
    fn retry_after_accepts_http_dates() {
        // Wed, 21 Oct 2015 07:28:00 GMT is 1445412480.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(10)));
        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }
}
