//! Processing a batch from a FIFO queue, the same way whichever transport delivered it.
//!
//! Messages are handled one at a time in delivery order. Each body is parsed on its own, so
//! one malformed message fails alone rather than the whole batch. When a message fails, the
//! rest of its group in this batch is not attempted and is reported failed too: processing
//! them would overtake the failed one, which is exactly what a FIFO group forbids. Other
//! groups go on.
//!
//! A handler that panics fails its message like any other failure (the panic is caught
//! here), so one poisoned message is redelivered and then dead-lettered while the process
//! and the other groups go on.
//!
//! In AWS, Lambda's event source mapping receives and deletes; locally, [`poll`] does the
//! same against any [`Transport`] (the local stack runs one per queue on the Postgres queue).

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use serde::de::DeserializeOwned;

use super::{QueueDef, QueueError, Transport};

/// Cancelled to stop [`poll`].
pub use tokio_util::sync::CancellationToken as Shutdown;

/// A delivered message, transport-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The id the transport reports failures by (SQS `messageId`).
    pub id: String,
    /// `None` outside FIFO queues: each message is then its own group.
    pub group_id: Option<String>,
    pub body: String,
}

/// Why one message was not processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageFailure {
    /// The body did not parse as the expected message type.
    Malformed(String),
    /// The handler failed.
    Handler(String),
    /// The handler panicked (caught: the process goes on).
    Panicked(String),
    /// An earlier message of the same group failed in this batch.
    BlockedByGroup,
}

/// The ids that must be retried, in delivery order, with why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub failed: Vec<(String, MessageFailure)>,
}

impl BatchOutcome {
    pub fn failed_ids(&self) -> impl Iterator<Item = &str> {
        self.failed.iter().map(|(id, _)| id.as_str())
    }
}

/// Parses each message as `M` and hands it to `handler`, in order, stopping each group at its
/// first failure.
pub async fn process_fifo<M, H, Fut, E>(messages: &[InboundMessage], mut handler: H) -> BatchOutcome
where
    M: DeserializeOwned,
    H: FnMut(M) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut blocked_groups: HashSet<&str> = HashSet::new();
    let mut outcome = BatchOutcome::default();
    for message in messages {
        let group = message.group_id.as_deref();
        if group.is_some_and(|group| blocked_groups.contains(group)) {
            outcome
                .failed
                .push((message.id.clone(), MessageFailure::BlockedByGroup));
            continue;
        }
        let failure = match serde_json::from_str::<M>(&message.body) {
            Err(error) => Some(MessageFailure::Malformed(error.to_string())),
            // Nothing the handler touched outlives a panic but its own message's state, which
            // the redelivery redoes: asserting unwind safety is sound here.
            Ok(parsed) => match std::panic::AssertUnwindSafe(handler(parsed))
                .catch_unwind()
                .await
            {
                Ok(result) => result
                    .err()
                    .map(|error| MessageFailure::Handler(error.to_string())),
                Err(panic) => Some(MessageFailure::Panicked(crate::telemetry::panic_message(
                    panic.as_ref(),
                ))),
            },
        };
        if let Some(failure) = failure {
            tracing::warn!(message_id = %message.id, group = ?group, ?failure, "message failed");
            if let Some(group) = group {
                blocked_groups.insert(group);
            }
            outcome.failed.push((message.id.clone(), failure));
        }
    }
    outcome
}

/// What one [`poll_once`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    pub received: usize,
    pub succeeded: usize,
    pub failed: usize,
}

/// Messages received per poll, as a Lambda event source mapping's batch.
const POLL_BATCH: usize = 10;

/// Receives one batch, processes it, deletes what succeeded, and schedules each failed
/// message's next delivery with an exponential delay (1 s, 2 s, 4 s…) rather than the
/// queue's full visibility timeout, so local retries happen while someone is watching.
pub async fn poll_once<M, H, Fut, E>(
    transport: &dyn Transport,
    queue: &QueueDef,
    handler: H,
) -> Result<PollOutcome, QueueError>
where
    M: DeserializeOwned,
    H: FnMut(M) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let received = transport
        .receive(queue.name, POLL_BATCH, queue.visibility_timeout)
        .await?;
    if received.is_empty() {
        return Ok(PollOutcome::default());
    }
    let inbound: Vec<InboundMessage> = received
        .iter()
        .map(|message| InboundMessage {
            id: message.message_id.clone(),
            group_id: Some(message.group_id.clone()),
            body: message.body.clone(),
        })
        .collect();
    let outcome = process_fifo(&inbound, handler).await;
    let failed: HashSet<&str> = outcome.failed_ids().collect();
    let (retry, done): (Vec<_>, Vec<_>) = received
        .iter()
        .partition(|message| failed.contains(message.message_id.as_str()));
    let receipts: Vec<String> = done.iter().map(|message| message.receipt.clone()).collect();
    if !receipts.is_empty() {
        transport.delete(queue.name, &receipts).await?;
    }
    for message in &retry {
        let delay = Duration::from_secs(1 << message.receive_count.saturating_sub(1).min(6));
        transport
            .change_visibility(queue.name, &message.receipt, delay)
            .await?;
    }
    Ok(PollOutcome {
        received: received.len(),
        succeeded: done.len(),
        failed: retry.len(),
    })
}

/// Polls `queue` until `shutdown` is cancelled, pausing briefly whenever it is empty.
pub async fn poll<M, H, Fut, E>(
    transport: &dyn Transport,
    queue: &QueueDef,
    mut handler: H,
    shutdown: Shutdown,
) where
    M: DeserializeOwned,
    H: FnMut(M) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    const IDLE: Duration = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        let pause = match poll_once(transport, queue, &mut handler).await {
            Ok(outcome) if outcome.received > 0 => Duration::ZERO,
            Ok(_) => IDLE,
            Err(error) => {
                tracing::error!(queue = queue.name, %error, "polling failed");
                IDLE * 4
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Job {
        n: u32,
    }

    fn message(id: &str, group: &str, body: &str) -> InboundMessage {
        InboundMessage {
            id: id.into(),
            group_id: Some(group.into()),
            body: body.into(),
        }
    }

    #[tokio::test]
    async fn a_failure_stops_its_group_but_not_others() {
        let batch = vec![
            message("1", "a", r#"{"n":1}"#),
            message("2", "a", r#"{"n":13}"#),
            message("3", "b", r#"{"n":3}"#),
            message("4", "a", r#"{"n":4}"#),
            message("5", "b", r#"{"n":5}"#),
        ];
        let mut seen = Vec::new();
        let outcome = process_fifo(&batch, |job: Job| {
            seen.push(job.n);
            async move { if job.n == 13 { Err("unlucky") } else { Ok(()) } }
        })
        .await;
        assert_eq!(
            seen,
            vec![1, 13, 3, 5],
            "message 4 must not overtake the failed message 2"
        );
        assert_eq!(
            outcome.failed,
            vec![
                ("2".into(), MessageFailure::Handler("unlucky".into())),
                ("4".into(), MessageFailure::BlockedByGroup)
            ]
        );
    }

    #[tokio::test]
    async fn a_malformed_body_fails_alone() {
        let batch = vec![
            message("1", "a", "not json"),
            message("2", "b", r#"{"n":2}"#),
        ];
        let outcome = process_fifo(&batch, |_: Job| async { Ok::<(), String>(()) }).await;
        assert_eq!(outcome.failed_ids().collect::<Vec<_>>(), vec!["1"]);
        assert!(matches!(outcome.failed[0].1, MessageFailure::Malformed(_)));
    }

    #[tokio::test]
    async fn messages_without_group_are_independent() {
        let batch = vec![
            InboundMessage {
                id: "1".into(),
                group_id: None,
                body: r#"{"n":13}"#.into(),
            },
            InboundMessage {
                id: "2".into(),
                group_id: None,
                body: r#"{"n":2}"#.into(),
            },
        ];
        let outcome = process_fifo(&batch, |job: Job| async move {
            if job.n == 13 { Err("no") } else { Ok(()) }
        })
        .await;
        assert_eq!(outcome.failed_ids().collect::<Vec<_>>(), vec!["1"]);
    }
}
