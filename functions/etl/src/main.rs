//! Lambda entrypoint of the ETL agent. One function serves both halves: the `etl-meta`,
//! `etl-tiktok` and `etl-shopify` schedules dispatch runs onto `etl.fifo`, and batches from
//! `etl.fifo` execute them (group = platform and account, so one account's runs never
//! overlap). One queue has one consumer, hence one function for every platform. Backfills
//! are `ops etl-backfill`; the Shopify webhook route is the `shopify-webhook` binary.

use std::sync::Arc;

use etl::{Config, EtlDeps};
use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = Arc::new(EtlDeps::new(
        &container,
        Config::from_env(&Env::process())?,
    )?);
    shared::lambda::serve_consumer_and_schedule(etl::consumer(deps.clone()), etl::on_tick(deps))
        .await
}
