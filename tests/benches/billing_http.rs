//! Throughput of the billing agent on realistic Stripe traffic.
//!
//! `DATABASE_URL=postgres://… cargo bench -p integration-tests --bench billing_http`
//! (build the server first: `cargo build --release -p local-stack`).
//!
//! The same seeded stream (20,000 deliveries, or `BENCH_EVENTS`; out of order, 10 %
//! duplicates, same-second chains, both API shapes — see `stripe_events`) is replayed:
//!
//! 1. over HTTP to the release local stack (a child process on a fresh database), 8 keep-alive
//!    connections, each request signed when it is sent;
//! 2. the same with 32 connections (fresh database, fresh process);
//! 3. the ceiling: straight into `billing::ingest` (no HTTP, no signature), 32 tasks sharing one
//!    `BillingDeps` with a pool of 16 connections.
//!
//! Each run reports deliveries/s, p50/p99 latency, the server's peak RSS (`VmHWM`), the
//! non-200 answers, and how many rows the checker finds wrong afterwards. Databases are
//! dropped afterwards (`BENCH_KEEP_DB=1` keeps them and prints their names).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use integration_tests::bench_http::{self, LocalStackProcess, Workload, percentile};
use integration_tests::stripe_check;
use integration_tests::stripe_events::{self, Generated, GeneratorConfig};
use integration_tests::test_db::TestDb;
use shared::queue::postgres::PostgresTransport;
use tokio_postgres::types::Type;
use uuid::Uuid;

const SEED: u64 = 424_242;
const SECRET: &str = "whsec_bench";
const WORKSPACE: Uuid = Uuid::from_u128(0xbe4c_0000_0000_4000_8000_0000_0000_0001);

struct RunResult {
    label: String,
    concurrency: usize,
    deliveries: usize,
    seconds: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    peak_rss_mb: Option<f64>,
    failed: usize,
    mismatches: usize,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn prepared_db() -> TestDb {
    let db = TestDb::new().await;
    db.client()
        .await
        .execute_typed(
            "INSERT INTO public.workspaces (id, name) VALUES ($1, $2)",
            &[(&WORKSPACE, Type::UUID), (&"billing bench", Type::TEXT)],
        )
        .await
        .expect("insert the workspace");
    db
}

/// Runs the checker and reports, then drops the database (kept with `BENCH_KEEP_DB=1`).
async fn verify(db: &TestDb, generated: &Generated, label: &str) -> usize {
    let mismatches = stripe_check::check(&db.client().await, &generated.expected).await;
    if !mismatches.is_empty() {
        eprintln!(
            "{label}: {} mismatches ({})",
            mismatches.len(),
            stripe_check::summarize(&mismatches)
        );
        for mismatch in stripe_check::sample(&mismatches, 6) {
            eprintln!("  {mismatch}");
        }
    }
    bench_http::drop_or_keep(db, label).await;
    mismatches.len()
}

async fn http_run(binary: &Path, generated: &Generated, concurrency: usize) -> RunResult {
    let label = format!("HTTP, local stack, {concurrency} connections");
    let db = prepared_db().await;
    let server =
        LocalStackProcess::start(binary, &db.url, &[("STRIPE_WEBHOOK_SECRET", SECRET)]).await;
    let workload = Workload {
        path: "/webhooks/stripe".into(),
        bodies: Arc::new(
            generated
                .deliveries
                .iter()
                .map(|body| body.clone().into_bytes())
                .collect(),
        ),
        // Signed when sent, inside the timed span, as Stripe signs each attempt.
        headers: Arc::new(|body: &[u8]| {
            vec![
                ("content-type", "application/json".to_string()),
                (
                    "stripe-signature",
                    shared::webhook::sign_stripe(body, SECRET, unix_now()),
                ),
            ]
        }),
    };
    let run = bench_http::run(server.addr, &workload, concurrency).await;
    let peak_rss_mb = server.peak_rss_mb();
    server.stop().await;
    for sample in run.samples.iter().take(5) {
        eprintln!("{label}: {sample}");
    }
    let mismatches = verify(&db, generated, &label).await;
    RunResult {
        label,
        concurrency,
        deliveries: run.requests,
        seconds: run.seconds,
        p50_ms: run.p50_ms(),
        p99_ms: run.p99_ms(),
        peak_rss_mb,
        failed: run.failed,
        mismatches,
    }
}

/// The ceiling: `billing::ingest` without HTTP or signatures.
async fn direct_run(generated: &Generated, concurrency: usize, pool_size: usize) -> RunResult {
    let label = format!("billing::ingest, pool {pool_size}");
    let db = prepared_db().await;
    let pool = db.pool(pool_size);
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let container =
        shared::lambda::Container::new(pool.clone(), transport, shared::clock::Clock::system());
    let config = billing::config::Config {
        webhook_secrets: vec![SECRET.into()],
    };
    let deps = Arc::new(billing::BillingDeps::new(&container, config));
    let bodies = Arc::new(generated.deliveries.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (deps, bodies, next) = (deps.clone(), bodies.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut outcomes = [0usize; 5];
                let mut samples = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(index) else { break };
                    let begun = Instant::now();
                    let slot = match billing::ingest(&deps, body.as_bytes()).await {
                        Ok(billing::Ingested::Applied) => 0,
                        Ok(billing::Ingested::Stale) => 1,
                        Ok(billing::Ingested::Duplicate) => 2,
                        Ok(billing::Ingested::Unsupported) => 3,
                        // Quarantined (the generator's events are all storable) or failed.
                        unexpected => {
                            if samples.len() < 3 {
                                samples.push(format!("delivery {index}: {unexpected:?}"));
                            }
                            4
                        }
                    };
                    outcomes[slot] += 1;
                    latencies.push(begun.elapsed());
                }
                (latencies, outcomes, samples)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut outcomes = [0usize; 5];
    for worker in workers {
        let (worker_latencies, worker_outcomes, samples) = worker.await.expect("worker");
        latencies.extend(worker_latencies);
        for (total, count) in outcomes.iter_mut().zip(worker_outcomes) {
            *total += count;
        }
        for sample in samples {
            eprintln!("{label}: {sample}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "  ingest outcomes: {} applied, {} stale, {} duplicate, {} unsupported, {} errors",
        outcomes[0], outcomes[1], outcomes[2], outcomes[3], outcomes[4]
    );
    latencies.sort_unstable();
    drop(deps);
    pool.close();
    let mismatches = verify(&db, generated, &label).await;
    RunResult {
        label,
        concurrency,
        deliveries: bodies.len(),
        seconds,
        p50_ms: percentile(&latencies, 50),
        p99_ms: percentile(&latencies, 99),
        peak_rss_mb: None,
        failed: outcomes[4],
        mismatches,
    }
}

fn print_table(results: &[RunResult]) {
    let cell = |value: Option<f64>, digits: usize| {
        value.map_or("—".to_string(), |v| format!("{v:.digits$}"))
    };
    println!();
    println!(
        "| {:<36} | {:>4} | {:>10} | {:>7} | {:>12} | {:>7} | {:>7} | {:>13} | {:>7} | {:>10} |",
        "run",
        "conc",
        "deliveries",
        "seconds",
        "deliveries/s",
        "p50 ms",
        "p99 ms",
        "peak RSS MiB",
        "non-200",
        "mismatches"
    );
    println!(
        "|{:-<38}|{:->6}|{:->12}|{:->9}|{:->14}|{:->9}|{:->9}|{:->15}|{:->9}|{:->12}|",
        "", "", "", "", "", "", "", "", "", ""
    );
    for r in results {
        println!(
            "| {:<36} | {:>4} | {:>10} | {:>7.2} | {:>12.0} | {:>7} | {:>7} | {:>13} | {:>7} | {:>10} |",
            r.label,
            r.concurrency,
            r.deliveries,
            r.seconds,
            r.deliveries as f64 / r.seconds,
            cell(r.p50_ms, 2),
            cell(r.p99_ms, 2),
            cell(r.peak_rss_mb, 1),
            r.failed,
            r.mismatches
        );
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let target = bench_http::bench_events(20_000);
    let binary = bench_http::local_stack_binary();
    let generation = Instant::now();
    let generated = stripe_events::generate_deliveries(
        SEED,
        target,
        &GeneratorConfig {
            workspace_id: WORKSPACE,
            ..GeneratorConfig::default()
        },
    );
    println!(
        "billing: {} deliveries ({} distinct events, {} customers) generated in {:.1} s with seed {SEED}",
        generated.deliveries.len(),
        generated.events.len(),
        generated.expected.customers.len(),
        generation.elapsed().as_secs_f64()
    );
    let mut results = Vec::new();
    for concurrency in [8, 32] {
        let result = http_run(&binary, &generated, concurrency).await;
        println!(
            "  {}: {:.0} deliveries/s",
            result.label,
            result.deliveries as f64 / result.seconds
        );
        results.push(result);
    }
    let result = direct_run(&generated, 32, 16).await;
    println!(
        "  {}: {:.0} deliveries/s",
        result.label,
        result.deliveries as f64 / result.seconds
    );
    results.push(result);
    print_table(&results);
}
