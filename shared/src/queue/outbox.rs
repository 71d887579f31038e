//! The transactional outbox.
//!
//! A handler that changes state and must tell another agent about it calls [`enqueue`] inside
//! its own transaction, so the message exists exactly when the change does. After commit it
//! calls [`Outbox::dispatch`] with the returned ids to send them at once. If the process dies
//! in between, [`Outbox::relay`] (on a schedule) sends whatever is older than a grace period.
//!
//! Rows are read, sent, then deleted, without holding a transaction open across the send: a
//! Lambda's single pooled connection stays free for the transport, and if the dispatcher and
//! the relay ever send the same row, the message's deterministic deduplication id makes the
//! second copy a no-op.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use super::{OutgoingMessage, QueueError, Transport};
use crate::db::DbContext;

/// Writes messages into the outbox as part of the caller's transaction; returns their ids.
pub async fn enqueue(
    transaction: &impl GenericClient,
    messages: &[OutgoingMessage],
) -> Result<Vec<i64>, QueueError> {
    if messages.is_empty() {
        return Ok(Vec::new());
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
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Sends outbox rows through a transport.
#[derive(Clone)]
pub struct Outbox {
    pool: Pool,
    transport: Arc<dyn Transport>,
}

/// Which rows to send.
enum Selection<'a> {
    Ids(&'a [i64]),
    OlderThan { age: Duration, limit: i64 },
}

impl Outbox {
    pub fn new(pool: Pool, transport: Arc<dyn Transport>) -> Self {
        Self { pool, transport }
    }

    /// Sends the rows just committed by the caller. On failure they stay for the relay.
    pub async fn dispatch(&self, ids: &[i64]) -> Result<usize, QueueError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.send(Selection::Ids(ids)).await
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
