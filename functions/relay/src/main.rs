//! Lambda entrypoint of the outbox relay, invoked by the `outbox-relay` EventBridge rule.

use std::sync::Arc;

use shared::lambda::LambdaError;
use shared::queue::outbox::Outbox;
use shared::queue::postgres::PostgresTransport;
use shared::settings::{QueueSettings, Settings};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    shared::telemetry::init();
    let settings = Settings::from_env()?;
    let pool = shared::db::connect(&settings.database)?;
    let transport = shared::queue::connect(&settings.queue, &pool).await;
    let deps = Arc::new(relay::RelayDeps {
        outbox: Outbox::new(pool.clone(), transport),
        postgres_queue: matches!(settings.queue, QueueSettings::Postgres)
            .then(|| PostgresTransport::new(pool.clone())),
        grace: relay::GRACE,
    });
    shared::lambda::schedule::serve(move |tick| {
        let deps = deps.clone();
        async move {
            let report = relay::run(&deps).await?;
            tracing::info!(
                schedule = tick.schedule.name,
                relayed = report.relayed,
                "relay pass done"
            );
            Ok::<(), shared::queue::QueueError>(())
        }
    })
    .await
}
