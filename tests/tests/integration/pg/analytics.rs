//! The analytics agent through its HTTP routes: every accepted body format, tokens and
//! secrets, duplicates, partial batches, limits, identity and the messages it sends.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use analytics::{AnalyticsDeps, TokenKind};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use integration_tests::test_db::TestDb;
use serde_json::{Value, json};
use shared::queue::postgres::PostgresTransport;
use shared::queue::{Transport, catalog};
use tower::ServiceExt;

struct Analytics {
    db: TestDb,
    router: Router,
    transport: Arc<PostgresTransport>,
}

async fn analytics() -> Analytics {
    let db = TestDb::new().await;
    let pool = db.pool(4);
    let created = analytics::ensure_default_workspace(
        &pool,
        "test",
        &[
            ("phc_test", TokenKind::PosthogProject),
            ("mp_test", TokenKind::MixpanelProject),
            ("hook-secret", TokenKind::PosthogWebhookSecret),
        ],
    )
    .await
    .unwrap();
    assert!(created.is_some());
    let again = analytics::ensure_default_workspace(&pool, "again", &[])
        .await
        .unwrap();
    assert!(again.is_none(), "only when no workspace exists");
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let router = analytics::router(Arc::new(AnalyticsDeps {
        keys: integration_tests::test_keys(),
        clock: shared::clock::Clock::system(),
        pool,
        transport: transport.clone(),
    }));
    Analytics {
        db,
        router,
        transport,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2_writer();
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn flate2_writer() -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default())
}

fn form(data: &str) -> Vec<u8> {
    format!("data={}", urlencode(data)).into_bytes()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn posthog_event(name: &str, distinct_id: &str) -> Value {
    json!({"event": name, "distinct_id": distinct_id, "uuid": uuid::Uuid::new_v4().to_string(),
           "timestamp": chrono_now(), "properties": {"$lib": "test"}})
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339()
}

impl Analytics {
    async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = Request::post(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        )
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db
            .client()
            .await
            .query_typed_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

type Headers = Vec<(&'static str, &'static str)>;

const JSON: (&str, &str) = ("content-type", "application/json");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[tokio::test]
async fn posthog_capture_accepts_every_body_format() {
    let a = analytics().await;
    let single =
        json!({"api_key": "phc_test", "event": "one", "distinct_id": "u1", "properties": {}})
            .to_string();
    let array = json!([{"event": "two", "distinct_id": "u1", "properties": {"token": "phc_test"}}])
        .to_string();
    let batch = json!({"api_key": "phc_test", "batch": [posthog_event("three", "u1"), posthog_event("three", "u2")]}).to_string();
    // New uuids: the same uuids would rightly be dropped as duplicates.
    let six = json!({"api_key": "phc_test", "batch": [posthog_event("six", "u1"), posthog_event("six", "u2")]}).to_string();
    let b64 = base64::engine::general_purpose::STANDARD.encode(single.replace("one", "four"));
    let gz_b64 = base64::engine::general_purpose::STANDARD
        .encode(gzip(single.replace("one", "five").as_bytes()));
    let cases: Vec<(&str, Vec<u8>, Headers)> = vec![
        ("/e/", single.clone().into_bytes(), vec![JSON]),
        ("/i/v0/e/", array.into_bytes(), vec![JSON]),
        ("/batch/", batch.clone().into_bytes(), vec![JSON]),
        (
            "/batch",
            gzip(six.as_bytes()),
            vec![JSON, ("content-encoding", "gzip")],
        ),
        (
            "/capture/",
            gzip(single.replace("one", "seven").as_bytes()),
            vec![JSON],
        ),
        ("/e/", form(&b64), vec![FORM]),
        ("/e/?compression=gzip-js", form(&gz_b64), vec![FORM]),
        ("/e/", form(&single.replace("one", "eight")), vec![FORM]),
    ];
    for (path, body, headers) in cases {
        let (status, answer) = a.post(path, body, &headers).await;
        assert_eq!(
            (status, answer.clone()),
            (StatusCode::OK, json!({"status": 1})),
            "{path}: {answer}"
        );
    }
    let names: Vec<String> =
        a.db.client()
            .await
            .query_typed(
                "SELECT event FROM events WHERE source = 'posthog' ORDER BY event",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
    assert_eq!(
        names,
        [
            "eight", "five", "four", "one", "seven", "six", "six", "three", "three", "two"
        ]
    );
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let a = analytics().await;
    let (status, answer) = a
        .post(
            "/batch/",
            json!({"api_key": "phc_other", "batch": [posthog_event("x", "u")]})
                .to_string()
                .into_bytes(),
            &[JSON],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (status, answer) = a
        .post(
            "/batch/",
            json!({"batch": [posthog_event("x", "u")]})
                .to_string()
                .into_bytes(),
            &[JSON],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("token"),
        "{answer}"
    );
    assert_eq!(a.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn a_partial_batch_keeps_the_good_events_and_says_why_not_the_rest() {
    let a = analytics().await;
    let batch = json!({"api_key": "phc_test", "batch": [
        posthog_event("ok", "u1"),
        {"event": "no-distinct-id"},
        {"distinct_id": "u2"},
        {"event": "future", "distinct_id": "u3", "timestamp": "2999-01-01T00:00:00Z"},
        posthog_event("ok", "u4"),
    ]});
    let (status, answer) = a
        .post("/batch/", batch.to_string().into_bytes(), &[JSON])
        .await;
    assert_eq!(status, StatusCode::OK);
    let rejected: Vec<u64> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, [1, 2, 3]);
    assert!(
        answer["rejected"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("future")
    );
    assert_eq!(a.count("SELECT count(*) FROM events").await, 2);
}

#[tokio::test]
async fn duplicates_are_dropped_even_from_concurrent_batches() {
    let a = analytics().await;
    let batch = json!({"api_key": "phc_test", "batch": (0..50).map(|i| posthog_event("dup", &format!("u{i}"))).collect::<Vec<_>>()}).to_string();
    let sends: Vec<_> = (0..8)
        .map(|_| {
            let (router, body) = (a.router.clone(), batch.clone());
            tokio::spawn(async move {
                let request = Request::post("/batch/")
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap();
                router.oneshot(request).await.unwrap().status()
            })
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(a.count("SELECT count(*) FROM events").await, 50);
}

#[tokio::test]
async fn limits_refuse_bombs_and_giant_bodies_and_never_500_on_bad_input() {
    let a = analytics().await;
    let bomb = gzip(&vec![b' '; analytics::MAX_DECODED_BYTES + 1]);
    assert!(bomb.len() < 100 * 1024);
    let (status, _) = a
        .post("/batch/", bomb, &[JSON, ("content-encoding", "gzip")])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = a
        .post(
            "/batch/",
            vec![b' '; analytics::MAX_BODY_BYTES + 1],
            &[JSON],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    for garbage in [
        b"{not json".to_vec(),
        b"42".to_vec(),
        vec![0x1f, 0x8b, 0, 0],
        b"data=%%%".to_vec(),
    ] {
        let (status, answer) = a.post("/e/", garbage, &[FORM]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
}

#[tokio::test]
async fn the_posthog_webhook_destination_needs_its_secret() {
    let a = analytics().await;
    let body = json!({"event": posthog_event("$pageview", "u1"), "person": {"id": "p1", "properties": {"email": "u1@x.io"}}}).to_string();
    let (status, _) = a
        .post("/webhooks/posthog", body.clone().into_bytes(), &[JSON])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = a
        .post(
            "/webhooks/posthog",
            body.clone().into_bytes(),
            &[JSON, ("authorization", "Bearer wrong")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.count("SELECT count(*) FROM events").await, 0);
    let (status, _) = a
        .post(
            "/webhooks/posthog",
            body.clone().into_bytes(),
            &[JSON, ("authorization", "Bearer hook-secret")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = a
        .post(
            "/webhooks/posthog",
            body.into_bytes(),
            &[JSON, ("x-webhook-secret", "hook-secret")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        a.count("SELECT count(*) FROM events").await,
        1,
        "the second delivery is a duplicate"
    );
    assert_eq!(
        a.count("SELECT count(*) FROM users WHERE email = 'u1@x.io'")
            .await,
        1,
        "the person's properties identify the user"
    );
}

#[tokio::test]
async fn mixpanel_track_and_import_dedup_by_insert_id() {
    let a = analytics().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let event = |name: &str, insert_id: &str| json!({"event": name, "properties": {"token": "mp_test", "distinct_id": "m1", "time": now, "$insert_id": insert_id}});
    let array = json!([event("a", "i1"), event("b", "i2")]).to_string();
    let (status, answer) = a.post("/track?verbose=1", form(&array), &[FORM]).await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"status": 1, "error": null}))
    );
    let (status, _) = a.post("/track", array.clone().into_bytes(), &[JSON]).await;
    assert_eq!(status, StatusCode::OK, "a repeat is accepted…");
    assert_eq!(
        a.count("SELECT count(*) FROM events WHERE source = 'mixpanel'")
            .await,
        2,
        "…and dropped by the key"
    );

    let ndjson = format!(
        "{}\n{}\n{}\n",
        event("c", "i3"),
        event("a", "i1"),
        json!({"event": "bad", "properties": {"token": "mp_test"}})
    );
    let (status, answer) = a
        .post(
            "/import",
            gzip(ndjson.as_bytes()),
            &[
                ("content-type", "application/x-ndjson"),
                ("content-encoding", "gzip"),
            ],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "partial success, as Mixpanel answers it"
    );
    assert_eq!(answer["num_records_imported"], 2);
    assert_eq!(answer["failed_records"][0]["index"], 2);
    assert_eq!(
        a.count("SELECT count(*) FROM events WHERE source = 'mixpanel'")
            .await,
        3
    );
}

#[tokio::test]
async fn identity_signups_and_messages() {
    let a = analytics().await;
    let mut identify = posthog_event("$identify", "u1");
    identify["properties"]["$set"] = json!({"email": "ada@x.io", "name": "Ada"});
    // posthog-js sends the browser's zone as `$timezone` on every event.
    let mut signup = posthog_event("signed_up", "u1");
    signup["properties"]["$timezone"] = json!("Europe/Paris");
    let batch = json!({"api_key": "phc_test", "batch": [identify, signup, posthog_event("signed_up", "u1")]});
    let (status, _) = a
        .post("/batch/", batch.to_string().into_bytes(), &[JSON])
        .await;
    assert_eq!(status, StatusCode::OK);
    let row =
        a.db.client()
            .await
            .query_typed_one(
                "SELECT email, name, signed_up_at IS NOT NULL, timezone FROM users",
                &[],
            )
            .await
            .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, bool>(2),
            row.get::<_, String>(3)
        ),
        ("ada@x.io".into(), "Ada".into(), true, "Europe/Paris".into())
    );

    // A flood of events for the same workspace and day asks for one recompute.
    for _ in 0..5 {
        let flood = json!({"api_key": "phc_test", "batch": (0..20).map(|i| posthog_event("$pageview", &format!("v{i}"))).collect::<Vec<_>>()});
        a.post("/batch/", flood.to_string().into_bytes(), &[JSON])
            .await;
    }
    let metrics = a
        .transport
        .receive(catalog::METRICS.name, 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    let signups = a
        .transport
        .receive(catalog::EMAIL.name, 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(signups.len(), 1);
    let signup: Value = serde_json::from_str(&signups[0].body).unwrap();
    assert_eq!(signup["distinct_id"], "u1");

    // Signing up again later does not restart the clock or notify twice.
    let again = json!({"api_key": "phc_test", "batch": [posthog_event("signed_up", "u1")]});
    a.post("/batch/", again.to_string().into_bytes(), &[JSON])
        .await;
    assert_eq!(
        a.transport
            .depth(catalog::EMAIL.name)
            .await
            .unwrap()
            .visible,
        0
    );
}

#[tokio::test]
async fn a_replay_derives_people_again_and_asks_for_each_day() {
    let a = analytics().await;
    let client = a.db.client().await;
    // Stored events whose people were lost (say, a bad migration emptied `users`), on two days.
    client
        .batch_execute(
            "INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp, properties)
             SELECT gen_random_uuid(), (SELECT id FROM workspaces), 'posthog', 'u1', e, ts, p::jsonb
               FROM (VALUES
                 ('signed_up', now() - interval '1 day', '{\"$set\": {\"email\": \"ada@x.io\", \"name\": \"Ada\"}}'),
                 ('$pageview', now() - interval '3 days', '{}'),
                 ('$pageview', now() - interval '40 days', '{}')) AS v(e, ts, p);",
        )
        .await
        .unwrap();
    let pool = a.db.pool(2);
    let outbox = shared::queue::outbox::Outbox::new(pool.clone(), a.transport.clone());
    let today = chrono::Utc::now().date_naive();
    let replayed = analytics::store::replay(
        &pool,
        &outbox,
        None,
        today - chrono::Duration::days(10),
        today,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        (replayed.events, replayed.recomputes),
        (2, 2),
        "the 40-day-old event is outside"
    );
    let row = client
        .query_typed_one(
            "SELECT email, signed_up_at IS NOT NULL FROM users WHERE distinct_id = 'u1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("ada@x.io".into(), true)
    );
    assert_eq!(
        a.count("SELECT count(*) FROM events").await,
        3,
        "a replay never duplicates events"
    );
    let depth = a.transport.depth(catalog::METRICS.name).await.unwrap();
    assert!(depth.visible >= 2, "{depth:?}");
}
