//! Throughput of the analytics agent's PostHog capture API on realistic product events.
//!
//! `DATABASE_URL=postgres://… cargo bench -p integration-tests --bench analytics_http`
//! (build the server first: `cargo build --release -p local-stack`).
//!
//! A seeded stream of 200,000 PostHog events (or `BENCH_EVENTS`): about 1,000 people with
//! skewed activity, `$pageview` / `$autocapture` / `button_clicked` / `$pageleave`, rare
//! `signed_up` (once a person) and `$identify` with `$set`, properties of about 350 bytes,
//! timestamps spread over the last day, and 1 % re-sent later with the same `uuid` as an
//! SDK retry does. It is cut into request bodies of 100 events
//! (`{"api_key": "phc_local", "batch": […]}`), serialised before any clock starts, then:
//!
//! 1. POSTed to `/batch/` of the release local stack (a child process on a fresh database,
//!    which creates the `phc_local` workspace) from 16 keep-alive connections;
//! 2. the ceiling: the same events, in the same batches of 100, inserted straight into
//!    PostgreSQL by one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` per batch
//!    (`execute_typed`), 16 tasks on a pool of 16 — the agent's work minus HTTP, parsing,
//!    the users upsert and the messages. Each batch is bound sorted by id, so concurrent
//!    batches sharing re-sent ids lock them in one order and never deadlock (unsorted, they
//!    do: PostgreSQL detects it after `deadlock_timeout`, 1 s by default);
//! 3. the same ceiling in batches of 1,000.
//!
//! Each run reports events/s, requests/s, p50/p99 latency per request (per batch for the
//! ceiling), the server's peak RSS (`VmHWM`), the non-200 answers, `count(*)` of `events`
//! afterwards, which must equal the number of distinct events, and the deadlocks PostgreSQL
//! detected in the run's database (`pg_stat_database`; the agent retries them, each after
//! a `deadlock_timeout` stall). The targets (≥ 50 % of the ceiling, ≥ 20,000 events/s,
//! < 64 MiB RSS) are checked at the end. Databases are dropped afterwards
//! (`BENCH_KEEP_DB=1` keeps them and prints their names).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use integration_tests::bench_http::{self, LocalStackProcess, Workload, percentile};
use integration_tests::test_db::TestDb;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio_postgres::types::Type;
use uuid::Uuid;

const SEED: u64 = 20_261_201;
const TOKEN: &str = local_stack::LOCAL_POSTHOG_TOKEN;
const PEOPLE: usize = 1_000;
const BATCH: usize = 100;
const CONCURRENCY: usize = 16;
const POOL: usize = 16;
/// Share of events re-sent later with the same `uuid`.
const RESENT: f64 = 0.01;

const TARGET_SHARE: f64 = 0.50;
const TARGET_EVENTS_PER_SECOND: f64 = 20_000.0;
const TARGET_RSS_MIB: f64 = 64.0;

/// The events in send order, as columns (what the store binds), re-sent ones included.
struct Events {
    ids: Vec<Uuid>,
    distinct_ids: Vec<String>,
    names: Vec<&'static str>,
    timestamps: Vec<DateTime<Utc>>,
    properties: Vec<Value>,
    distinct: usize,
}

impl Events {
    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// One ceiling batch: the columns the statement binds, sorted by id.
struct Batch {
    ids: Vec<Uuid>,
    distinct_ids: Vec<String>,
    names: Vec<&'static str>,
    timestamps: Vec<DateTime<Utc>>,
    properties: Vec<Value>,
}

/// The events cut into batches of `size` in send order, each sorted by id so concurrent
/// batches holding the same (re-sent) ids take their key locks in one order and cannot
/// deadlock.
fn ceiling_batches(events: &Events, size: usize) -> Vec<Batch> {
    (0..events.len())
        .step_by(size)
        .map(|start| {
            let mut order: Vec<usize> = (start..(start + size).min(events.len())).collect();
            order.sort_by_key(|&at| events.ids[at]);
            Batch {
                ids: order.iter().map(|&at| events.ids[at]).collect(),
                distinct_ids: order
                    .iter()
                    .map(|&at| events.distinct_ids[at].clone())
                    .collect(),
                names: order.iter().map(|&at| events.names[at]).collect(),
                timestamps: order.iter().map(|&at| events.timestamps[at]).collect(),
                properties: order
                    .iter()
                    .map(|&at| events.properties[at].clone())
                    .collect(),
            }
        })
        .collect()
}

struct Person {
    distinct_id: String,
    email: String,
    name: String,
    browser: (&'static str, u32),
    os: &'static str,
    device: &'static str,
    plan: &'static str,
    session: Uuid,
    signed_up: bool,
}

const BROWSERS: &[(&str, u32)] = &[
    ("Chrome", 131),
    ("Chrome", 130),
    ("Safari", 18),
    ("Firefox", 133),
    ("Microsoft Edge", 131),
];
const SYSTEMS: &[(&str, &str)] = &[
    ("Mac OS X", "Desktop"),
    ("Windows", "Desktop"),
    ("iOS", "Mobile"),
    ("Android", "Mobile"),
    ("Linux", "Desktop"),
];
const PLANS: &[&str] = &["free", "free", "starter", "pro", "enterprise"];
const FIRST_NAMES: &[&str] = &["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Radia"];
const LAST_NAMES: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Perlman",
];
const PATHS: &[&str] = &[
    "/",
    "/pricing",
    "/dashboard",
    "/dashboard/revenue",
    "/settings/billing",
    "/docs/getting-started",
    "/integrations/stripe",
    "/reports/weekly",
];
const BUTTONS: &[(&str, &str)] = &[
    ("upgrade", "header"),
    ("export_csv", "report"),
    ("invite_teammate", "settings"),
    ("connect_stripe", "onboarding"),
    ("save", "settings"),
];
const REFERRERS: &[&str] = &[
    "$direct",
    "https://www.google.com/",
    "https://news.ycombinator.com/",
    "https://twitter.com/",
];

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn random_uuid(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

fn person(rng: &mut ChaCha8Rng, index: usize) -> Person {
    let (os, device) = pick(rng, SYSTEMS);
    let (first, last) = (pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES));
    Person {
        distinct_id: random_uuid(rng).to_string(),
        email: format!(
            "{}.{}{index}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        ),
        name: format!("{first} {last}"),
        browser: pick(rng, BROWSERS),
        os,
        device,
        plan: pick(rng, PLANS),
        session: random_uuid(rng),
        signed_up: false,
    }
}

/// The properties the web SDK sends with every event.
fn common(rng: &mut ChaCha8Rng, person: &Person) -> serde_json::Map<String, Value> {
    let path = pick(rng, PATHS);
    let Value::Object(properties) = json!({
        "$current_url": format!("https://app.example.com{path}"),
        "$pathname": path,
        "$browser": person.browser.0,
        "$browser_version": person.browser.1,
        "$os": person.os,
        "$device_type": person.device,
        "$lib": "web",
        "$lib_version": "1.200.2",
        "$session_id": person.session.to_string(),
        "plan": person.plan,
    }) else {
        unreachable!("a JSON object")
    };
    properties
}

/// `count` events (re-sent ones included), deterministic for a seed; timestamps are spread
/// over the day before `now` in roughly increasing order, as live traffic arrives.
fn generate(seed: u64, count: usize, now: DateTime<Utc>) -> Events {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut people: Vec<Person> = (0..PEOPLE).map(|index| person(&mut rng, index)).collect();
    let mut events = Events {
        ids: Vec::with_capacity(count),
        distinct_ids: Vec::with_capacity(count),
        names: Vec::with_capacity(count),
        timestamps: Vec::with_capacity(count),
        properties: Vec::with_capacity(count),
        distinct: 0,
    };
    let day_ms = 86_400_000i64;
    for at in 0..count {
        // An SDK retry: an event from a few batches back, sent again unchanged.
        if at >= 1_000 && rng.random_bool(RESENT) {
            let from = at - rng.random_range(100..1_000);
            events.ids.push(events.ids[from]);
            events.distinct_ids.push(events.distinct_ids[from].clone());
            events.names.push(events.names[from]);
            events.timestamps.push(events.timestamps[from]);
            events.properties.push(events.properties[from].clone());
            continue;
        }
        // Skewed activity: a few people send most events.
        let draw: f64 = rng.random();
        let who = ((draw * draw) * PEOPLE as f64) as usize % PEOPLE;
        if rng.random_bool(0.02) {
            people[who].session = random_uuid(&mut rng);
        }
        let person = &people[who];
        let mut properties = common(&mut rng, person);
        let kind: f64 = rng.random();
        let name = if kind < 0.005 && !person.signed_up {
            properties.insert("method".into(), json!(pick(&mut rng, &["google", "email"])));
            properties.insert(
                "$set".into(),
                json!({"email": person.email, "name": person.name}),
            );
            "signed_up"
        } else if kind < 0.015 {
            properties.insert(
                "$set".into(),
                json!({"email": person.email, "name": person.name, "plan": person.plan}),
            );
            properties.insert(
                "$anon_distinct_id".into(),
                json!(random_uuid(&mut rng).to_string()),
            );
            "$identify"
        } else if kind < 0.50 {
            properties.insert("$referrer".into(), json!(pick(&mut rng, REFERRERS)));
            "$pageview"
        } else if kind < 0.80 {
            let (button, _) = pick(&mut rng, BUTTONS);
            properties.insert("$event_type".into(), json!("click"));
            properties.insert("$el_text".into(), json!(button.replace('_', " ")));
            properties.insert(
                "$elements_chain".into(),
                json!(format!(
                    "button.btn.btn-primary:attr__data-attr=\"{button}\"nth-child=\"2\";div.toolbar;body"
                )),
            );
            "$autocapture"
        } else if kind < 0.92 {
            let (button, location) = pick(&mut rng, BUTTONS);
            properties.insert("button".into(), json!(button));
            properties.insert("location".into(), json!(location));
            "button_clicked"
        } else {
            properties.insert(
                "$prev_pageview_duration".into(),
                json!(rng.random_range(1..600)),
            );
            "$pageleave"
        };
        if name == "signed_up" {
            people[who].signed_up = true;
        }
        let progress = at as i64 * day_ms / count.max(1) as i64;
        let jitter = rng.random_range(0..30_000i64);
        let timestamp = now - chrono::Duration::milliseconds(day_ms - progress + jitter);
        events.ids.push(random_uuid(&mut rng));
        events.distinct_ids.push(people[who].distinct_id.clone());
        events.names.push(name);
        events.timestamps.push(timestamp);
        events.properties.push(Value::Object(properties));
    }
    events.distinct = events.ids.iter().collect::<HashSet<_>>().len();
    events
}

/// Request bodies of `BATCH` events each, as the PostHog SDKs send them.
fn bodies(events: &Events) -> Vec<Vec<u8>> {
    (0..events.len())
        .step_by(BATCH)
        .map(|start| {
            let batch: Vec<Value> = (start..(start + BATCH).min(events.len()))
                .map(|at| {
                    json!({
                        "event": events.names[at],
                        "distinct_id": events.distinct_ids[at],
                        "properties": events.properties[at],
                        "timestamp": events.timestamps[at].to_rfc3339_opts(SecondsFormat::Millis, true),
                        "uuid": events.ids[at].to_string(),
                    })
                })
                .collect();
            serde_json::to_vec(&json!({"api_key": TOKEN, "batch": batch})).expect("serialise")
        })
        .collect()
}

struct RunResult {
    label: String,
    concurrency: usize,
    batch: usize,
    events: usize,
    requests: usize,
    seconds: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    peak_rss_mb: Option<f64>,
    failed: usize,
    rows: i64,
    deadlocks: i64,
}

impl RunResult {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// `count(*)` of events, and the deadlocks PostgreSQL detected in the database.
async fn tally(db: &TestDb) -> (i64, i64) {
    let client = db.client().await;
    // Sessions report their statistics when they end: wait for the run's sessions to go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let others: i64 = client
            .query_typed(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("read pg_stat_activity")[0]
            .get(0);
        if others == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows: i64 = client
        .query_typed("SELECT count(*) FROM events", &[])
        .await
        .expect("count events")[0]
        .get(0);
    let deadlocks: i64 = client
        .query_typed(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .expect("read pg_stat_database")[0]
        .get(0);
    (rows, deadlocks)
}

/// Counts the stored events (and deadlocks), says when they are not the distinct events
/// sent, and drops the database (kept with `BENCH_KEEP_DB=1`).
async fn verify(db: &TestDb, events: &Events, label: &str) -> (i64, i64) {
    let (rows, deadlocks) = tally(db).await;
    if rows != events.distinct as i64 {
        eprintln!(
            "{label}: {rows} rows in events, expected {} distinct events",
            events.distinct
        );
    }
    bench_http::drop_or_keep(db, label).await;
    (rows, deadlocks)
}

async fn http_run(binary: &Path, events: &Events, bodies: Arc<Vec<Vec<u8>>>) -> RunResult {
    let label = "HTTP POST /batch/, local stack".to_string();
    let db = TestDb::empty().await;
    // The local stack migrates the empty database and creates the `phc_local` workspace.
    let server = LocalStackProcess::start(binary, &db.url, &[]).await;
    let workload = Workload {
        path: "/batch/".into(),
        bodies,
        headers: Arc::new(|_: &[u8]| vec![("content-type", "application/json".to_string())]),
    };
    let run = bench_http::run(server.addr, &workload, CONCURRENCY).await;
    let peak_rss_mb = server.peak_rss_mb();
    server.stop().await;
    for sample in run.samples.iter().take(5) {
        eprintln!("{label}: {sample}");
    }
    let refused: usize = run
        .failed_requests
        .iter()
        .map(|&request| BATCH.min(events.len() - request * BATCH))
        .sum();
    let (rows, deadlocks) = verify(&db, events, &label).await;
    RunResult {
        label,
        concurrency: CONCURRENCY,
        batch: BATCH,
        events: events.len() - refused,
        requests: run.requests,
        seconds: run.seconds,
        p50_ms: run.p50_ms(),
        p99_ms: run.p99_ms(),
        peak_rss_mb,
        failed: run.failed,
        rows,
        deadlocks,
    }
}

/// The fastest set-based insert of one batch: the agent's events statement without
/// `RETURNING`, in autocommit.
const INSERT: &str =
    "INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp, properties)
     SELECT id, $2, $3, distinct_id, event, ts, properties
       FROM unnest($1::uuid[], $4::text[], $5::text[], $6::timestamptz[], $7::jsonb[])
            AS e(id, distinct_id, event, ts, properties)
     ON CONFLICT (workspace_id, id) DO NOTHING";

/// The ceiling: the same events straight into PostgreSQL, `batch` at a time.
async fn ceiling_run(events: &Events, batch: usize) -> RunResult {
    let label = format!("ceiling: unnest INSERT, batch {batch}");
    let batches = Arc::new(ceiling_batches(events, batch));
    let db = TestDb::new().await;
    let pool = db.pool(POOL);
    let workspace = analytics::ensure_default_workspace(
        &pool,
        &integration_tests::test_keys(),
        "Local workspace",
        &[(TOKEN, analytics::TokenKind::PosthogProject)],
    )
    .await
    .expect("create the default workspace")
    .expect("a fresh database has no workspace");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (pool, batches, next) = (pool.clone(), batches.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = batches.get(index) else {
                        break;
                    };
                    let begun = Instant::now();
                    let client = pool.get().await.expect("check out a connection");
                    let outcome = client
                        .execute_typed(
                            INSERT,
                            &[
                                (&batch.ids, Type::UUID_ARRAY),
                                (&workspace, Type::UUID),
                                (&"posthog", Type::TEXT),
                                (&batch.distinct_ids, Type::TEXT_ARRAY),
                                (&batch.names, Type::TEXT_ARRAY),
                                (&batch.timestamps, Type::TIMESTAMPTZ_ARRAY),
                                (&batch.properties, Type::JSONB_ARRAY),
                            ],
                        )
                        .await;
                    drop(client);
                    latencies.push(begun.elapsed());
                    if let Err(error) = outcome {
                        if failed == 0 {
                            let detail = error.as_db_error().map_or_else(
                                || error.to_string(),
                                |db| format!("{} {}", db.code().code(), db.message()),
                            );
                            eprintln!("ceiling batch {index}: {detail}");
                        }
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::with_capacity(batches.len());
    let mut failed = 0;
    for worker in workers {
        let (worker_latencies, worker_failed) = worker.await.expect("worker");
        latencies.extend(worker_latencies);
        failed += worker_failed;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    pool.close();
    let (rows, deadlocks) = verify(&db, events, &label).await;
    RunResult {
        label,
        concurrency: CONCURRENCY,
        batch,
        events: events.len(),
        requests: batches.len(),
        seconds,
        p50_ms: percentile(&latencies, 50),
        p99_ms: percentile(&latencies, 99),
        peak_rss_mb: None,
        failed,
        rows,
        deadlocks,
    }
}

fn print_table(results: &[RunResult], distinct: usize) {
    let cell = |value: Option<f64>, digits: usize| {
        value.map_or("—".to_string(), |v| format!("{v:.digits$}"))
    };
    println!();
    println!(
        "| {:<34} | {:>4} | {:>5} | {:>7} | {:>7} | {:>8} | {:>10} | {:>7} | {:>7} | {:>12} | {:>7} | {:>7} | {:>9} |",
        "run",
        "conc",
        "batch",
        "events",
        "seconds",
        "events/s",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "peak RSS MiB",
        "non-200",
        "rows",
        "deadlocks"
    );
    println!(
        "|{:-<36}|{:->6}|{:->7}|{:->9}|{:->9}|{:->10}|{:->12}|{:->9}|{:->9}|{:->14}|{:->9}|{:->9}|{:->11}|",
        "", "", "", "", "", "", "", "", "", "", "", "", ""
    );
    for r in results {
        println!(
            "| {:<34} | {:>4} | {:>5} | {:>7} | {:>7.2} | {:>8.0} | {:>10.0} | {:>7} | {:>7} | {:>12} | {:>7} | {:>7} | {:>9} |",
            r.label,
            r.concurrency,
            r.batch,
            r.events,
            r.seconds,
            r.events_per_second(),
            r.requests as f64 / r.seconds,
            cell(r.p50_ms, 2),
            cell(r.p99_ms, 2),
            cell(r.peak_rss_mb, 1),
            r.failed,
            r.rows,
            r.deadlocks
        );
    }
    println!(
        "\n(conc: connections, or tasks on a pool of {POOL} for the ceiling; p50/p99 per request or batch; \
         rows: `count(*)` of events afterwards, {distinct} distinct events were sent; \
         deadlocks: `pg_stat_database.deadlocks` of the run's database)"
    );
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let count = bench_http::bench_events(200_000);
    let binary = bench_http::local_stack_binary();
    let generation = Instant::now();
    let events = generate(SEED, count, Utc::now());
    let bodies = Arc::new(bodies(&events));
    let property_bytes: usize = events
        .properties
        .iter()
        .map(|properties| serde_json::to_vec(properties).unwrap().len())
        .sum();
    let body_bytes: usize = bodies.iter().map(Vec::len).sum();
    let people: HashSet<&str> = events.distinct_ids.iter().map(String::as_str).collect();
    let count_of = |name: &str| events.names.iter().filter(|&&n| n == name).count();
    println!(
        "analytics: {} events ({} distinct, {} re-sent; {} people; {} signed_up, {} $identify) in {} bodies of {BATCH} \
         (properties {:.0} B, body {:.1} KiB on average), generated in {:.1} s with seed {SEED}",
        events.len(),
        events.distinct,
        events.len() - events.distinct,
        people.len(),
        count_of("signed_up"),
        count_of("$identify"),
        bodies.len(),
        property_bytes as f64 / events.len().max(1) as f64,
        body_bytes as f64 / bodies.len().max(1) as f64 / 1024.0,
        generation.elapsed().as_secs_f64()
    );

    let http = http_run(&binary, &events, bodies.clone()).await;
    println!("  {}: {:.0} events/s", http.label, http.events_per_second());
    drop(bodies);
    let mut results = vec![http];
    for batch in [BATCH, 1_000] {
        let result = ceiling_run(&events, batch).await;
        println!(
            "  {}: {:.0} events/s",
            result.label,
            result.events_per_second()
        );
        results.push(result);
    }
    print_table(&results, events.distinct);

    let (http, ceiling) = (&results[0], &results[1]);
    let share = http.events_per_second() / ceiling.events_per_second();
    let correct = results
        .iter()
        .all(|r| r.failed == 0 && r.rows == events.distinct as i64);
    println!();
    println!(
        "- HTTP / ceiling (batches of {BATCH}): {:.0} %, target ≥ {:.0} %: {}",
        share * 100.0,
        TARGET_SHARE * 100.0,
        verdict(share >= TARGET_SHARE)
    );
    println!(
        "- HTTP events/s: {:.0}, target ≥ {TARGET_EVENTS_PER_SECOND:.0}: {}",
        http.events_per_second(),
        verdict(http.events_per_second() >= TARGET_EVENTS_PER_SECOND)
    );
    match http.peak_rss_mb {
        Some(rss) => println!(
            "- local stack peak RSS: {rss:.1} MiB, target < {TARGET_RSS_MIB:.0} MiB: {}",
            verdict(rss < TARGET_RSS_MIB)
        ),
        None => println!("- local stack peak RSS: unknown (no /proc/<pid>/status)"),
    }
    println!(
        "- every run stored exactly the {} distinct events with no failed request: {}",
        events.distinct,
        verdict(correct)
    );
}
