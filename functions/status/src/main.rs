//! Lambda entrypoint of the status agent: `GET /status`, `GET /status.json` and
//! `POST /status/login` ([`status::router`]).

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use shared::settings::Env;
use status::{Config, StatusDeps};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = StatusDeps::new(&container, Config::from_env(&Env::process())?);
    shared::lambda::http::serve(status::router(Arc::new(deps))).await
}
