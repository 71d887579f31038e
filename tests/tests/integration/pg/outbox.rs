//! The transactional outbox: a message exists exactly when the state change that announces it
//! commits, is dispatched after commit, and is relayed if that dispatch never happened.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use integration_tests::test_db::TestDb;
use shared::queue::outbox::{Outbox, Pending};
use shared::queue::postgres::PostgresTransport;
use shared::queue::{OutgoingMessage, QueueDepth, QueueError, ReceivedMessage, Transport, catalog};

fn message(dedup: &str) -> OutgoingMessage {
    OutgoingMessage::new(
        catalog::METRICS.name,
        "ws-1".into(),
        dedup.into(),
        format!(r#"{{"d":"{dedup}"}}"#),
    )
}

async fn outbox_rows(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_typed_one("SELECT count(*) FROM outbox", &[])
        .await
        .unwrap()
        .get(0)
}

async fn queued(transport: &PostgresTransport) -> u64 {
    transport
        .depth(catalog::METRICS.name)
        .await
        .unwrap()
        .visible
}

struct Fixture {
    db: TestDb,
    transport: PostgresTransport,
    outbox: Outbox,
}

impl Fixture {
    /// The relay as its Lambda builds it, on a pool of one and the Postgres queue.
    fn relay(&self) -> relay::RelayDeps {
        relay::RelayDeps::new(&self.db.container(1, shared::clock::Clock::system()))
    }

    /// Enqueues `messages` in a transaction that commits, as a writer announcing a change.
    async fn committed(&self, messages: &[OutgoingMessage]) -> Pending {
        self.enqueue_in_transaction(messages, true).await
    }

    /// Enqueues `messages` in a transaction that rolls back: the change never happened.
    async fn rolled_back(&self, messages: &[OutgoingMessage]) -> Pending {
        self.enqueue_in_transaction(messages, false).await
    }

    async fn enqueue_in_transaction(&self, messages: &[OutgoingMessage], commit: bool) -> Pending {
        let mut client = self.db.client().await;
        let transaction = client.transaction().await.unwrap();
        let pending = self.outbox.enqueue(&transaction, messages).await.unwrap();
        if commit {
            transaction.commit().await.unwrap();
        } else {
            transaction.rollback().await.unwrap();
        }
        pending
    }
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    let pool = db.pool(4);
    let transport = PostgresTransport::new(pool.clone());
    let outbox = Outbox::relaying(pool, Arc::new(transport.clone()));
    Fixture {
        db,
        transport,
        outbox,
    }
}

#[tokio::test]
async fn a_rolled_back_transaction_sends_nothing() {
    let f = fixture().await;
    let pending = f.rolled_back(&[message("a")]).await;
    assert_eq!(f.outbox.dispatch(&pending).await.unwrap(), 0);
    assert_eq!(f.outbox.relay(Duration::ZERO, 100).await.unwrap(), 0);
    assert_eq!(queued(&f.transport).await, 0);
}

#[tokio::test]
async fn committed_messages_are_dispatched_once() {
    let f = fixture().await;
    let pending = f.committed(&[message("a"), message("b")]).await;
    assert_eq!(f.outbox.dispatch(&pending).await.unwrap(), 2);
    assert_eq!(queued(&f.transport).await, 2);
    assert_eq!(outbox_rows(&f.db).await, 0);
    assert_eq!(
        f.outbox.dispatch(&pending).await.unwrap(),
        0,
        "already sent"
    );
}

#[tokio::test]
async fn the_relay_sends_what_a_crash_left_behind() {
    let f = fixture().await;
    let _never_dispatched = f.committed(&[message("a")]).await;
    // The writer "crashed" before dispatching. A young row is left to its writer…
    assert_eq!(
        f.outbox.relay(Duration::from_secs(30), 100).await.unwrap(),
        0
    );
    // …an old one is relayed.
    assert_eq!(f.outbox.relay(Duration::ZERO, 100).await.unwrap(), 1);
    assert_eq!(queued(&f.transport).await, 1);
    assert_eq!(outbox_rows(&f.db).await, 0);
}

#[tokio::test]
async fn a_dispatch_and_a_relay_racing_deliver_one_message() {
    let f = fixture().await;
    let pending = f.committed(&[message("a")]).await;
    let (dispatched, relayed) = tokio::join!(
        f.outbox.dispatch(&pending),
        f.outbox.relay(Duration::ZERO, 100)
    );
    assert!(dispatched.unwrap() + relayed.unwrap() >= 1);
    assert_eq!(
        queued(&f.transport).await,
        1,
        "the deduplication id absorbs the second send"
    );
}

struct DownTransport;

#[async_trait]
impl Transport for DownTransport {
    async fn send(&self, _: &[OutgoingMessage]) -> Result<(), QueueError> {
        Err(QueueError::Sqs {
            operation: "SendMessageBatch",
            message: "connection refused".into(),
            transient: true,
        })
    }
    async fn receive(
        &self,
        _: &str,
        _: usize,
        _: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        unreachable!("the outbox only sends")
    }
    async fn delete(&self, _: &str, _: &[String]) -> Result<(), QueueError> {
        unreachable!("the outbox only sends")
    }
    async fn change_visibility(&self, _: &str, _: &str, _: Duration) -> Result<(), QueueError> {
        unreachable!("the outbox only sends")
    }
    async fn depth(&self, _: &str) -> Result<QueueDepth, QueueError> {
        unreachable!("the outbox only sends")
    }
    async fn redrive(&self, _: &str) -> Result<u64, QueueError> {
        unreachable!("the outbox only sends")
    }
}

#[tokio::test]
async fn a_failed_dispatch_keeps_the_rows_for_the_relay() {
    let f = fixture().await;
    let down = Outbox::relaying(f.db.pool(2), Arc::new(DownTransport));
    let client = f.db.client().await;
    let pending = f.committed(&[message("a")]).await;
    assert!(down.dispatch(&pending).await.is_err());
    let row = client
        .query_typed_one("SELECT attempts, last_error FROM outbox", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert!(row.get::<_, String>(1).contains("connection refused"));

    let relay = relay::RelayDeps {
        outbox: f.outbox.clone(),
        grace: Duration::ZERO,
        ..f.relay()
    };
    let report = relay::run(&relay).await.unwrap();
    assert_eq!(report.relayed, 1);
    assert_eq!(queued(&f.transport).await, 1);
}

#[tokio::test]
async fn the_relay_forgets_expired_deduplication_ids_and_old_runs() {
    let f = fixture().await;
    f.transport
        .send(&[message("old"), message("new")])
        .await
        .unwrap();
    f.db.client()
        .await
        .batch_execute(
            "UPDATE queue_dedup SET expires_at = now() - interval '1 second' WHERE dedup_id = 'old';
             INSERT INTO agent_runs (agent, trigger, started_at, duration_ms, outcome) VALUES
                 ('metrics', 'queue', now() - interval '31 days', 5, 'ok'),
                 ('metrics', 'queue', now() - interval '29 days', 5, 'ok');",
        )
        .await
        .unwrap();
    let relay = relay::RelayDeps {
        outbox: f.outbox.clone(),
        ..f.relay()
    };
    let report = relay::run(&relay).await.unwrap();
    assert_eq!(report.dedup_ids_purged, 1);
    assert_eq!(report.runs_pruned, 1, "only the run older than 30 days");
}

#[tokio::test]
async fn with_the_postgres_queue_messages_join_the_transaction_itself() {
    let f = fixture().await;
    let direct = Outbox::new(f.db.pool(2), Arc::new(f.transport.clone()));
    let mut client = f.db.client().await;
    let transaction = client.transaction().await.unwrap();
    let pending = direct.enqueue(&transaction, &[message("a")]).await.unwrap();
    assert!(pending.is_empty(), "nothing left to dispatch");
    transaction.rollback().await.unwrap();
    assert_eq!(
        queued(&f.transport).await,
        0,
        "rolled back with the transaction"
    );

    let transaction = client.transaction().await.unwrap();
    let pending = direct.enqueue(&transaction, &[message("a")]).await.unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(direct.dispatch(&pending).await.unwrap(), 0);
    assert_eq!(
        queued(&f.transport).await,
        1,
        "committed with the transaction"
    );
    assert_eq!(outbox_rows(&f.db).await, 0, "no outbox row needed");
}

/// The Postgres queue, except that it refuses the message whose deduplication id is `p`, as
/// SQS refuses a message it cannot take (too large, a character outside its alphabet).
struct PoisonRefusing(PostgresTransport);

#[async_trait]
impl Transport for PoisonRefusing {
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        if messages.iter().any(|message| message.dedup_id == "p") {
            return Err(QueueError::Sqs {
                operation: "SendMessageBatch",
                message: "InvalidMessageContents".into(),
                transient: false,
            });
        }
        self.0.send(messages).await
    }
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.0.receive(queue, max, visibility).await
    }
    async fn delete(&self, queue: &str, receipts: &[String]) -> Result<(), QueueError> {
        self.0.delete(queue, receipts).await
    }
    async fn change_visibility(&self, q: &str, r: &str, v: Duration) -> Result<(), QueueError> {
        self.0.change_visibility(q, r, v).await
    }
    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        self.0.depth(queue).await
    }
    async fn redrive(&self, queue: &str) -> Result<u64, QueueError> {
        self.0.redrive(queue).await
    }
}

#[tokio::test]
async fn the_relay_goes_past_a_row_that_fails_and_sets_it_aside_after_repeated_failures() {
    let f = fixture().await;
    let pool = f.db.pool(2);
    let outbox = Outbox::relaying(pool.clone(), Arc::new(PoisonRefusing(f.transport.clone())));
    let poison = |dedup: &str| {
        OutgoingMessage::new(
            catalog::METRICS.name,
            "poison".into(),
            dedup.into(),
            "{}".into(),
        )
    };
    // In id order: a good row, the poison row, a later row of the poison row's group (which
    // must wait behind it to keep the group's order), and a good row of another group.
    let mut client = f.db.client().await;
    let transaction = client.transaction().await.unwrap();
    let _ = outbox
        .enqueue(
            &transaction,
            &[message("a"), poison("p"), poison("after-p"), message("b")],
        )
        .await
        .unwrap();
    transaction.commit().await.unwrap();

    assert_eq!(
        outbox.relay(Duration::ZERO, 100).await.unwrap(),
        2,
        "the good rows go out past the bad one"
    );
    assert_eq!(queued(&f.transport).await, 2);
    let rows = client
        .query_typed(
            "SELECT dedup_id, attempts, last_error, dead_at IS NOT NULL FROM outbox ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, i32, Option<String>, bool)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1, rows[0].3),
        ("p", 1, false),
        "the failure is counted"
    );
    assert!(
        rows[0]
            .2
            .as_deref()
            .is_some_and(|e| e.contains("InvalidMessageContents"))
    );
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1),
        ("after-p", 0),
        "blocked, not failed"
    );

    for _ in 1..shared::queue::outbox::MAX_ATTEMPTS {
        let _ = outbox.relay(Duration::ZERO, 100).await;
    }
    let depth = shared::queue::outbox::depth(&pool).await.unwrap();
    assert_eq!(
        (depth.pending, depth.dead),
        (1, 1),
        "the poison row is set aside after {} tries",
        shared::queue::outbox::MAX_ATTEMPTS
    );
    assert_eq!(
        outbox.relay(Duration::ZERO, 100).await.unwrap(),
        1,
        "its group moves on"
    );
    assert_eq!(queued(&f.transport).await, 3);
    assert_eq!(
        outbox.relay(Duration::ZERO, 100).await.unwrap(),
        0,
        "a dead row is not tried again"
    );
    assert_eq!(shared::queue::outbox::redrive(&pool).await.unwrap(), 1);
    assert_eq!(
        shared::queue::outbox::depth(&pool).await.unwrap().pending,
        1
    );
}
