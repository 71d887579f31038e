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

/// Runs a function that consumes a queue and is woken by schedules too (the ETL agent: its
/// schedules dispatch runs onto its own queue, which it then executes). The event's shape
/// says which it is.
pub async fn serve_consumer_and_schedule<M>(
    consumer: Consumer<M>,
    on_tick: OnTick,
) -> Result<(), LambdaError>
where
    M: serde::de::DeserializeOwned + Send + 'static,
{
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let (consumer, on_tick) = (consumer.clone(), on_tick.clone());
            async move {
                if event.payload.get("Records").is_some() {
                    let batch = serde_json::from_value(event.payload)?;
                    let response = sqs::handle_batch(&batch, consumer.handler()).await?;
                    return Ok::<_, LambdaError>(serde_json::to_value(response)?);
                }
                let event = serde_json::from_value(event.payload)?;
                on_tick.call(schedule::tick_from_event(&event)?).await?;
                Ok(serde_json::Value::Null)
            }
        },
    ))
    .await
}

use std::sync::Arc;

use crate::clock::Clock;
use crate::db::Pool;
use crate::entry::{Consumer, OnTick};
use crate::queue::Transport;
use crate::settings::{QueueSettings, Settings};

/// What a Lambda entrypoint returns when the runtime itself fails.
pub type LambdaError = lambda_runtime::Error;

/// What every function builds once per container, before its first event: logging, settings,
/// the connection pool, the queue transport and the clock. Building them per invocation would pay a TLS
/// handshake each time and could exhaust the pooler's client slots.
pub struct Container {
    /// Which transport carries the queues (the relay also maintains the Postgres queue).
    pub queue: QueueSettings,
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
            queue: settings.queue,
            pool,
            transport,
            clock: Clock::system(),
        })
    }

    /// A container of given parts on the Postgres queue: the local stack's and the tests'.
    pub fn new(pool: Pool, transport: Arc<dyn Transport>, clock: Clock) -> Self {
        Self {
            queue: QueueSettings::Postgres,
            pool,
            transport,
            clock,
        }
    }
}
