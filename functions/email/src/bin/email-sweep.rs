//! Lambda entrypoint of the hourly sweep (the `email-sweep` EventBridge rule): queue each
//! user due a campaign now ([`email::sweep::on_tick`]).

use std::sync::Arc;

use email::sweep::{Config, SweepDeps};
use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = SweepDeps::new(&container, Config::from_env(&Env::process())?);
    shared::lambda::schedule::serve(email::sweep::on_tick(Arc::new(deps))).await
}
