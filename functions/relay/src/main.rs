//! Lambda entrypoint of the outbox relay, invoked by the `outbox-relay` EventBridge rule.

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use shared::queue::QueueError;
use shared::queue::outbox::Outbox;
use shared::queue::postgres::PostgresTransport;
use shared::runs::{RunLog, Trigger};
use shared::settings::QueueSettings;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let pool = container.pool;
    let runs = RunLog::new(pool.clone(), "relay");
    let deps = Arc::new(relay::RelayDeps {
        pool: pool.clone(),
        postgres_queue: matches!(container.settings.queue, QueueSettings::Postgres)
            .then(|| PostgresTransport::new(pool.clone())),
        outbox: Outbox::new(pool, container.transport),
        grace: relay::GRACE,
    });
    shared::lambda::schedule::serve(move |tick| {
        let (deps, runs) = (deps.clone(), runs.clone());
        async move {
            let report = runs.observe(Trigger::Schedule, relay::run(&deps)).await?;
            tracing::info!(schedule = tick.schedule.name, ?report, "relay pass done");
            Ok::<(), QueueError>(())
        }
    })
    .await
}
