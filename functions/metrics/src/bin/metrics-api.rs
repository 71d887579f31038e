//! Lambda entrypoint of `GET /metrics` ([`metrics::api`]).

use std::sync::Arc;

use metrics::api::{ApiDeps, Config};
use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = ApiDeps::new(&container, Config::from_env(&Env::process())?);
    shared::lambda::http::serve(metrics::api::router(Arc::new(deps))).await
}
