//! SQS FIFO consumers with partial batch responses.
//!
//! The event source mapping must enable `ReportBatchItemFailures`. Lambda then deletes every
//! message of the batch except those listed in [`SqsBatchResponse`]; the listed ones come
//! back after their visibility timeout, and after `maxReceiveCount` go to the dead-letter
//! queue. The ordering rules live in [`crate::queue::consumer`], shared with the local stack.
//!
//! An item identifier must never be empty (Lambda would treat the response as invalid and
//! retry the whole batch, messages already processed included, which is at best wasteful).
//! A record without a `messageId` cannot be reported, so such a batch fails as a whole.

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use serde::de::DeserializeOwned;

use super::LambdaError;
use crate::entry::Consumer;
use crate::queue::consumer::{InboundMessage, process_fifo};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record {index} of the batch has no messageId, so its failure could not be reported")]
    MissingMessageId { index: usize },
}

/// Turns SQS records into transport-neutral messages.
pub fn inbound_messages(event: &SqsEvent) -> Result<Vec<InboundMessage>, BatchError> {
    event
        .records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let id = record
                .message_id
                .clone()
                .filter(|id| !id.is_empty())
                .ok_or(BatchError::MissingMessageId { index })?;
            Ok(InboundMessage {
                id,
                group_id: record.attributes.get("MessageGroupId").cloned(),
                body: record.body.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// Handles one batch: parses each record as `M`, processes in order, and reports the failed
/// messages together with every later message of their groups.
pub async fn handle_batch<M, H, Fut, E>(
    event: &SqsEvent,
    handler: H,
) -> Result<SqsBatchResponse, BatchError>
where
    M: DeserializeOwned,
    H: FnMut(M) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let messages = inbound_messages(event)?;
    let outcome = process_fifo(&messages, handler).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = outcome
        .failed_ids()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.to_string();
            failure
        })
        .collect();
    Ok(response)
}

/// Runs a FIFO consumer Lambda: `consumer` is called once per message.
pub async fn serve<M>(consumer: Consumer<M>) -> Result<(), LambdaError>
where
    M: DeserializeOwned + Send + 'static,
{
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = consumer.handler();
        async move {
            handle_batch(&event.payload, handler)
                .await
                .map_err(LambdaError::from)
        }
    }))
    .await
}
