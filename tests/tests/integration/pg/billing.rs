//! The billing agent through its HTTP route, with events signed as Stripe signs them.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use billing::BillingDeps;
use integration_tests::test_db::TestDb;
use serde_json::{Value, json};
use shared::lambda::Container;
use shared::queue::postgres::PostgresTransport;
use shared::queue::{Transport, catalog};
use shared::webhook::sign_stripe;
use tower::ServiceExt;

const SECRET: &str = "whsec_test_current";
const OLD_SECRET: &str = "whsec_test_previous";

struct Billing {
    db: TestDb,
    router: Router,
    deps: Arc<BillingDeps>,
    transport: Arc<PostgresTransport>,
    workspace: uuid::Uuid,
}

async fn billing() -> Billing {
    let db = TestDb::new().await;
    let pool = db.pool(4);
    let workspace = uuid::Uuid::new_v4();
    db.client()
        .await
        .execute_typed(
            "INSERT INTO workspaces (id, name) VALUES ($1, 'acme')",
            &[(&workspace, tokio_postgres::types::Type::UUID)],
        )
        .await
        .unwrap();
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let container = Container::new(pool, transport.clone(), shared::clock::Clock::system());
    let config = billing::config::Config {
        webhook_secrets: vec![SECRET.into(), OLD_SECRET.into()],
    };
    let deps = Arc::new(BillingDeps::new(&container, config));
    Billing {
        db,
        router: billing::router(deps.clone()),
        deps,
        transport,
        workspace,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn event(id: &str, kind: &str, created: i64, object: Value, previous: Option<Value>) -> String {
    let mut data = json!({ "object": object });
    if let Some(previous) = previous {
        data["previous_attributes"] = previous;
    }
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20", "created": created, "livemode": false,
        "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null}, "type": kind, "data": data
    })
    .to_string()
}

/// `POST /webhooks/stripe` through the router, as API Gateway or the local stack would.
async fn post(router: Router, body: Vec<u8>, signature: Option<String>) -> (StatusCode, Value) {
    let mut request = Request::post("/webhooks/stripe").header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    let response = router
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

impl Billing {
    async fn post_raw(&self, body: Vec<u8>, signature: Option<String>) -> (StatusCode, Value) {
        post(self.router.clone(), body, signature).await
    }

    async fn deliver(&self, body: &str) -> (StatusCode, Value) {
        let signature = sign_stripe(body.as_bytes(), SECRET, now());
        self.post_raw(body.as_bytes().to_vec(), Some(signature))
            .await
    }

    async fn deliver_ok(&self, body: &str) -> String {
        let (status, answer) = self.deliver(body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["outcome"].as_str().unwrap().to_string()
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

    async fn text(&self, sql: &str) -> Option<String> {
        self.db
            .client()
            .await
            .query_typed_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }
}

fn customer(id: &str, email: &str, workspace: uuid::Uuid) -> Value {
    json!({"id": id, "object": "customer", "email": email, "name": "Ada", "delinquent": false,
           "created": 1_700_000_000, "metadata": {"workspace_id": workspace.to_string()}})
}

fn price(id: &str, amount: i64, interval: &str) -> Value {
    json!({"id": id, "object": "price", "product": "prod_1", "active": true, "currency": "usd", "unit_amount": amount,
           "type": "recurring", "recurring": {"interval": interval, "interval_count": 1}, "created": 1_700_000_000})
}

fn subscription(id: &str, status: &str, items: Vec<(&str, Value, i64)>) -> Value {
    let data: Vec<Value> = items
        .into_iter()
        .map(|(item, price, quantity)| json!({"id": item, "object": "subscription_item", "price": price, "quantity": quantity, "created": 1_700_000_000}))
        .collect();
    json!({"id": id, "object": "subscription", "customer": "cus_1", "status": status, "currency": "usd",
           "current_period_start": 1_700_000_000, "current_period_end": 1_702_592_000, "cancel_at_period_end": false,
           "canceled_at": null, "ended_at": null, "trial_end": null, "created": 1_700_000_000, "metadata": {},
           "items": {"object": "list", "data": data}})
}

#[tokio::test]
async fn signatures_are_required_checked_and_rotatable() {
    let b = billing().await;
    let body = event(
        "evt_1",
        "customer.created",
        now(),
        customer("cus_1", "a@x.io", b.workspace),
        None,
    );
    let (status, answer) = b.post_raw(body.clone().into_bytes(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("missing"),
        "{answer}"
    );
    let forged = sign_stripe(body.as_bytes(), "whsec_attacker", now());
    assert_eq!(
        b.post_raw(body.clone().into_bytes(), Some(forged)).await.0,
        StatusCode::BAD_REQUEST
    );
    let stale = sign_stripe(body.as_bytes(), SECRET, now() - 301);
    let (status, answer) = b.post_raw(body.clone().into_bytes(), Some(stale)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("tolerance"),
        "{answer}"
    );
    assert_eq!(
        b.count("SELECT count(*) FROM stripe.events").await,
        0,
        "nothing written for a bad signature"
    );

    let rolled = sign_stripe(body.as_bytes(), OLD_SECRET, now());
    assert_eq!(
        b.post_raw(body.into_bytes(), Some(rolled)).await.0,
        StatusCode::OK,
        "the previous secret still works"
    );
    assert_eq!(b.count("SELECT count(*) FROM stripe.customers").await, 1);
    // Each delivery is in the run log: the three refusals counted in one row (written with
    // the next run, not one row each), the last as ok.
    assert_eq!(
        b.count("SELECT sum(runs) FROM agent_runs WHERE agent = 'billing' AND trigger = 'http' AND outcome = 'rejected'")
            .await,
        3
    );
    assert_eq!(
        b.count("SELECT count(*) FROM agent_runs WHERE agent = 'billing' AND outcome = 'rejected'")
            .await,
        1,
        "refusals do not each write a row"
    );
    assert_eq!(
        b.count("SELECT count(*) FROM agent_runs WHERE agent = 'billing' AND outcome = 'ok'")
            .await,
        1
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_with_reasons() {
    let b = billing().await;
    let (status, answer) = b.deliver("{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed event"),
        "{answer}"
    );
    let (status, answer) = b
        .deliver(r#"{"id":"evt_1","object":"event","type":"customer.created","created":1}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("data.object"),
        "{answer}"
    );
    let huge = format!(r#"{{"padding":"{}"}}"#, "x".repeat(billing::MAX_BODY_BYTES));
    let (status, _) = b.deliver(&huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(b.count("SELECT count(*) FROM stripe.events").await, 0);
}

#[tokio::test]
async fn duplicates_change_nothing_and_unknown_types_are_kept() {
    let b = billing().await;
    let body = event(
        "evt_1",
        "customer.created",
        now(),
        customer("cus_1", "a@x.io", b.workspace),
        None,
    );
    assert_eq!(b.deliver_ok(&body).await, "applied");
    assert_eq!(b.deliver_ok(&body).await, "duplicate");
    assert_eq!(b.count("SELECT count(*) FROM stripe.events").await, 1);

    let unknown = event(
        "evt_2",
        "payment_intent.created",
        now(),
        json!({"id": "pi_1", "object": "payment_intent"}),
        None,
    );
    assert_eq!(b.deliver_ok(&unknown).await, "unsupported");
    assert_eq!(b.deliver_ok(&unknown).await, "duplicate");
    assert_eq!(
        b.text("SELECT outcome FROM stripe.events WHERE id = 'evt_2'")
            .await
            .as_deref(),
        Some("unsupported")
    );
    let workspace: Option<uuid::Uuid> =
        b.db.client()
            .await
            .query_typed_one("SELECT workspace_id FROM stripe.customers", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(
        workspace,
        Some(b.workspace),
        "customer metadata links the workspace"
    );
}

#[tokio::test]
async fn an_older_update_arriving_late_is_recorded_but_not_applied() {
    let b = billing().await;
    let newer = event(
        "evt_new",
        "customer.updated",
        2_000,
        customer("cus_1", "new@x.io", b.workspace),
        Some(json!({"email": "old@x.io"})),
    );
    let older = event(
        "evt_old",
        "customer.created",
        1_000,
        customer("cus_1", "old@x.io", b.workspace),
        None,
    );
    assert_eq!(b.deliver_ok(&newer).await, "applied");
    assert_eq!(b.deliver_ok(&older).await, "stale");
    assert_eq!(
        b.text("SELECT email FROM stripe.customers")
            .await
            .as_deref(),
        Some("new@x.io")
    );
    assert_eq!(
        b.text("SELECT last_event_id FROM stripe.customers")
            .await
            .as_deref(),
        Some("evt_new")
    );
    assert_eq!(b.count("SELECT count(*) FROM stripe.events").await, 2);
}

fn permutations(items: &[String]) -> Vec<Vec<String>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for index in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(index);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            all.push(tail);
        }
    }
    all
}

#[tokio::test]
async fn a_same_second_invoice_chain_ends_paid_in_every_delivery_order() {
    let second = 1_764_590_000;
    let invoice = |status: &str, paid: i64| {
        json!({"id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": "sub_1", "status": status,
               "paid": status == "paid", "amount_due": 4200, "amount_paid": paid, "amount_remaining": 4200 - paid,
               "currency": "usd", "created": second})
    };
    // Ids chosen so that their order disagrees with the true order.
    let chain = vec![
        event(
            "evt_c",
            "invoice.created",
            second,
            invoice("draft", 0),
            None,
        ),
        event(
            "evt_b",
            "invoice.finalized",
            second,
            invoice("open", 0),
            None,
        ),
        event("evt_a", "invoice.paid", second, invoice("paid", 4200), None),
    ];
    for order in permutations(&chain) {
        let b = billing().await;
        for body in &order {
            b.deliver_ok(body).await;
        }
        assert_eq!(
            b.text("SELECT status FROM stripe.invoices")
                .await
                .as_deref(),
            Some("paid")
        );
        assert_eq!(
            b.count("SELECT amount_paid FROM stripe.invoices").await,
            4200
        );
        assert_eq!(b.count("SELECT count(*) FROM stripe.events").await, 3);
    }
}

#[tokio::test]
async fn a_same_second_subscription_created_then_updated_converges_either_way() {
    let second = 1_764_590_000;
    let created = event(
        "evt_z",
        "customer.subscription.created",
        second,
        subscription(
            "sub_1",
            "incomplete",
            vec![("si_1", price("price_1", 1000, "month"), 1)],
        ),
        None,
    );
    let updated = event(
        "evt_a",
        "customer.subscription.updated",
        second,
        subscription(
            "sub_1",
            "active",
            vec![("si_1", price("price_1", 1000, "month"), 1)],
        ),
        Some(json!({"status": "incomplete"})),
    );
    for order in [[&created, &updated], [&updated, &created]] {
        let b = billing().await;
        for body in order {
            b.deliver_ok(body).await;
        }
        assert_eq!(
            b.text("SELECT status FROM stripe.subscriptions")
                .await
                .as_deref(),
            Some("active")
        );
        assert_eq!(
            b.text("SELECT mrr::text FROM stripe.subscription_mrr")
                .await
                .as_deref(),
            Some("1000.0000")
        );
    }
}

#[tokio::test]
async fn deleted_objects_stay_deleted() {
    let b = billing().await;
    let product = |name: &str| json!({"id": "prod_1", "object": "product", "name": name, "active": true, "created": 1});
    let deleted = event(
        "evt_del",
        "product.deleted",
        3_000,
        json!({"id": "prod_1", "object": "product", "deleted": true}),
        None,
    );
    let created = event("evt_c", "product.created", 1_000, product("Pro"), None);
    let late = event(
        "evt_u",
        "product.updated",
        2_000,
        product("Pro v2"),
        Some(json!({"name": "Pro"})),
    );
    b.deliver_ok(&created).await;
    assert_eq!(b.deliver_ok(&deleted).await, "applied");
    assert_eq!(b.deliver_ok(&late).await, "stale");
    let row =
        b.db.client()
            .await
            .query_typed_one("SELECT deleted, name FROM stripe.products", &[])
            .await
            .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(
        row.get::<_, Option<String>>(1),
        None,
        "a bare deleted object, as Stripe answers for it"
    );

    // A price deleted before anything else about it arrives is born deleted.
    let price_deleted = event(
        "evt_pd",
        "price.deleted",
        3_000,
        price("price_9", 500, "month"),
        None,
    );
    let price_created = event(
        "evt_pc",
        "price.created",
        1_000,
        price("price_9", 500, "month"),
        None,
    );
    b.deliver_ok(&price_deleted).await;
    assert_eq!(b.deliver_ok(&price_created).await, "stale");
    assert_eq!(
        b.count("SELECT count(*) FROM stripe.prices WHERE deleted")
            .await,
        1
    );
}

#[tokio::test]
async fn a_replaced_subscription_item_does_not_come_back() {
    let b = billing().await;
    let v1 = event(
        "evt_1",
        "customer.subscription.created",
        1_000,
        subscription(
            "sub_1",
            "active",
            vec![("si_a", price("price_a", 1000, "month"), 1)],
        ),
        None,
    );
    let v2 = event(
        "evt_2",
        "customer.subscription.updated",
        2_000,
        subscription(
            "sub_1",
            "active",
            vec![("si_b", price("price_b", 2000, "month"), 1)],
        ),
        Some(json!({"items": {"object": "list", "data": []}})),
    );
    b.deliver_ok(&v2).await;
    b.deliver_ok(&v1).await;
    b.deliver_ok(&v1).await;
    assert_eq!(
        b.count("SELECT count(*) FROM stripe.subscription_items WHERE NOT deleted")
            .await,
        1
    );
    assert_eq!(
        b.text("SELECT id FROM stripe.subscription_items WHERE NOT deleted")
            .await
            .as_deref(),
        Some("si_b")
    );

    let b = billing().await;
    b.deliver_ok(&v1).await;
    b.deliver_ok(&v2).await;
    assert_eq!(
        b.text("SELECT id FROM stripe.subscription_items WHERE deleted")
            .await
            .as_deref(),
        Some("si_a")
    );
    assert_eq!(
        b.text("SELECT id FROM stripe.subscription_items WHERE NOT deleted")
            .await
            .as_deref(),
        Some("si_b")
    );
    assert_eq!(
        b.text("SELECT mrr::text FROM stripe.subscription_mrr")
            .await
            .as_deref(),
        Some("2000.0000")
    );
}

#[tokio::test]
async fn the_2025_shapes_land_in_the_same_columns() {
    let b = billing().await;
    let mut sub = subscription(
        "sub_9",
        "active",
        vec![("si_9", price("price_9", 1000, "month"), 1)],
    );
    let fields = sub.as_object_mut().unwrap();
    fields.remove("current_period_start");
    fields.remove("current_period_end");
    sub["items"]["data"][0]["current_period_start"] = json!(1_700_000_000);
    sub["items"]["data"][0]["current_period_end"] = json!(1_702_592_000);
    b.deliver_ok(&event(
        "evt_s",
        "customer.subscription.created",
        1_000,
        sub,
        None,
    ))
    .await;
    let invoice = json!({"id": "in_9", "object": "invoice", "customer": "cus_1", "status": "paid", "amount_due": 1000,
        "amount_paid": 1000, "currency": "usd", "created": 1_000,
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_9"}}, "payments": {"data": []}});
    b.deliver_ok(&event("evt_i", "invoice.paid", 1_000, invoice, None))
        .await;
    let row =
        b.db.client()
            .await
            .query_typed_one(
                "SELECT s.current_period_end = to_timestamp(1702592000), i.subscription, i.paid
               FROM stripe.subscriptions s, stripe.invoices i",
                &[],
            )
            .await
            .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "sub_9");
    assert!(row.get::<_, bool>(2));
}

#[tokio::test]
async fn revenue_changes_are_recorded_and_metrics_are_asked_to_recompute() {
    let b = billing().await;
    b.deliver_ok(&event(
        "evt_0",
        "customer.created",
        900,
        customer("cus_1", "a@x.io", b.workspace),
        None,
    ))
    .await;
    let items = |quantity| vec![("si_1", price("price_1", 1000, "month"), quantity)];
    let steps = [
        event(
            "evt_1",
            "customer.subscription.created",
            1_000,
            subscription("sub_1", "active", items(1)),
            None,
        ),
        event(
            "evt_2",
            "customer.subscription.updated",
            2_000,
            subscription("sub_1", "active", items(3)),
            Some(json!({"quantity": 1})),
        ),
        event(
            "evt_3",
            "customer.subscription.updated",
            3_000,
            subscription("sub_1", "active", items(2)),
            Some(json!({"quantity": 3})),
        ),
        event(
            "evt_4",
            "customer.subscription.deleted",
            4_000,
            subscription("sub_1", "canceled", items(2)),
            None,
        ),
    ];
    for step in &steps {
        assert_eq!(b.deliver_ok(step).await, "applied");
    }
    let rows = b
        .db
        .client()
        .await
        .query_typed(
            "SELECT kind, delta::text, workspace_id FROM stripe.mrr_changes ORDER BY occurred_at",
            &[],
        )
        .await
        .unwrap();
    let changes: Vec<(String, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        changes,
        vec![
            ("new".into(), "1000.0000".into()),
            ("expansion".into(), "2000.0000".into()),
            ("contraction".into(), "-1000.0000".into()),
            ("churn".into(), "-2000.0000".into()),
        ]
    );
    assert!(
        rows.iter()
            .all(|row| row.get::<_, Option<uuid::Uuid>>(2) == Some(b.workspace))
    );
    assert_eq!(
        b.count("SELECT count(*) FROM stripe.subscription_items WHERE deleted")
            .await,
        1,
        "an ended subscription's items are gone"
    );

    let queued = b
        .transport
        .receive(
            catalog::METRICS.name,
            10,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        queued.len(),
        1,
        "one recompute request per workspace, day and five minutes"
    );
    let request: Value = serde_json::from_str(&queued[0].body).unwrap();
    assert_eq!(request["workspace_id"], b.workspace.to_string());
    assert_eq!(request["date"], "1970-01-01");
}

#[tokio::test]
async fn a_database_failure_writes_nothing_and_answers_500() {
    let b = billing().await;
    b.db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$;
             CREATE TRIGGER fail BEFORE INSERT ON stripe.mrr_changes FOR EACH ROW EXECUTE FUNCTION fail();",
        )
        .await
        .unwrap();
    let body = event(
        "evt_1",
        "customer.subscription.created",
        1_000,
        subscription(
            "sub_1",
            "active",
            vec![("si_1", price("price_1", 1000, "month"), 1)],
        ),
        None,
    );
    let (status, _) = b.deliver(&body).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    for table in [
        "stripe.events",
        "stripe.subscriptions",
        "stripe.subscription_items",
        "stripe.subscription_mrr",
    ] {
        assert_eq!(
            b.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table} must be untouched"
        );
    }
    b.db.client()
        .await
        .batch_execute("DROP TRIGGER fail ON stripe.mrr_changes")
        .await
        .unwrap();
    assert_eq!(
        b.deliver_ok(&body).await,
        "applied",
        "Stripe's redelivery succeeds"
    );
}

#[tokio::test]
async fn the_same_event_delivered_concurrently_has_one_effect() {
    let b = billing().await;
    let body = event(
        "evt_1",
        "customer.subscription.created",
        1_000,
        subscription(
            "sub_1",
            "active",
            vec![("si_1", price("price_1", 1000, "month"), 1)],
        ),
        None,
    );
    let deliveries: Vec<_> = (0..10)
        .map(|_| {
            let router = b.router.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let signature = sign_stripe(body.as_bytes(), SECRET, now());
                let (status, answer) = post(router, body.into_bytes(), Some(signature)).await;
                (
                    status,
                    answer["outcome"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for delivery in deliveries {
        let (status, outcome) = delivery.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        outcomes.push(outcome);
    }
    assert_eq!(
        outcomes.iter().filter(|o| *o == "applied").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "duplicate").count(),
        9,
        "{outcomes:?}"
    );
    assert_eq!(b.count("SELECT count(*) FROM stripe.events").await, 1);
    assert_eq!(b.count("SELECT count(*) FROM stripe.mrr_changes").await, 1);
}

#[tokio::test]
async fn backfill_replays_a_jsonl_file_through_the_same_path() {
    let b = billing().await;
    let lines = [
        event(
            "evt_1",
            "customer.created",
            1_000,
            customer("cus_1", "a@x.io", b.workspace),
            None,
        ),
        "not an event".to_string(),
        event(
            "evt_2",
            "customer.updated",
            2_000,
            customer("cus_1", "b@x.io", b.workspace),
            Some(json!({"email": "a@x.io"})),
        ),
        event(
            "evt_1",
            "customer.created",
            1_000,
            customer("cus_1", "a@x.io", b.workspace),
            None,
        ),
        event(
            "evt_3",
            "payment_intent.created",
            1_000,
            json!({"id": "pi_1", "object": "payment_intent"}),
            None,
        ),
    ]
    .join("\n");
    let report = billing::backfill(&b.deps, std::io::Cursor::new(lines))
        .await
        .unwrap();
    assert_eq!(
        (
            report.applied,
            report.stale,
            report.duplicate,
            report.unsupported
        ),
        (2, 0, 1, 1)
    );
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].0, 2);
    assert_eq!(
        b.text("SELECT email FROM stripe.customers")
            .await
            .as_deref(),
        Some("b@x.io")
    );
}

#[tokio::test]
async fn the_ledger_exports_and_rebuilds_the_mirror_through_the_same_path() {
    let b = billing().await;
    let t = now() - 100;
    b.deliver_ok(&event(
        "evt_r1",
        "customer.created",
        t,
        customer("cus_r", "old@x.io", b.workspace),
        None,
    ))
    .await;
    b.deliver_ok(&event(
        "evt_r2",
        "customer.updated",
        t + 10,
        customer("cus_r", "new@x.io", b.workspace),
        Some(json!({"email": "old@x.io"})),
    ))
    .await;
    let path = std::env::temp_dir().join(format!("ledger-{}.jsonl", uuid::Uuid::new_v4()));
    let mut file = std::fs::File::create(&path).unwrap();
    assert_eq!(
        billing::export_ledger(&b.deps.pool, &mut file)
            .await
            .unwrap(),
        2
    );
    drop(file);
    let lines = std::fs::read_to_string(&path).unwrap();
    assert!(
        lines.lines().next().unwrap().contains("evt_r1"),
        "oldest first"
    );

    // The mirror went wrong (a bug, a manual edit): the rebuild restores it from the ledger.
    b.db.client()
        .await
        .batch_execute("UPDATE stripe.customers SET email = 'corrupted@x.io'")
        .await
        .unwrap();
    let report = billing::rebuild(&b.deps, &path).await.unwrap();
    assert_eq!((report.applied, report.duplicate), (2, 0), "{report:?}");
    let email: String =
        b.db.client()
            .await
            .query_typed_one("SELECT email FROM stripe.customers WHERE id = 'cus_r'", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(email, "new@x.io");
    assert_eq!(b.count("SELECT count(*) FROM stripe.events").await, 2);
    // An interrupted rebuild is finished by replaying the file again: nothing doubles.
    let again = billing::backfill(
        &b.deps,
        std::io::BufReader::new(std::fs::File::open(&path).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(again.duplicate, 2);
    std::fs::remove_file(path).ok();
}

/// The largest value an exact decimal holds: 2^96 - 1.
const DECIMAL_MAX: &str = "79228162514264337593543950335";

#[tokio::test]
async fn money_that_overflows_is_quarantined_and_the_process_goes_on() {
    let b = billing().await;
    let mut huge = price("price_huge", 0, "month");
    huge["unit_amount_decimal"] = json!(DECIMAL_MAX);
    let body = event(
        "evt_huge",
        "customer.subscription.created",
        now(),
        subscription("sub_huge", "active", vec![("si_huge", huge, 2)]),
        None,
    );
    let (status, answer) = b.deliver(&body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"received": true, "outcome": "quarantined"}));
    let kept = b.db.quarantined().await;
    assert_eq!(kept.len(), 1);
    let (source, key, reason, payload) = &kept[0];
    assert_eq!((source.as_str(), key.as_str()), ("stripe", "evt_huge"));
    assert!(reason.contains("unit amount × quantity"), "{reason}");
    assert_eq!(payload, body.as_bytes(), "kept byte for byte");
    for table in [
        "stripe.events",
        "stripe.subscriptions",
        "stripe.subscription_items",
    ] {
        assert_eq!(
            b.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }

    // The same process goes on serving, and other objects' events are applied.
    let sibling = event(
        "evt_ok",
        "customer.subscription.created",
        now(),
        subscription(
            "sub_ok",
            "active",
            vec![("si_ok", price("price_ok", 1000, "month"), 2)],
        ),
        None,
    );
    assert_eq!(b.deliver_ok(&sibling).await, "applied");
    assert_eq!(
        b.text("SELECT mrr::text FROM stripe.subscription_mrr WHERE subscription = 'sub_ok'")
            .await
            .as_deref(),
        Some("2000.0000")
    );
    // Stripe's redelivery, and a backfill of the same line, keep it once.
    assert_eq!(b.deliver_ok(&body).await, "quarantined");
    let report = billing::backfill(&b.deps, std::io::Cursor::new(format!("{body}\n")))
        .await
        .unwrap();
    assert_eq!(report.quarantined, 1, "{report:?}");
    assert_eq!(b.db.quarantined().await.len(), 1);
}

#[tokio::test]
async fn values_the_database_refuses_are_quarantined_with_the_servers_reason() {
    let b = billing().await;
    let mut count = price("price_count", 1000, "month");
    count["recurring"]["interval_count"] = json!(3_000_000_000_i64);
    let mut beyond_numeric = price("price_big", 0, "month");
    beyond_numeric["unit_amount_decimal"] = json!("1000000000000000000");
    let cases = [
        (
            event("evt_count", "price.created", now(), count, None),
            "integer out of range",
        ),
        (
            event(
                "evt_mrr",
                "customer.subscription.created",
                now(),
                subscription("sub_big", "active", vec![("si_big", beyond_numeric, 1000)]),
                None,
            ),
            "numeric field overflow",
        ),
        (
            event(
                "evt_time",
                "customer.created",
                -400_000_000_000,
                customer("cus_old", "old@x.io", b.workspace),
                None,
            ),
            "out of range",
        ),
    ];
    for (body, reason) in &cases {
        let (status, answer) = b.deliver(body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["outcome"], "quarantined", "{answer}");
        let kept = b.db.quarantined().await;
        let (_, _, kept_reason, _) = kept.last().unwrap();
        assert!(kept_reason.contains(reason), "{kept_reason}");
    }
    assert_eq!(
        b.db.quarantined()
            .await
            .iter()
            .map(|(_, key, _, _)| key.as_str())
            .collect::<Vec<_>>(),
        ["evt_count", "evt_mrr", "evt_time"]
    );
    assert_eq!(b.count("SELECT count(*) FROM stripe.events").await, 0);
    assert_eq!(b.count("SELECT count(*) FROM stripe.prices").await, 0);
}

#[tokio::test]
async fn nul_is_quarantined_while_emoji_is_stored_as_sent() {
    let b = billing().await;
    let mut with_nul = customer("cus_nul", "nul@x.io", b.workspace);
    with_nul["metadata"]["note"] = json!("before\u{0}after");
    let nul_body = event("evt_nul", "customer.created", now(), with_nul, None);
    let mut nul_name = customer("cus_nul_name", "name@x.io", b.workspace);
    nul_name["name"] = json!("Ada\u{0}");
    let nul_name_body = event("evt_nul_name", "customer.created", now(), nul_name, None);
    let mut emoji = customer("cus_emoji", "ada+🦀@example.com", b.workspace);
    emoji["name"] = json!("Ada 🦀 Lovelace");
    emoji["metadata"]["note"] = json!("🚀 launch");
    let emoji_body = event("evt_emoji", "customer.created", now(), emoji, None);

    assert_eq!(b.deliver_ok(&nul_body).await, "quarantined");
    assert_eq!(b.deliver_ok(&emoji_body).await, "applied");
    assert_eq!(b.deliver_ok(&nul_name_body).await, "quarantined");
    let kept = b.db.quarantined().await;
    assert_eq!(kept.len(), 2);
    assert!(
        kept[0].2.contains("/data/object/metadata/note"),
        "{}",
        kept[0].2
    );
    assert!(kept[1].2.contains("/data/object/name"), "{}", kept[1].2);
    assert_eq!(
        b.text(
            "SELECT name || ' ' || email || ' ' || (raw->'metadata'->>'note') FROM stripe.customers"
        )
        .await
        .as_deref(),
        Some("Ada 🦀 Lovelace ada+🦀@example.com 🚀 launch")
    );
    assert_eq!(b.count("SELECT count(*) FROM stripe.events").await, 1);
}

#[tokio::test]
async fn an_unstorable_event_delivered_eight_times_at_once_is_kept_once() {
    let b = billing().await;
    let mut with_nul = customer("cus_nul", "nul@x.io", b.workspace);
    with_nul["metadata"]["note"] = json!("\u{0}");
    let body = event("evt_nul", "customer.created", now(), with_nul, None);
    let deliveries: Vec<_> = (0..8)
        .map(|_| {
            let (router, body) = (b.router.clone(), body.clone());
            tokio::spawn(async move {
                let signature = sign_stripe(body.as_bytes(), SECRET, now());
                post(router, body.into_bytes(), Some(signature)).await
            })
        })
        .collect();
    for delivery in deliveries {
        let (status, answer) = delivery.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["outcome"], "quarantined");
    }
    assert_eq!(b.db.quarantined().await.len(), 1);
}

/// `POST /webhooks/stripe` signed now; the status, `Retry-After` and how long it took.
async fn timed_delivery(
    router: Router,
    body: &str,
) -> (StatusCode, Option<String>, std::time::Duration) {
    let signature = sign_stripe(body.as_bytes(), SECRET, now());
    let request = Request::post("/webhooks/stripe")
        .header("stripe-signature", signature)
        .body(Body::from(body.to_string()))
        .unwrap();
    let started = std::time::Instant::now();
    let response = router.oneshot(request).await.unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    (response.status(), retry_after, started.elapsed())
}

#[tokio::test]
async fn a_held_lock_answers_503_with_retry_after_within_the_budget_and_stalls_no_one_else() {
    let b = billing().await;
    let items = || vec![("si_1", price("price_1", 1000, "month"), 1)];
    let created = event(
        "evt_1",
        "customer.subscription.created",
        now() - 10,
        subscription("sub_1", "active", items()),
        None,
    );
    assert_eq!(b.deliver_ok(&created).await, "applied");

    // Another session holds the object's lock (a stuck transaction elsewhere).
    let mut holder = b.db.client().await;
    let holding = holder.transaction().await.unwrap();
    holding
        .batch_execute("SELECT pg_advisory_xact_lock(hashtextextended('stripe:sub_1', 0))")
        .await
        .unwrap();
    let updated = event(
        "evt_2",
        "customer.subscription.updated",
        now(),
        subscription("sub_1", "past_due", items()),
        Some(json!({"status": "active"})),
    );
    let waiting = {
        let (router, updated) = (b.router.clone(), updated.clone());
        tokio::spawn(async move { timed_delivery(router, &updated).await })
    };
    // Meanwhile, another object's event goes through at once.
    let other = event(
        "evt_3",
        "customer.created",
        now(),
        customer("cus_9", "nine@x.io", b.workspace),
        None,
    );
    let (status, _, took) = timed_delivery(b.router.clone(), &other).await;
    assert_eq!(status, StatusCode::OK);
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");

    let (status, retry_after, took) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("5"));
    // Four attempts of a 2 s lock wait and their backoff, well before the edge's 25 s.
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
    assert_eq!(
        b.text("SELECT status FROM stripe.subscriptions")
            .await
            .as_deref(),
        Some("active"),
        "nothing written"
    );

    holding.rollback().await.unwrap();
    assert_eq!(
        b.deliver_ok(&updated).await,
        "applied",
        "Stripe's redelivery"
    );
}

#[tokio::test]
async fn a_replayed_delivery_inside_the_tolerance_changes_nothing() {
    let b = billing().await;
    let body = event(
        "evt_1",
        "customer.created",
        now(),
        customer("cus_1", "a@x.io", b.workspace),
        None,
    );
    let signature = sign_stripe(body.as_bytes(), SECRET, now());
    let (status, answer) = b
        .post_raw(body.clone().into_bytes(), Some(signature.clone()))
        .await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    let written = b
        .text("SELECT updated_at::text FROM stripe.customers")
        .await;
    // The very same request captured and sent again: a duplicate.
    let (status, answer) = b.post_raw(body.clone().into_bytes(), Some(signature)).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(
        b.text("SELECT updated_at::text FROM stripe.customers")
            .await,
        written
    );
    // Signed outside the tolerance, in the past or the future: refused before parsing.
    for stamp in [now() - 301, now() + 301] {
        let (status, answer) = b
            .post_raw(
                body.clone().into_bytes(),
                Some(sign_stripe(body.as_bytes(), SECRET, stamp)),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            answer["error"].as_str().unwrap().contains("tolerance"),
            "{answer}"
        );
    }
    assert_eq!(b.count("SELECT count(*) FROM stripe.events").await, 1);
}
