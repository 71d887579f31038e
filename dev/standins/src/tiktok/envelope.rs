//! TikTok's envelope, around every answer: `{"code","message","request_id","data"}`, with
//! HTTP 200 and `code` 0 for data and a non-zero `code` (still HTTP 200) for a refusal.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::faults::TikTokState;
use crate::reply::json_body;
use crate::seeded::mix64;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    code: u32,
    message: &'a str,
    request_id: String,
    data: T,
}

#[derive(Serialize)]
pub(super) struct Empty {}

impl TikTokState {
    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}{:020X}",
            chrono::Utc::now().format("%Y%m%d%H%M%S"),
            mix64(n) >> 8
        )
    }

    pub(super) fn envelope<T: Serialize>(
        &self,
        status: StatusCode,
        code: u32,
        message: &str,
        data: T,
    ) -> Response {
        let envelope = Envelope {
            code,
            message,
            request_id: self.request_id(),
            data,
        };
        json_body(status, &envelope)
    }

    /// A refusal: TikTok answers it with HTTP 200 and the code in the envelope.
    pub(super) fn error(&self, code: u32, message: &str) -> Response {
        self.envelope(StatusCode::OK, code, message, Empty {})
    }
}
