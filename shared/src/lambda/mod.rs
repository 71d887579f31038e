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

use std::sync::Arc;

use crate::clock::Clock;
use crate::db::Pool;
use crate::queue::Transport;
use crate::settings::Settings;

/// What a Lambda entrypoint returns when the runtime itself fails.
pub type LambdaError = lambda_runtime::Error;

/// What every function builds once per container, before its first event: logging, settings,
/// the connection pool, the queue transport and the clock. Building them per invocation would pay a TLS
/// handshake each time and could exhaust the pooler's client slots.
pub struct Container {
    pub settings: Settings,
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    /// The system clock; tests build their agents with a fixed one instead.
    pub clock: Clock,
}

impl Container {
    /// Fails (and so stops the container before it serves anything) on a missing or
    /// malformed setting.
    pub async fn init() -> Result<Self, LambdaError> {
        crate::telemetry::init();
        let settings = Settings::from_env()?;
        let pool = crate::db::connect(&settings.database)?;
        let transport = crate::queue::connect(&settings.queue, &pool).await;
        Ok(Self {
            settings,
            pool,
            transport,
            clock: Clock::system(),
        })
    }
}
