//! Throughput of the Stripe backfill (`ops stripe backfill`): objects read from the Stripe
//! stand-in's list API and stored in the mirror per second.
//!
//! `DATABASE_URL=postgres://… cargo bench -p integration-tests --bench stripe_backfill`
//!
//! A seeded account (`BENCH_OBJECTS`, default 20,000 objects over the nine list endpoints:
//! catalog, customers, subscriptions with items, invoices, payment intents, charges, refunds,
//! disputes) is served by the stand-in on a local port. Two runs:
//!
//! 1. the stand-in alone: every endpoint paged by the backfill's own API client, nothing
//!    stored — what the stand-in (and the client) can serve, so the stand-in is shown not to
//!    be the bottleneck;
//! 2. the backfill into a fresh database (`BENCH_CONCURRENCY` objects of a page at once,
//!    default 32, on a pool of 16), then a check that every object is stored once.

use std::time::Instant;

use billing::backfill::Resource;
use billing::stripe_api::{ApiConfig, StripeApi};
use billing::{BackfillOptions, BillingDeps, backfill_from_api};
use integration_tests::bench_http;
use integration_tests::test_db::TestDb;
use shared::queue::postgres::PostgresTransport;
use standins::stripe::{StripeAccount, StripeStandin};

const KEY: &str = "sk_test_bench";
const NOW: i64 = 1_796_600_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let objects = env_usize("BENCH_OBJECTS", 20_000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let standin = StripeStandin::start(StripeAccount::seeded(1, objects, NOW), KEY)
        .await
        .expect("start the Stripe stand-in");
    let api = StripeApi::new(
        ApiConfig::new(standin.url(), KEY.into()),
        shared::clock::Clock::system(),
    )
    .expect("the API client");

    // 1. The stand-in alone.
    let started = Instant::now();
    let mut served = 0usize;
    for resource in Resource::ORDER {
        let extra: &[(&str, &str)] = if resource == Resource::Subscriptions {
            &[("status", "all")]
        } else {
            &[]
        };
        let mut after: Option<String> = None;
        loop {
            let page = api
                .list(resource.path(), extra, after.as_deref())
                .await
                .expect("a page");
            served += page.data.len();
            after = page
                .data
                .last()
                .and_then(|object| object["id"].as_str())
                .map(str::to_string);
            if !page.has_more || after.is_none() {
                break;
            }
        }
    }
    let alone = started.elapsed().as_secs_f64();
    assert_eq!(served, objects, "the stand-in serves every object once");

    // 2. The backfill into a fresh database.
    let db = TestDb::new().await;
    let pool = db.pool(16);
    let transport = std::sync::Arc::new(PostgresTransport::new(pool.clone()));
    let container = shared::lambda::Container::new(pool, transport, shared::clock::Clock::system());
    let deps = BillingDeps::new(
        &container,
        billing::config::Config {
            webhook_secrets: Vec::new(),
        },
    );
    let options = BackfillOptions {
        concurrency,
        restart: false,
    };
    let started = Instant::now();
    let report = backfill_from_api(&deps, &api, options, &|_| {})
        .await
        .expect("the backfill completes");
    let stored_seconds = started.elapsed().as_secs_f64();
    let ledger: i64 = db
        .client()
        .await
        .query_typed_one("SELECT count(DISTINCT object_id) FROM stripe.events", &[])
        .await
        .expect("count the ledger")
        .get(0);
    bench_http::drop_or_keep(&db, "stripe backfill").await;

    println!("| run | objects | seconds | objects/s |");
    println!("|---|---|---|---|");
    println!(
        "| stand-in alone (API client, nothing stored) | {served} | {alone:.2} | {:.0} |",
        served as f64 / alone
    );
    println!(
        "| backfill into PostgreSQL, concurrency {concurrency}, pool 16 | {} | {stored_seconds:.2} | {:.0} |",
        report.applied,
        report.applied as f64 / stored_seconds
    );
    println!(
        "stored once each: {} of {objects} objects in the ledger; rejected {}, quarantined {}",
        ledger,
        report.rejected.len(),
        report.quarantined
    );
}
