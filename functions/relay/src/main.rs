//! Lambda entrypoint of the outbox relay, invoked by the `outbox-relay` EventBridge rule.

use std::sync::Arc;

use relay::RelayDeps;
use shared::lambda::{Container, LambdaError};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = Arc::new(RelayDeps::new(&container));
    shared::lambda::schedule::serve(relay::on_tick(deps)).await
}
