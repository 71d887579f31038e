//! The metrics recompute against a small fixed dataset whose every figure was computed by
//! hand: a New York workspace (UTC−5 in November), spend on two platforms plus one row in
//! another currency, orders on both sides of local midnight, a refund, Stripe charges and MRR
//! movements, events and signups.

use chrono::NaiveDate;
use integration_tests::test_db::TestDb;
use tokio_postgres::types::Type;
use uuid::Uuid;

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

const FIXTURE: &str = "
    INSERT INTO workspaces (id, name, timezone, currency)
    VALUES ('00000000-0000-0000-0000-0000000000aa', 'ny', 'America/New_York', 'USD');

    INSERT INTO ad_insights (platform, account_id, level_id, date, workspace_id, currency, spend, impressions, clicks, conversions, conversion_value) VALUES
      ('meta',   'act', 'ad1', '2026-11-10', '00000000-0000-0000-0000-0000000000aa', 'USD', 100, 10000, 200, 5, 400),
      ('tiktok', 'adv', 'ad2', '2026-11-10', '00000000-0000-0000-0000-0000000000aa', 'USD',  50,  5000,  50, 1,  80),
      ('tiktok', 'adv', 'ad3', '2026-11-10', '00000000-0000-0000-0000-0000000000aa', 'EUR',  20,  1000,  10, 0,   0);

    INSERT INTO orders (shop, order_id, workspace_id, created_at, updated_at, processed_at, currency, total_price, refunded_amount, customer_id, raw, source) VALUES
      -- 10:00 in New York on the 10th; partly refunded; customer 1's first order.
      ('s', 1, '00000000-0000-0000-0000-0000000000aa', '2026-11-10 15:00Z', '2026-11-10 15:00Z', '2026-11-10 15:00Z', 'USD', 120, 20, 1, '{}', 'poll'),
      -- 03:00 UTC on the 11th is 22:00 on the 10th in New York.
      ('s', 2, '00000000-0000-0000-0000-0000000000aa', '2026-11-11 03:00Z', '2026-11-11 03:00Z', '2026-11-11 03:00Z', 'USD',  80,  0, 2, '{}', 'poll'),
      -- 01:00 on the 11th in New York; customer 1 again.
      ('s', 3, '00000000-0000-0000-0000-0000000000aa', '2026-11-11 06:00Z', '2026-11-11 06:00Z', '2026-11-11 06:00Z', 'USD',  50,  0, 1, '{}', 'poll');

    INSERT INTO stripe.charges (id, customer, status, amount, amount_refunded, currency, created, workspace_id, raw, last_event_id, last_event_created) VALUES
      ('ch1', 'cus', 'succeeded', 5000, 1000, 'usd', '2026-11-10 12:00Z', '00000000-0000-0000-0000-0000000000aa', '{}', 'e', now()),
      ('ch2', 'cus', 'failed',    9900,    0, 'usd', '2026-11-10 12:00Z', '00000000-0000-0000-0000-0000000000aa', '{}', 'e', now());

    INSERT INTO stripe.mrr_changes (event_id, subscription, workspace_id, kind, mrr_before, mrr_after, delta, currency, occurred_at) VALUES
      ('e1', 'sub1', '00000000-0000-0000-0000-0000000000aa', 'new',          0, 2000,  2000, 'usd', '2026-11-09 12:00Z'),
      ('e2', 'sub1', '00000000-0000-0000-0000-0000000000aa', 'expansion', 2000, 3000,  1000, 'usd', '2026-11-10 16:00Z'),
      ('e3', 'sub2', '00000000-0000-0000-0000-0000000000aa', 'new',          0,  500,   500, 'usd', '2026-11-10 17:00Z'),
      -- 04:00 UTC on the 11th: still the 10th in New York.
      ('e4', 'sub2', '00000000-0000-0000-0000-0000000000aa', 'churn',      500,    0,  -500, 'usd', '2026-11-11 04:00Z');

    INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp) VALUES
      (gen_random_uuid(), '00000000-0000-0000-0000-0000000000aa', 'posthog', 'u1', 'a', '2026-11-10 15:00Z'),
      (gen_random_uuid(), '00000000-0000-0000-0000-0000000000aa', 'posthog', 'u2', 'a', '2026-11-10 16:00Z'),
      (gen_random_uuid(), '00000000-0000-0000-0000-0000000000aa', 'posthog', 'u1', 'b', '2026-11-10 17:00Z'),
      (gen_random_uuid(), '00000000-0000-0000-0000-0000000000aa', 'posthog', 'u5', 'a', '2026-11-11 03:00Z'),
      (gen_random_uuid(), '00000000-0000-0000-0000-0000000000aa', 'posthog', 'u3', 'a', '2026-11-04 15:00Z'),
      (gen_random_uuid(), '00000000-0000-0000-0000-0000000000aa', 'mixpanel', 'u4', 'a', '2026-10-15 15:00Z'),
      (gen_random_uuid(), '00000000-0000-0000-0000-0000000000aa', 'posthog', 'u6', 'a', '2026-10-01 15:00Z');

    INSERT INTO users (workspace_id, distinct_id, signed_up_at) VALUES
      ('00000000-0000-0000-0000-0000000000aa', 'u1', '2026-11-10 14:00Z'),
      ('00000000-0000-0000-0000-0000000000aa', 'u6', '2026-11-11 04:30Z'),
      ('00000000-0000-0000-0000-0000000000aa', 'u7', '2026-11-11 06:00Z');
";

const WORKSPACE: Uuid = Uuid::from_u128(0xaa);

fn metrics_deps(db: &TestDb) -> metrics::MetricsDeps {
    metrics::MetricsDeps::new(&db.container(4, shared::clock::Clock::system()))
}

async fn fixture() -> TestDb {
    let db = TestDb::new().await;
    db.client().await.batch_execute(FIXTURE).await.unwrap();
    db
}

/// Every column of one day as text, for exact comparison (NULL as "NULL").
async fn row(db: &TestDb, date: &str) -> std::collections::BTreeMap<String, String> {
    let client = db.client().await;
    let rows = client
        .query_typed(
            "SELECT key, COALESCE(value #>> '{}', 'NULL')
               FROM daily_metrics m, jsonb_each(to_jsonb(m) - 'computed_at' - 'workspace_id')
              WHERE m.workspace_id = $1 AND m.date = $2",
            &[(&WORKSPACE, Type::UUID), (&day(date), Type::DATE)],
        )
        .await
        .unwrap();
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pick(
    row: &std::collections::BTreeMap<String, String>,
    keys: &[(&str, &str)],
) -> Vec<(String, String)> {
    keys.iter()
        .map(|(key, _)| {
            (
                key.to_string(),
                row.get(*key).cloned().unwrap_or_else(|| "missing".into()),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_metric_of_a_busy_day_matches_the_hand_computed_value() {
    let db = fixture().await;
    let deps = metrics_deps(&db);
    assert_eq!(
        metrics::recompute(&deps, WORKSPACE, day("2026-11-09"), day("2026-11-12"))
            .await
            .unwrap(),
        4
    );
    let tenth = row(&db, "2026-11-10").await;
    let wanted = [
        ("currency", "USD"),
        ("spend", "150.0000"),
        ("impressions", "15000"),
        ("clicks", "250"),
        ("conversions", "6.0000"),
        ("conversion_value", "480.0000"),
        ("ctr", "0.016667"),
        ("cpc", "0.6000"),
        ("cpm", "10.0000"),
        ("orders", "2"),
        ("gross_revenue", "200.0000"),
        ("refunds", "20.0000"),
        ("net_revenue", "180.0000"),
        ("aov", "100.0000"),
        ("new_customers", "2"),
        ("subscription_revenue", "40.0000"),
        ("mrr", "30.0000"),
        ("new_mrr", "5.0000"),
        ("expansion_mrr", "10.0000"),
        ("contraction_mrr", "0.0000"),
        ("churned_mrr", "5.0000"),
        ("reactivation_mrr", "0.0000"),
        ("active_subscriptions", "1"),
        ("revenue", "220.0000"),
        ("roas", "3.200000"),
        ("mer", "1.466667"),
        ("cac", "75.0000"),
        ("events", "4"),
        ("dau", "3"),
        ("wau", "4"),
        ("mau", "5"),
        ("signups", "2"),
        ("excluded_currencies", "[\"EUR\"]"),
    ];
    assert_eq!(pick(&tenth, &wanted), expect(&wanted));

    let eleventh = row(&db, "2026-11-11").await;
    let wanted = [
        ("orders", "1"),
        ("net_revenue", "50.0000"),
        ("new_customers", "0"),
        ("signups", "1"),
        ("mrr", "30.0000"),
    ];
    assert_eq!(pick(&eleventh, &wanted), expect(&wanted));
}

#[tokio::test]
async fn zero_denominators_are_null_never_infinite() {
    let db = fixture().await;
    let deps = metrics_deps(&db);
    metrics::recompute(&deps, WORKSPACE, day("2026-11-12"), day("2026-11-12"))
        .await
        .unwrap();
    let quiet = row(&db, "2026-11-12").await;
    let wanted = [
        ("spend", "0.0000"),
        ("ctr", "NULL"),
        ("cpc", "NULL"),
        ("cpm", "NULL"),
        ("aov", "NULL"),
        ("roas", "NULL"),
        ("mer", "NULL"),
        ("cac", "NULL"),
        ("mrr", "30.0000"),
        ("active_subscriptions", "1"),
    ];
    assert_eq!(pick(&quiet, &wanted), expect(&wanted));
}

#[tokio::test]
async fn recomputing_is_idempotent_and_overlapping_recomputes_agree() {
    let db = fixture().await;
    let deps = metrics_deps(&db);
    metrics::recompute(&deps, WORKSPACE, day("2026-11-09"), day("2026-11-12"))
        .await
        .unwrap();
    let mut before = Vec::new();
    for date in ["2026-11-09", "2026-11-10", "2026-11-11", "2026-11-12"] {
        before.push(row(&db, date).await);
    }
    let (a, b) = tokio::join!(
        metrics::recompute(&deps, WORKSPACE, day("2026-11-09"), day("2026-11-11")),
        metrics::recompute(&deps, WORKSPACE, day("2026-11-10"), day("2026-11-12")),
    );
    a.unwrap();
    b.unwrap();
    let mut after = Vec::new();
    for date in ["2026-11-09", "2026-11-10", "2026-11-11", "2026-11-12"] {
        after.push(row(&db, date).await);
    }
    assert_eq!(before, after);
    let per_platform: i64 = db
        .client()
        .await
        .query_typed_one(
            "SELECT count(*) FROM daily_ad_metrics WHERE date = '2026-11-10'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(per_platform, 2, "meta and tiktok, once each");
}

#[tokio::test]
async fn ranges_are_checked() {
    let db = TestDb::new().await;
    let deps = metrics_deps(&db);
    assert!(
        metrics::recompute(&deps, WORKSPACE, day("2026-11-12"), day("2026-11-10"))
            .await
            .is_err()
    );
    assert!(
        metrics::recompute(&deps, WORKSPACE, day("2025-01-01"), day("2026-11-10"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_queued_request_recomputes_the_days_around_it_and_asks_for_suggestions() {
    let db = fixture().await;
    let deps = metrics_deps(&db);
    let request = shared::messages::MetricsRecompute::new(
        WORKSPACE,
        day("2026-11-11"),
        "test",
        chrono::Utc::now(),
    );
    assert_eq!(
        metrics::handle(&deps, &request).await.unwrap(),
        3,
        "the 10th, 11th and 12th"
    );
    assert_eq!(row(&db, "2026-11-10").await["net_revenue"], "180.0000");
    let refresh = deps
        .transport
        .receive(
            shared::queue::catalog::SUGGESTIONS.name,
            10,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(refresh.len(), 1);
    assert_eq!(refresh[0].group_id, WORKSPACE.to_string());
}
