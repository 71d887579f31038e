//! Shopify's REST rate limiting as a client meets it: every answer says how full the
//! shop's bucket is (`X-Shopify-Shop-Api-Call-Limit: n/40`), and a request over the limit
//! — or one a test throttles — is a 429 with `Retry-After`. The simulated [`LeakyBucket`]
//! is off by default, so benchmarks are not slowed; the header then reads `1/40`.

use std::sync::Mutex;
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::Response;

use super::ShopifyScenario;
use super::faults::{ShopifyFaults, ShopifyState};
use super::shop::Shop;
use crate::lock;
use crate::reply::{json_response, set_header};

const THROTTLED: &str = r#"{"errors":"Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}"#;

/// Shopify's REST leaky bucket: `size` requests, leaking `leak_per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakyBucket {
    pub size: u32,
    pub leak_per_second: f64,
}

impl LeakyBucket {
    /// A standard plan: 40 requests, 2 a second.
    pub const STANDARD: LeakyBucket = LeakyBucket {
        size: 40,
        leak_per_second: 2.0,
    };
}

/// How full one shop's bucket was when a request last went in.
pub(super) struct BucketLevel {
    level: f64,
    at: Instant,
}

impl BucketLevel {
    pub(super) fn empty() -> Self {
        BucketLevel {
            level: 0.0,
            at: Instant::now(),
        }
    }
}

/// The throttling knobs a test turns at run time.
pub(super) struct Throttling {
    retry_after: Mutex<f64>,
    bucket: Mutex<Option<LeakyBucket>>,
}

impl Throttling {
    pub(super) fn new(scenario: &ShopifyScenario) -> Self {
        Throttling {
            retry_after: Mutex::new(scenario.retry_after_seconds),
            bucket: Mutex::new(scenario.bucket),
        }
    }
}

impl ShopifyFaults {
    /// `Retry-After` (seconds) of the next 429s.
    pub fn set_retry_after(&self, seconds: f64) {
        *lock::unpoisoned(&self.0.throttling.retry_after) = seconds;
    }

    /// Switches the simulated leaky bucket on (or off with `None`).
    pub fn set_bucket(&self, bucket: Option<LeakyBucket>) {
        *lock::unpoisoned(&self.0.throttling.bucket) = bucket;
    }
}

impl ShopifyState {
    /// Takes a request into `shop`'s bucket: the call-limit reading (`used/size`) when it
    /// goes in, the 429 when the bucket overflows or a test throttles it.
    pub(super) fn admit(&self, shop: &Shop) -> Result<String, Box<Response>> {
        let bucket = *lock::unpoisoned(&self.throttling.bucket);
        let (used, size, overflow) = match bucket {
            None => (1, 40, false),
            Some(bucket) => {
                let mut state = lock::unpoisoned(&shop.bucket);
                let now = Instant::now();
                let leaked = now.duration_since(state.at).as_secs_f64() * bucket.leak_per_second;
                state.level = (state.level - leaked).max(0.0);
                state.at = now;
                if state.level + 1.0 > f64::from(bucket.size) {
                    (bucket.size, bucket.size, true)
                } else {
                    state.level += 1.0;
                    (state.level.ceil() as u32, bucket.size, false)
                }
            }
        };
        if overflow || self.switches.take_throttle() {
            let retry_after = *lock::unpoisoned(&self.throttling.retry_after);
            let mut response =
                json_response(StatusCode::TOO_MANY_REQUESTS, THROTTLED.as_bytes().to_vec());
            set_header(&mut response, "retry-after", &format!("{retry_after:.1}"));
            set_header(
                &mut response,
                "x-shopify-shop-api-call-limit",
                &format!("{size}/{size}"),
            );
            return Err(Box::new(response));
        }
        Ok(format!("{used}/{size}"))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::super::test_support::{TOKEN, config, orders_uri};
    use super::super::{API_VERSION, DEFAULT_SHOP};
    use super::*;
    use crate::test_support::get;
    use crate::{Outcome, router};

    #[tokio::test]
    async fn throttling_is_a_429_with_retry_after_and_bad_tokens_a_401() {
        let (router, handles) = router(&config(10), "http://standins.test");
        let uri = orders_uri(&[("status", "any")]);
        handles.shopify.throttle_next(1);
        let (status, headers, body) = get(&router, &uri, &[TOKEN]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "1.0");
        assert_eq!(headers["x-shopify-shop-api-call-limit"], "40/40");
        assert!(
            body["errors"]
                .as_str()
                .unwrap()
                .starts_with("Exceeded 2 calls per second")
        );
        let (status, headers, _) = get(&router, &uri, &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-shopify-api-version"], API_VERSION);

        let (status, _, body) = get(&router, &uri, &[("X-Shopify-Access-Token", "nope")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body["errors"]
                .as_str()
                .unwrap()
                .contains("Invalid API key or access token")
        );
        handles.shopify.expire_token();
        let (status, _, _) = get(&router, &uri, &[TOKEN]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        handles.shopify.renew_token();
        let (status, _, _) = get(
            &router,
            &orders_uri(&[]).replace(DEFAULT_SHOP, "elsewhere"),
            &[TOKEN],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(handles.shopify.count(Outcome::AuthFailed), 2);
    }

    #[tokio::test]
    async fn the_leaky_bucket_fills_and_throttles() {
        let (router, handles) = router(&config(10), "http://standins.test");
        handles.shopify.set_bucket(Some(LeakyBucket {
            size: 3,
            leak_per_second: 0.001,
        }));
        handles.shopify.set_retry_after(2.0);
        let uri = orders_uri(&[("status", "any")]);
        for used in 1..=3 {
            let (status, headers, _) = get(&router, &uri, &[TOKEN]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                headers["x-shopify-shop-api-call-limit"],
                format!("{used}/3")
            );
        }
        let (status, headers, _) = get(&router, &uri, &[TOKEN]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "2.0");
    }
}
