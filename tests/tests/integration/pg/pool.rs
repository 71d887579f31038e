//! The production pool: verified recycling replaces dead connections, and the statement style
//! (unnamed statements only) gives right answers under concurrency, including behind
//! PgBouncer in transaction mode, where named statements return other sessions' results.

use integration_tests::test_db::TestDb;
use shared::db::Type;

#[tokio::test]
async fn a_connection_whose_backend_died_is_replaced_on_checkout() {
    let db = TestDb::new().await;
    let pool = db.pool(1);
    {
        let client = pool.get().await.unwrap();
        // The session ends itself, as when Supavisor or a frozen Lambda drops a socket.
        // Directly this closes our connection; behind PgBouncer the pooler may close it or
        // hand us a fresh server. Either way the next checkout must give a working client.
        let _ = client
            .query_typed("SELECT pg_terminate_backend(pg_backend_pid())", &[])
            .await;
    }
    let client = pool.get().await.expect("checkout after the backend died");
    let answer: i32 = client
        .query_typed_one("SELECT 41 + 1", &[])
        .await
        .expect("query on a working connection")
        .get(0);
    assert_eq!(answer, 42);
}

#[tokio::test]
async fn concurrent_parameterised_queries_get_their_own_answers() {
    let db = TestDb::new().await;
    let pool = db.pool(4);
    let mut tasks = Vec::new();
    for worker in 0..6i64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..150i64 {
                let client = pool.get().await.unwrap();
                let expected = worker * 1_000 + i;
                let (sql, got) = if i % 2 == 0 {
                    let row = client
                        .query_typed_one("SELECT $1::int8 + 0", &[(&expected, Type::INT8)])
                        .await
                        .unwrap();
                    ("plus", row.get::<_, i64>(0))
                } else {
                    let row = client
                        .query_typed_one("SELECT $1::int8 * 1", &[(&expected, Type::INT8)])
                        .await
                        .unwrap();
                    ("times", row.get::<_, i64>(0))
                };
                assert_eq!(got, expected, "{sql}: wrong answer");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}
