//! Messages between agents.
//!
//! * [`catalog`] — the queues that exist, defined once (the SAM template mirrors them).
//! * [`Message`] — a typed message knows its queue, its group (what must be processed in
//!   order: a workspace, an ad account, a user) and its deduplication id (what makes two
//!   messages the same). Both ids are deterministic, so a resend is harmless.
//! * [`Transport`] — send, receive, delete, change visibility, depth, dead letters and
//!   re-drive, with SQS FIFO semantics; [`sqs::SqsTransport`] in AWS and
//!   [`postgres::PostgresTransport`] locally. One contract test suite runs against both.
//! * [`outbox`] — messages written inside the caller's transaction and dispatched after it
//!   commits, with a relay for whatever a crash left behind.
//! * [`consumer`] — processing a FIFO batch in order, stopping a group at its first failure;
//!   shared by the Lambda SQS adapter and the local Postgres-queue consumers.

pub mod catalog;
pub mod consumer;
pub mod outbox;
pub mod postgres;
pub mod sqs;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::db::DbError;
use crate::retry::{RetryClass, Retryable};
use crate::settings::QueueSettings;
pub use catalog::QueueDef;

/// How long a deduplication id suppresses a repeat, as in SQS FIFO.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);

/// SQS limits group and deduplication ids to 128 characters of this alphabet.
const ID_MAX_LEN: usize = 128;

/// A message type: its queue and how its ids are derived.
pub trait Message: Serialize + DeserializeOwned + Send + Sync {
    const QUEUE: &'static QueueDef;
    fn group_id(&self) -> String;
    fn dedup_id(&self) -> String;

    fn to_outgoing(&self) -> Result<OutgoingMessage, QueueError> {
        let body = serde_json::to_string(self)
            .map_err(|error| QueueError::Malformed(error.to_string()))?;
        Ok(OutgoingMessage::new(
            Self::QUEUE.name,
            self.group_id(),
            self.dedup_id(),
            body,
        ))
    }
}

/// A message on its way out, already serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub queue: String,
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
}

impl OutgoingMessage {
    /// Ids that SQS would reject (too long, or characters outside its alphabet) are replaced
    /// by their SHA-256, which keeps them deterministic and distinct.
    pub fn new(queue: &str, group_id: String, dedup_id: String, body: String) -> Self {
        Self {
            queue: queue.to_string(),
            group_id: sqs_safe_id(group_id),
            dedup_id: sqs_safe_id(dedup_id),
            body,
        }
    }
}

fn sqs_safe_id(id: String) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c.is_ascii_punctuation();
    if !id.is_empty() && id.len() <= ID_MAX_LEN && id.chars().all(allowed) {
        id
    } else {
        hex::encode(Sha256::digest(id.as_bytes()))
    }
}

/// A message handed to a consumer. The receipt is what deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt: String,
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
    pub receive_count: u32,
}

/// How full a queue is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and not yet deleted (their visibility timeout is running).
    pub in_flight: u64,
    pub dead_letters: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("unknown queue {0}")]
    UnknownQueue(String),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("receipt {0} is not valid")]
    InvalidReceipt(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("SQS {operation}: {message}")]
    Sqs {
        operation: &'static str,
        message: String,
        transient: bool,
    },
}

impl Retryable for QueueError {
    fn retry_class(&self) -> RetryClass {
        match self {
            QueueError::Db(error) => error.retry_class(),
            QueueError::Sqs {
                transient: true, ..
            } => RetryClass::transient(),
            _ => RetryClass::Permanent,
        }
    }
}

/// A FIFO queue service. Both implementations promise the same things (checked by the
/// contract tests): a repeated deduplication id within [`DEDUP_WINDOW`] is dropped; within a
/// group, no message is delivered while an earlier one is in flight; a received message not
/// deleted within its visibility timeout comes back; after the queue's `max_receives`
/// deliveries it moves to the dead letters; re-drive puts dead letters back.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends messages (to any queues), in order.
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError>;
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;
    async fn delete(&self, queue: &str, receipts: &[String]) -> Result<(), QueueError>;
    /// Makes an in-flight message visible again after `visibility` (zero: at once).
    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError>;
    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError>;
    /// Moves every dead letter of `queue` back to it; returns how many moved.
    async fn redrive(&self, queue: &str) -> Result<u64, QueueError>;

    /// Sends inside the caller's open transaction, when this transport lives in the same
    /// database (the message then exists exactly when the transaction commits). `None`: this
    /// transport cannot, so the caller goes through the outbox.
    async fn send_within(
        &self,
        _transaction: &tokio_postgres::Transaction<'_>,
        _messages: &[OutgoingMessage],
    ) -> Option<Result<(), QueueError>> {
        None
    }
}

/// The transport the settings ask for: SQS in AWS, the Postgres queue otherwise.
pub async fn connect(
    settings: &QueueSettings,
    pool: &deadpool_postgres::Pool,
) -> Arc<dyn Transport> {
    match settings {
        QueueSettings::Postgres => Arc::new(postgres::PostgresTransport::new(pool.clone())),
        QueueSettings::Sqs(urls) => Arc::new(sqs::SqsTransport::from_env(urls.clone()).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Recompute {
        workspace: String,
        date: String,
        bucket: u64,
    }

    impl Message for Recompute {
        const QUEUE: &'static QueueDef = &catalog::METRICS;
        fn group_id(&self) -> String {
            self.workspace.clone()
        }
        fn dedup_id(&self) -> String {
            format!("metrics:{}:{}:{}", self.workspace, self.date, self.bucket)
        }
    }

    #[test]
    fn typed_messages_carry_their_queue_and_deterministic_ids() {
        let message = Recompute {
            workspace: "ws-1".into(),
            date: "2026-11-30".into(),
            bucket: 5_899_520,
        };
        let outgoing = message.to_outgoing().unwrap();
        assert_eq!(outgoing.queue, "metrics.fifo");
        assert_eq!(outgoing.group_id, "ws-1");
        assert_eq!(outgoing.dedup_id, "metrics:ws-1:2026-11-30:5899520");
        assert_eq!(
            outgoing,
            message.to_outgoing().unwrap(),
            "the same message, the same ids"
        );
        let back: Recompute = serde_json::from_str(&outgoing.body).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn safe_ids_pass_through() {
        let message = OutgoingMessage::new(
            "metrics.fifo",
            "ws-1".into(),
            "metrics:ws-1:2026-11-30:1".into(),
            "{}".into(),
        );
        assert_eq!(message.group_id, "ws-1");
        assert_eq!(message.dedup_id, "metrics:ws-1:2026-11-30:1");
    }

    /// SQS's rule for group and deduplication ids.
    fn sqs_accepts(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c.is_ascii_punctuation())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever comes from outside (a distinct id, an account id), the ids SQS sees are
        /// valid, deterministic, and tell different inputs apart.
        #[test]
        fn every_id_is_valid_for_sqs(a in proptest::prelude::any::<String>(), b in proptest::prelude::any::<String>()) {
            let (first, again, other) = (sqs_safe_id(a.clone()), sqs_safe_id(a.clone()), sqs_safe_id(b.clone()));
            proptest::prop_assert!(sqs_accepts(&first), "{first:?} from {a:?}");
            proptest::prop_assert_eq!(&first, &again);
            if a != b {
                proptest::prop_assert_ne!(&first, &other);
            }
            if sqs_accepts(&a) {
                proptest::prop_assert_eq!(&first, &a, "valid ids pass unchanged");
            }
        }

        #[test]
        fn signups_of_any_distinct_id_make_valid_messages(distinct_id in ".{0,300}") {
            let message = crate::messages::UserSignedUp {
                workspace_id: uuid::Uuid::from_u128(1),
                distinct_id,
                signed_up_at: chrono::DateTime::UNIX_EPOCH,
            }
            .to_outgoing()
            .unwrap();
            proptest::prop_assert!(sqs_accepts(&message.group_id));
            proptest::prop_assert!(sqs_accepts(&message.dedup_id));
        }
    }

    #[test]
    fn unsafe_ids_are_hashed_deterministically() {
        let long = "x".repeat(200);
        let first = sqs_safe_id(long.clone());
        assert_eq!(first.len(), 64);
        assert_eq!(first, sqs_safe_id(long));
        assert_ne!(sqs_safe_id("a b".into()), "a b");
        assert_ne!(sqs_safe_id("a b".into()), sqs_safe_id("a c".into()));
    }
}
