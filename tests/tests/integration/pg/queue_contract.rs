//! The queue contract against the Postgres transport.

use integration_tests::test_db::TestDb;
use shared::queue::postgres::PostgresTransport;

async fn transport() -> PostgresTransport {
    PostgresTransport::new(TestDb::new().await.pool(4))
}

integration_tests::queue_contract_tests!(transport().await);

#[tokio::test]
async fn stale_receipts_cannot_delete_a_redelivered_message() {
    use shared::queue::{OutgoingMessage, Transport};
    use std::time::Duration;
    let transport = transport().await;
    let queue = shared::queue::catalog::METRICS.name;
    transport
        .send(&[OutgoingMessage::new(
            queue,
            "g".into(),
            "d".into(),
            "x".into(),
        )])
        .await
        .unwrap();
    let first = transport
        .receive(queue, 1, Duration::from_millis(200))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = transport
        .receive(queue, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    transport
        .delete(queue, &[first[0].receipt.clone()])
        .await
        .unwrap();
    assert_eq!(
        transport.depth(queue).await.unwrap().in_flight,
        1,
        "the old receipt must not delete the new delivery"
    );
    transport
        .delete(queue, &[second[0].receipt.clone()])
        .await
        .unwrap();
    assert_eq!(transport.depth(queue).await.unwrap().in_flight, 0);
}

#[tokio::test]
async fn unknown_queues_are_refused() {
    use shared::queue::{OutgoingMessage, QueueError, Transport};
    let transport = transport().await;
    let error = transport
        .send(&[OutgoingMessage::new(
            "nope.fifo",
            "g".into(),
            "d".into(),
            "x".into(),
        )])
        .await;
    assert!(matches!(error, Err(QueueError::UnknownQueue(name)) if name == "nope.fifo"));
}
