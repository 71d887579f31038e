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
//! One row that cannot be sent must not hold up the others: when a batch send fails, the rows
//! are sent one by one; a failing row counts an attempt and blocks only the later rows of its
//! own group (their order is the group's order), and after [`MAX_ATTEMPTS`] it is set aside
//! (`dead_at`), visible on the status page and re-driven by `ops redrive outbox`.
//!
//! When the transport is the Postgres queue, in the same database as the state, the outbox
//! row and the later send are unnecessary: [`Transport::send_within`] puts the message on the
//! queue inside the caller's transaction, which is just as atomic and saves a round trip and a
//! commit per message.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::types::Type;

use super::{OutgoingMessage, QueueError, Transport};
use crate::db::DbContext;

/// Failed sends after which a row is set aside instead of tried again.
pub const MAX_ATTEMPTS: i32 = 20;

/// What the outbox holds: rows waiting to be sent and rows set aside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxDepth {
    pub pending: i64,
    pub dead: i64,
}

/// Counts what waits and what was set aside.
pub async fn depth(pool: &Pool) -> Result<OutboxDepth, QueueError> {
    let client = pool.get().await.context("check out a connection")?;
    let row = client
        .query_typed_one(
            "SELECT count(*) FILTER (WHERE dead_at IS NULL), count(*) FILTER (WHERE dead_at IS NOT NULL) FROM outbox",
            &[],
        )
        .await
        .context("count outbox rows")?;
    Ok(OutboxDepth {
        pending: row.get(0),
        dead: row.get(1),
    })
}

/// Puts the rows set aside back in line (after the cause is fixed); returns how many.
pub async fn redrive(pool: &Pool) -> Result<u64, QueueError> {
    let client = pool.get().await.context("check out a connection")?;
    Ok(client
        .execute_typed(
            "UPDATE outbox SET dead_at = NULL, attempts = 0 WHERE dead_at IS NOT NULL",
            &[],
        )
        .await
        .context("re-drive outbox rows")?)
}

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
                          WHERE created_at < now() - make_interval(secs => $1) AND dead_at IS NULL
                          ORDER BY id LIMIT $2",
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
        let batch_error = match self.transport.send(&messages).await {
            Ok(()) => {
                self.delete(&ids).await?;
                return Ok(ids.len());
            }
            Err(error) => error,
        };
        // One by one, so that one bad row does not hold up the others.
        let mut sent = Vec::new();
        let mut failed: Vec<(i64, String)> = Vec::new();
        let mut blocked_groups: HashSet<(&str, &str)> = HashSet::new();
        for (id, message) in ids.iter().zip(&messages) {
            let group = (message.queue.as_str(), message.group_id.as_str());
            if blocked_groups.contains(&group) {
                continue;
            }
            match self.transport.send(std::slice::from_ref(message)).await {
                Ok(()) => sent.push(*id),
                Err(error) => {
                    blocked_groups.insert(group);
                    failed.push((*id, crate::redact::credentials(&error.to_string())));
                }
            }
        }
        self.delete(&sent).await?;
        if !failed.is_empty() {
            let (failed_ids, reasons): (Vec<i64>, Vec<String>) = failed.into_iter().unzip();
            let client = self.pool.get().await.context("update outbox")?;
            client
                .execute_typed(
                    "UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.reason,
                            dead_at = CASE WHEN o.attempts + 1 >= $3 THEN now() END
                       FROM unnest($1::int8[], $2::text[]) AS f(id, reason)
                      WHERE o.id = f.id",
                    &[
                        (&failed_ids, Type::INT8_ARRAY),
                        (&reasons, Type::TEXT_ARRAY),
                        (&MAX_ATTEMPTS, Type::INT4),
                    ],
                )
                .await
                .context("record outbox failures")?;
        }
        if sent.is_empty() {
            return Err(batch_error);
        }
        Ok(sent.len())
    }

    async fn delete(&self, ids: &[i64]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await.context("update outbox")?;
        client
            .execute_typed(
                "DELETE FROM outbox WHERE id = ANY($1)",
                &[(&ids, Type::INT8_ARRAY)],
            )
            .await
            .context("delete sent outbox rows")?;
        Ok(())
    }
}
