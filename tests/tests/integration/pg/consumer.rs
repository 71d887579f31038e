//! The local consumer loop over the Postgres queue: in order per group, failures retried on a
//! short backoff, successes deleted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::test_db::TestDb;
use serde::Deserialize;
use shared::queue::consumer::{PollOutcome, Shutdown, poll, poll_once};
use shared::queue::postgres::PostgresTransport;
use shared::queue::{OutgoingMessage, Transport, catalog};

#[derive(Deserialize)]
struct Job {
    n: u32,
}

fn job(group: &str, n: u32) -> OutgoingMessage {
    OutgoingMessage::new(
        catalog::METRICS.name,
        group.into(),
        format!("{group}-{n}"),
        format!(r#"{{"n":{n}}}"#),
    )
}

#[tokio::test]
async fn a_failed_message_is_retried_before_its_group_moves_on() {
    let db = TestDb::new().await;
    let transport = PostgresTransport::new(db.pool(2));
    transport
        .send(&[job("a", 1), job("a", 2), job("b", 10)])
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fail_once = Arc::new(Mutex::new(true));
    let handler = |job: Job| {
        let (seen, fail_once) = (seen.clone(), fail_once.clone());
        async move {
            seen.lock().unwrap().push(job.n);
            if job.n == 1 && std::mem::replace(&mut *fail_once.lock().unwrap(), false) {
                return Err("downstream unavailable");
            }
            Ok(())
        }
    };
    let first = poll_once(&transport, &catalog::METRICS, handler)
        .await
        .unwrap();
    assert_eq!(
        first,
        PollOutcome {
            received: 2,
            succeeded: 1,
            failed: 1
        }
    );
    // The failed head is hidden for about a second; nothing of group a may run meanwhile.
    let idle = poll_once(&transport, &catalog::METRICS, handler)
        .await
        .unwrap();
    assert_eq!(idle.received, 0);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for _ in 0..2 {
        poll_once(&transport, &catalog::METRICS, handler)
            .await
            .unwrap();
    }
    assert_eq!(*seen.lock().unwrap(), vec![1, 10, 1, 2]);
    let depth = transport.depth(catalog::METRICS.name).await.unwrap();
    assert_eq!(
        (depth.visible, depth.in_flight, depth.dead_letters),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn the_poll_loop_drains_the_queue_and_stops_on_shutdown() {
    let db = TestDb::new().await;
    let transport = Arc::new(PostgresTransport::new(db.pool(2)));
    let messages: Vec<OutgoingMessage> = (0..25).map(|n| job(&format!("g{}", n % 5), n)).collect();
    transport.send(&messages).await.unwrap();
    let done = Arc::new(Mutex::new(Vec::new()));
    let shutdown = Shutdown::new();
    let worker = {
        let (transport, done, shutdown) = (transport.clone(), done.clone(), shutdown.clone());
        tokio::spawn(async move {
            poll(
                transport.as_ref(),
                &catalog::METRICS,
                |job: Job| {
                    let done = done.clone();
                    async move {
                        done.lock().unwrap().push(job.n);
                        Ok::<(), String>(())
                    }
                },
                shutdown,
            )
            .await
        })
    };
    for _ in 0..100 {
        if done.lock().unwrap().len() == 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the loop stops")
        .unwrap();
    let done = done.lock().unwrap().clone();
    assert_eq!(done.len(), 25);
    for group in 0..5u32 {
        let order: Vec<u32> = done.iter().copied().filter(|n| n % 5 == group).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "group g{group} out of order");
    }
}
