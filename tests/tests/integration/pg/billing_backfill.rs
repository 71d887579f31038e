//! The Stripe backfill (`ops stripe backfill`) against the Stripe stand-in and a real
//! PostgreSQL: a generated account of over 10,000 objects read from the API and then its later
//! webhooks, which must leave exactly the expected state; an interrupted backfill resumed
//! (nothing twice, nothing lost); rate limits and `Stripe-Should-Retry`; and the ordering rule
//! between API reads and events (a read never overwrites a newer event).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use billing::backfill::Resource;
use billing::stripe_api::{ApiConfig, StripeApi};
use billing::{BackfillOptions, BillingDeps, backfill_from_api};
use integration_tests::stripe_events::{self, GeneratorConfig};
use integration_tests::test_db::TestDb;
use integration_tests::{stripe_account, stripe_check};
use serde_json::{Value, json};
use shared::queue::postgres::PostgresTransport;
use shared::retry::{RetryClass, Retryable};
use standins::stripe::{StripeAccount, StripeStandin};
use tokio_postgres::types::Type;
use tower::ServiceExt;
use uuid::Uuid;

const SECRET: &str = "whsec_test_backfill";
const KEY: &str = "sk_test_backfill_4242";
/// The stand-in's clock in the tests that do not cut a generated history.
const NOW: i64 = 1_796_600_000;

struct Setup {
    db: TestDb,
    deps: Arc<BillingDeps>,
    router: Router,
    standin: StripeStandin,
}

async fn setup(account: StripeAccount, connections: usize) -> Setup {
    let db = TestDb::new().await;
    let pool = db.pool(connections);
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let container = shared::lambda::Container::new(pool, transport, shared::clock::Clock::system());
    let config = billing::config::Config {
        webhook_secrets: vec![SECRET.into()],
    };
    let deps = Arc::new(BillingDeps::new(&container, config));
    Setup {
        db,
        router: billing::router(deps.clone()),
        deps,
        standin: StripeStandin::start(account, KEY).await.unwrap(),
    }
}

impl Setup {
    /// The API client as `ops` builds it, with quick backoffs (a `Retry-After` is still
    /// waited for as Stripe says).
    fn api(&self, key: &str) -> StripeApi {
        let mut config = ApiConfig::new(self.standin.url(), key.into());
        config.retry.first_delay = Duration::from_millis(10);
        config.retry.max_delay = Duration::from_millis(50);
        StripeApi::new(config, shared::clock::Clock::system()).unwrap()
    }

    async fn backfill(
        &self,
    ) -> Result<billing::ApiBackfillReport, billing::backfill::BackfillError> {
        let options = BackfillOptions {
            concurrency: 8,
            restart: false,
        };
        backfill_from_api(&self.deps, &self.api(KEY), options, &|_| {}).await
    }

    async fn deliver(&self, body: &str) -> (StatusCode, String) {
        let signature = shared::webhook::sign_stripe(body.as_bytes(), SECRET, unix_now());
        let request = Request::post("/webhooks/stripe")
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db
            .client()
            .await
            .query_typed_one(sql, &[])
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
            .get(0)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backfilled_account_of_10000_objects_then_its_later_webhooks_leave_the_expected_state() {
    let workspace = Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0b1f);
    let generated = stripe_events::generate(
        20_261_208,
        &GeneratorConfig {
            customers: 1_200,
            workspace_id: workspace,
            ..GeneratorConfig::default()
        },
    );
    // The API is read at the second by which 85% of the history happened; the rest arrives
    // as webhooks afterwards.
    let cut = generated.events[generated.events.len() * 85 / 100].created;
    let at_cut = stripe_account::cut(&generated, cut);
    assert!(
        at_cut.objects.len() >= 10_000,
        "the account lists {} objects",
        at_cut.objects.len()
    );
    let listed = at_cut.objects.len();
    let setup = setup(StripeAccount::from_objects(cut, at_cut.objects), 8).await;
    setup
        .db
        .client()
        .await
        .execute_typed(
            "INSERT INTO public.workspaces (id, name) VALUES ($1, 'backfill')",
            &[(&workspace, Type::UUID)],
        )
        .await
        .unwrap();

    let report = setup.backfill().await.expect("the backfill completes");
    assert_eq!(report.read as usize, listed, "{report:?}");
    assert_eq!(report.applied as usize, listed, "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");

    // The later changes, eight deliveries at a time in the generator's delivery order.
    let deliveries = Arc::new(at_cut.later_deliveries);
    let next = Arc::new(AtomicUsize::new(0));
    let setup = Arc::new(setup);
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (setup, deliveries, next) = (setup.clone(), deliveries.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while let Some(body) = deliveries.get(next.fetch_add(1, Ordering::Relaxed)) {
                let (status, answer) = setup.deliver(body).await;
                if status != StatusCode::OK {
                    failures.push(format!("{status} {answer}"));
                }
            }
            failures
        }));
    }
    for worker in workers {
        let failures = worker.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }

    let mismatches = stripe_check::check(&setup.db.client().await, &at_cut.expected).await;
    for mismatch in stripe_check::sample(&mismatches, 20) {
        eprintln!("{mismatch}");
        eprint!("{}", generated.describe(&mismatch.id));
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches ({}) after backfilling {listed} objects and {} later deliveries",
        mismatches.len(),
        stripe_check::summarize(&mismatches),
        deliveries.len()
    );
}

/// Pages a full pass needs: one per 100 objects, and one (empty) for an empty list.
fn pages_needed(account: &StripeAccount) -> usize {
    standins::stripe::Resource::ALL
        .iter()
        .map(|&resource| account.count(resource, true).div_ceil(100).max(1))
        .sum()
}

#[tokio::test]
async fn an_interrupted_backfill_continues_after_its_last_page_and_stores_each_object_once() {
    let setup = setup(StripeAccount::seeded(3, 3_000, NOW), 8).await;
    let faults = setup.standin.faults();
    faults.refuse_after(12);
    let error = setup.backfill().await.expect_err("refused on page 13");
    assert_eq!(error.retry_class(), RetryClass::Permanent, "{error}");
    assert!(error.to_string().contains("500"), "{error}");
    let stored_pages = setup
        .count("SELECT COALESCE(sum(pages), 0)::int8 FROM stripe.backfill_cursors")
        .await;
    assert_eq!(stored_pages, 12, "every page served was applied and stored");
    let before = setup.count("SELECT count(*) FROM stripe.events").await;
    assert_eq!(
        before,
        setup
            .count("SELECT sum(objects)::int8 FROM stripe.backfill_cursors")
            .await,
        "whole pages only"
    );

    faults.clear();
    let report = setup.backfill().await.expect("the rerun completes");
    assert!(
        report.resumed.contains(&Resource::Products) && report.resumed.contains(&Resource::Prices),
        "{report:?}"
    );
    assert_eq!(report.read as i64 + before, 3_000, "{report:?}");
    assert_eq!(report.duplicate, 0, "no page was applied twice: {report:?}");

    let account = setup.standin.account();
    for (resource, table) in [
        (standins::stripe::Resource::Customers, "customers"),
        (standins::stripe::Resource::Products, "products"),
        (standins::stripe::Resource::Prices, "prices"),
        (standins::stripe::Resource::Subscriptions, "subscriptions"),
        (standins::stripe::Resource::Invoices, "invoices"),
        (standins::stripe::Resource::Charges, "charges"),
        (standins::stripe::Resource::Refunds, "refunds"),
        (
            standins::stripe::Resource::PaymentIntents,
            "payment_intents",
        ),
        (standins::stripe::Resource::Disputes, "disputes"),
    ] {
        let rows = setup
            .count(&format!("SELECT count(*) FROM stripe.{table}"))
            .await;
        assert_eq!(
            rows as usize,
            account.count(resource, true),
            "stripe.{table}"
        );
    }
    assert_eq!(
        setup
            .count("SELECT count(DISTINCT object_id) FROM stripe.events WHERE id LIKE 'api_read_%'")
            .await,
        3_000
    );
    assert_eq!(
        setup.count("SELECT count(*) FROM stripe.events").await,
        3_000
    );
    // Subscriptions canceled before the read are there, deleted as Stripe's own
    // `customer.subscription.deleted` would have left them.
    assert_eq!(
        setup
            .count("SELECT count(*) FROM stripe.subscriptions WHERE status = 'canceled' AND NOT deleted")
            .await,
        0
    );
    assert!(
        setup
            .count("SELECT count(*) FROM stripe.subscriptions WHERE deleted")
            .await
            > 0
    );

    // Plain rows share batch transactions (rows of one transaction share `xmin`).
    let customers = account.count(standins::stripe::Resource::Customers, true) as i64;
    let transactions = setup
        .count("SELECT count(DISTINCT xmin::text) FROM stripe.customers")
        .await;
    assert!(
        transactions * 10 <= customers,
        "{customers} customers written in {transactions} transactions"
    );

    // Each page was fetched exactly once over both runs, and each list started once.
    let requests = faults.requests();
    let served: Vec<_> = requests.iter().filter(|r| r.status == 200).collect();
    assert_eq!(served.len(), pages_needed(account));
    assert_eq!(
        served.iter().filter(|r| r.starting_after.is_none()).count(),
        9
    );

    // A pass that is complete starts again: the same reads of the same second change nothing.
    let again = setup.backfill().await.unwrap();
    assert!(again.resumed.is_empty());
    assert_eq!((again.duplicate, again.applied), (3_000, 0), "{again:?}");
    assert_eq!(
        setup.count("SELECT count(*) FROM stripe.events").await,
        3_000
    );
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_should_retry_false_is_not_retried() {
    let setup = setup(StripeAccount::seeded(5, 400, NOW), 8).await;
    let faults = setup.standin.faults();
    faults.throttle(2, 1);
    faults.fail_once(5);
    let started = Instant::now();
    let report = setup.backfill().await.expect("throttling and one 500 pass");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 waited for twice"
    );
    assert_eq!(report.read, 400);
    let requests = faults.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], &[429, 429, 200], "{statuses:?}");
    assert_eq!(
        requests[0].starting_after, requests[2].starting_after,
        "the throttled page is asked again"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 500).count(), 1);
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        pages_needed(setup.standin.account())
    );

    // `Stripe-Should-Retry: false` on a 500: one request, and the run stops.
    let asked = requests.len();
    faults.refuse_after(0);
    let options = BackfillOptions {
        concurrency: 8,
        restart: true,
    };
    let error = backfill_from_api(&setup.deps, &setup.api(KEY), options, &|_| {})
        .await
        .expect_err("refused");
    assert_eq!(error.retry_class(), RetryClass::Permanent);
    assert_eq!(faults.requests().len(), asked + 1, "not retried: {error}");
    faults.clear();

    // A wrong key: 401 in Stripe's shape, not retried, and the key is not in the error.
    let wrong = "sk_test_wrong_key_9999";
    let error = backfill_from_api(&setup.deps, &setup.api(wrong), options, &|_| {})
        .await
        .expect_err("401");
    let text = error.to_string();
    assert!(
        text.contains("401") && text.contains("Invalid API Key"),
        "{text}"
    );
    assert!(!text.contains(wrong), "{text}");
}

fn customer(id: &str, email: &str, created: i64) -> Value {
    json!({"id": id, "object": "customer", "email": email, "name": null, "created": created,
           "currency": "usd", "delinquent": false, "livemode": false, "metadata": {}})
}

fn event(id: &str, created: i64, object: Value) -> String {
    json!({"id": id, "object": "event", "api_version": "2025-03-31.basil", "created": created,
           "livemode": false, "pending_webhooks": 1, "type": "customer.updated",
           "data": {"object": object}})
    .to_string()
}

#[tokio::test]
async fn an_api_read_never_overwrites_a_newer_or_same_second_event() {
    let invoice = |status: &str, paid: i64| {
        json!({"id": "in_same", "object": "invoice", "customer": "cus_same", "status": status,
               "amount_due": 500, "amount_paid": paid, "amount_remaining": 500 - paid,
               "currency": "usd", "created": NOW - 900, "livemode": false, "metadata": {}})
    };
    let mut objects: Vec<Value> = ["cus_later", "cus_same", "cus_older"]
        .map(|id| customer(id, &format!("{id}@api.example"), NOW - 1_000))
        .into();
    // The read shows more progress than the same-second event (paid, not open): it still
    // loses, because it cannot prove it came after the event (rule 3, not rule 6).
    objects.push(invoice("paid", 500));
    let setup = setup(StripeAccount::from_objects(NOW, objects), 4).await;
    let open = json!({"id": "evt_in_same", "object": "event", "api_version": "2025-03-31.basil",
        "created": NOW, "livemode": false, "type": "invoice.finalized",
        "data": {"object": invoice("open", 0)}})
    .to_string();
    assert_eq!(setup.deliver(&open).await.0, StatusCode::OK);
    for (id, created) in [
        ("cus_later", NOW + 5),
        ("cus_same", NOW),
        ("cus_older", NOW - 5),
    ] {
        let body = event(
            &format!("evt_{id}"),
            created,
            customer(id, &format!("{id}@event.example"), NOW - 1_000),
        );
        assert_eq!(setup.deliver(&body).await.0, StatusCode::OK);
    }
    let report = setup.backfill().await.unwrap();
    assert_eq!((report.applied, report.stale), (1, 3), "{report:?}");
    // An event older than the read, delivered after it, changes nothing either.
    let late = event(
        "evt_cus_older_late",
        NOW - 3,
        customer("cus_older", "late@event.example", NOW - 1_000),
    );
    let (status, answer) = setup.deliver(&late).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer.contains("stale"), "{answer}");

    let client = setup.db.client().await;
    let rows = client
        .query_typed(
            "SELECT id, email, last_event_id FROM stripe.customers ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "cus_later".into(),
                "cus_later@event.example".into(),
                "evt_cus_later".into()
            ),
            (
                "cus_older".into(),
                "cus_older@api.example".into(),
                format!("api_read_{NOW}_cus_older")
            ),
            (
                "cus_same".into(),
                "cus_same@event.example".into(),
                "evt_cus_same".into()
            ),
        ]
    );
    let invoice = client
        .query_typed_one(
            "SELECT status, last_event_id FROM stripe.invoices WHERE id = 'in_same'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (invoice.get::<_, String>(0), invoice.get::<_, String>(1)),
        ("open".into(), "evt_in_same".into())
    );
    let outcomes = client
        .query_typed(
            "SELECT object_id, outcome FROM stripe.events WHERE type = 'api_read.customer' ORDER BY object_id",
            &[],
        )
        .await
        .unwrap();
    let outcomes: Vec<(String, String)> = outcomes.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        outcomes,
        vec![
            ("cus_later".into(), "stale".into()),
            ("cus_older".into(), "applied".into()),
            ("cus_same".into(), "stale".into()),
        ]
    );
}

#[tokio::test]
async fn refund_events_write_refunds_and_payment_intents_are_mirrored() {
    let setup = setup(StripeAccount::from_objects(NOW, []), 4).await;
    let refund = json!({"id": "re_1", "object": "refund", "amount": 300, "charge": "ch_1",
        "payment_intent": "pi_1", "currency": "eur", "status": "succeeded",
        "reason": "requested_by_customer", "created": NOW - 10});
    let intent = json!({"id": "pi_1", "object": "payment_intent", "amount": 900,
        "amount_received": 900, "currency": "eur", "customer": "cus_1", "status": "succeeded",
        "latest_charge": "ch_1", "created": NOW - 20});
    for (id, kind, object) in [
        ("evt_refund", "charge.refund.updated", refund),
        ("evt_intent", "payment_intent.succeeded", intent),
    ] {
        let body = json!({"id": id, "object": "event", "api_version": "2025-03-31.basil",
            "created": NOW, "livemode": false, "type": kind, "data": {"object": object}})
        .to_string();
        let (status, answer) = setup.deliver(&body).await;
        assert_eq!(status, StatusCode::OK);
        assert!(answer.contains("applied"), "{kind}: {answer}");
    }
    let client = setup.db.client().await;
    let refund = client
        .query_typed_one(
            "SELECT charge, amount, currency, status FROM stripe.refunds WHERE id = 're_1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            refund.get::<_, String>(0),
            refund.get::<_, i64>(1),
            refund.get::<_, String>(2),
            refund.get::<_, String>(3)
        ),
        ("ch_1".into(), 300, "eur".into(), "succeeded".into())
    );
    assert_eq!(setup.count("SELECT count(*) FROM stripe.charges").await, 0);
    assert_eq!(
        setup
            .count("SELECT amount_received FROM stripe.payment_intents WHERE id = 'pi_1'")
            .await,
        900
    );
}
