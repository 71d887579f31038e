//! Adapters from the events Lambda delivers to the agents' handlers.
//!
//! Each function's `main` builds its dependencies once and hands a handler to one of these;
//! the handler itself is plain domain code that the local stack and the tests call too.
//!
//! * [`http`] — API Gateway HTTP API requests served by an axum router.
//! * [`sqs`] — SQS FIFO batches with partial-batch failure reporting.
//! * [`schedule`] — EventBridge scheduled events.

pub mod http;
pub mod schedule;
pub mod sqs;

/// What a Lambda entrypoint returns when the runtime itself fails.
pub type LambdaError = lambda_runtime::Error;
