//! Lambda entrypoint of `POST /webhooks/shopify` (orders/create, orders/updated,
//! refunds/create): the ETL agent's push half, an HTTP function beside the `etl` consumer.
//! It reads orders back from the shop a delivery names, so it needs the same
//! `ENCRYPTION_KEYS` as the `etl` function.

use std::sync::Arc;

use etl::{WebhookConfig, WebhookDeps};
use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = WebhookDeps::new(&container, WebhookConfig::from_env(&Env::process())?)?;
    shared::lambda::http::serve(etl::router(Arc::new(deps))).await
}
