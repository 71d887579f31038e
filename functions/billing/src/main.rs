//! The billing agent's entrypoint: the Lambda behind `POST /webhooks/stripe`. Replays of
//! stored Stripe events are `ops billing-backfill`.

use std::sync::Arc;

use billing::BillingDeps;
use billing::config::Config;
use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = BillingDeps::new(&container, Config::from_env(&Env::process())?);
    shared::lambda::http::serve(billing::router(Arc::new(deps))).await
}
