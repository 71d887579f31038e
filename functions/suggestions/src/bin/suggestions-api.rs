//! Lambda entrypoint of the feedback API ([`suggestions::api`]).

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use shared::settings::Env;
use suggestions::api::{ApiDeps, Config};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = ApiDeps::new(&container, Config::from_env(&Env::process())?);
    shared::lambda::http::serve(suggestions::api::router(Arc::new(deps))).await
}
