//! Shopify's Admin API authentication: `X-Shopify-Access-Token` must be the shop's own
//! token (or, for a shop without one, the scenario's) and not expired by a test; anything
//! else is Shopify's 401 with its `[API] Invalid API key or access token` body.

use axum::http::{HeaderMap, StatusCode};

use super::faults::ShopifyState;
use super::shop::Shop;
use crate::answer::Answer;
use crate::reply::json_response;
use crate::request_log::Outcome;

const INVALID_TOKEN: &str =
    r#"{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}"#;

impl ShopifyState {
    /// The 401 of a request whose token is not `shop`'s, or has been expired.
    pub(super) fn refuse_token(&self, shop: &Shop, headers: &HeaderMap) -> Option<Answer> {
        let token = headers
            .get("x-shopify-access-token")
            .and_then(|value| value.to_str().ok());
        let expected = shop.spec.access_token.as_deref().unwrap_or(&self.token);
        (token != Some(expected) || self.switches.token_expired()).then(|| {
            Answer::refused(
                json_response(StatusCode::UNAUTHORIZED, INVALID_TOKEN.as_bytes().to_vec()),
                Outcome::AuthFailed,
            )
        })
    }
}
