//! A local stand-in for Resend's `POST /emails`, speaking its format: bearer key, a required
//! User-Agent, `Idempotency-Key` replays (the same key and payload answer the first email's
//! id; the same key with another payload is a 409 `invalid_idempotent_request`), validation
//! errors as 422 `{statusCode, message, name}`, and scripted failures (503, 429 with
//! `Retry-After`) answered before anything is accepted. It records every request and every
//! accepted email, and stops with the test's runtime.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

pub const API_KEY: &str = "re_test_key";

/// An email Resend accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: String,
    pub idempotency_key: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    requests: usize,
    accepted: Vec<Accepted>,
    by_key: HashMap<String, (Value, String)>,
    /// Answers to give before accepting anything: (status, Retry-After seconds).
    script: VecDeque<(u16, Option<u64>)>,
    /// Answer every request with this, forever.
    always: Option<u16>,
    delay: Duration,
}

#[derive(Clone, Default)]
pub struct ResendStandIn {
    inner: Arc<Mutex<Inner>>,
    pub addr: Option<SocketAddr>,
}

impl ResendStandIn {
    pub async fn start() -> Self {
        let mut standin = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        standin.addr = Some(listener.local_addr().expect("address"));
        let router = Router::new()
            .route("/emails", post(send))
            .with_state(standin.inner.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        standin
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr.expect("started"))
    }

    /// Fails the next requests with these answers, in order.
    pub fn fail_next(&self, answers: &[(u16, Option<u64>)]) {
        self.inner
            .lock()
            .unwrap()
            .script
            .extend(answers.iter().copied());
    }

    pub fn fail_always(&self, status: u16) {
        self.inner.lock().unwrap().always = Some(status);
    }

    /// Holds every answer this long (to make concurrent senders overlap).
    pub fn delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    pub fn requests(&self) -> usize {
        self.inner.lock().unwrap().requests
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.inner.lock().unwrap().accepted.clone()
    }
}

fn error(status: u16, name: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).expect("status");
    (
        code,
        Json(json!({ "statusCode": status, "message": message, "name": name })),
    )
        .into_response()
}

async fn send(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let delay = {
        let mut inner = inner.lock().unwrap();
        inner.requests += 1;
        inner.delay
    };
    tokio::time::sleep(delay).await;
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if header("authorization") != Some(&format!("Bearer {API_KEY}")) {
        return error(
            401,
            "missing_api_key",
            "Missing API key in the authorization header.",
        );
    }
    if header("user-agent").is_none_or(str::is_empty) {
        return error(
            403,
            "missing_user_agent",
            "Requests must include a User-Agent.",
        );
    }
    let mut inner = inner.lock().unwrap();
    if let Some(status) = inner.always {
        return error(status, "application_error", "Something went wrong.");
    }
    if let Some((status, retry_after)) = inner.script.pop_front() {
        let mut response = error(status, "rate_limit_exceeded", "Too many requests.");
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
        }
        return response;
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return error(422, "validation_error", "The body is not JSON.");
    };
    for field in ["from", "to", "subject"] {
        if payload.get(field).is_none_or(Value::is_null) {
            return error(
                422,
                "missing_required_field",
                &format!("The `{field}` field is missing."),
            );
        }
    }
    let valid_address = |to: &Value| {
        to.as_str()
            .and_then(|to| to.split_once('@'))
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
    };
    let to_invalid = payload["to"]
        .as_array()
        .is_none_or(|to| to.is_empty() || !to.iter().all(valid_address));
    if to_invalid {
        return error(422, "validation_error", "Invalid `to` field.");
    }
    let key = header("idempotency-key").map(str::to_string);
    if let Some((first, id)) = key.as_ref().and_then(|key| inner.by_key.get(key)) {
        if *first == payload {
            return Json(json!({ "id": id })).into_response();
        }
        return error(
            409,
            "invalid_idempotent_request",
            "Same idempotency key used with a different request payload.",
        );
    }
    let id = uuid::Uuid::new_v4().to_string();
    if let Some(key) = &key {
        inner
            .by_key
            .insert(key.clone(), (payload.clone(), id.clone()));
    }
    inner.accepted.push(Accepted {
        id: id.clone(),
        idempotency_key: key,
        body: payload,
    });
    Json(json!({ "id": id })).into_response()
}
