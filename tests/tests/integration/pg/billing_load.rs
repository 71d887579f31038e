//! The billing agent under realistic Stripe traffic: about 2,000 signed deliveries — out of
//! order, some twice, same-second chains, both API shapes, deletions overtaken by older
//! updates, types we do not model — through the HTTP router, eight at a time. Afterwards the
//! `stripe` schema must hold exactly the state of each object's newest event, and the ledger
//! exactly the distinct events.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use integration_tests::stripe_check;
use integration_tests::stripe_events::{self, GeneratorConfig};
use integration_tests::test_db::TestDb;
use shared::queue::postgres::PostgresTransport;
use tokio_postgres::types::Type;
use tower::ServiceExt;
use uuid::Uuid;

const SEED: u64 = 20_261_201;
const CONCURRENCY: usize = 8;
const SECRET: &str = "whsec_test";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shuffled_stripe_traffic_leaves_the_newest_state() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let workspace = Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001);
    client
        .execute_typed(
            "INSERT INTO public.workspaces (id, name) VALUES ($1, $2)",
            &[(&workspace, Type::UUID), (&"billing load", Type::TEXT)],
        )
        .await
        .expect("insert the workspace");
    // `BILLING_LOAD_SEED` replays another stream, e.g. to reproduce a failure seen elsewhere.
    let seed = std::env::var("BILLING_LOAD_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(SEED);
    let generated = stripe_events::generate(
        seed,
        &GeneratorConfig {
            customers: 50,
            workspace_id: workspace,
            ..GeneratorConfig::default()
        },
    );
    let pool = db.pool(CONCURRENCY);
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let container = shared::lambda::Container::new(pool, transport, shared::clock::Clock::system());
    let config = billing::config::Config {
        webhook_secrets: vec![SECRET.into()],
    };
    let deps = Arc::new(billing::BillingDeps::new(&container, config));
    let router = billing::router(deps);

    // Eight workers take the next delivery in turn, so the delivery order is kept up to the
    // overlap of eight requests in flight.
    let deliveries = Arc::new(generated.deliveries.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (router, deliveries, next) = (router.clone(), deliveries.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = deliveries.get(index) else {
                    break;
                };
                let signature = shared::webhook::sign_stripe(body.as_bytes(), SECRET, unix_now());
                let request = Request::builder()
                    .method("POST")
                    .uri("/webhooks/stripe")
                    .header("content-type", "application/json")
                    .header("stripe-signature", signature)
                    .body(Body::from(body.clone()))
                    .unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                let status = response.status();
                if status != StatusCode::OK {
                    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
                        .await
                        .unwrap_or_default();
                    failures.push((index, status, String::from_utf8_lossy(&body).into_owned()));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.unwrap());
    }
    failures.sort_by_key(|(index, ..)| *index);
    for (index, status, body) in failures.iter().take(20) {
        let event = &generated.events[generated.delivery_order[*index]];
        eprintln!(
            "delivery {index} ({} {} {}): {status} {body}",
            event.event_type, event.id, event.api_version
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} deliveries were not answered 200",
        failures.len(),
        generated.deliveries.len()
    );

    let mismatches = stripe_check::check(&client, &generated.expected).await;
    if !mismatches.is_empty() {
        eprintln!(
            "{} mismatches ({})",
            mismatches.len(),
            stripe_check::summarize(&mismatches)
        );
        for mismatch in stripe_check::sample(&mismatches, 20) {
            eprintln!("{mismatch}");
            eprint!("{}", generated.describe(&mismatch.id));
        }
    }
    assert!(
        mismatches.is_empty(),
        "seed {seed}: {} mismatches between the stripe schema and the newest state",
        mismatches.len()
    );
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
