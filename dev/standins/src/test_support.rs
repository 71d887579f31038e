//! What the tests of every stand-in need: a configuration whose "today" is pinned (so
//! data compares across runs), one GET or POST through a router, and the path of an absolute URL
//! a stand-in handed out (to follow it through the router again).

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::NaiveDate;
use tower::ServiceExt;

use crate::StandinConfig;

pub(crate) fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// The default configuration, with today pinned to 2026-11-30.
pub(crate) fn pinned_config() -> StandinConfig {
    StandinConfig {
        today: Some(day("2026-11-30")),
        ..StandinConfig::default()
    }
}

/// Status, headers and body of one GET through the router.
pub(crate) async fn get(
    router: &Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    send(router, Method::GET, uri, headers).await
}

/// Status, headers and body of one POST (without a body) through the router.
pub(crate) async fn post(
    router: &Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    send(router, Method::POST, uri, headers).await
}

async fn send(
    router: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|error| panic!("{uri}: {error}: {}", String::from_utf8_lossy(&bytes)));
    (status, headers, body)
}

/// The path and query of an absolute URL the stand-in handed out.
pub(crate) fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/')
        .map_or("/".into(), |at| rest[at..].to_string())
}
