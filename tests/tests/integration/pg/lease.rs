//! Leases: exclusive, expiring, fenced — and race-free under contention.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use integration_tests::test_db::TestDb;
use shared::db::Type;
use shared::lease::{LeaseError, try_acquire};

const TTL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn acquire_renew_release_and_takeover() {
    let db = TestDb::new().await;
    let pool = db.pool(2);
    let client = pool.get().await.unwrap();

    let a = try_acquire(&**client, "etl:meta:1", "a", TTL)
        .await
        .unwrap()
        .expect("free lease");
    assert_eq!(a.token, 1);
    assert!(
        try_acquire(&**client, "etl:meta:1", "b", TTL)
            .await
            .unwrap()
            .is_none(),
        "held by a"
    );
    a.renew(&**client).await.unwrap();
    a.release(&**client).await.unwrap();

    let b = try_acquire(&**client, "etl:meta:1", "b", TTL)
        .await
        .unwrap()
        .expect("released");
    assert_eq!(b.token, 2, "tokens only grow");
    assert!(matches!(
        a.renew(&**client).await,
        Err(LeaseError::Lost { .. })
    ));
    assert!(matches!(
        a.fence(&**client).await,
        Err(LeaseError::Lost { .. })
    ));
    b.fence(&**client).await.unwrap();
}

#[tokio::test]
async fn an_expired_holder_cannot_write_under_its_lease() {
    let db = TestDb::new().await;
    let pool = db.pool(2);
    let mut client = pool.get().await.unwrap();
    client
        .batch_execute("CREATE TABLE watermark (account text PRIMARY KEY, value int)")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO watermark VALUES ('acct', 0)")
        .await
        .unwrap();

    let stale = try_acquire(&**client, "acct", "stale", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        matches!(stale.renew(&**client).await, Err(LeaseError::Lost { .. })),
        "an expired lease is not revived"
    );
    let fresh = try_acquire(&**client, "acct", "fresh", TTL)
        .await
        .unwrap()
        .expect("expired lease is free");
    assert_eq!(fresh.token, 2);

    // The stale holder tries to write: the fence in its transaction stops it.
    let transaction = client.transaction().await.unwrap();
    let fenced = stale.fence(&*transaction).await;
    assert!(matches!(fenced, Err(LeaseError::Lost { token: 1, .. })));
    transaction.rollback().await.unwrap();

    let transaction = client.transaction().await.unwrap();
    fresh.fence(&*transaction).await.unwrap();
    transaction
        .execute_typed("UPDATE watermark SET value = 2", &[])
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    let value: i32 = client
        .query_typed_one("SELECT value FROM watermark", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(value, 2);
}

/// Two contenders loop acquire → fenced write → release for many rounds. The in-memory flag
/// and the database's own record of each tenure must both show no overlap.
#[tokio::test]
async fn two_contenders_never_overlap() {
    const ROUNDS: usize = 400;
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("CREATE TABLE tenure (token bigint PRIMARY KEY, holder text, started timestamptz, ended timestamptz)")
        .await
        .unwrap();
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let acquired = Arc::new(AtomicUsize::new(0));
    let mut contenders = Vec::new();
    for holder in ["a", "b"] {
        let pool = db.pool(1);
        let (inside, overlaps, acquired) = (inside.clone(), overlaps.clone(), acquired.clone());
        contenders.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let mut client = pool.get().await.unwrap();
                let Some(lease) = try_acquire(&**client, "shared", holder, TTL).await.unwrap()
                else {
                    tokio::task::yield_now().await;
                    continue;
                };
                acquired.fetch_add(1, Ordering::SeqCst);
                if inside.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let transaction = client.transaction().await.unwrap();
                lease.fence(&*transaction).await.unwrap();
                transaction
                    .execute_typed(
                        "INSERT INTO tenure VALUES ($1, $2, clock_timestamp(), NULL)",
                        &[(&lease.token, Type::INT8), (&holder, Type::TEXT)],
                    )
                    .await
                    .unwrap();
                transaction.commit().await.unwrap();
                client
                    .execute_typed(
                        "UPDATE tenure SET ended = clock_timestamp() WHERE token = $1",
                        &[(&lease.token, Type::INT8)],
                    )
                    .await
                    .unwrap();
                inside.store(false, Ordering::SeqCst);
                lease.release(&**client).await.unwrap();
            }
        }));
    }
    for contender in contenders {
        contender.await.unwrap();
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders at once");
    let client = db.client().await;
    let rows: i64 = client
        .query_typed_one("SELECT count(*) FROM tenure", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as usize, acquired.load(Ordering::SeqCst));
    assert!(rows > 10, "the contenders should each win often: {rows}");
    let overlapping: i64 = client
        .query_typed_one(
            "SELECT count(*) FROM tenure a JOIN tenure b ON a.token < b.token AND a.ended > b.started",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        overlapping, 0,
        "tenures overlap in the database's own clock"
    );
    let max_token: i64 = client
        .query_typed_one("SELECT max(token) FROM tenure", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(max_token, rows, "every acquisition took the next token");
}

/// Both contenders fire at the same instant, round after round: exactly one wins each.
#[tokio::test]
async fn simultaneous_attempts_have_exactly_one_winner() {
    const ROUNDS: usize = 200;
    let db = TestDb::new().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut contenders = Vec::new();
    for holder in ["a", "b"] {
        let pool = db.pool(1);
        let barrier = barrier.clone();
        contenders.push(tokio::spawn(async move {
            let client = pool.get().await.unwrap();
            let mut wins = Vec::new();
            for round in 0..ROUNDS {
                barrier.wait().await;
                let won = try_acquire(&**client, &format!("round-{round}"), holder, TTL)
                    .await
                    .unwrap()
                    .is_some();
                wins.push(won);
            }
            wins
        }));
    }
    let a = contenders.remove(0).await.unwrap();
    let b = contenders.remove(0).await.unwrap();
    for round in 0..ROUNDS {
        assert!(
            a[round] ^ b[round],
            "round {round}: a won {}, b won {}",
            a[round],
            b[round]
        );
    }
}
