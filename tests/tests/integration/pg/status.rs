//! `GET /status.json` through the same router Lambda and the local stack serve.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use integration_tests::test_db::TestDb;
use shared::db::migrations;
use shared::queue::postgres::PostgresTransport;
use shared::queue::{OutgoingMessage, Transport, catalog};
use tower::ServiceExt;

/// `GET /status.json` through the status router, as Lambda or the local stack would serve it.
async fn get_status(
    pool: shared::db::Pool,
    transport: Arc<PostgresTransport>,
) -> (StatusCode, serde_json::Value) {
    let deps = status::StatusDeps {
        pool,
        transport,
        agents: vec!["status"],
    };
    let response = status::router(Arc::new(deps))
        .oneshot(Request::get("/status.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let code = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (code, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn reports_database_migrations_and_queue_depths() {
    let db = TestDb::new().await;
    let pool = db.pool(2);
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    transport
        .send(&[
            OutgoingMessage::new(catalog::METRICS.name, "g".into(), "1".into(), "{}".into()),
            OutgoingMessage::new(catalog::METRICS.name, "h".into(), "2".into(), "{}".into()),
            OutgoingMessage::new(catalog::EMAIL.name, "u".into(), "3".into(), "{}".into()),
        ])
        .await
        .unwrap();
    let _in_flight = transport
        .receive(catalog::METRICS.name, 1, std::time::Duration::from_secs(60))
        .await
        .unwrap();

    let (code, json) = get_status(pool, transport).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(json["ok"], true);
    assert_eq!(json["database"]["reachable"], true);
    assert_eq!(
        json["database"]["migration_version"],
        migrations::all().last().unwrap().version
    );
    let queue = |name: &str| {
        json["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(queue("metrics.fifo")["visible"], 1);
    assert_eq!(queue("metrics.fifo")["in_flight"], 1);
    assert_eq!(queue("email.fifo")["visible"], 1);
    assert_eq!(queue("etl.fifo")["dead_letters"], 0);
    assert_eq!(json["agents"], serde_json::json!(["status"]));
}

#[tokio::test]
async fn an_unreachable_database_is_reported_not_hidden() {
    let db = TestDb::new().await;
    let pool = db.pool(1);
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    pool.close();
    let (code, json) = get_status(pool, transport).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["ok"], false);
    assert_eq!(json["database"]["reachable"], false);
    assert!(
        json["database"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
}

#[tokio::test]
async fn kpis_come_from_the_tables_they_summarise() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO etl_runs (platform, account_id, window_start, window_end, status)
             SELECT 'meta', 'a', current_date, current_date, status
               FROM unnest(ARRAY['ok', 'ok', 'ok', 'failed', 'skipped', 'running']) AS s(status);
             INSERT INTO etl_runs (platform, account_id, window_start, window_end, status, started_at)
             VALUES ('meta', 'a', current_date, current_date, 'failed', now() - interval '8 days');
             INSERT INTO workspaces (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'w');
             INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp, received_at)
             SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'posthog', 'u', 'e', now(), now() - make_interval(hours => h)
               FROM generate_series(1, 30) AS h;",
        )
        .await
        .unwrap();
    let pool = db.pool(2);
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let (code, json) = get_status(pool, transport).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        json["etl_success_rate_7d"], 0.75,
        "3 ok of 4 finished in the last 7 days: {json}"
    );
    assert_eq!(json["events_last_24h"], 23, "{json}");
}
