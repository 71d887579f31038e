//! Processing a batch from a FIFO queue, the same way whichever transport delivered it.
//!
//! Messages are handled one at a time in delivery order. Each body is parsed on its own, so
//! one malformed message fails alone rather than the whole batch. When a message fails, the
//! rest of its group in this batch is not attempted and is reported failed too: processing
//! them would overtake the failed one, which is exactly what a FIFO group forbids. Other
//! groups go on.

use std::collections::HashSet;
use std::future::Future;

use serde::de::DeserializeOwned;

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
            Ok(parsed) => handler(parsed)
                .await
                .err()
                .map(|error| MessageFailure::Handler(error.to_string())),
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
