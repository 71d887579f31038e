//! Shopify orders against the local Shopify stand-in: the ETL run (full, incremental,
//! throttled, unauthorised, repeated) and `POST /webhooks/shopify` (signed, redelivered,
//! forged, stale, racing the poller), all ending in one row per order with exact money; and
//! the webhook tried as an attacker and a faulty client would: replayed under new ids or
//! long after, re-sent under another shop's domain, refused by the database, throttled, held
//! up by a lock, sent eight times at once, with Unicode and oversized headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use etl::{Endpoints, EtlDeps, EtlRun, Platform, RunStatus, WebhookDeps};
use integration_tests::test_db::TestDb;
use serde_json::Value;
use shared::lambda::Container;
use shared::queue::postgres::PostgresTransport;
use shared::queue::{Transport, catalog};
use standins::shopify::{DEFAULT_SHOP, DEFAULT_SHOPIFY_TOKEN};
use standins::{
    Outcome, ShopSpec, ShopifyFaults, ShopifyTopic, StandinConfig, Standins, WebhookDelivery,
};
use tokio_postgres::types::Type;
use tower::ServiceExt;
use uuid::Uuid;

const TODAY: &str = "2026-11-30";
/// Earlier than every seeded order (90 days of history).
const BACKFILL_FROM: &str = "2026-06-01";
/// The window a scheduled run of [`TODAY`] starts (seven days of lookback).
const SCHEDULED_FROM: &str = "2026-11-24";
const SECRET: &str = "shpss_test_secret";
/// A second shop, of another workspace, with its own token.
const OTHER_SHOP: &str = "other-store";
const OTHER_TOKEN: &str = "shpat_other_store";

struct Shop {
    db: TestDb,
    deps: EtlDeps,
    router: Router,
    standins: Standins,
    transport: Arc<PostgresTransport>,
    connection: Uuid,
    /// The workspace of [`OTHER_SHOP`].
    other_workspace: Uuid,
}

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// "12.34" → 1234 (the stand-in writes money with two decimals).
fn cents(value: &Value) -> i64 {
    value.as_str().unwrap().replace('.', "").parse().unwrap()
}

async fn shop() -> Shop {
    shop_of(2_000, 90).await
}

/// [`shop`] with a default shop of `orders` orders over `history_days`.
async fn shop_of(orders: usize, history_days: u32) -> Shop {
    let db = TestDb::new().await;
    let pool = db.pool(4);
    let client = db.client().await;
    let workspace: Uuid = integration_tests::fixtures::workspace(&client, "acme").await;
    let connection: Uuid = integration_tests::fixtures::connection(
        &client,
        workspace,
        "shopify",
        DEFAULT_SHOP,
        DEFAULT_SHOPIFY_TOKEN,
    )
    .await;
    let other_workspace: Uuid = integration_tests::fixtures::workspace(&client, "other").await;
    integration_tests::fixtures::connection(
        &client,
        other_workspace,
        "shopify",
        OTHER_SHOP,
        OTHER_TOKEN,
    )
    .await;
    let mut config = StandinConfig {
        today: Some(day(TODAY)),
        ..StandinConfig::default()
    };
    config.shopify.retry_after_seconds = 0.3;
    config.shopify.shops[0].orders = orders;
    config.shopify.shops[0].history_days = history_days;
    config.shopify.shops.push(ShopSpec {
        access_token: Some(OTHER_TOKEN.into()),
        ..ShopSpec::new(OTHER_SHOP, 40)
    });
    let standins = standins::start(config).await.unwrap();
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let container = Container::new(pool, transport.clone(), shared::clock::Clock::system());
    let endpoints = Endpoints {
        shopify_base_url: format!("{}/shopify", standins.url()),
        ..Endpoints::default()
    };
    let config = etl::Config {
        keys: integration_tests::test_keys(),
        endpoints: endpoints.clone(),
        meta_app_secret: None,
        meta: Default::default(),
        tiktok: Default::default(),
    };
    let deps = EtlDeps {
        retry: integration_tests::fixtures::fast_retries(3),
        // The stand-in's bulk operations finish in three polls; no need to wait 2 s apart.
        bulk_poll_interval: Duration::from_millis(20),
        ..EtlDeps::new(&container, config).unwrap()
    };
    let webhook_config = etl::WebhookConfig {
        keys: integration_tests::test_keys(),
        webhook_secrets: vec!["shpss_old_secret".into(), SECRET.into()],
        endpoints,
    };
    let router = etl::router(Arc::new(
        WebhookDeps::new(&container, webhook_config).unwrap(),
    ));
    Shop {
        db,
        deps,
        router,
        standins,
        transport,
        connection,
        other_workspace,
    }
}

/// Order sums: (orders, gross, refunded, net in cents, cancelled orders).
type Totals = (i64, i64, i64, i64, i64);

impl Shop {
    fn faults(&self) -> ShopifyFaults {
        self.standins.shopify_faults()
    }

    fn run(&self, start: &str) -> EtlRun {
        EtlRun {
            platform: Platform::Shopify,
            connection_id: self.connection,
            account_id: DEFAULT_SHOP.into(),
            window_start: day(start),
            window_end: day(TODAY),
        }
    }

    /// A scheduled run: the lookback window up to today. Without a cursor it is a first
    /// sync (one bulk operation over every order); with one, pages since the cursor.
    async fn sync(&self) -> etl::RunReport {
        let report = etl::run(&self.deps, &self.run(SCHEDULED_FROM), "worker-a")
            .await
            .unwrap();
        assert_eq!(report.status, RunStatus::Ok, "{report:?}");
        report
    }

    async fn stored(&self) -> Totals {
        let row = self
            .db
            .client()
            .await
            .query_typed_one(
                "SELECT count(*), COALESCE((sum(total_price) * 100)::int8, 0), COALESCE((sum(refunded_amount) * 100)::int8, 0),
                        COALESCE((sum(net_revenue) * 100)::int8, 0), count(*) FILTER (WHERE cancelled_at IS NOT NULL)
                   FROM orders WHERE shop = $1",
                &[(&DEFAULT_SHOP, Type::TEXT)],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
    }

    /// The stand-in's ground truth. It nets a voided order (cancelled before payment) at its
    /// total, as `current_total_price` does; we net it at 0, since nothing was captured.
    fn expected(&self) -> Totals {
        let faults = self.faults();
        let totals = faults.expected_totals(DEFAULT_SHOP);
        let voided: i64 = faults
            .order_ids(DEFAULT_SHOP)
            .into_iter()
            .filter_map(|id| faults.order(DEFAULT_SHOP, id))
            .filter(|order| order["financial_status"] == "voided")
            .map(|order| cents(&order["total_price"]))
            .sum();
        (
            totals.orders as i64,
            totals.gross_cents,
            totals.refunded_cents,
            totals.net_cents - voided,
            totals.cancelled as i64,
        )
    }

    async fn cursor(&self) -> Option<Value> {
        self.db
            .client()
            .await
            .query_typed_one(
                "SELECT sync_cursor FROM connections WHERE id = $1",
                &[(&self.connection, Type::UUID)],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// (refunded, net, updated_at, source) of one stored order.
    async fn order(&self, id: u64) -> Option<(i64, i64, DateTime<Utc>, String)> {
        self.db
            .client()
            .await
            .query_typed_opt(
                "SELECT (refunded_amount * 100)::int8, (net_revenue * 100)::int8, updated_at, source
                   FROM orders WHERE shop = $1 AND order_id = $2",
                &[(&DEFAULT_SHOP, Type::TEXT), (&(id as i64), Type::INT8)],
            )
            .await
            .unwrap()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
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

    /// Paid, never refunded or cancelled orders of the stand-in.
    fn paid_orders(&self, n: usize) -> Vec<u64> {
        let faults = self.faults();
        faults
            .order_ids(DEFAULT_SHOP)
            .into_iter()
            .filter(|id| {
                faults.order(DEFAULT_SHOP, *id).is_some_and(|order| {
                    order["financial_status"] == "paid" && order["cancelled_at"].is_null()
                })
            })
            .take(n)
            .collect()
    }

    async fn post(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn deliver(&self, topic: ShopifyTopic, id: u64) -> (StatusCode, Value) {
        let delivery = self
            .faults()
            .webhook(DEFAULT_SHOP, topic, id, SECRET)
            .unwrap();
        self.post(delivery.request("/webhooks/shopify")).await
    }
}

/// The GraphQL operations the stand-in was asked, in order.
fn operations(e: &Shop) -> Vec<String> {
    e.faults()
        .requests()
        .iter()
        .filter_map(|request| request.param("operation").map(str::to_string))
        .collect()
}

/// The distinct searches of the orders pages asked for.
fn searches(e: &Shop) -> Vec<String> {
    let mut searched: Vec<String> = e
        .faults()
        .requests()
        .iter()
        .filter(|request| request.param("operation") == Some("orders"))
        .filter_map(|request| request.param("query").map(str::to_string))
        .collect();
    searched.dedup();
    searched
}

#[tokio::test]
async fn a_full_sync_stores_exactly_what_the_shop_has() {
    let e = shop().await;
    let report = e.sync().await;
    let expected = e.expected();
    assert!(expected.0 >= 2_000 && expected.4 > 0, "{expected:?}");
    assert_eq!(report.rows_inserted as i64, expected.0);
    assert_eq!(report.rows_updated, 0);
    // A first sync is one bulk operation: started, polled until it completed (the stand-in
    // takes three polls), its file streamed — not pages.
    assert_eq!(report.pages, 3, "the status polls");
    assert_eq!(e.stored().await, expected);
    let requests = e.faults().requests();
    assert!(requests.iter().all(|r| r.outcome == Outcome::Ok));
    assert!(
        requests
            .iter()
            .all(|r| r.path.ends_with("/admin/api/2026-10/graphql.json")),
        "the GraphQL Admin API at the configured version"
    );
    assert_eq!(
        operations(&e),
        ["bulkOperationRunQuery", "node", "node", "node"]
    );
    assert!(
        requests[0]
            .param("query")
            .unwrap()
            .contains("{ orders(sortKey: UPDATED_AT)"),
        "every order, whatever the window: {:?}",
        requests[0].param("query")
    );
    let newest: DateTime<Utc> =
        e.db.client()
            .await
            .query_typed_one("SELECT max(updated_at) FROM orders", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(
        e.cursor().await.unwrap()["updated_at"],
        newest.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let dates = e
        .count("SELECT count(DISTINCT (COALESCE(processed_at, created_at) AT TIME ZONE 'UTC')::date) FROM orders")
        .await;
    let metrics = e.transport.depth(catalog::METRICS.name).await.unwrap();
    assert_eq!(
        metrics.visible as i64, dates,
        "one recompute per order date"
    );
    assert_eq!(
        e.count("SELECT count(*) FROM etl_runs WHERE platform = 'shopify' AND status = 'ok'")
            .await,
        1
    );
}

#[tokio::test]
async fn an_incremental_sync_picks_up_exactly_the_changes() {
    let e = shop().await;
    e.sync().await;
    let cursor: DateTime<Utc> = e.cursor().await.unwrap()["updated_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let faults = e.faults();
    let added = faults.add_orders(DEFAULT_SHOP, 3).unwrap();
    let [refunded, cancelled] = e.paid_orders(2)[..] else {
        panic!("two paid orders")
    };
    faults
        .refund_order(DEFAULT_SHOP, refunded, Some(500))
        .unwrap();
    faults.cancel_order(DEFAULT_SHOP, cancelled).unwrap();
    faults.clear_requests();
    let report = e.sync().await;
    assert_eq!(
        searches(&e),
        vec![format!(
            "updated_at:>='{}'",
            (cursor - chrono::Duration::days(7)).to_rfc3339_opts(SecondsFormat::Secs, true)
        )],
        "pages from the cursor minus 7 days of lookback"
    );
    assert!(
        operations(&e).iter().all(|operation| operation == "orders"),
        "an incremental sync pages: {:?}",
        operations(&e)
    );
    assert_eq!(
        (report.rows_inserted, report.rows_updated),
        (3, 2),
        "{report:?}"
    );
    assert_eq!(e.stored().await, e.expected(), "no duplicates, exact sums");
    for id in &added {
        assert!(e.order(*id).await.is_some());
    }
    assert_eq!(e.order(refunded).await.unwrap().0, 500);
    let (refund, net, _, _) = e.order(cancelled).await.unwrap();
    assert!(refund > 0 && net == 0, "a cancelled paid order nets 0");
    let newest = faults.order(DEFAULT_SHOP, added[2]).unwrap()["updated_at"]
        .as_str()
        .unwrap()
        .parse::<DateTime<Utc>>()
        .unwrap()
        .max(
            faults.order(DEFAULT_SHOP, cancelled).unwrap()["updated_at"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
    assert_eq!(
        e.cursor().await.unwrap()["updated_at"],
        newest.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
}

#[tokio::test]
async fn re_running_changes_nothing() {
    let e = shop().await;
    e.sync().await;
    let first = e.stored().await;
    let cursor = e.cursor().await;
    let again = e.sync().await;
    assert_eq!((again.rows_inserted, again.rows_updated), (0, 0));
    assert_eq!(e.stored().await, first);
    assert_eq!(e.cursor().await, cursor);
    // A run re-reading the whole history (no cursor) rewrites nothing either.
    e.db.client()
        .await
        .execute_typed(
            "UPDATE connections SET sync_cursor = NULL WHERE id = $1",
            &[(&e.connection, Type::UUID)],
        )
        .await
        .unwrap();
    let full = e.sync().await;
    assert_eq!((full.rows_inserted, full.rows_updated), (0, 0));
    assert_eq!(e.stored().await, first);
}

#[tokio::test]
async fn throttling_is_retried_after_the_bucket_refills() {
    let e = shop().await;
    e.faults().throttle_next(2);
    let started = Instant::now();
    let report = etl::run(&e.deps, &e.run("2026-11-20"), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert_eq!(e.faults().count(Outcome::Throttled), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited for the emptied bucket (at least 1 s) twice, not the 10 ms backoff: {:?}",
        started.elapsed()
    );
    // The two throttled answers were the bulk operation's start: it ran once, and the sync
    // is whole.
    assert_eq!(
        operations(&e)
            .iter()
            .filter(|o| *o == "bulkOperationRunQuery")
            .count(),
        3,
        "two throttled, one run"
    );
    assert_eq!(report.rows_inserted as i64, e.expected().0);
    assert_eq!(e.stored().await, e.expected());
}

#[tokio::test]
async fn a_rejected_token_fails_the_run_without_retrying() {
    let e = shop().await;
    e.faults().expire_token();
    let report = etl::run(&e.deps, &e.run(BACKFILL_FROM), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.unwrap();
    assert!(
        error.contains("authentication") && error.contains("401"),
        "{error}"
    );
    assert_eq!(e.faults().request_count(), 1, "no retry for a bad token");
    assert_eq!(e.cursor().await, None);
    assert_eq!(e.stored().await.0, 0);
}

#[tokio::test]
async fn webhooks_are_verified_deduplicated_and_stored() {
    let e = shop().await;
    let [first, second] = e.paid_orders(2)[..] else {
        panic!("two paid orders")
    };
    let delivery = e
        .faults()
        .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersCreate, first, SECRET)
        .unwrap();
    let (status, body) = e.post(delivery.request("/webhooks/shopify")).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    let stored = e.order(first).await.unwrap();
    let order = e.faults().order(DEFAULT_SHOP, first).unwrap();
    assert_eq!(stored.1, cents(&order["total_price"]));
    assert_eq!(stored.3, "webhook");
    assert_eq!(
        e.transport
            .depth(catalog::METRICS.name)
            .await
            .unwrap()
            .visible,
        1,
        "the order's date is recomputed"
    );

    // A redelivery (same X-Shopify-Webhook-Id) changes nothing.
    let before = e
        .count("SELECT (extract(epoch FROM stored_at) * 1000000)::int8 FROM orders")
        .await;
    let (status, body) = e.post(delivery.request("/webhooks/shopify")).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(
        e.count("SELECT (extract(epoch FROM stored_at) * 1000000)::int8 FROM orders")
            .await,
        before
    );
    assert_eq!(
        e.count("SELECT count(*) FROM shopify_webhook_deliveries")
            .await,
        1
    );

    // A forged signature: 401, nothing written.
    let mut forged = e
        .faults()
        .webhook(
            DEFAULT_SHOP,
            ShopifyTopic::OrdersCreate,
            second,
            "not-the-secret",
        )
        .unwrap();
    let (status, _) = e.post(forged.request("/webhooks/shopify")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    forged
        .headers
        .retain(|(name, _)| name != "X-Shopify-Hmac-Sha256");
    let (status, _) = e.post(forged.request("/webhooks/shopify")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a missing signature too");
    assert!(e.order(second).await.is_none());
    assert_eq!(e.count("SELECT count(*) FROM orders").await, 1);
    assert_eq!(
        e.count("SELECT count(*) FROM shopify_webhook_deliveries")
            .await,
        1
    );

    // Signed but not JSON: 400 with the reason. Too large: 413.
    let mut broken = e
        .faults()
        .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersUpdated, second, SECRET)
        .unwrap();
    broken.body = b"{\"id\": 1,".to_vec();
    for (name, value) in &mut broken.headers {
        if name == "X-Shopify-Hmac-Sha256" {
            *value = shared::webhook::sign_shopify(&broken.body, SECRET);
        }
    }
    let (status, body) = e.post(broken.request("/webhooks/shopify")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("not JSON"),
        "{body}"
    );
    broken.body = vec![b' '; 3 * 1024 * 1024];
    let (status, _) = e.post(broken.request("/webhooks/shopify")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(e.count("SELECT count(*) FROM orders").await, 1);
}

#[tokio::test]
async fn an_older_webhook_does_not_undo_a_newer_poll() {
    let e = shop().await;
    let [id] = e.paid_orders(1)[..] else {
        panic!("a paid order")
    };
    let old = e
        .faults()
        .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersUpdated, id, SECRET)
        .unwrap();
    e.faults().refund_order(DEFAULT_SHOP, id, None).unwrap();
    e.sync().await;
    let polled = e.order(id).await.unwrap();
    assert_eq!(polled.1, 0, "fully refunded");
    let (status, body) = e.post(old.request("/webhooks/shopify")).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("stale"))
    );
    assert_eq!(e.order(id).await.unwrap(), polled, "the newer state stays");
    assert_eq!(e.stored().await, e.expected());
}

#[tokio::test]
async fn a_webhook_and_a_poll_of_the_same_order_leave_one_row() {
    let e = shop().await;
    let [id] = e.faults().add_orders(DEFAULT_SHOP, 1).unwrap()[..] else {
        panic!("one order")
    };
    let (status, _) = e.deliver(ShopifyTopic::OrdersCreate, id).await;
    assert_eq!(status, StatusCode::OK);
    let report = e.sync().await;
    let expected = e.expected();
    assert_eq!(
        (report.rows_inserted as i64, report.rows_updated),
        (expected.0 - 1, 0),
        "the webhook's copy is the same state"
    );
    assert_eq!(e.stored().await, expected);
    assert_eq!(
        e.count(&format!(
            "SELECT count(*) FROM orders WHERE order_id = {id}"
        ))
        .await,
        1
    );
    // A later change arrives by webhook first, then by poll: still one row, newest state.
    e.faults().touch_order(DEFAULT_SHOP, id).unwrap();
    let (_, body) = e.deliver(ShopifyTopic::OrdersUpdated, id).await;
    assert_eq!(body["outcome"], "applied");
    let report = e.sync().await;
    assert_eq!((report.rows_inserted, report.rows_updated), (0, 0));
    assert_eq!(e.stored().await, e.expected());
}

#[tokio::test]
async fn a_refund_webhook_counts_once_whether_the_order_is_stored_or_not() {
    let e = shop().await;
    let [stored, unknown] = e.paid_orders(2)[..] else {
        panic!("two paid orders")
    };
    e.sync().await;
    let before = e.order(stored).await.unwrap();
    let faults = e.faults();
    faults
        .refund_order(DEFAULT_SHOP, stored, Some(250))
        .unwrap();
    let (_, body) = e.deliver(ShopifyTopic::RefundsCreate, stored).await;
    assert_eq!(body["outcome"], "applied");
    let after = e.order(stored).await.unwrap();
    assert_eq!((after.0, after.1), (250, before.1 - 250));
    // A refund for an order we do not hold waits for it.
    e.db.client()
        .await
        .execute_typed(
            "DELETE FROM orders WHERE order_id = $1",
            &[(&(unknown as i64), Type::INT8)],
        )
        .await
        .unwrap();
    faults
        .refund_order(DEFAULT_SHOP, unknown, Some(100))
        .unwrap();
    let (_, body) = e.deliver(ShopifyTopic::RefundsCreate, unknown).await;
    assert_eq!(body["outcome"], "pending");
    // The poll brings both orders with their refunds inside: each counted once.
    e.sync().await;
    assert_eq!(e.order(stored).await.unwrap().0, 250);
    assert_eq!(e.order(unknown).await.unwrap().0, 100);
    assert_eq!(e.stored().await, e.expected());
}

/// `delivery` carrying `body` instead, signed as Shopify would have signed it.
fn resigned(mut delivery: WebhookDelivery, body: Vec<u8>) -> WebhookDelivery {
    delivery.set_header(
        "X-Shopify-Hmac-Sha256",
        &shared::webhook::sign_shopify(&body, SECRET),
    );
    delivery.body = body;
    delivery
}

/// `delivery` under fresh webhook and event ids: what a replay that changes them looks like.
fn renamed(mut delivery: WebhookDelivery) -> WebhookDelivery {
    delivery.set_header("X-Shopify-Webhook-Id", &Uuid::new_v4().to_string());
    delivery.set_header("X-Shopify-Event-Id", &Uuid::new_v4().to_string());
    delivery
}

fn stamped(mut delivery: WebhookDelivery, at: DateTime<Utc>) -> WebhookDelivery {
    delivery.set_header(
        "X-Shopify-Triggered-At",
        &at.to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    delivery
}

impl Shop {
    fn webhook(&self, shop: &str, topic: ShopifyTopic, id: u64) -> WebhookDelivery {
        self.faults().webhook(shop, topic, id, SECRET).unwrap()
    }

    async fn send(&self, delivery: &WebhookDelivery) -> (StatusCode, Value) {
        self.post(delivery.request("/webhooks/shopify")).await
    }

    async fn rows(&self, sql: &str, parameter: &str) -> i64 {
        self.db
            .client()
            .await
            .query_typed_one(sql, &[(&parameter, Type::TEXT)])
            .await
            .unwrap()
            .get(0)
    }
}

#[tokio::test]
async fn replays_are_duplicates_or_refused_whatever_ids_they_carry() {
    let e = shop().await;
    let [id] = e.paid_orders(1)[..] else {
        panic!("a paid order")
    };
    let delivery = e.webhook(DEFAULT_SHOP, ShopifyTopic::OrdersUpdated, id);
    let (status, body) = e.send(&delivery).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );

    // The same event under another webhook id (another subscription, or a replay that
    // changed it) is a duplicate: X-Shopify-Event-Id is the same.
    let mut other_id = delivery.clone();
    other_id.set_header("X-Shopify-Webhook-Id", &Uuid::new_v4().to_string());
    let (status, body) = e.send(&other_id).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );

    // A capture sent again hours later under fresh ids: the trigger time gives it away.
    let now = Utc::now();
    for (at, what) in [
        (now - chrono::Duration::hours(7), "older than the window"),
        (now + chrono::Duration::minutes(10), "ahead of our clock"),
    ] {
        let (status, body) = e.send(&stamped(renamed(delivery.clone()), at)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("X-Shopify-Triggered-At"),
            "{body}"
        );
    }
    // Shopify's last retry, four hours after the trigger, still gets in (as a duplicate).
    let (status, body) = e
        .send(&stamped(delivery.clone(), now - chrono::Duration::hours(4)))
        .await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    // Without the header there is no trigger time to judge: refused as malformed.
    let mut bare = renamed(delivery.clone());
    bare.headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case("X-Shopify-Triggered-At"));
    let (status, body) = e.send(&bare).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    assert_eq!(
        e.count("SELECT count(*) FROM shopify_webhook_deliveries")
            .await,
        1,
        "only the first delivery was recorded"
    );
    assert_eq!(e.count("SELECT count(*) FROM orders").await, 1);
}

#[tokio::test]
async fn a_delivery_resent_under_another_shop_writes_nothing_there() {
    let e = shop().await;
    let [stored, unseen] = e.paid_orders(2)[..] else {
        panic!("two paid orders")
    };
    let (_, body) = e.deliver(ShopifyTopic::OrdersCreate, stored).await;
    assert_eq!(body["outcome"], "applied");
    let under_other = |topic, id| {
        let mut delivery = renamed(e.webhook(DEFAULT_SHOP, topic, id));
        delivery.set_header("X-Shopify-Shop-Domain", "other-store.myshopify.com");
        delivery
    };

    // An order stored for demo-store, re-sent as other-store's.
    let (status, body) = e
        .send(&under_other(ShopifyTopic::OrdersUpdated, stored))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("another shop"),
        "{body}"
    );

    // An order nobody holds yet is read back from other-store, which has no such order.
    e.faults().clear_requests();
    let (status, body) = e
        .send(&under_other(ShopifyTopic::OrdersCreate, unseen))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is not an order of shop other-store"),
        "{body}"
    );
    let asked = e.faults().requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0].path,
        format!("/shopify/{OTHER_SHOP}/admin/api/2026-10/graphql.json")
    );
    assert_eq!(asked[0].param("operation"), Some("order"));
    assert_eq!(
        asked[0].param("id").map(str::to_string),
        Some(format!("gid://shopify/Order/{unseen}"))
    );
    assert_eq!(asked[0].rows, 0, "the named shop has no such order");

    // A refund of demo-store's order, re-sent as other-store's.
    e.faults()
        .refund_order(DEFAULT_SHOP, stored, Some(100))
        .unwrap();
    let (status, _) = e
        .send(&under_other(ShopifyTopic::RefundsCreate, stored))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let written_for_other = e
        .rows(
            "SELECT (SELECT count(*) FROM orders WHERE shop = $1)
                  + (SELECT count(*) FROM order_refunds WHERE shop = $1)
                  + (SELECT count(*) FROM shopify_webhook_deliveries WHERE shop = $1)",
            OTHER_SHOP,
        )
        .await;
    assert_eq!(written_for_other, 0, "nothing was written for other-store");
    assert_eq!(
        e.order(stored).await.unwrap().0,
        0,
        "demo-store's refund not applied via other-store"
    );

    // other-store's own order under its own name is verified with its own token and applied
    // to its own workspace; that token is sealed at rest from then on.
    let own = e.faults().order_ids(OTHER_SHOP)[0];
    let (status, body) = e
        .send(&e.webhook(OTHER_SHOP, ShopifyTopic::OrdersCreate, own))
        .await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{body}"
    );
    let workspace: Uuid =
        e.db.client()
            .await
            .query_typed_one(
                "SELECT workspace_id FROM orders WHERE shop = $1 AND order_id = $2",
                &[(&OTHER_SHOP, Type::TEXT), (&(own as i64), Type::INT8)],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(workspace, e.other_workspace);
    assert_eq!(
        e.rows(
            "SELECT count(*) FROM connections WHERE external_account_id = $1
                AND access_token IS NULL AND access_token_sealed IS NOT NULL",
            OTHER_SHOP,
        )
        .await,
        1
    );

    // A shop without a token cannot have an order verified: refused, nothing written.
    e.db.client()
        .await
        .execute_typed(
            "UPDATE connections SET access_token_sealed = NULL WHERE external_account_id = $1",
            &[(&OTHER_SHOP, Type::TEXT)],
        )
        .await
        .unwrap();
    let next = e.faults().order_ids(OTHER_SHOP)[1];
    let (status, body) = e
        .send(&e.webhook(OTHER_SHOP, ShopifyTopic::OrdersCreate, next))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no access token"),
        "{body}"
    );
}

#[tokio::test]
async fn a_delivery_the_database_refuses_is_quarantined_and_acknowledged() {
    let e = shop().await;
    let ids = e.paid_orders(3);
    let cases = [
        ("total_price", serde_json::json!("1e30"), "out of range"),
        (
            "total_price",
            serde_json::json!("100000000000000000000.00"),
            "numeric field overflow",
        ),
        ("name", serde_json::json!("#1001\u{0}"), "\\u0000 at /name"),
    ];
    for ((field, value, reason), id) in cases.iter().zip(&ids) {
        let delivery = e.webhook(DEFAULT_SHOP, ShopifyTopic::OrdersCreate, *id);
        let mut body: Value = serde_json::from_slice(&delivery.body).unwrap();
        body[*field] = value.clone();
        let delivery = resigned(delivery, serde_json::to_vec(&body).unwrap());
        for attempt in ["first", "redelivery"] {
            let (status, answer) = e.send(&delivery).await;
            assert_eq!(
                (status, answer["outcome"].as_str()),
                (StatusCode::OK, Some("quarantined")),
                "{field} {attempt}: {answer}"
            );
        }
        let kept =
            e.db.client()
                .await
                .query_typed(
                    "SELECT reason, payload FROM quarantine WHERE source = 'shopify' AND key = $1",
                    &[(&delivery.webhook_id(), Type::TEXT)],
                )
                .await
                .unwrap();
        assert_eq!(kept.len(), 1, "kept once");
        let kept_reason: String = kept[0].get(0);
        assert!(kept_reason.contains(reason), "{kept_reason}");
        assert_eq!(kept[0].get::<_, Vec<u8>>(1), delivery.body, "byte for byte");
    }
    assert_eq!(e.count("SELECT count(*) FROM orders").await, 0);
    assert_eq!(
        e.count("SELECT count(*) FROM shopify_webhook_deliveries")
            .await,
        0
    );
    assert_eq!(
        e.transport
            .depth(catalog::METRICS.name)
            .await
            .unwrap()
            .visible,
        0
    );
}

#[tokio::test]
async fn transient_failures_answer_503_with_retry_after_and_the_retry_applies() {
    let e = shop().await;
    let [id] = e.paid_orders(1)[..] else {
        panic!("a paid order")
    };
    let delivery = e.webhook(DEFAULT_SHOP, ShopifyTopic::OrdersCreate, id);

    // The shop throttles the read-back.
    e.faults().throttle_next(1);
    let response = e
        .router
        .clone()
        .oneshot(delivery.request("/webhooks/shopify"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(e.order(id).await.is_none());

    // A lock held elsewhere on the delivery's key: answered within the request budget.
    let blocker = e.db.client().await;
    blocker
        .batch_execute(&format!(
            "BEGIN; INSERT INTO shopify_webhook_deliveries (webhook_id, topic, shop)
             VALUES ('{}', 'orders/create', '{DEFAULT_SHOP}')",
            delivery.webhook_id()
        ))
        .await
        .unwrap();
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(15), e.send(&delivery))
        .await
        .expect("answered without waiting for the lock's holder");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();

    // Shopify's retry goes through.
    let (status, body) = e.send(&delivery).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
}

#[tokio::test]
async fn one_event_delivered_eight_times_at_once_is_applied_once() {
    let e = shop().await;
    let [id] = e.paid_orders(1)[..] else {
        panic!("a paid order")
    };
    let delivery = e.webhook(DEFAULT_SHOP, ShopifyTopic::OrdersCreate, id);
    let mut racing = tokio::task::JoinSet::new();
    for n in 0..8 {
        // Retries of one delivery, and the same event for other subscriptions.
        let mut copy = delivery.clone();
        if n % 2 == 1 {
            copy.set_header("X-Shopify-Webhook-Id", &Uuid::new_v4().to_string());
        }
        let router = e.router.clone();
        racing.spawn(async move {
            let response = router
                .oneshot(copy.request("/webhooks/shopify"))
                .await
                .unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        });
    }
    let mut outcomes = Vec::new();
    while let Some(answer) = racing.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        outcomes.push(body["outcome"].as_str().unwrap().to_string());
    }
    outcomes.sort();
    let mut expected = vec!["applied".to_string()];
    expected.extend(std::iter::repeat_n("duplicate".to_string(), 7));
    expected.sort();
    assert_eq!(outcomes, expected);
    assert_eq!(
        e.count("SELECT count(*) FROM shopify_webhook_deliveries")
            .await,
        1
    );
    assert_eq!(e.count("SELECT count(*) FROM orders").await, 1);
    assert_eq!(
        e.transport
            .depth(catalog::METRICS.name)
            .await
            .unwrap()
            .visible,
        1,
        "one recompute"
    );
}

#[tokio::test]
async fn odd_headers_are_refused_and_unicode_bodies_kept_as_sent() {
    let e = shop().await;
    let [id] = e.paid_orders(1)[..] else {
        panic!("a paid order")
    };
    let delivery = e.webhook(DEFAULT_SHOP, ShopifyTopic::OrdersCreate, id);
    let with_raw = |name: &str, value: &[u8]| {
        let mut request = renamed(delivery.clone()).request("/webhooks/shopify");
        request.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_bytes(value).unwrap(),
        );
        request
    };
    let long_id = "a".repeat(256);
    for (name, value) in [
        (
            "x-shopify-shop-domain",
            "démo-store.myshopify.com".as_bytes(),
        ),
        ("x-shopify-shop-domain", b"DEMO-STORE.myshopify.com"),
        (
            "x-shopify-shop-domain",
            b"demo-store.myshopify.com.evil.example",
        ),
        ("x-shopify-shop-domain", b"demo-store/../x"),
        ("x-shopify-webhook-id", long_id.as_bytes()),
        ("x-shopify-webhook-id", "🦀".as_bytes()),
        ("x-shopify-topic", b"orders/\xffcreate"),
        ("x-shopify-event-id", b"a b"),
    ] {
        let (status, body) = e.post(with_raw(name, value)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
    }
    let mut twice = renamed(delivery.clone()).request("/webhooks/shopify");
    twice.headers_mut().append(
        "x-shopify-shop-domain",
        "other-store.myshopify.com".parse().unwrap(),
    );
    let (status, _) = e.post(twice).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a shop named twice");
    assert_eq!(
        e.count("SELECT count(*) FROM shopify_webhook_deliveries")
            .await,
        0
    );

    // Unicode at the edges of the body is stored exactly; a 255-byte webhook id is fine.
    let name = "#1001 🦀 Ünïcödé \u{202e}lrt\u{202c} e\u{301} 𝔘";
    let mut body: Value = serde_json::from_slice(&delivery.body).unwrap();
    body["name"] = Value::String(name.into());
    let mut unicode = resigned(delivery, serde_json::to_vec(&body).unwrap());
    unicode.set_header("X-Shopify-Webhook-Id", &"w".repeat(255));
    let (status, answer) = e.send(&unicode).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{answer}"
    );
    let stored: String =
        e.db.client()
            .await
            .query_typed_one(
                "SELECT name FROM orders WHERE order_id = $1",
                &[(&(id as i64), Type::INT8)],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(stored, name);
}

/// The scale: a shop of 200,000 orders is one bulk operation (a handful of calls, not
/// 2,500 pages), and the poll after it pages only the lookback; one row per order throughout.
#[tokio::test]
async fn a_first_sync_of_200000_orders_is_one_bulk_operation_and_then_pages() {
    let e = shop_of(200_000, 365).await;
    let first = e.sync().await;
    assert_eq!(first.rows_inserted, 200_000, "{first:?}");
    assert!(
        e.faults().request_count() <= 5,
        "one bulk operation and its polls: {:?}",
        operations(&e)
    );
    assert_eq!(e.stored().await, e.expected());
    let faults = e.faults();
    let added = faults.add_orders(DEFAULT_SHOP, 5).unwrap();
    let [refunded] = e.paid_orders(1)[..] else {
        panic!("a paid order")
    };
    faults
        .refund_order(DEFAULT_SHOP, refunded, Some(700))
        .unwrap();
    faults.clear_requests();
    let next = e.sync().await;
    assert!(
        operations(&e).iter().all(|operation| operation == "orders"),
        "{:?}",
        operations(&e)
    );
    assert_eq!((next.rows_inserted, next.rows_updated), (5, 1), "{next:?}");
    assert_eq!(
        e.stored().await,
        e.expected(),
        "one row per order, exact sums"
    );
    assert_eq!(
        e.count("SELECT count(*) FROM orders").await,
        200_005,
        "no duplicates"
    );
    for id in added {
        assert!(e.order(id).await.is_some());
    }
}

/// The mandatory compliance topics act on what we hold and are recorded once; an uninstall
/// stops the syncing; a shop's redaction deletes its orders.
#[tokio::test]
async fn compliance_requests_and_an_uninstall_act_on_the_data_we_hold() {
    let e = shop().await;
    e.sync().await;
    let before = e.stored().await;
    let [asked, erased] = e.paid_orders(2)[..] else {
        panic!("two paid orders")
    };
    let faults = e.faults();
    let send = |topic: ShopifyTopic, order: Option<u64>, orders: &[u64]| {
        faults
            .shop_webhook(DEFAULT_SHOP, topic, order, orders, SECRET)
            .unwrap()
    };
    let outcome = |answer: (StatusCode, Value)| {
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
        answer.1["outcome"].as_str().unwrap().to_string()
    };
    let recorded = |topic: &'static str| {
        let db = &e.db;
        async move {
            db.client()
                .await
                .query_typed_one(
                    "SELECT outcome FROM shopify_compliance_requests WHERE topic = $1",
                    &[(&topic, Type::TEXT)],
                )
                .await
                .unwrap()
                .get::<_, Value>(0)
        }
    };

    // A data request: what we hold of the customer is recorded for the shop's owner.
    let request = send(ShopifyTopic::CustomersDataRequest, Some(asked), &[asked]);
    assert_eq!(
        outcome(e.post(request.request("/webhooks/shopify")).await),
        "complied"
    );
    let held = recorded("customers/data_request").await;
    assert!(
        held["orders_held"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(asked)),
        "{held}"
    );
    assert_eq!(
        outcome(e.post(request.request("/webhooks/shopify")).await),
        "duplicate",
        "a redelivery is recorded once"
    );

    // A customer's erasure: their details leave every order of theirs; the sums stay.
    let redact = send(ShopifyTopic::CustomersRedact, Some(erased), &[erased]);
    assert_eq!(
        outcome(e.post(redact.request("/webhooks/shopify")).await),
        "complied"
    );
    let (email, customer, raw): (Option<String>, Option<i64>, Value) = {
        let row = e
            .db
            .client()
            .await
            .query_typed_one(
                "SELECT customer_email, customer_id, raw FROM orders WHERE shop = $1 AND order_id = $2",
                &[(&DEFAULT_SHOP, Type::TEXT), (&(erased as i64), Type::INT8)],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!((email, customer), (None, None));
    assert!(
        raw.get("customer").is_none() && raw.get("email").is_none(),
        "{raw}"
    );
    assert!(recorded("customers/redact").await["orders_redacted"].as_u64() >= Some(1));
    assert_eq!(e.stored().await, before, "the numbers do not move");

    // An uninstall: the connection stops being dispatched.
    let uninstalled = send(ShopifyTopic::AppUninstalled, None, &[]);
    assert_eq!(
        outcome(e.post(uninstalled.request("/webhooks/shopify")).await),
        "disconnected"
    );
    assert_eq!(
        e.count("SELECT count(*) FROM connections WHERE status = 'revoked'")
            .await,
        1
    );
    assert_eq!(
        etl::dispatch(&e.deps, Platform::Shopify, day(TODAY))
            .await
            .unwrap(),
        1,
        "only the other shop's connection is still synced"
    );

    // The shop's redaction (48 hours later): its orders and refunds are gone, and recorded.
    let shop_redact = send(ShopifyTopic::ShopRedact, None, &[]);
    assert_eq!(
        outcome(e.post(shop_redact.request("/webhooks/shopify")).await),
        "complied"
    );
    assert_eq!(e.stored().await.0, 0);
    assert_eq!(
        e.count("SELECT count(*) FROM order_refunds WHERE shop = 'demo-store'")
            .await,
        0
    );
    assert_eq!(
        recorded("shop/redact").await["orders_deleted"].as_i64(),
        Some(before.0)
    );
}

/// A bulk operation that fails keeps what its partial file held, fails the run with
/// Shopify's error code and leaves the cursor alone; the next run's bulk operation completes
/// the sync without a duplicate.
#[tokio::test]
async fn a_failed_bulk_operation_keeps_its_partial_data_and_the_next_run_completes() {
    let e = shop().await;
    e.faults().fail_next_bulk_operation();
    let failed = etl::run(&e.deps, &e.run(SCHEDULED_FROM), "worker-a")
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    let error = failed.error.unwrap();
    assert!(
        error.contains("FAILED") && error.contains("INTERNAL_SERVER_ERROR"),
        "{error}"
    );
    let expected = e.expected();
    let partial = e.stored().await.0;
    assert_eq!(
        partial,
        expected.0 / 2,
        "the partial file's orders are kept"
    );
    assert_eq!(e.cursor().await, None, "the cursor does not move");
    let report = e.sync().await;
    assert_eq!(report.rows_inserted as i64, expected.0 - partial);
    assert_eq!(e.stored().await, expected);
}
