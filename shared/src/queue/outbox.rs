//! The transactional outbox.
//!
//! A handler that changes state and must tell another agent about it calls
//! [`Outbox::enqueue`] inside its own transaction, so the message exists exactly when the
//! change does. After commit it calls [`Outbox::dispatch`] with what `enqueue` returned to
//! send it at once. If the process dies in between, [`Outbox::relay`] (on a schedule) sends
//! whatever is older than a grace period.
//!
//! Rows are read, sent, then deleted, without holding a transaction open across the send: a
//! Lambda's single pooled connection stays free for the transport, and if the dispatcher and
//! the relay ever send the same row, the message's deterministic deduplication id makes the
//! second copy a no-op.
//!
//! When the transport is the Postgres queue, in the same database as the state, the outbox
//! row and the later send are unnecessary: [`Transport::send_within`] puts the message on the
//! queue inside the caller's transaction, which is just as atomic and saves a round trip and a
//! commit per message.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::types::Type;

use super::{OutgoingMessage, QueueError, Transport};
use crate::db::DbContext;

/// Sends outbox rows through a transport.
#[derive(Clone)]
pub struct Outbox {
    pool: Pool,
    transport: Arc<dyn Transport>,
    /// Whether to ask the transport to send inside the caller's transaction.
    in_transaction: bool,
}

/// What [`Outbox::enqueue`] left for [`Outbox::dispatch`]: outbox row ids, or nothing when the
/// messages were queued inside the transaction itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[must_use = "dispatch after commit, or the messages wait for the relay"]
pub struct Pending(pub Vec<i64>);

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Which rows to send.
enum Selection<'a> {
    Ids(&'a [i64]),
    OlderThan { age: Duration, limit: i64 },
}

impl Outbox {
    /// An outbox that queues inside the caller's transaction when the transport can.
    pub fn new(pool: Pool, transport: Arc<dyn Transport>) -> Self {
        Self {
            pool,
            transport,
            in_transaction: true,
        }
    }

    /// An outbox that always goes through outbox rows and a later send.
    pub fn relaying(pool: Pool, transport: Arc<dyn Transport>) -> Self {
        Self {
            pool,
            transport,
            in_transaction: false,
        }
    }

    /// Makes `messages` part of the caller's transaction.
    pub async fn enqueue(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
        messages: &[OutgoingMessage],
    ) -> Result<Pending, QueueError> {
        if messages.is_empty() {
            return Ok(Pending::default());
        }
        if self.in_transaction
            && let Some(sent) = self.transport.send_within(transaction, messages).await
        {
            sent?;
            return Ok(Pending::default());
        }
        let column =
            |field: fn(&OutgoingMessage) -> &str| messages.iter().map(field).collect::<Vec<_>>();
        let rows = transaction
            .query_typed(
                "INSERT INTO outbox (queue, group_id, dedup_id, body)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 RETURNING id",
                &[
                    (&column(|m| &m.queue), Type::TEXT_ARRAY),
                    (&column(|m| &m.group_id), Type::TEXT_ARRAY),
                    (&column(|m| &m.dedup_id), Type::TEXT_ARRAY),
                    (&column(|m| &m.body), Type::TEXT_ARRAY),
                ],
            )
            .await
            .context("enqueue outbox messages")?;
        Ok(Pending(rows.iter().map(|row| row.get(0)).collect()))
    }

    /// Sends what the caller just committed. On failure the rows stay for the relay.
    pub async fn dispatch(&self, pending: &Pending) -> Result<usize, QueueError> {
        if pending.is_empty() {
            return Ok(0);
        }
        self.send(Selection::Ids(&pending.0)).await
    }

    /// Sends up to `limit` rows older than `age` (left behind by a crash or a failed
    /// dispatch). Returns how many were sent.
    pub async fn relay(&self, age: Duration, limit: i64) -> Result<usize, QueueError> {
        self.send(Selection::OlderThan { age, limit }).await
    }

    async fn send(&self, selection: Selection<'_>) -> Result<usize, QueueError> {
        let client = self.pool.get().await.context("read outbox")?;
        let rows = match selection {
            Selection::Ids(ids) => {
                client
                    .query_typed(
                        "SELECT id, queue, group_id, dedup_id, body FROM outbox WHERE id = ANY($1) ORDER BY id",
                        &[(&ids, Type::INT8_ARRAY)],
                    )
                    .await
            }
            Selection::OlderThan { age, limit } => {
                client
                    .query_typed(
                        "SELECT id, queue, group_id, dedup_id, body FROM outbox
                          WHERE created_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2",
                        &[(&age.as_secs_f64(), Type::FLOAT8), (&limit, Type::INT8)],
                    )
                    .await
            }
        }
        .context("read outbox")?;
        // Free the connection while the transport works: in Lambda it is the only one.
        drop(client);
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        let messages: Vec<OutgoingMessage> = rows
            .iter()
            .map(|row| OutgoingMessage {
                queue: row.get(1),
                group_id: row.get(2),
                dedup_id: row.get(3),
                body: row.get(4),
            })
            .collect();
        let sent = self.transport.send(&messages).await;
        let client = self.pool.get().await.context("update outbox")?;
        match sent {
            Ok(()) => {
                client
                    .execute_typed(
                        "DELETE FROM outbox WHERE id = ANY($1)",
                        &[(&ids, Type::INT8_ARRAY)],
                    )
                    .await
                    .context("delete sent outbox rows")?;
                Ok(ids.len())
            }
            Err(error) => {
                let reason = error.to_string();
                client
                    .execute_typed(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
                        &[(&ids, Type::INT8_ARRAY), (&reason, Type::TEXT)],
                    )
                    .await
                    .context("record outbox failure")?;
                Err(error)
            }
        }
    }
}
