//! Lambda entrypoint of the status agent: the container's dependencies are built once, then
//! every API Gateway request is served by [`status::router`].

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = status::StatusDeps {
        pool: container.pool,
        transport: container.transport,
        agents: vec!["status"],
    };
    shared::lambda::http::serve(status::router(Arc::new(deps))).await
}
