//! Throughput of the Postgres queue: each of 4 workers loops send → receive → delete, one
//! message at a time, then in batches of 100. Messages spread over many groups, as real
//! traffic does (a group is a workspace, an account, a user).
//!
//! `DATABASE_URL=postgres://… cargo bench -p integration-tests --bench pg_queue`
//! (`BENCH_SECONDS` sets each run's length, default 15). A fresh database is created per run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration_tests::test_db::TestDb;
use shared::queue::postgres::PostgresTransport;
use shared::queue::{OutgoingMessage, Transport, catalog};

const WORKERS: usize = 4;
const GROUPS: u64 = 10_000;

async fn run(batch: usize, seconds: u64) -> f64 {
    let db = TestDb::new().await;
    let transport = Arc::new(PostgresTransport::new(db.pool(WORKERS + 1)));
    let queue = catalog::METRICS.name;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let sequence = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (transport, stop, done, sequence) = (
            transport.clone(),
            stop.clone(),
            done.clone(),
            sequence.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let messages: Vec<OutgoingMessage> = (0..batch)
                    .map(|_| {
                        let n = sequence.fetch_add(1, Ordering::Relaxed);
                        OutgoingMessage::new(
                            queue,
                            format!("g{}", n % GROUPS),
                            format!("m{n}"),
                            format!(r#"{{"n":{n}}}"#),
                        )
                    })
                    .collect();
                transport.send(&messages).await.expect("send");
                let received = transport
                    .receive(queue, batch, Duration::from_secs(30))
                    .await
                    .expect("receive");
                if received.is_empty() {
                    continue;
                }
                let receipts: Vec<String> = received.iter().map(|m| m.receipt.clone()).collect();
                transport.delete(queue, &receipts).await.expect("delete");
                done.fetch_add(receipts.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    println!("Postgres queue, {WORKERS} workers, send → receive → delete, {seconds} s per run");
    let batches: Vec<usize> = match std::env::var("BENCH_BATCHES") {
        Ok(list) => list
            .split(',')
            .map(|b| {
                b.trim()
                    .parse()
                    .expect("BENCH_BATCHES: comma-separated sizes")
            })
            .collect(),
        Err(_) => vec![1, 100],
    };
    for batch in batches {
        let rate = run(batch, seconds).await;
        println!("batch {batch:>3}: {rate:>9.0} messages/s");
    }
}
