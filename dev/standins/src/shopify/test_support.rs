//! What the Shopify stand-in's tests share: a pinned configuration, a listing request,
//! the `Link` header's URLs, a walk along `rel="next"`, and money back into cents.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};

use super::{API_VERSION, DEFAULT_SHOP, DEFAULT_SHOPIFY_TOKEN};
use crate::StandinConfig;
use crate::query::encode_query;
use crate::test_support::{get, path_of, pinned_config};

/// Today pinned, and `orders` orders in the default shop.
pub(super) fn config(orders: usize) -> StandinConfig {
    let mut config = pinned_config();
    config.shopify.shops[0].orders = orders;
    config
}

pub(super) const TOKEN: (&str, &str) = ("X-Shopify-Access-Token", DEFAULT_SHOPIFY_TOKEN);

pub(super) fn orders_uri(params: &[(&str, &str)]) -> String {
    format!(
        "/shopify/{DEFAULT_SHOP}/admin/api/{API_VERSION}/orders.json?{}",
        encode_query(params.iter().copied())
    )
}

/// The URL of `rel` in a `Link` header.
pub(super) fn link(headers: &HeaderMap, rel: &str) -> Option<String> {
    let value = headers.get("link")?.to_str().ok()?;
    value.split(", ").find_map(|part| {
        let (url, relation) = part.split_once("; ")?;
        (relation == format!("rel=\"{rel}\"")).then(|| {
            url.trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// The path of the second page of a listing of every order, `limit` a page.
pub(super) async fn second_page(router: &Router, limit: &str) -> String {
    let (_, headers, _) = get(
        router,
        &orders_uri(&[("status", "any"), ("limit", limit)]),
        &[TOKEN],
    )
    .await;
    path_of(&link(&headers, "next").unwrap())
}

/// Follows `rel="next"` to the end; returns the orders and how many pages it took.
pub(super) async fn walk(router: &Router, uri: String) -> (Vec<serde_json::Value>, usize) {
    let mut orders = Vec::new();
    let mut pages = 0;
    let mut next = Some(uri);
    while let Some(uri) = next.take() {
        let (status, headers, body) = get(router, &uri, &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            headers["x-shopify-shop-api-call-limit"]
                .to_str()
                .unwrap()
                .ends_with("/40")
        );
        orders.extend(body["orders"].as_array().unwrap().iter().cloned());
        pages += 1;
        next = link(&headers, "next").map(|url| path_of(&url));
    }
    (orders, pages)
}

pub(super) fn cents(value: &serde_json::Value) -> i64 {
    let text = value.as_str().unwrap();
    let (units, fraction) = text.split_once('.').unwrap();
    assert_eq!(fraction.len(), 2, "{text}");
    units.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap()
}
