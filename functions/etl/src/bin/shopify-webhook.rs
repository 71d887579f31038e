//! Lambda entrypoint of `POST /webhooks/shopify` (orders/create, orders/updated,
//! refunds/create): the ETL agent's push half, an HTTP function beside the `etl` consumer.
//! It reads orders back from the shop a delivery names (`SHOPIFY_API_BASE_URL`, the shops'
//! sealed tokens), so it needs the same `ENCRYPTION_KEYS` as the `etl` function.

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
        http: etl::http_client(etl::shopify::webhook::REREAD_TIMEOUT)?,
        endpoints: etl::Endpoints::from_lookup(|name| std::env::var(name).ok()),
    };
    shared::lambda::http::serve(etl::router(Arc::new(deps))).await
}
