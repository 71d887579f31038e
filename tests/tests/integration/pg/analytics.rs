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

pub(super) struct Analytics {
    pub(super) db: TestDb,
    pub(super) router: Router,
    transport: Arc<PostgresTransport>,
    pub(super) workspace: uuid::Uuid,
}

/// The Mixpanel project's API secret and service account (`username:secret`), and its id.
const API_SECRET: &str = "mp-api-secret";
const SERVICE_ACCOUNT: &str = "importer.mp-service-account:sa-secret";
const PROJECT_ID: &str = "4242";

pub(super) async fn analytics() -> Analytics {
    analytics_at(shared::clock::Clock::system()).await
}

async fn analytics_at(clock: shared::clock::Clock) -> Analytics {
    let db = TestDb::new().await;
    let pool = db.pool(4);
    let keys = integration_tests::test_keys();
    let created = analytics::ensure_default_workspace(
        &pool,
        &keys,
        "test",
        &[
            ("phc_test", TokenKind::PosthogProject),
            ("mp_test", TokenKind::MixpanelProject),
            ("hook-secret", TokenKind::PosthogWebhookSecret),
            (API_SECRET, TokenKind::MixpanelApiSecret),
            (SERVICE_ACCOUNT, TokenKind::MixpanelServiceAccount),
            (PROJECT_ID, TokenKind::MixpanelProjectId),
        ],
    )
    .await
    .unwrap();
    let workspace = created.expect("a fresh database has no workspace");
    let again = analytics::ensure_default_workspace(&pool, &keys, "again", &[])
        .await
        .unwrap();
    assert!(again.is_none(), "only when no workspace exists");
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let container = shared::lambda::Container::new(pool, transport.clone(), clock);
    let config = analytics::Config { keys };
    let router = analytics::router(Arc::new(AnalyticsDeps::new(&container, config)));
    Analytics {
        db,
        router,
        transport,
        workspace,
    }
}

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2_writer();
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn flate2_writer() -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default())
}

pub(super) fn form(data: &str) -> Vec<u8> {
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

pub(super) fn posthog_event(name: &str, distinct_id: &str) -> Value {
    json!({"event": name, "distinct_id": distinct_id, "uuid": uuid::Uuid::new_v4().to_string(),
           "timestamp": chrono_now(), "properties": {"$lib": "test"}})
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339()
}

impl Analytics {
    pub(super) async fn post(
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

    pub(super) async fn count(&self, sql: &str) -> i64 {
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

pub(super) const JSON: (&str, &str) = ("content-type", "application/json");
pub(super) const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

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
    let authorization = basic(&format!("{API_SECRET}:"));
    let (status, answer) = a
        .post(
            "/import",
            gzip(ndjson.as_bytes()),
            &[
                ("content-type", "application/x-ndjson"),
                ("content-encoding", "gzip"),
                ("authorization", &authorization),
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
    // The audience's signup is the tenant's metric, not our member: nothing goes to the email
    // agent, whatever address the event carried.
    assert_eq!(
        a.transport
            .depth(catalog::EMAIL.name)
            .await
            .unwrap()
            .visible,
        0,
        "an audience signup starts no email campaign"
    );

    // Signing up again later does not restart the clock.
    let signed_up_at = || async {
        a.db.client()
            .await
            .query_one(
                "SELECT signed_up_at FROM users WHERE distinct_id = 'u1'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, chrono::DateTime<chrono::Utc>>(0)
    };
    let first = signed_up_at().await;
    let again = json!({"api_key": "phc_test", "batch": [posthog_event("signed_up", "u1")]});
    a.post("/batch/", again.to_string().into_bytes(), &[JSON])
        .await;
    assert_eq!(signed_up_at().await, first);
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

// ---- Adversarial: what an attacker or a faulty client sends. Each of these failed on the
// code before the hardening (noted per test).

impl Analytics {
    /// A second workspace with its own Mixpanel project token and API secret.
    async fn other_workspace(&self) -> uuid::Uuid {
        let keys = integration_tests::test_keys();
        let client = self.db.client().await;
        let id: uuid::Uuid = integration_tests::fixtures::workspace(&client, "other").await;
        for (token, kind) in [
            ("mp_other".to_string(), "mixpanel_project"),
            (keys.hash("other-api-secret"), "mixpanel_api_secret"),
            ("9999".to_string(), "mixpanel_project_id"),
        ] {
            client
                .execute_typed(
                    "INSERT INTO workspace_tokens (token, workspace_id, kind) VALUES ($1, $2, $3)",
                    &[
                        (&token, tokio_postgres::types::Type::TEXT),
                        (&id, tokio_postgres::types::Type::UUID),
                        (&kind, tokio_postgres::types::Type::TEXT),
                    ],
                )
                .await
                .unwrap();
        }
        id
    }

    async fn events_of(&self, workspace: uuid::Uuid) -> Vec<(String, String)> {
        self.db
            .client()
            .await
            .query_typed(
                "SELECT event, distinct_id FROM events WHERE workspace_id = $1 ORDER BY event",
                &[(&workspace, tokio_postgres::types::Type::UUID)],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }
}

fn mixpanel_event(name: &str, token: &str, age: chrono::Duration) -> Value {
    json!({"event": name, "properties": {"token": token, "distinct_id": "m1",
           "time": (chrono::Utc::now() - age).timestamp(), "$insert_id": uuid::Uuid::new_v4().simple().to_string()}})
}

/// Before: `distinct_id.truncate(200)` panicked inside the 2-byte character (500 at the edge,
/// an abort in a release build that aborted on panic).
#[tokio::test]
async fn a_distinct_id_cut_inside_a_character_is_kept_whole() {
    let a = analytics().await;
    let two_byte = format!("{}é", "a".repeat(199));
    let emoji = format!("{}🦀", "b".repeat(198));
    let batch = json!({"api_key": "phc_test", "batch": [
        posthog_event("cut", &two_byte), posthog_event("cut", &emoji)]});
    let (status, answer) = a
        .post("/batch/", batch.to_string().into_bytes(), &[JSON])
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"status": 1})));
    let track = json!([{"event": "cut", "properties": {"token": "mp_test", "distinct_id": two_byte,
                        "time": chrono::Utc::now().timestamp()}}]);
    let (status, _) = a
        .post("/track", track.to_string().into_bytes(), &[JSON])
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut kept: Vec<String> = a
        .events_of(a.workspace)
        .await
        .into_iter()
        .map(|(_, distinct_id)| distinct_id)
        .collect();
    kept.sort();
    assert_eq!(kept, ["a".repeat(199), "a".repeat(199), "b".repeat(198)]);
}

/// Before: a NUL made the database refuse the whole batch, which was retried and answered
/// 503 (the SDK retried it for ever), and a lone surrogate made the whole body a 400.
#[tokio::test]
async fn nul_and_lone_surrogates_refuse_only_their_event() {
    let a = analytics().await;
    let uuid = || uuid::Uuid::new_v4().to_string();
    let now = chrono_now();
    let body = format!(
        r#"{{"api_key": "phc_test", "batch": [
            {{"event": "kept", "distinct_id": "u0", "uuid": "{}", "timestamp": "{now}"}},
            {{"event": "nul\u0000name", "distinct_id": "u1", "timestamp": "{now}"}},
            {{"event": "x", "distinct_id": "u2", "properties": {{"k\u0000": 1}}}},
            {{"event": "x", "distinct_id": "u3", "properties": {{"v": "\ud800"}}}},
            {{"event": "x", "distinct_id": "u4\u0000"}},
            {{"event": "emoji", "distinct_id": "u5", "uuid": "{}", "properties": {{"🦀 key": "ü\u00e9", "$set": {{"name": "Zoë 👩🏽‍💻"}}}}}}
        ]}}"#,
        uuid(),
        uuid()
    );
    let (status, answer) = a.post("/batch/", body.into_bytes(), &[JSON]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rejected: Vec<u64> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, [1, 2, 3, 4], "{answer}");
    assert!(
        answer["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("\\u0000")
    );
    assert!(
        answer["rejected"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("escape")
    );
    assert_eq!(
        a.events_of(a.workspace).await,
        [("emoji".into(), "u5".into()), ("kept".into(), "u0".into())]
    );
    assert_eq!(
        a.count("SELECT count(*) FROM users WHERE name = 'Zoë 👩🏽‍💻'")
            .await,
        1
    );

    // Mixpanel: the same per item, in NDJSON, where each line is its own event.
    let ndjson = format!(
        "{}\n{}\n{}\n",
        mixpanel_event("line-ok", "mp_test", chrono::Duration::zero()),
        r#"{"event": "bad", "properties": {"token": "mp_test", "distinct_id": "m\ud800"}}"#,
        r#"{"event": "bad\u0000", "properties": {"token": "mp_test", "distinct_id": "m"}}"#
    );
    let authorization = basic(&format!("{API_SECRET}:"));
    let (status, answer) = a
        .post(
            "/import",
            ndjson.into_bytes(),
            &[
                ("content-type", "application/x-ndjson"),
                ("authorization", &authorization),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "partial success: {answer}");
    assert_eq!(answer["num_records_imported"], 1);
    assert_eq!(answer["num_records_failed"], 2);
    assert_eq!(answer["failed_records"][0]["index"], 1);
    assert_eq!(answer["failed_records"][1]["index"], 2);
}

/// Before: nothing isolated a refused value; the whole batch failed with the server's error.
#[tokio::test]
async fn a_value_the_database_refuses_fails_only_that_event() {
    let a = analytics().await;
    let pool = a.db.pool(2);
    let outbox = shared::queue::outbox::Outbox::new(pool.clone(), a.transport.clone());
    let event = |name: &str| analytics::events::Event {
        id: uuid::Uuid::new_v4(),
        distinct_id: "u".into(),
        name: name.into(),
        timestamp: chrono::Utc::now(),
        properties: json!({}),
        token: None,
    };
    // Past the checks an HTTP body goes through: the database is the last line.
    let events: Vec<_> = (0..10)
        .map(|i| match i {
            3 | 7 => event("refused\u{0}"),
            _ => event(&format!("ok{i}")),
        })
        .collect();
    let (stored, _) = analytics::store::store(
        &pool,
        &outbox,
        a.workspace,
        analytics::events::Source::Posthog,
        &events,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(stored.inserted, 8);
    let positions: Vec<usize> = stored.refused.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, [3, 7]);
    assert!(stored.refused[0].1.contains("0x00"), "{:?}", stored.refused);
    assert_eq!(a.count("SELECT count(*) FROM events").await, 8);
}

/// Before: any number of events was parsed into memory and stored.
#[tokio::test]
async fn too_many_events_are_refused_before_any_is_read() {
    let a = analytics().await;
    let many: Vec<Value> = (0..analytics::events::MAX_EVENTS + 1)
        .map(|i| posthog_event("many", &format!("u{i}")))
        .collect();
    let (status, answer) = a
        .post(
            "/batch/",
            json!({"api_key": "phc_test", "batch": many})
                .to_string()
                .into_bytes(),
            &[JSON],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("2000"));
    let authorization = basic(&format!("{API_SECRET}:"));
    let many: Vec<Value> = (0..analytics::events::MAX_EVENTS + 1)
        .map(|_| mixpanel_event("many", "mp_test", chrono::Duration::zero()))
        .collect();
    let (status, _) = a
        .post(
            "/import",
            json!(many).to_string().into_bytes(),
            &[JSON, ("authorization", &authorization)],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.count("SELECT count(*) FROM events").await, 0);
}

/// Before: every rejection was listed, so the answer grew with the body.
#[tokio::test]
async fn rejections_are_reported_compactly() {
    let a = analytics().await;
    let mut batch: Vec<Value> = (0..1_500)
        .map(|i| json!({"event": "x", "distinct_id": format!("u{i}"), "uuid": "z".repeat(500)}))
        .collect();
    batch.push(posthog_event("good", "u"));
    let (status, body) = {
        let request = Request::post("/batch/")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"api_key": "phc_test", "batch": batch}).to_string(),
            ))
            .unwrap();
        let response = a.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        (
            status,
            axum::body::to_bytes(response.into_body(), 1 << 24)
                .await
                .unwrap(),
        )
    };
    assert_eq!(status, StatusCode::OK);
    assert!(body.len() < 16 * 1024, "{} bytes", body.len());
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["rejected_count"], 1_500);
    assert_eq!(
        answer["rejected"].as_array().unwrap().len(),
        analytics::REPORTED_REJECTIONS
    );
    assert_eq!(answer["rejected"][0]["index"], 0);
    assert_eq!(a.count("SELECT count(*) FROM events").await, 1);
}

/// Before: inner gzip inflated to 20 MB, past Mixpanel's documented 10 MB.
#[tokio::test]
async fn compressed_bodies_bombs_nested_and_truncated() {
    let a = analytics().await;
    let batch = json!({"api_key": "phc_test", "batch": [posthog_event("nested", "u")]}).to_string();
    let gzip_header = ("content-encoding", "gzip");
    let (status, answer) = a
        .post(
            "/batch/",
            gzip(&gzip(batch.as_bytes())),
            &[JSON, gzip_header],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "gzip inside gzip is read: {answer}");
    let inner_bomb = gzip(&vec![b' '; analytics::MAX_DECODED_BYTES + 1024]);
    let (status, _) = a
        .post("/batch/", gzip(&inner_bomb), &[JSON, gzip_header])
        .await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "a bomb inside gzip too"
    );
    let whole = gzip(batch.as_bytes());
    let (status, answer) = a
        .post(
            "/batch/",
            whole[..whole.len() - 12].to_vec(),
            &[JSON, gzip_header],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "truncated: {answer}");
    assert!(answer["error"].as_str().unwrap().contains("gzip"));
    let (status, _) = a
        .post("/batch/", vec![0xff, 0xfe, b'[', b']'], &[JSON])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not UTF-8");
    assert_eq!(a.count("SELECT count(*) FROM events").await, 1);
}

/// Before: capture accepted events dated any time after 1971 from a public token, and
/// `/track` kept no five-day window.
#[tokio::test]
async fn public_routes_limit_how_far_back_an_event_may_be_dated() {
    let a = analytics().await;
    let dated = |name: &str, days: i64| {
        let mut event = posthog_event(name, "u");
        event["timestamp"] =
            json!((chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339());
        event
    };
    let batch =
        json!({"api_key": "phc_test", "batch": [dated("month-old", 30), dated("too-old", 32)]});
    let (status, answer) = a
        .post("/batch/", batch.to_string().into_bytes(), &[JSON])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["rejected"][0]["index"], 1);
    assert!(
        answer["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("31 days")
    );

    let track = json!([
        mixpanel_event("four-days", "mp_test", chrono::Duration::days(4)),
        mixpanel_event("six-days", "mp_test", chrono::Duration::days(6)),
    ]);
    let (status, answer) = a
        .post("/track", track.to_string().into_bytes(), &[JSON])
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["failed_records"][0]["index"], 1);
    // `/import` takes history.
    let import = json!([mixpanel_event(
        "a-year",
        "mp_test",
        chrono::Duration::days(365)
    )]);
    let authorization = basic(&format!("{API_SECRET}:"));
    let (status, _) = a
        .post(
            "/import",
            import.to_string().into_bytes(),
            &[JSON, ("authorization", &authorization)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<String> = a
        .events_of(a.workspace)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["a-year", "four-days", "month-old"]);
}

/// Before: the public project token as the Basic user name (or in the events alone) was
/// enough to import anything, into any workspace.
#[tokio::test]
async fn import_authenticates_as_mixpanel_does() {
    let a = analytics().await;
    let body = || {
        json!([mixpanel_event(
            "imported",
            "mp_test",
            chrono::Duration::zero()
        )])
        .to_string()
        .into_bytes()
    };
    let refused: Vec<(&str, Option<String>)> = vec![
        ("/import", None),
        ("/import", Some(basic("mp_test:"))),
        ("/import", Some(basic("wrong-secret:"))),
        ("/import", Some(basic(SERVICE_ACCOUNT))),
        ("/import?project_id=9999", Some(basic(SERVICE_ACCOUNT))),
        (
            "/import?project_id=4242",
            Some(basic("importer.mp-service-account:wrong")),
        ),
        ("/import?project_id=%00", Some(basic(SERVICE_ACCOUNT))),
        ("/import", Some("Basic %%%".into())),
        ("/import", Some(basic(":"))),
    ];
    for (path, authorization) in &refused {
        let mut headers = vec![JSON];
        if let Some(authorization) = authorization {
            headers.push(("authorization", authorization));
        }
        let (status, answer) = a.post(path, body(), &headers).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} {authorization:?}: {answer}"
        );
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(a.count("SELECT count(*) FROM events").await, 0);
    assert_eq!(a.count("SELECT count(*) FROM quarantine").await, 0);
    for (path, authorization) in [
        ("/import", basic(&format!("{API_SECRET}:"))),
        ("/import", basic(API_SECRET)),
        (
            &format!("/import?project_id={PROJECT_ID}"),
            basic(SERVICE_ACCOUNT),
        ),
    ] {
        let (status, answer) = a
            .post(path, body(), &[JSON, ("authorization", &authorization)])
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        assert_eq!(answer["num_records_imported"], 1);
    }
    assert_eq!(a.count("SELECT count(*) FROM events").await, 3);
    // Only hashes are at rest.
    assert_eq!(
        a.count("SELECT count(*) FROM workspace_tokens WHERE token LIKE '%secret%'")
            .await,
        0
    );
}

/// Before: credentials were checked only after the body was inflated.
#[tokio::test]
async fn import_checks_credentials_before_reading_the_body() {
    let a = analytics().await;
    let bomb = gzip(&vec![b' '; analytics::MAX_DECODED_BYTES + 1]);
    let wrong = basic("wrong-secret:");
    let (status, _) = a
        .post(
            "/import",
            bomb,
            &[
                JSON,
                ("content-encoding", "gzip"),
                ("authorization", &wrong),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Before: each event went to whichever workspace its token named.
#[tokio::test]
async fn import_refuses_events_naming_another_workspace() {
    let a = analytics().await;
    let other = a.other_workspace().await;
    let batch = json!([
        mixpanel_event("mine", "mp_test", chrono::Duration::zero()),
        mixpanel_event("theirs", "mp_other", chrono::Duration::zero()),
        {"event": "no-token", "properties": {"distinct_id": "m1", "time": chrono::Utc::now().timestamp()}},
    ]);
    let authorization = basic(&format!("{API_SECRET}:"));
    let (status, answer) = a
        .post(
            "/import",
            batch.to_string().into_bytes(),
            &[JSON, ("authorization", &authorization)],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["num_records_imported"], 2);
    assert_eq!(answer["failed_records"][0]["index"], 1);
    assert_eq!(answer["failed_records"][0]["field"], "properties.token");
    assert!(answer["failed_records"][0]["insert_id"].is_string());
    assert!(a.events_of(other).await.is_empty());
    assert_eq!(a.events_of(a.workspace).await.len(), 2);
    // The other workspace's own secret writes only there.
    let theirs = basic("other-api-secret:");
    let (status, _) = a
        .post(
            "/import",
            json!([mixpanel_event(
                "theirs",
                "mp_other",
                chrono::Duration::zero()
            )])
            .to_string()
            .into_bytes(),
            &[JSON, ("authorization", &theirs)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a.events_of(other).await.len(), 1);
}

/// Before: the one event carrying `\u0000` made the database refuse each whole copy of the
/// batch, answered 503 eight times.
#[tokio::test]
async fn the_same_import_sent_eight_times_at_once_is_stored_once() {
    let a = analytics().await;
    let mut events: Vec<Value> = (0..100)
        .map(|i| mixpanel_event(&format!("e{i}"), "mp_test", chrono::Duration::zero()))
        .collect();
    events[50]["properties"]["note"] = json!("a\u{0}b");
    let batch = json!(events).to_string();
    let authorization = basic(&format!("{API_SECRET}:"));
    let sends: Vec<_> = (0..8)
        .map(|_| {
            let (router, body, authorization) =
                (a.router.clone(), batch.clone(), authorization.clone());
            tokio::spawn(async move {
                let request = Request::post("/import")
                    .header("content-type", "application/json")
                    .header("authorization", authorization)
                    .body(Body::from(body))
                    .unwrap();
                let response = router.oneshot(request).await.unwrap();
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (status, serde_json::from_slice::<Value>(&body).unwrap())
            })
        })
        .collect();
    for send in sends {
        let (status, answer) = send.await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "partial success: {answer}");
        assert_eq!(answer["num_records_imported"], 99);
        assert_eq!(answer["failed_records"][0]["index"], 50);
    }
    assert_eq!(a.count("SELECT count(*) FROM events").await, 99);
}

/// Before: the secret was stored verbatim, and compared verbatim.
#[tokio::test]
async fn webhook_secrets_are_kept_as_keyed_hashes() {
    let a = analytics().await;
    let keys = integration_tests::test_keys();
    assert_eq!(
        a.count(&format!(
            "SELECT count(*) FROM workspace_tokens WHERE kind = 'posthog_webhook_secret' AND token = '{}'",
            keys.hash("hook-secret")
        ))
        .await,
        1
    );
    assert_eq!(
        a.count("SELECT count(*) FROM workspace_tokens WHERE token = 'hook-secret'")
            .await,
        0
    );
    // A secret written verbatim before hashing still works once, and is hashed on the way.
    let other = a.other_workspace().await;
    a.db.client()
        .await
        .execute_typed(
            "INSERT INTO workspace_tokens (token, workspace_id, kind) VALUES ('legacy-secret', $1, 'posthog_webhook_secret')",
            &[(&other, tokio_postgres::types::Type::UUID)],
        )
        .await
        .unwrap();
    let body = json!({"event": posthog_event("$pageview", "legacy")}).to_string();
    let (status, _) = a
        .post(
            "/webhooks/posthog",
            body.clone().into_bytes(),
            &[JSON, ("x-webhook-secret", "legacy-secre")],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a prefix is not the secret"
    );
    let (status, _) = a
        .post(
            "/webhooks/posthog",
            body.into_bytes(),
            &[JSON, ("x-webhook-secret", "legacy-secret")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a.events_of(other).await.len(), 1);
    assert_eq!(
        a.count(&format!(
            "SELECT count(*) FROM workspace_tokens WHERE token = '{}'",
            keys.hash("legacy-secret")
        ))
        .await,
        1
    );
    assert_eq!(
        a.count("SELECT count(*) FROM workspace_tokens WHERE token = 'legacy-secret'")
            .await,
        0
    );
    let again = json!({"event": posthog_event("$pageview", "legacy")}).to_string();
    let (status, _) = a
        .post(
            "/webhooks/posthog",
            again.into_bytes(),
            &[JSON, ("authorization", "Bearer legacy-secret")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "found by its hash from now on");
}

/// Before: the database refused the delivery, the agent answered 503, and PostHog retried
/// it for hours.
#[tokio::test]
async fn a_webhook_delivery_that_cannot_be_stored_is_acknowledged_and_kept() {
    let a = analytics().await;
    let uuid = uuid::Uuid::new_v4();
    let nul = format!(
        r#"{{"event": {{"uuid": "{uuid}", "event": "x", "distinct_id": "u", "properties": {{"k": "a\u0000b"}}}}}}"#
    );
    let surrogate =
        r#"{"event": {"event": "x", "distinct_id": "u", "properties": {"k": "\udc00"}}}"#;
    let secret = ("x-webhook-secret", "hook-secret");
    for body in [nul.as_str(), nul.as_str(), surrogate] {
        let (status, answer) = a
            .post(
                "/webhooks/posthog",
                body.as_bytes().to_vec(),
                &[JSON, secret],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["outcome"], "quarantined");
    }
    assert_eq!(
        a.count("SELECT count(*) FROM quarantine WHERE source = 'posthog-webhook'")
            .await,
        2,
        "the redelivery is kept once"
    );
    assert_eq!(
        a.count(&format!(
            "SELECT count(*) FROM quarantine WHERE key = 'uuid:{uuid}' AND reason LIKE '%u0000%'"
        ))
        .await,
        1
    );
    assert_eq!(a.count("SELECT count(*) FROM events").await, 0);
    // A body that is not JSON, or not an event, is the sender's to fix.
    for body in ["{not json", r#"{"event": {"distinct_id": "u"}}"#, "[]"] {
        let (status, _) = a
            .post(
                "/webhooks/posthog",
                body.as_bytes().to_vec(),
                &[JSON, secret],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}

/// Before: no lock timeout, so a held lock made the request wait until API Gateway gave up.
#[tokio::test]
async fn a_held_lock_turns_into_a_503_with_retry_after() {
    let a = analytics().await;
    let event = posthog_event("locked", "u");
    let holder = a.db.client().await;
    holder
        .batch_execute(&format!(
            "BEGIN; INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp)
             VALUES ('{}', '{}', 'posthog', 'u', 'locked', now());",
            event["uuid"].as_str().unwrap(),
            a.workspace
        ))
        .await
        .unwrap();
    let request = Request::post("/batch/")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"api_key": "phc_test", "batch": [event]}).to_string(),
        ))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), a.router.clone().oneshot(request))
        .await
        .expect("answered within the budget, not after the lock is released")
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    holder.batch_execute("ROLLBACK").await.unwrap();
}
