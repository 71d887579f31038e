//! The analytics routes as browsers on a tenant's site call them: CORS preflights answered
//! for any origin (and never for the server-to-server routes), what posthog-js asks for on
//! start (`/flags`, the remote configuration), gzip sent as `text/plain` with no
//! `compression` parameter, and people updates — Mixpanel's `/engage` and PostHog's
//! `$set` / `$set_once` / `$unset` — applied to the audience person and to nothing else.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::analytics::{Analytics, analytics, form, gzip, posthog_event};

const SITE: &str = "https://shop.example";

impl Analytics {
    async fn preflight(&self, path: &str, method: &str) -> axum::http::Response<Body> {
        let request = Request::options(path)
            .header(header::ORIGIN, SITE)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap();
        self.router.clone().oneshot(request).await.unwrap()
    }

    async fn get(&self, path: &str) -> (StatusCode, String, String) {
        let request = Request::get(path)
            .header(header::ORIGIN, SITE)
            .body(Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn person(&self, distinct_id: &str) -> (Option<String>, Option<String>, Value) {
        let row = self
            .db
            .client()
            .await
            .query_one(
                "SELECT email, name, properties FROM users WHERE distinct_id = $1",
                &[&distinct_id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }
}

fn header_of(response: &axum::http::Response<Body>, name: header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_string())
}

fn engage_form(updates: &Value) -> Vec<u8> {
    form(&base64::engine::general_purpose::STANDARD.encode(updates.to_string()))
}

#[tokio::test]
async fn browser_routes_answer_preflights_from_any_origin_and_server_routes_do_not() {
    let a = analytics().await;
    let browser = [
        ("/e/", "POST"),
        ("/i/v0/e/", "POST"),
        ("/batch/", "POST"),
        ("/flags/", "POST"),
        ("/decide/", "POST"),
        ("/track/", "POST"),
        ("/engage/", "POST"),
        ("/array/phc_test/config", "GET"),
    ];
    for (path, method) in browser {
        let response = a.preflight(path, method).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        assert_eq!(
            header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
            Some(SITE),
            "{path}"
        );
        // mixpanel-browser sends credentials: `*` would be refused by the browser.
        assert_eq!(
            header_of(&response, header::ACCESS_CONTROL_ALLOW_CREDENTIALS).as_deref(),
            Some("true"),
            "{path}"
        );
        let allowed = header_of(&response, header::ACCESS_CONTROL_ALLOW_METHODS).unwrap();
        assert!(allowed.contains(method), "{path}: {allowed}");
    }
    for path in ["/import", "/webhooks/posthog"] {
        let response = a.preflight(path, "POST").await;
        assert_eq!(
            header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            None,
            "{path} is for servers"
        );
    }
    // The answer itself carries the origin too, or the page could not read it.
    let request = Request::post("/e/")
        .header(header::ORIGIN, SITE)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"api_key": "phc_test", "batch": [posthog_event("$pageview", "v1")]}).to_string(),
        ))
        .unwrap();
    let response = a.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
        Some(SITE)
    );
}

#[tokio::test]
async fn gzip_sent_as_text_plain_without_a_compression_parameter_is_read() {
    let a = analytics().await;
    let batch = json!({"api_key": "phc_test", "batch": [
        posthog_event("$pageview", "p1"), posthog_event("clicked", "p1")]});
    let text_plain = ("content-type", "text/plain");
    for path in ["/e/?ip=0&ver=1.455.2", "/i/v0/e/?ver=1.455.2"] {
        let (status, body) = a
            .post(path, gzip(batch.to_string().as_bytes()), &[text_plain])
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // The same two events twice: stored once.
    assert_eq!(
        a.count("SELECT count(*) FROM events WHERE distinct_id = 'p1'")
            .await,
        2
    );
    // A text/plain body that is neither gzip nor JSON is refused with the reason.
    let (status, body) = a
        .post("/e/", b"\x1f\x8bnot gzip".to_vec(), &[text_plain])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("gzip"), "{body}");
}

#[tokio::test]
async fn posthog_start_up_gets_no_flags_and_a_configuration_for_known_tokens_only() {
    let a = analytics().await;
    let json_body = json!({"token": "phc_test", "distinct_id": "v1", "groups": {}}).to_string();
    let base64_body = base64::engine::general_purpose::STANDARD.encode(&json_body);
    for (path, body) in [
        ("/flags/?v=2&config=true", json_body.clone().into_bytes()),
        ("/flags/?v=2&compression=base64", base64_body.into_bytes()),
        ("/decide/?v=4", gzip(json_body.as_bytes())),
    ] {
        let (status, answer) = a
            .post(path, body, &[("content-type", "application/json")])
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        assert_eq!(answer["flags"], json!({}), "{path}");
        assert_eq!(answer["featureFlags"], json!({}), "{path}");
        assert_eq!(answer["errorsWhileComputingFlags"], false, "{path}");
        assert_eq!(
            answer["supportedCompression"].is_array(),
            path.contains("config=true"),
            "{path}: the configuration comes when asked for"
        );
    }
    let (status, answer) = a
        .post(
            "/flags/?v=2",
            json!({"token": "phc_nobody"}).to_string().into_bytes(),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(answer["error"].as_str().unwrap().contains("phc_nobody"));
    let (status, _) = a.post("/flags/", b"{}".to_vec(), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, kind, config) = a.get("/array/phc_test/config").await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "application/json")
    );
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["token"], "phc_test");
    assert_eq!(config["sessionRecording"], false);
    assert_eq!(config["siteApps"], json!([]));
    let (status, kind, script) = a.get("/array/phc_test/config.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("application/javascript"), "{kind}");
    assert!(
        script.contains(r#"_POSTHOG_REMOTE_CONFIG["phc_test"]"#),
        "{script}"
    );
    let (status, _, _) = a.get("/array/phc_nobody/config").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = a.get("/array/phc_test/recorder.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn mixpanel_people_updates_change_the_audience_person_and_nothing_else() {
    let a = analytics().await;
    let update = |operations: Value| {
        let mut update = json!({"$token": "mp_test", "$distinct_id": "visitor-1"});
        update
            .as_object_mut()
            .unwrap()
            .extend(operations.as_object().unwrap().clone());
        update
    };
    let updates = json!([
        update(
            json!({"$set": {"$email": "v@example.com", "email": "v@example.com", "plan": "free", "name": "Vee"}})
        ),
        update(json!({"$set_once": {"plan": "pro", "first_seen": "2026-12-01"}})),
        update(json!({"$unset": ["email"]})),
        update(json!({"$add": {"visits": 1}})),
    ]);
    for attempt in ["first", "replayed"] {
        let (status, answer) = a
            .post(
                "/engage/?verbose=1&ip=1",
                engage_form(&updates),
                &[super::analytics::FORM],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{attempt}: {answer}");
        assert_eq!(answer["status"], 1);
        let (email, name, properties) = a.person("visitor-1").await;
        assert_eq!(email, None, "{attempt}: unset");
        assert_eq!(name.as_deref(), Some("Vee"), "{attempt}");
        assert_eq!(
            properties,
            json!({"$email": "v@example.com", "plan": "free", "name": "Vee", "first_seen": "2026-12-01"}),
            "{attempt}: set_once did not overwrite, unset removed, $add ignored"
        );
    }
    // A set_once on a stored person writes only what they lack.
    let (status, _) = a
        .post(
            "/engage/",
            engage_form(&update(
                json!({"$set_once": {"plan": "enterprise", "email": "again@example.com"}}),
            )),
            &[super::analytics::FORM],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (email, _, properties) = a.person("visitor-1").await;
    assert_eq!(email.as_deref(), Some("again@example.com"));
    assert_eq!(properties["plan"], "free");
    assert_eq!(
        a.count("SELECT count(*) FROM events").await,
        0,
        "people updates are not events: the tenant's counts do not move"
    );

    // Bad updates are listed, the good ones applied; unknown tokens alone are 401.
    let mixed = json!([
        {"$token": "mp_test", "$distinct_id": "visitor-2", "$set": {"plan": "free"}},
        {"$token": "mp_test", "$set": {"plan": "free"}},
        {"$token": "mp_test", "$distinct_id": "visitor-3", "$set": {"bad": "\u{0}"}},
        {"$token": "mp_other", "$distinct_id": "visitor-4", "$set": {}},
    ]);
    let (status, answer) = a
        .post("/engage/", engage_form(&mixed), &[super::analytics::FORM])
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["num_records_failed"], 3, "{answer}");
    let (status, answer) = a
        .post(
            "/engage/",
            engage_form(&json!({"$token": "mp_other", "$distinct_id": "x", "$set": {}})),
            &[super::analytics::FORM],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    for (body, expected) in [
        (b"data=%%%".to_vec(), StatusCode::BAD_REQUEST),
        (form("bm90IGpzb24="), StatusCode::BAD_REQUEST),
        (gzip(&vec![b' '; 2 << 20]), StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        let (status, answer) = a.post("/engage/", body, &[super::analytics::FORM]).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    assert_eq!(
        a.count("SELECT count(*) FROM users WHERE distinct_id IN ('visitor-3', 'visitor-4')")
            .await,
        0
    );
}

#[tokio::test]
async fn posthog_events_set_set_once_and_unset_person_properties_in_order() {
    let a = analytics().await;
    let mut identify = posthog_event("$identify", "p-9");
    identify["properties"]["$set"] = json!({"email": "p9@example.com", "plan": "free"});
    identify["properties"]["$set_once"] = json!({"first_touch": "ad", "plan": "pro"});
    let mut unset = posthog_event("$set", "p-9");
    unset["properties"]["$unset"] = json!(["plan"]);
    let mut once_more = posthog_event("$set", "p-9");
    once_more["properties"]["$set_once"] = json!({"first_touch": "organic", "plan": "trial"});
    let batch = json!({"api_key": "phc_test", "batch": [identify, unset, once_more]});
    let (status, body) = a
        .post(
            "/batch/",
            batch.to_string().into_bytes(),
            &[super::analytics::JSON],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (email, _, properties) = a.person("p-9").await;
    assert_eq!(email.as_deref(), Some("p9@example.com"));
    assert_eq!(
        properties,
        json!({"email": "p9@example.com", "first_touch": "ad", "plan": "trial"}),
        "set_once after an unset writes again; before it, it does not overwrite"
    );
}
