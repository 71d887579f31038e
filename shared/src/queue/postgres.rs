//! The Postgres queue: SQS FIFO semantics on three tables (`queue_messages`, `queue_dedup`,
//! `queue_dead_letters`), for the local stack and the tests.
//!
//! Every operation is one call of a PL/pgSQL function (migration `queue_functions`) in its own
//! autocommit transaction: safe behind a transaction pooler, one commit each, and planned once
//! per backend rather than on every call. The interesting one is the claim (`queue.receive`):
//! a message is deliverable when it is visible and *no older message of its group exists*
//! (the older one is either in flight or waiting to be retried, and must go first). Rows are
//! claimed with `FOR UPDATE SKIP LOCKED`, so concurrent receivers take different groups
//! instead of queueing behind one another on the head of the queue. A receiver delivers at
//! most one message per group per call; that keeps the claim a single index walk.
//!
//! A claimed message that has already been delivered `max_receives` times is moved to the
//! dead letters in the same statement, which is when SQS moves it too.
//!
//! Only sends wait for their commit to reach the disk. Receives and deletes commit
//! asynchronously (`synchronous_commit` off for that one transaction): if the server crashes
//! just after, the claim or the delete is forgotten and the message is delivered again, which
//! at-least-once delivery allows and idempotent consumers absorb. A later synchronous commit
//! flushes everything before it, so the order of events survives. This halves the disk
//! flushes per message, which bound the one-message-at-a-time rate.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{
    DEDUP_WINDOW, OutgoingMessage, QueueDepth, QueueError, ReceivedMessage, Transport, catalog,
};
use crate::db::DbContext;

#[derive(Clone)]
pub struct PostgresTransport {
    pool: Pool,
}

impl PostgresTransport {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Forgets deduplication ids older than the window. Run periodically (the relay does).
    pub async fn purge_expired_dedup_ids(&self) -> Result<u64, QueueError> {
        let client = self.pool.get().await.context("purge dedup ids")?;
        Ok(client
            .execute_typed("DELETE FROM queue_dedup WHERE expires_at < now()", &[])
            .await
            .context("purge dedup ids")?)
    }
}

fn queue_def(queue: &str) -> Result<&'static catalog::QueueDef, QueueError> {
    catalog::find(queue).ok_or_else(|| QueueError::UnknownQueue(queue.to_string()))
}

/// Sends through `client`, which may be inside a transaction.
async fn send_on(
    client: &impl GenericClient,
    messages: &[OutgoingMessage],
    inside_caller_transaction: bool,
) -> Result<(), QueueError> {
    // One statement may not touch a dedup row twice; a repeat inside the batch is a
    // duplicate by definition, so the first one is kept.
    let mut seen = HashSet::new();
    let mut columns: [Vec<&str>; 4] = Default::default();
    for message in messages {
        queue_def(&message.queue)?;
        if seen.insert((message.queue.as_str(), message.dedup_id.as_str())) {
            columns[0].push(&message.queue);
            columns[1].push(&message.group_id);
            columns[2].push(&message.dedup_id);
            columns[3].push(&message.body);
        }
    }
    if columns[0].is_empty() {
        return Ok(());
    }
    client
        .query_typed(
            "SELECT queue.send($1, $2, $3, $4, $5, $6)",
            &[
                (&columns[0], Type::TEXT_ARRAY),
                (&columns[1], Type::TEXT_ARRAY),
                (&columns[2], Type::TEXT_ARRAY),
                (&columns[3], Type::TEXT_ARRAY),
                (&DEDUP_WINDOW.as_secs_f64(), Type::FLOAT8),
                (&inside_caller_transaction, Type::BOOL),
            ],
        )
        .await
        .context("send messages")?;
    Ok(())
}

/// Receipts are `<message id>:<claim uuid>`: the uuid changes on every delivery, so a
/// consumer whose visibility expired cannot delete the copy someone else now holds.
fn parse_receipt(receipt: &str) -> Result<(i64, Uuid), QueueError> {
    let invalid = || QueueError::InvalidReceipt(receipt.to_string());
    let (id, claim) = receipt.split_once(':').ok_or_else(invalid)?;
    Ok((
        id.parse().map_err(|_| invalid())?,
        claim.parse().map_err(|_| invalid())?,
    ))
}

#[async_trait]
impl Transport for PostgresTransport {
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        let client = self.pool.get().await.context("send messages")?;
        send_on(&**client, messages, false).await
    }

    /// The queue is in the agents' own database, so a message can join their transaction.
    async fn send_within(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
        messages: &[OutgoingMessage],
    ) -> Option<Result<(), QueueError>> {
        Some(send_on(transaction, messages, true).await)
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let def = queue_def(queue)?;
        let client = self.pool.get().await.context("receive messages")?;
        let rows = client
            .query_typed(
                "SELECT id, receipt, group_id, dedup_id, body, receive_count FROM queue.receive($1, $2, $3, $4)",
                &[
                    (&queue, Type::TEXT),
                    (&(max as i32), Type::INT4),
                    (&visibility.as_secs_f64(), Type::FLOAT8),
                    (&(def.max_receives as i32), Type::INT4),
                ],
            )
            .await
            .context("receive messages")?;
        Ok(rows
            .iter()
            .map(|row| {
                let id: i64 = row.get(0);
                let claim: Uuid = row.get(1);
                ReceivedMessage {
                    message_id: id.to_string(),
                    receipt: format!("{id}:{claim}"),
                    group_id: row.get(2),
                    dedup_id: row.get(3),
                    body: row.get(4),
                    receive_count: row.get::<_, i32>(5) as u32,
                }
            })
            .collect())
    }

    async fn delete(&self, queue: &str, receipts: &[String]) -> Result<(), QueueError> {
        let parsed = receipts
            .iter()
            .map(|receipt| parse_receipt(receipt))
            .collect::<Result<Vec<_>, _>>()?;
        let (ids, claims): (Vec<i64>, Vec<Uuid>) = parsed.into_iter().unzip();
        let client = self.pool.get().await.context("delete messages")?;
        client
            .query_typed(
                "SELECT queue.delete($1, $2, $3)",
                &[
                    (&queue, Type::TEXT),
                    (&ids, Type::INT8_ARRAY),
                    (&claims, Type::UUID_ARRAY),
                ],
            )
            .await
            .context("delete messages")?;
        Ok(())
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let (id, claim) = parse_receipt(receipt)?;
        let client = self.pool.get().await.context("change visibility")?;
        client
            .execute_typed(
                "UPDATE queue_messages SET visible_at = now() + make_interval(secs => $4)
                  WHERE queue = $1 AND id = $2 AND receipt = $3",
                &[
                    (&queue, Type::TEXT),
                    (&id, Type::INT8),
                    (&claim, Type::UUID),
                    (&visibility.as_secs_f64(), Type::FLOAT8),
                ],
            )
            .await
            .context("change visibility")?;
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        let client = self.pool.get().await.context("queue depth")?;
        let row = client
            .query_typed_one(
                "SELECT (SELECT count(*) FILTER (WHERE visible_at <= now()) FROM queue_messages WHERE queue = $1),
                        (SELECT count(*) FILTER (WHERE visible_at > now()) FROM queue_messages WHERE queue = $1),
                        (SELECT count(*) FROM queue_dead_letters WHERE queue = $1)",
                &[(&queue, Type::TEXT)],
            )
            .await
            .context("queue depth")?;
        Ok(QueueDepth {
            visible: row.get::<_, i64>(0) as u64,
            in_flight: row.get::<_, i64>(1) as u64,
            dead_letters: row.get::<_, i64>(2) as u64,
        })
    }

    async fn redrive(&self, queue: &str) -> Result<u64, QueueError> {
        let client = self.pool.get().await.context("redrive")?;
        // Re-driven messages join the tail of their groups with a fresh delivery count; like
        // SQS's own re-drive, they bypass deduplication.
        Ok(client
            .execute_typed(
                "WITH moved AS (DELETE FROM queue_dead_letters WHERE queue = $1 RETURNING *)
                 INSERT INTO queue_messages (queue, group_id, dedup_id, body, sent_at)
                 SELECT queue, group_id, dedup_id, body, sent_at FROM moved ORDER BY id",
                &[(&queue, Type::TEXT)],
            )
            .await
            .context("redrive")?)
    }
}
