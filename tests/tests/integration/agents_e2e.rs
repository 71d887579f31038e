//! The agents together through the local stack: a signed Stripe webhook, a batch of PostHog
//! events and an ETL run each lead, through the queue and the metrics consumer, to the right
//! `daily_metrics` row, read back from `GET /metrics` — with no manual recompute.
//!
//! The stack's clock is shifted to the instants where "today" is easiest to get wrong: just
//! after and just before midnight UTC, a DST change day, and a workspace whose day is
//! already tomorrow. The expected rows are found by the workspace's own date, the ad rows by
//! the ad account's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use integration_tests::test_db::TestDb;
use serde_json::{Value, json};
use shared::clock::Clock;
use standins::meta::{DEFAULT_META_ACCOUNT, DEFAULT_META_TOKEN};
use standins::{StandinConfig, Standins};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::types::Type;
use uuid::Uuid;

const STRIPE_SECRET: &str = "whsec_test";
const METRICS_TOKEN: &str = "metrics-test-token";

/// One HTTP/1.1 request on a fresh connection; the status and the JSON body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn stripe_event(clock: &Clock, id: &str, kind: &str, object: Value) -> String {
    json!({"id": id, "object": "event", "api_version": "2024-06-20", "created": clock.now().timestamp(),
           "livemode": false, "type": kind, "data": {"object": object}})
    .to_string()
}

async fn etl_run(db: &TestDb, standins: &Standins, workspace: Uuid, clock: &Clock) {
    let pool = db.pool(2);
    let connection: Uuid = integration_tests::fixtures::connection(
        &db.client().await,
        workspace,
        "meta",
        DEFAULT_META_ACCOUNT,
        DEFAULT_META_TOKEN,
    )
    .await;
    let transport = Arc::new(shared::queue::postgres::PostgresTransport::new(
        pool.clone(),
    ));
    let container = shared::lambda::Container::new(pool, transport, clock.clone());
    let config = etl::Config {
        keys: integration_tests::test_keys(),
        endpoints: etl::Endpoints {
            meta_base_url: standins.meta_base_url(),
            ..etl::Endpoints::default()
        },
        meta_app_secret: Some(standins::meta::DEFAULT_META_APP_SECRET.into()),
        meta: Default::default(),
        tiktok: Default::default(),
    };
    let deps = etl::EtlDeps::new(&container, config).unwrap();
    // The window ends on the ad account's today, in its own timezone.
    let today = meta_today(clock);
    let run = etl::EtlRun {
        platform: etl::Platform::Meta,
        connection_id: connection,
        account_id: DEFAULT_META_ACCOUNT.into(),
        window_start: today - chrono::Duration::days(2),
        window_end: today,
    };
    assert_eq!(
        etl::run(&deps, &run, "e2e").await.unwrap().status,
        etl::RunStatus::Ok
    );
}

/// The stand-in Meta account's today: it reports in America/Los_Angeles.
fn meta_today(clock: &Clock) -> chrono::NaiveDate {
    clock.today_in(&chrono_tz::America::Los_Angeles)
}

#[tokio::test]
async fn stripe_posthog_and_etl_reach_daily_metrics_just_after_midnight_utc() {
    // 13:30 in Auckland, 16:30 of the day before in the ad account's Los Angeles.
    reach_daily_metrics_at("2026-12-07T00:30:00Z", "Pacific/Auckland").await;
}

#[tokio::test]
async fn stripe_posthog_and_etl_reach_daily_metrics_just_before_midnight_utc() {
    // 15:30 in Los Angeles, the same day for the workspace and the ad account.
    reach_daily_metrics_at("2026-12-07T23:30:00Z", "America/Los_Angeles").await;
}

#[tokio::test]
async fn stripe_posthog_and_etl_reach_daily_metrics_on_a_dst_change_day() {
    // 01:30 EST on 2026-11-01, the second 01:30 of the night New York falls back.
    reach_daily_metrics_at("2026-11-01T06:30:00Z", "America/New_York").await;
}

#[tokio::test]
async fn stripe_posthog_and_etl_reach_daily_metrics_in_a_workspace_far_from_utc() {
    // 13:30 of the next day at UTC+14.
    reach_daily_metrics_at("2026-12-07T23:30:00Z", "Pacific/Kiritimati").await;
}

async fn reach_daily_metrics_at(at: &str, workspace_zone: &str) {
    let at: DateTime<Utc> = at.parse().unwrap();
    let clock = Clock::shifted_to(at);
    let db = TestDb::empty().await;
    let stack = local_stack::start(local_stack::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(db.url.clone()),
        agents: integration_tests::stack_agents(STRIPE_SECRET, METRICS_TOKEN),
        clock: clock.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let workspace: Uuid = db
        .client()
        .await
        .query_typed_one(
            "UPDATE workspaces SET timezone = $1 WHERE NOT is_product RETURNING id",
            &[(&workspace_zone, Type::TEXT)],
        )
        .await
        .unwrap()
        .get(0);

    // Stripe: a customer of this workspace starts a $10/month subscription.
    for body in [
        stripe_event(
            &clock,
            "evt_c",
            "customer.created",
            json!({"id": "cus_1", "object": "customer", "email": "a@x.io",
            "metadata": {"workspace_id": workspace.to_string()}}),
        ),
        stripe_event(
            &clock,
            "evt_s",
            "customer.subscription.created",
            json!({"id": "sub_1", "object": "subscription",
            "customer": "cus_1", "status": "active", "currency": "usd",
            "items": {"data": [{"id": "si_1", "quantity": 1,
                "price": {"id": "price_1", "unit_amount": 1000, "currency": "usd", "recurring": {"interval": "month", "interval_count": 1}}}]}}),
        ),
    ] {
        let signature =
            shared::webhook::sign_stripe(body.as_bytes(), STRIPE_SECRET, clock.now().timestamp());
        let (status, answer) = request(
            stack.addr,
            "POST",
            "/webhooks/stripe",
            &[("Stripe-Signature", signature)],
            &body,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }

    // PostHog: three events through the capture API.
    let batch = json!({"api_key": local_stack::LOCAL_POSTHOG_TOKEN, "batch": (0..3).map(|i| json!({
        "event": "$pageview", "distinct_id": format!("u{i}"), "uuid": Uuid::new_v4().to_string(),
        "timestamp": clock.now().to_rfc3339(), "properties": {}})).collect::<Vec<_>>()});
    let (status, _) = request(
        stack.addr,
        "POST",
        "/batch/",
        &[("Content-Type", "application/json".into())],
        &batch.to_string(),
    )
    .await;
    assert_eq!(status, 200);

    // ETL: a Meta run for the last three days.
    let standins = standins::start(StandinConfig {
        today: Some(meta_today(&clock)),
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    etl_run(&db, &standins, workspace, &clock).await;

    // The workspace's today, which is neither the UTC date nor the ad account's.
    let today = clock.today_in_named(workspace_zone);
    let path = format!(
        "/metrics?workspace={workspace}&from={}&to={today}",
        today - chrono::Duration::days(3)
    );
    let auth = [("Authorization", format!("Bearer {METRICS_TOKEN}"))];
    let mut last = Value::Null;
    for _ in 0..80 {
        let (status, answer) = request(stack.addr, "GET", &path, &auth, "").await;
        assert_eq!(status, 200, "{answer}");
        let days = answer["days"].as_array().cloned().unwrap_or_default();
        let today_row = days
            .iter()
            .find(|row| row["date"] == today.to_string())
            .cloned()
            .unwrap_or(Value::Null);
        let spend_days = days
            .iter()
            .filter(|row| row["spend"].as_f64().is_some_and(|spend| spend > 0.0))
            .count();
        if today_row["events"] == 3
            && today_row["mrr"] == 10.0
            && today_row["active_subscriptions"] == 1
            && spend_days == 3
        {
            last = Value::Bool(true);
            break;
        }
        last = answer;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        last,
        Value::Bool(true),
        "daily_metrics never showed all three sources: {last}"
    );

    let (status, _) = request(stack.addr, "GET", &path, &[], "").await;
    assert_eq!(status, 401, "no token, no metrics");
    let (status, answer) = request(
        stack.addr,
        "GET",
        "/metrics?workspace=nope&from=2026-01-01",
        &auth,
        "",
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("workspace"),
        "{answer}"
    );
    standins.stop().await;
    stack.stop().await;
}
