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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use integration_tests::stripe_check;
use integration_tests::stripe_events::{self, Generated, GeneratorConfig};
use integration_tests::test_db::{self, TestDb};
use shared::queue::postgres::PostgresTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// `target/release/local-stack` of this workspace (or `LOCAL_STACK_BIN`).
fn local_stack_binary() -> PathBuf {
    if let Ok(path) = std::env::var("LOCAL_STACK_BIN") {
        return PathBuf::from(path);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("../target"));
    let binary = target.join("release/local-stack");
    if !binary.exists() {
        eprintln!(
            "{} does not exist: build the server first with\n\n    cargo build --release -p local-stack\n",
            binary.display()
        );
        std::process::exit(2);
    }
    warn_if_stale(&binary, &manifest.join(".."));
    binary
}

/// The newest modification time of the `.rs` files under `dir`.
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let modified = if path.is_dir() {
            newest_source(&path)
        } else if path.extension().is_some_and(|e| e == "rs" || e == "sql") {
            entry.metadata().ok()?.modified().ok()
        } else {
            None
        };
        newest = newest.max(modified);
    }
    newest
}

fn warn_if_stale(binary: &Path, workspace: &Path) {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok();
    let sources = ["shared/src", "functions", "migrations"]
        .iter()
        .filter_map(|dir| newest_source(&workspace.join(dir)))
        .max();
    if let (Some(built), Some(sources)) = (built, sources)
        && sources > built
    {
        eprintln!(
            "warning: {} is older than the sources; rebuild with `cargo build --release -p local-stack`",
            binary.display()
        );
    }
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

async fn drop_db(db: &TestDb) {
    let admin = test_db::raw_connect(&test_db::admin_url()).await;
    if let Err(error) = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            db.name
        ))
        .await
    {
        eprintln!("drop database {}: {error}", db.name);
    }
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
    if std::env::var("BENCH_KEEP_DB").is_ok_and(|keep| keep == "1") {
        eprintln!("{label}: database {} kept", db.name);
    } else {
        drop_db(db).await;
    }
    mismatches.len()
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap()
}

/// Waits until `GET /status.json` answers (any HTTP status), or the child dies.
async fn wait_ready(addr: SocketAddr, child: &mut tokio::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("the local stack exited during start-up: {status}");
        }
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            let request =
                format!("GET /status.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).await.is_ok() {
                let mut response = Vec::new();
                let _ = stream.read_to_end(&mut response).await;
                if response.starts_with(b"HTTP/1.1 ") {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the local stack did not answer GET /status.json within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The peak resident set of a process, from `/proc/<pid>/status`.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn connect(addr: SocketAddr) -> http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the local stack");
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

struct WorkerReport {
    latencies: Vec<Duration>,
    failed: usize,
    samples: Vec<String>,
}

/// One keep-alive connection taking the next delivery until none is left.
async fn http_worker(
    addr: SocketAddr,
    bodies: Arc<Vec<Bytes>>,
    next: Arc<AtomicUsize>,
) -> WorkerReport {
    let mut sender = connect(addr).await;
    let mut report = WorkerReport {
        latencies: Vec::with_capacity(bodies.len() / 4),
        failed: 0,
        samples: Vec::new(),
    };
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(body) = bodies.get(index) else { break };
        let started = Instant::now();
        let signature = shared::webhook::sign_stripe(body, SECRET, unix_now());
        let request = hyper::Request::builder()
            .method("POST")
            .uri("/webhooks/stripe")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(Full::new(body.clone()))
            .unwrap();
        if sender.ready().await.is_err() {
            sender = connect(addr).await;
        }
        let outcome = match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                match body {
                    Ok(_) if status == 200 => Ok(()),
                    Ok(body) => Err(format!("{status} {}", String::from_utf8_lossy(&body))),
                    Err(error) => Err(format!("{status}, body: {error}")),
                }
            }
            Err(error) => {
                sender = connect(addr).await;
                Err(format!("request: {error}"))
            }
        };
        report.latencies.push(started.elapsed());
        if let Err(error) = outcome {
            report.failed += 1;
            if report.samples.len() < 3 {
                report.samples.push(format!("delivery {index}: {error}"));
            }
        }
    }
    report
}

fn percentile(sorted: &[Duration], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let at = (sorted.len() * p / 100).min(sorted.len() - 1);
    Some(sorted[at].as_secs_f64() * 1_000.0)
}

async fn http_run(binary: &Path, generated: &Generated, concurrency: usize) -> RunResult {
    let label = format!("HTTP, local stack, {concurrency} connections");
    let db = prepared_db().await;
    let addr = free_port();
    let mut child = tokio::process::Command::new(binary)
        .arg("--listen")
        .arg(addr.to_string())
        .env("DATABASE_URL", &db.url)
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
    let pid = child.id().expect("the child runs");
    wait_ready(addr, &mut child).await;

    let bodies: Arc<Vec<Bytes>> = Arc::new(
        generated
            .deliveries
            .iter()
            .map(|body| Bytes::from(body.clone()))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(http_worker(addr, bodies.clone(), next.clone())))
        .collect();
    let mut latencies = Vec::with_capacity(bodies.len());
    let (mut failed, mut samples) = (0, Vec::new());
    for worker in workers {
        let report = worker.await.expect("worker");
        latencies.extend(report.latencies);
        failed += report.failed;
        samples.extend(report.samples);
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_mb = peak_rss_mb(pid);
    child.start_kill().ok();
    let _ = child.wait().await;
    for sample in samples.iter().take(5) {
        eprintln!("{label}: {sample}");
    }
    latencies.sort_unstable();
    let mismatches = verify(&db, generated, &label).await;
    RunResult {
        label,
        concurrency,
        deliveries: bodies.len(),
        seconds,
        p50_ms: percentile(&latencies, 50),
        p99_ms: percentile(&latencies, 99),
        peak_rss_mb,
        failed,
        mismatches,
    }
}

/// The ceiling: `billing::ingest` without HTTP or signatures.
async fn direct_run(generated: &Generated, concurrency: usize, pool_size: usize) -> RunResult {
    let label = format!("billing::ingest, pool {pool_size}");
    let db = prepared_db().await;
    let pool = db.pool(pool_size);
    let deps = Arc::new(billing::BillingDeps {
        pool: pool.clone(),
        transport: Arc::new(PostgresTransport::new(pool.clone())),
        webhook_secrets: vec![SECRET.into()],
    });
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
                        Err(error) => {
                            if samples.len() < 3 {
                                samples.push(format!("delivery {index}: {error}"));
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
    let target: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20_000);
    let binary = local_stack_binary();
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
