//! SQS FIFO, the transport in AWS. SQS itself enforces deduplication, group order, visibility
//! and the move to the dead-letter queue (the template's `RedrivePolicy`); this adapter maps
//! the [`Transport`] calls onto the SDK and classifies its errors.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::{OutgoingMessage, QueueDepth, QueueError, ReceivedMessage, Transport};
use crate::settings::SqsQueueUrls;

/// SQS accepts at most ten entries per batch call.
const SQS_BATCH_LIMIT: usize = 10;

#[derive(Clone)]
pub struct SqsTransport {
    client: Client,
    urls: SqsQueueUrls,
}

impl SqsTransport {
    pub fn new(client: Client, urls: SqsQueueUrls) -> Self {
        Self { client, urls }
    }

    /// A client from the standard AWS configuration chain (honours `AWS_ENDPOINT_URL`).
    pub async fn from_env(urls: SqsQueueUrls) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(Client::new(&config), urls)
    }

    fn url(&self, queue: &str) -> Result<&str, QueueError> {
        self.urls
            .url(queue)
            .ok_or_else(|| QueueError::UnknownQueue(queue.to_string()))
    }

    fn dead_letter_url(&self, queue: &str) -> Result<&str, QueueError> {
        self.urls
            .dead_letter_url(queue)
            .ok_or_else(|| QueueError::UnknownQueue(queue.to_string()))
    }

    async fn send_batch(&self, url: &str, messages: &[&OutgoingMessage]) -> Result<(), QueueError> {
        let entries = messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(&message.body)
                    .message_group_id(&message.group_id)
                    .message_deduplication_id(&message.dedup_id)
                    .build()
                    .map_err(|error| QueueError::Malformed(error.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|error| sqs_error("SendMessageBatch", error))?;
        if let Some(failure) = output.failed().first() {
            return Err(QueueError::Sqs {
                operation: "SendMessageBatch",
                message: format!(
                    "{} entries failed, first: {} {}",
                    output.failed().len(),
                    failure.code(),
                    failure.message().unwrap_or_default()
                ),
                transient: !failure.sender_fault(),
            });
        }
        Ok(())
    }

    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, SQS_BATCH_LIMIT) as i32)
            .visibility_timeout(visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|error| sqs_error("ReceiveMessage", error))?;
        Ok(output
            .messages()
            .iter()
            .map(|message| {
                let attribute = |name: MessageSystemAttributeName| {
                    message
                        .attributes()
                        .and_then(|attributes| attributes.get(&name))
                        .cloned()
                        .unwrap_or_default()
                };
                ReceivedMessage {
                    message_id: message.message_id().unwrap_or_default().to_string(),
                    receipt: message.receipt_handle().unwrap_or_default().to_string(),
                    group_id: attribute(MessageSystemAttributeName::MessageGroupId),
                    dedup_id: attribute(MessageSystemAttributeName::MessageDeduplicationId),
                    body: message.body().unwrap_or_default().to_string(),
                    receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                        .parse()
                        .unwrap_or(1),
                }
            })
            .collect())
    }

    async fn delete_from(&self, url: &str, receipts: &[String]) -> Result<(), QueueError> {
        for chunk in receipts.chunks(SQS_BATCH_LIMIT) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(|error| QueueError::Malformed(error.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| sqs_error("DeleteMessageBatch", error))?;
        }
        Ok(())
    }

    async fn approximate_count(
        &self,
        url: &str,
        name: QueueAttributeName,
    ) -> Result<u64, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(name.clone())
            .send()
            .await
            .map_err(|error| sqs_error("GetQueueAttributes", error))?;
        Ok(output
            .attributes()
            .and_then(|attributes| attributes.get(&name))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0))
    }
}

/// Throttling, timeouts, connection failures and 5xx answers are worth retrying; a request
/// SQS rejected as malformed is not.
fn sqs_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    error: SdkError<E, R>,
) -> QueueError {
    let transient = match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            code.contains("Throttl")
                || code.contains("RequestThrottled")
                || code == "ServiceUnavailable"
                || code == "InternalError"
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    QueueError::Sqs {
        operation,
        message: DisplayErrorContext(&error).to_string(),
        transient,
    }
}

#[async_trait]
impl Transport for SqsTransport {
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        // Consecutive runs of one queue go out in batches of ten, in order, which keeps each
        // group's order as the caller gave it.
        let mut start = 0;
        while start < messages.len() {
            let queue = &messages[start].queue;
            let url = self.url(queue)?;
            let run: Vec<&OutgoingMessage> = messages[start..]
                .iter()
                .take_while(|message| &message.queue == queue)
                .take(SQS_BATCH_LIMIT)
                .collect();
            start += run.len();
            self.send_batch(url, &run).await?;
        }
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_from(self.url(queue)?, max, visibility).await
    }

    async fn delete(&self, queue: &str, receipts: &[String]) -> Result<(), QueueError> {
        self.delete_from(self.url(queue)?, receipts).await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(self.url(queue)?)
            .receipt_handle(receipt)
            .visibility_timeout(visibility.as_secs() as i32)
            .send()
            .await
            .map_err(|error| sqs_error("ChangeMessageVisibility", error))?;
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        let url = self.url(queue)?;
        Ok(QueueDepth {
            visible: self
                .approximate_count(url, QueueAttributeName::ApproximateNumberOfMessages)
                .await?,
            in_flight: self
                .approximate_count(
                    url,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                )
                .await?,
            dead_letters: self
                .approximate_count(
                    self.dead_letter_url(queue)?,
                    QueueAttributeName::ApproximateNumberOfMessages,
                )
                .await?,
        })
    }

    /// Moves messages back by hand (receive from the dead-letter queue, send, delete), which
    /// works wherever the SQS API does. The dedup id is derived from the dead letter's own
    /// message id: the original id may still be inside its window and would be dropped.
    async fn redrive(&self, queue: &str) -> Result<u64, QueueError> {
        let dead_letter_url = self.dead_letter_url(queue)?.to_string();
        let mut moved = 0;
        loop {
            let batch = self
                .receive_from(&dead_letter_url, SQS_BATCH_LIMIT, Duration::from_secs(60))
                .await?;
            if batch.is_empty() {
                return Ok(moved);
            }
            let outgoing: Vec<OutgoingMessage> = batch
                .iter()
                .map(|message| {
                    OutgoingMessage::new(
                        queue,
                        message.group_id.clone(),
                        format!("redrive:{}", message.message_id),
                        message.body.clone(),
                    )
                })
                .collect();
            self.send(&outgoing).await?;
            let receipts: Vec<String> = batch
                .iter()
                .map(|message| message.receipt.clone())
                .collect();
            self.delete_from(&dead_letter_url, &receipts).await?;
            moved += batch.len() as u64;
        }
    }
}
