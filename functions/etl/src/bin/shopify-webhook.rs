//! Lambda entrypoint of `POST /webhooks/shopify` (orders/create, orders/updated,
//! refunds/create): the ETL agent's push half, an HTTP function beside the `etl` consumer.

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = etl::WebhookDeps {
        pool: container.pool,
        transport: container.transport,
        clock: container.clock,
        keys: Arc::new(shared::crypto::Keys::from_env(&shared::settings::Env(
            &|name| std::env::var(name).ok(),
        ))?),
        webhook_secrets: etl::shopify::webhook_secrets(|name| std::env::var(name).ok())?,
    };
    shared::lambda::http::serve(etl::router(Arc::new(deps))).await
}
