//! The building blocks of a response: every stand-in answers JSON, and sets headers from
//! values it formats itself (a value that is not a valid header is left out rather than
//! failing the answer).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// `value` serialised as the JSON body.
pub(crate) fn json_body(status: StatusCode, value: &impl Serialize) -> Response {
    json_response(status, serde_json::to_vec(value).unwrap_or_default())
}

pub(crate) fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}
