//! Error classification against real PostgreSQL failures: what the database reports as a
//! serialization failure, a deadlock or a lost connection is retried; a constraint violation
//! is not.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use integration_tests::test_db::TestDb;
use shared::db::{DbContext, DbError, classify_postgres};
use shared::retry::{RetryClass, RetryPolicy, Retryable, Sleeper, retry_with_sleeper};

#[derive(Clone)]
struct NoSleep;
impl Sleeper for NoSleep {
    fn sleep(&self, _: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(std::future::ready(()))
    }
}

async fn table(db: &TestDb) {
    db.client()
        .await
        .batch_execute("CREATE TABLE ledger (id int PRIMARY KEY, amount int NOT NULL); INSERT INTO ledger VALUES (1, 10), (2, 10);")
        .await
        .unwrap();
}

/// Two serializable transactions each read both rows and write one: the second to commit
/// gets SQLSTATE 40001.
async fn serialization_failure(db: &TestDb) -> tokio_postgres::Error {
    let mut a = db.client().await;
    let mut b = db.client().await;
    let ta = a
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::Serializable)
        .start()
        .await
        .unwrap();
    let tb = b
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::Serializable)
        .start()
        .await
        .unwrap();
    ta.query_typed("SELECT sum(amount) FROM ledger", &[])
        .await
        .unwrap();
    tb.query_typed("SELECT sum(amount) FROM ledger", &[])
        .await
        .unwrap();
    ta.execute_typed("UPDATE ledger SET amount = 0 WHERE id = 1", &[])
        .await
        .unwrap();
    tb.execute_typed("UPDATE ledger SET amount = 0 WHERE id = 2", &[])
        .await
        .unwrap();
    ta.commit().await.unwrap();
    tb.commit()
        .await
        .expect_err("write skew must abort one transaction")
}

#[tokio::test]
async fn serialization_failures_are_transient() {
    let db = TestDb::new().await;
    table(&db).await;
    let error = serialization_failure(&db).await;
    assert_eq!(error.code().map(|c| c.code()), Some("40001"));
    assert!(classify_postgres(&error).is_transient());
}

#[tokio::test]
async fn deadlocks_are_transient() {
    let db = TestDb::new().await;
    table(&db).await;
    let mut a = db.client().await;
    let mut b = db.client().await;
    let ta = a.transaction().await.unwrap();
    let tb = b.transaction().await.unwrap();
    ta.execute_typed("UPDATE ledger SET amount = 1 WHERE id = 1", &[])
        .await
        .unwrap();
    tb.execute_typed("UPDATE ledger SET amount = 1 WHERE id = 2", &[])
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(
        ta.execute_typed("UPDATE ledger SET amount = 2 WHERE id = 2", &[]),
        tb.execute_typed("UPDATE ledger SET amount = 2 WHERE id = 1", &[]),
    );
    let error = ra
        .err()
        .or(rb.err())
        .expect("one side must be chosen as the deadlock victim");
    assert_eq!(error.code().map(|c| c.code()), Some("40P01"));
    assert!(classify_postgres(&error).is_transient());
}

#[tokio::test]
async fn constraint_violations_are_permanent() {
    let db = TestDb::new().await;
    table(&db).await;
    let client = db.client().await;
    let error = client
        .execute_typed("INSERT INTO ledger VALUES (1, 1)", &[])
        .await
        .unwrap_err();
    assert_eq!(classify_postgres(&error), RetryClass::Permanent);
}

#[tokio::test]
async fn a_lost_connection_is_transient() {
    let db = TestDb::new().await;
    let victim = db.client().await;
    // The backend is terminated under the running statement: directly that is SQLSTATE 57P01
    // (admin shutdown) or a closed socket; behind PgBouncer, the pooler's report of a lost
    // server. All of them mean "try again on another connection".
    let error = victim
        .query_typed("SELECT pg_terminate_backend(pg_backend_pid())", &[])
        .await
        .unwrap_err();
    assert!(classify_postgres(&error).is_transient(), "{error:?}");
}

#[tokio::test]
async fn a_serialization_failure_is_retried_until_the_write_lands() {
    let db = TestDb::new().await;
    table(&db).await;
    let pool = db.pool(2);
    let attempts = Arc::new(AtomicUsize::new(0));
    let policy = RetryPolicy {
        jitter_seed: Some(1),
        ..RetryPolicy::default()
    };
    let result = retry_with_sleeper(policy, NoSleep, || {
        let (db, pool, attempts) = (&db, pool.clone(), attempts.clone());
        async move {
            if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                let error = serialization_failure(db).await;
                return Err(DbError::Postgres {
                    context: "transfer",
                    source: error,
                });
            }
            let client = pool.get().await.context("checkout")?;
            client
                .execute_typed("UPDATE ledger SET amount = 99 WHERE id = 1", &[])
                .await
                .context("transfer")
        }
    })
    .await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let error = DbError::Config("x".into());
    assert_eq!(error.retry_class(), RetryClass::Permanent);
}
