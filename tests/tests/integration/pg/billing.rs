//! The billing agent through its HTTP route, with events signed as Stripe signs them.
//!
//! Most tests are tables: the deliveries in order, each with the outcome it must answer, then
//! the rows the `stripe` schema must hold, as `(query, value)` pairs read as text. A failure
//! names the step or the query.

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
    let workspace = integration_tests::fixtures::workspace(&db.client().await, "acme").await;
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
    let request = request.body(Body::from(body)).unwrap();
    let (parts, body) = router.oneshot(request).await.unwrap().into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (parts.status, answer)
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

    /// Delivers each `(step, body, outcome)` in turn, each answering 200 with its outcome.
    async fn deliver_all(&self, steps: &[(&str, &str, &str)]) {
        for (step, body, outcome) in steps {
            assert_eq!(self.deliver_ok(body).await, *outcome, "{step}");
        }
    }

    /// Delivers `body` `times` times at once, as Stripe's parallel retries do: every one
    /// answers 200, and their outcomes come back.
    async fn deliver_at_once(&self, body: &str, times: usize) -> Vec<String> {
        let deliveries: Vec<_> = (0..times)
            .map(|_| {
                let (router, body) = (self.router.clone(), body.to_string());
                tokio::spawn(async move {
                    let signature = sign_stripe(body.as_bytes(), SECRET, now());
                    post(router, body.into_bytes(), Some(signature)).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for delivery in deliveries {
            let (status, answer) = delivery.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{answer}");
            outcomes.push(answer["outcome"].as_str().unwrap_or_default().to_string());
        }
        outcomes
    }

    /// Posts `body` with `signature` and asserts the refusal: `status`, and an error that
    /// starts with `reason`.
    async fn assert_refused(
        &self,
        step: &str,
        body: &str,
        signature: Option<String>,
        (status, reason): (StatusCode, &str),
    ) {
        let (answered, answer) = self.post_raw(body.as_bytes().to_vec(), signature).await;
        assert_eq!(answered, status, "{step}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(reason), "{step}: {answer}");
    }

    /// The one value `sql` selects (it fails on no row or more than one).
    async fn text(&self, sql: &str) -> Option<String> {
        let client = self.db.client().await;
        client.query_typed_one(sql, &[]).await.unwrap().get(0)
    }

    /// Asserts each `(query, value)`: the query's one value, read as text (`true`, `4200`,
    /// `1000.0000`), so that a test states the rows it expects as one table.
    async fn assert_state(&self, step: &str, expected: &[(&str, &str)]) {
        for (query, value) in expected {
            let found = self.text(&format!("SELECT ({query})::text")).await;
            assert_eq!(found.as_deref(), Some(*value), "{step}: {query}");
        }
    }

    /// Runs `sql` beside the agent: a test's sabotage of the schema or the mirror.
    async fn execute(&self, sql: &str) {
        self.db.client().await.batch_execute(sql).await.unwrap();
    }

    /// A `customer.created` event of customer `id`, linked to this workspace.
    fn customer_created(&self, event_id: &str, created: i64, id: &str, email: &str) -> String {
        let object = customer(id, email, self.workspace);
        event(event_id, "customer.created", created, object, None)
    }

    /// A `customer.updated` event: customer `id`'s email changed from `previous` to `email`.
    fn customer_updated(
        &self,
        event_id: &str,
        created: i64,
        id: &str,
        email: &str,
        previous: &str,
    ) -> String {
        let object = customer(id, email, self.workspace);
        let previous = Some(json!({ "email": previous }));
        event(event_id, "customer.updated", created, object, previous)
    }
}

fn customer(id: &str, email: &str, workspace: uuid::Uuid) -> Value {
    json!({"id": id, "object": "customer", "email": email, "name": "Ada", "delinquent": false,
           "created": 1_700_000_000, "metadata": {"workspace_id": workspace.to_string()}})
}

/// An event of a type the mirror does not model.
/// A type the mirror does not model (payment intents are mirrored since the backfill).
fn unsupported(id: &str, created: i64) -> String {
    let object = json!({"id": "pm_1", "object": "payment_method"});
    event(id, "payment_method.attached", created, object, None)
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

/// The subscription most tests use: `sub_1`, one item `si_1` of `price_1` at 10.00 a month.
fn sub_1(status: &str, quantity: i64) -> Value {
    let item = ("si_1", price("price_1", 1000, "month"), quantity);
    subscription("sub_1", status, vec![item])
}

/// A `customer.subscription.<action>` event.
fn sub_event(
    id: &str,
    action: &str,
    created: i64,
    object: Value,
    previous: Option<Value>,
) -> String {
    let kind = format!("customer.subscription.{action}");
    event(id, &kind, created, object, previous)
}

/// How each refused signature's reason begins.
const REFUSED_SIGNATURE: &str = "Stripe-Signature: signature";
/// How the reason for a signature more than five minutes old, or ahead, goes on.
const OUTSIDE_TOLERANCE: &str = "timestamp is outside the 300 s tolerance";

#[tokio::test]
async fn signatures_are_required_checked_and_rotatable() {
    let b = billing().await;
    let body = b.customer_created("evt_1", now(), "cus_1", "a@x.io");
    // Signed with `secret`, `age` seconds ago.
    let signed = |secret, age| Some(sign_stripe(body.as_bytes(), secret, now() - age));
    for (step, signature, reason) in [
        ("unsigned", None, "header is missing"),
        ("forged", signed("whsec_attacker", 0), "does not match"),
        ("stale", signed(SECRET, 301), OUTSIDE_TOLERANCE),
    ] {
        let reason = format!("{REFUSED_SIGNATURE} {reason}");
        let refusal = (StatusCode::BAD_REQUEST, reason.as_str());
        b.assert_refused(step, &body, signature, refusal).await;
    }
    b.assert_state(
        "nothing written for a bad signature",
        &[("SELECT count(*) FROM stripe.events", "0")],
    )
    .await;

    let (status, _) = b
        .post_raw(body.clone().into_bytes(), signed(OLD_SECRET, 0))
        .await;
    assert_eq!(status, StatusCode::OK, "the previous secret still works");
    b.assert_state(
        "after the previous secret",
        &[
            ("SELECT count(*) FROM stripe.customers", "1"),
            // Each delivery is in the run log: the three refusals counted in one row (written
            // with the next run, not one row each), the last as ok.
            (
                "SELECT string_agg(format('%s %s %s', trigger, outcome, runs), ', ' ORDER BY outcome)
                 FROM agent_runs WHERE agent = 'billing'",
                "http ok 1, http rejected 3",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_with_reasons() {
    let b = billing().await;
    let signed = |body: &str| Some(sign_stripe(body.as_bytes(), SECRET, now()));
    let no_object = r#"{"id":"evt_1","object":"event","type":"customer.created","created":1}"#;
    for (step, body, reason) in [
        ("not JSON", "{not json", ""),
        ("no data.object", no_object, "`data.object`"),
    ] {
        let reason = format!("malformed event: {reason}");
        let refusal = (StatusCode::BAD_REQUEST, reason.as_str());
        b.assert_refused(step, body, signed(body), refusal).await;
    }
    let huge = format!(r#"{{"padding":"{}"}}"#, "x".repeat(billing::MAX_BODY_BYTES));
    let refusal = (StatusCode::PAYLOAD_TOO_LARGE, "the body is larger than");
    b.assert_refused("huge", &huge, signed(&huge), refusal)
        .await;
    b.assert_state(
        "after the refusals",
        &[("SELECT count(*) FROM stripe.events", "0")],
    )
    .await;
}

#[tokio::test]
async fn duplicates_change_nothing_and_unknown_types_are_kept() {
    let b = billing().await;
    let body = b.customer_created("evt_1", now(), "cus_1", "a@x.io");
    let unknown = unsupported("evt_2", now());
    // The ledger after each delivery: a redelivery adds no row, an unknown type is kept.
    for (step, body, outcome, events) in [
        ("first delivery", &body, "applied", "1"),
        ("redelivery", &body, "duplicate", "1"),
        ("unknown type", &unknown, "unsupported", "2"),
        ("unknown type redelivered", &unknown, "duplicate", "2"),
    ] {
        assert_eq!(b.deliver_ok(body).await, outcome, "{step}");
        b.assert_state(step, &[("SELECT count(*) FROM stripe.events", events)])
            .await;
    }
    b.assert_state(
        "at the end",
        &[
            (
                "SELECT outcome FROM stripe.events WHERE id = 'evt_2'",
                "unsupported",
            ),
            // Customer metadata links the workspace.
            (
                "SELECT workspace_id FROM stripe.customers",
                &b.workspace.to_string(),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_older_update_arriving_late_is_recorded_but_not_applied() {
    let b = billing().await;
    let newer = b.customer_updated("evt_new", 2_000, "cus_1", "new@x.io", "old@x.io");
    let older = b.customer_created("evt_old", 1_000, "cus_1", "old@x.io");
    b.deliver_all(&[
        ("newer", &newer, "applied"),
        ("older, late", &older, "stale"),
    ])
    .await;
    b.assert_state(
        "after the late one",
        &[
            ("SELECT email FROM stripe.customers", "new@x.io"),
            ("SELECT last_event_id FROM stripe.customers", "evt_new"),
            ("SELECT count(*) FROM stripe.events", "2"),
        ],
    )
    .await;
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
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
    let chain = [
        ("evt_c", "invoice.created", invoice("draft", 0)),
        ("evt_b", "invoice.finalized", invoice("open", 0)),
        ("evt_a", "invoice.paid", invoice("paid", 4200)),
    ];
    for order in permutations(&chain) {
        let b = billing().await;
        for (id, kind, object) in &order {
            b.deliver_ok(&event(id, kind, second, object.clone(), None))
                .await;
        }
        let ids: Vec<_> = order.iter().map(|(id, _, _)| *id).collect();
        b.assert_state(
            &format!("delivered as {ids:?}"),
            &[
                ("SELECT status FROM stripe.invoices", "paid"),
                ("SELECT amount_paid FROM stripe.invoices", "4200"),
                ("SELECT count(*) FROM stripe.events", "3"),
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn a_same_second_subscription_created_then_updated_converges_either_way() {
    let second = 1_764_590_000;
    let created = sub_event("evt_z", "created", second, sub_1("incomplete", 1), None);
    let was_incomplete = Some(json!({"status": "incomplete"}));
    let updated = sub_event(
        "evt_a",
        "updated",
        second,
        sub_1("active", 1),
        was_incomplete,
    );
    for (order, bodies) in [
        ("created first", [&created, &updated]),
        ("updated first", [&updated, &created]),
    ] {
        let b = billing().await;
        for body in bodies {
            b.deliver_ok(body).await;
        }
        b.assert_state(
            order,
            &[
                ("SELECT status FROM stripe.subscriptions", "active"),
                ("SELECT mrr FROM stripe.subscription_mrr", "1000.0000"),
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn deleted_objects_stay_deleted() {
    let b = billing().await;
    let product = |name: &str| json!({"id": "prod_1", "object": "product", "name": name, "active": true, "created": 1});
    let bare = json!({"id": "prod_1", "object": "product", "deleted": true});
    let deleted = event("evt_del", "product.deleted", 3_000, bare, None);
    let created = event("evt_c", "product.created", 1_000, product("Pro"), None);
    let (pro_v2, was_pro) = (product("Pro v2"), Some(json!({"name": "Pro"})));
    let late = event("evt_u", "product.updated", 2_000, pro_v2, was_pro);
    // A price deleted before anything else about it arrives is born deleted.
    let price_9 = || price("price_9", 500, "month");
    let price_deleted = event("evt_pd", "price.deleted", 3_000, price_9(), None);
    let price_created = event("evt_pc", "price.created", 1_000, price_9(), None);
    b.deliver_all(&[
        ("product created", &created, "applied"),
        ("product deleted", &deleted, "applied"),
        ("product updated before the deletion", &late, "stale"),
        ("price deleted", &price_deleted, "applied"),
        ("price created before the deletion", &price_created, "stale"),
    ])
    .await;
    b.assert_state(
        "after the deletions",
        &[
            ("SELECT deleted FROM stripe.products", "true"),
            // A bare deleted object, as Stripe answers for it.
            ("SELECT name IS NULL FROM stripe.products", "true"),
            ("SELECT count(*) FROM stripe.prices WHERE deleted", "1"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_replaced_subscription_item_does_not_come_back() {
    let item = |id, price_id, amount| vec![(id, price(price_id, amount, "month"), 1)];
    let v1 = subscription("sub_1", "active", item("si_a", "price_a", 1000));
    let v1 = sub_event("evt_1", "created", 1_000, v1, None);
    let v2 = subscription("sub_1", "active", item("si_b", "price_b", 2000));
    let replaced = Some(json!({"items": {"object": "list", "data": []}}));
    let v2 = sub_event("evt_2", "updated", 2_000, v2, replaced);

    let b = billing().await;
    b.deliver_all(&[
        ("v2", &v2, "applied"),
        ("v1, late", &v1, "stale"),
        ("v1 again", &v1, "duplicate"),
    ])
    .await;
    b.assert_state(
        "v1 after v2",
        &[
            (
                "SELECT count(*) FROM stripe.subscription_items WHERE NOT deleted",
                "1",
            ),
            (
                "SELECT id FROM stripe.subscription_items WHERE NOT deleted",
                "si_b",
            ),
        ],
    )
    .await;

    let b = billing().await;
    b.deliver_all(&[("v1", &v1, "applied"), ("v2", &v2, "applied")])
        .await;
    b.assert_state(
        "v2 after v1",
        &[
            (
                "SELECT id FROM stripe.subscription_items WHERE deleted",
                "si_a",
            ),
            (
                "SELECT id FROM stripe.subscription_items WHERE NOT deleted",
                "si_b",
            ),
            ("SELECT mrr FROM stripe.subscription_mrr", "2000.0000"),
        ],
    )
    .await;
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
    let invoice = json!({"id": "in_9", "object": "invoice", "customer": "cus_1", "status": "paid", "amount_due": 1000,
        "amount_paid": 1000, "currency": "usd", "created": 1_000,
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_9"}}, "payments": {"data": []}});
    let created = sub_event("evt_s", "created", 1_000, sub, None);
    let paid = event("evt_i", "invoice.paid", 1_000, invoice, None);
    b.deliver_all(&[
        ("subscription", &created, "applied"),
        ("invoice", &paid, "applied"),
    ])
    .await;
    b.assert_state(
        "the 2025 shapes",
        &[
            (
                "SELECT current_period_end = to_timestamp(1702592000) FROM stripe.subscriptions",
                "true",
            ),
            ("SELECT subscription FROM stripe.invoices", "sub_9"),
            ("SELECT paid FROM stripe.invoices", "true"),
        ],
    )
    .await;
}

#[tokio::test]
async fn revenue_changes_are_recorded_and_metrics_are_asked_to_recompute() {
    let b = billing().await;
    let customer = b.customer_created("evt_0", 900, "cus_1", "a@x.io");
    assert_eq!(b.deliver_ok(&customer).await, "applied");
    // Step n is `evt_n`, at n × 1000 s: what befalls the subscription, its status and
    // quantity after, its quantity before (for an update), and the revenue change recorded.
    let steps = [
        ("created", "active", 1, None, "new 1000.0000"),
        ("updated", "active", 3, Some(1), "expansion 2000.0000"),
        ("updated", "active", 2, Some(3), "contraction -1000.0000"),
        ("deleted", "canceled", 2, None, "churn -2000.0000"),
    ];
    let recorded = "SELECT string_agg(kind || ' ' || delta, ', ' ORDER BY occurred_at) FROM stripe.mrr_changes";
    let mut changes = Vec::new();
    for (n, (action, status, quantity, before, change)) in (1..).zip(steps) {
        let (id, step) = (format!("evt_{n}"), format!("step {n}, {change}"));
        let previous = before.map(|quantity: i64| json!({ "quantity": quantity }));
        let body = sub_event(&id, action, n * 1_000, sub_1(status, quantity), previous);
        assert_eq!(b.deliver_ok(&body).await, "applied", "{step}");
        changes.push(change);
        b.assert_state(&step, &[(recorded, &changes.join(", "))])
            .await;
    }
    let elsewhere = format!(
        "SELECT count(*) FROM stripe.mrr_changes WHERE workspace_id IS DISTINCT FROM '{}'",
        b.workspace
    );
    b.assert_state(
        "after the churn",
        &[
            (&elsewhere, "0"),
            // An ended subscription's items are gone.
            (
                "SELECT count(*) FROM stripe.subscription_items WHERE deleted",
                "1",
            ),
        ],
    )
    .await;

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
    b.execute(
        "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$;
         CREATE TRIGGER fail BEFORE INSERT ON stripe.mrr_changes FOR EACH ROW EXECUTE FUNCTION fail();",
    )
    .await;
    let body = sub_event("evt_1", "created", 1_000, sub_1("active", 1), None);
    let (status, _) = b.deliver(&body).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    b.assert_state(
        "untouched by the failed delivery",
        &[
            ("SELECT count(*) FROM stripe.events", "0"),
            ("SELECT count(*) FROM stripe.subscriptions", "0"),
            ("SELECT count(*) FROM stripe.subscription_items", "0"),
            ("SELECT count(*) FROM stripe.subscription_mrr", "0"),
        ],
    )
    .await;
    b.execute("DROP TRIGGER fail ON stripe.mrr_changes").await;
    assert_eq!(
        b.deliver_ok(&body).await,
        "applied",
        "Stripe's redelivery succeeds"
    );
}

#[tokio::test]
async fn the_same_event_delivered_concurrently_has_one_effect() {
    let b = billing().await;
    let body = sub_event("evt_1", "created", 1_000, sub_1("active", 1), None);
    let outcomes = b.deliver_at_once(&body, 10).await;
    let answered = |outcome| outcomes.iter().filter(|o| *o == outcome).count();
    assert_eq!(answered("applied"), 1, "{outcomes:?}");
    assert_eq!(answered("duplicate"), 9, "{outcomes:?}");
    b.assert_state(
        "after ten deliveries",
        &[
            ("SELECT count(*) FROM stripe.events", "1"),
            ("SELECT count(*) FROM stripe.mrr_changes", "1"),
        ],
    )
    .await;
}

#[tokio::test]
async fn backfill_replays_a_jsonl_file_through_the_same_path() {
    let b = billing().await;
    let created = b.customer_created("evt_1", 1_000, "cus_1", "a@x.io");
    let lines = [
        created.clone(),
        "not an event".to_string(),
        b.customer_updated("evt_2", 2_000, "cus_1", "b@x.io", "a@x.io"),
        created,
        unsupported("evt_3", 1_000),
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
    b.assert_state(
        "after the backfill",
        &[("SELECT email FROM stripe.customers", "b@x.io")],
    )
    .await;
}

#[tokio::test]
async fn the_ledger_exports_and_rebuilds_the_mirror_through_the_same_path() {
    let b = billing().await;
    let t = now() - 100;
    let created = b.customer_created("evt_r1", t, "cus_r", "old@x.io");
    let updated = b.customer_updated("evt_r2", t + 10, "cus_r", "new@x.io", "old@x.io");
    b.deliver_all(&[
        ("created", &created, "applied"),
        ("updated", &updated, "applied"),
    ])
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
    b.execute("UPDATE stripe.customers SET email = 'corrupted@x.io'")
        .await;
    let report = billing::rebuild(&b.deps, &path).await.unwrap();
    assert_eq!((report.applied, report.duplicate), (2, 0), "{report:?}");
    b.assert_state(
        "after the rebuild",
        &[
            (
                "SELECT email FROM stripe.customers WHERE id = 'cus_r'",
                "new@x.io",
            ),
            ("SELECT count(*) FROM stripe.events", "2"),
        ],
    )
    .await;
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
    let huge = subscription("sub_huge", "active", vec![("si_huge", huge, 2)]);
    let body = sub_event("evt_huge", "created", now(), huge, None);
    let (status, answer) = b.deliver(&body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"received": true, "outcome": "quarantined"}));
    let kept = b.db.quarantined().await;
    assert_eq!(kept.len(), 1);
    let (source, key, reason, payload) = &kept[0];
    assert_eq!((source.as_str(), key.as_str()), ("stripe", "evt_huge"));
    assert!(reason.contains("unit amount × quantity"), "{reason}");
    assert_eq!(payload, body.as_bytes(), "kept byte for byte");
    b.assert_state(
        "after the quarantine",
        &[
            ("SELECT count(*) FROM stripe.events", "0"),
            ("SELECT count(*) FROM stripe.subscriptions", "0"),
            ("SELECT count(*) FROM stripe.subscription_items", "0"),
        ],
    )
    .await;

    // The same process goes on serving, and other objects' events are applied.
    let sibling = vec![("si_ok", price("price_ok", 1000, "month"), 2)];
    let sibling = subscription("sub_ok", "active", sibling);
    let sibling = sub_event("evt_ok", "created", now(), sibling, None);
    assert_eq!(b.deliver_ok(&sibling).await, "applied");
    b.assert_state(
        "the sibling",
        &[(
            "SELECT mrr FROM stripe.subscription_mrr WHERE subscription = 'sub_ok'",
            "2000.0000",
        )],
    )
    .await;
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
    let big = subscription("sub_big", "active", vec![("si_big", beyond_numeric, 1000)]);
    let cases = [
        (
            event("evt_count", "price.created", now(), count, None),
            "integer out of range",
        ),
        (
            sub_event("evt_mrr", "created", now(), big, None),
            "numeric field overflow",
        ),
        (
            b.customer_created("evt_time", -400_000_000_000, "cus_old", "old@x.io"),
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
    b.assert_state(
        "after the quarantines",
        &[
            ("SELECT count(*) FROM stripe.events", "0"),
            ("SELECT count(*) FROM stripe.prices", "0"),
        ],
    )
    .await;
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

    b.deliver_all(&[
        ("NUL in the metadata", &nul_body, "quarantined"),
        ("emoji", &emoji_body, "applied"),
        ("NUL in the name", &nul_name_body, "quarantined"),
    ])
    .await;
    let kept = b.db.quarantined().await;
    assert_eq!(kept.len(), 2);
    assert!(
        kept[0].2.contains("/data/object/metadata/note"),
        "{}",
        kept[0].2
    );
    assert!(kept[1].2.contains("/data/object/name"), "{}", kept[1].2);
    b.assert_state(
        "the emoji customer",
        &[
            (
                "SELECT name || ' ' || email || ' ' || (raw->'metadata'->>'note') FROM stripe.customers",
                "Ada 🦀 Lovelace ada+🦀@example.com 🚀 launch",
            ),
            ("SELECT count(*) FROM stripe.events", "1"),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_unstorable_event_delivered_eight_times_at_once_is_kept_once() {
    let b = billing().await;
    let mut with_nul = customer("cus_nul", "nul@x.io", b.workspace);
    with_nul["metadata"]["note"] = json!("\u{0}");
    let body = event("evt_nul", "customer.created", now(), with_nul, None);
    assert_eq!(b.deliver_at_once(&body, 8).await, vec!["quarantined"; 8]);
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
    let created = sub_event("evt_1", "created", now() - 10, sub_1("active", 1), None);
    assert_eq!(b.deliver_ok(&created).await, "applied");

    // Another session holds the object's lock (a stuck transaction elsewhere).
    let mut holder = b.db.client().await;
    let holding = holder.transaction().await.unwrap();
    holding
        .batch_execute("SELECT pg_advisory_xact_lock(hashtextextended('stripe:sub_1', 0))")
        .await
        .unwrap();
    let was_active = Some(json!({"status": "active"}));
    let updated = sub_event("evt_2", "updated", now(), sub_1("past_due", 1), was_active);
    let waiting = {
        let (router, updated) = (b.router.clone(), updated.clone());
        tokio::spawn(async move { timed_delivery(router, &updated).await })
    };
    // Meanwhile, another object's event goes through at once.
    let other = b.customer_created("evt_3", now(), "cus_9", "nine@x.io");
    let (status, _, took) = timed_delivery(b.router.clone(), &other).await;
    assert_eq!(status, StatusCode::OK);
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");

    let (status, retry_after, took) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("5"));
    // Four attempts of a 2 s lock wait and their backoff, well before the edge's 25 s.
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
    b.assert_state(
        "nothing written",
        &[("SELECT status FROM stripe.subscriptions", "active")],
    )
    .await;

    holding.rollback().await.unwrap();
    b.deliver_all(&[("Stripe's redelivery", &updated, "applied")])
        .await;
}

#[tokio::test]
async fn a_replayed_delivery_inside_the_tolerance_changes_nothing() {
    let b = billing().await;
    let body = b.customer_created("evt_1", now(), "cus_1", "a@x.io");
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
        .await
        .unwrap();
    // The very same request captured and sent again: a duplicate, which writes nothing.
    let (status, answer) = b.post_raw(body.clone().into_bytes(), Some(signature)).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    b.assert_state(
        "after the replay",
        &[("SELECT updated_at FROM stripe.customers", &written)],
    )
    .await;
    // Signed outside the tolerance, in the past or the future: refused before parsing.
    let reason = format!("{REFUSED_SIGNATURE} {OUTSIDE_TOLERANCE}");
    for (step, stamp) in [("past", now() - 301), ("future", now() + 301)] {
        let signature = sign_stripe(body.as_bytes(), SECRET, stamp);
        let refusal = (StatusCode::BAD_REQUEST, reason.as_str());
        b.assert_refused(step, &body, Some(signature), refusal)
            .await;
    }
    b.assert_state(
        "after the refusals",
        &[("SELECT count(*) FROM stripe.events", "1")],
    )
    .await;
}
