//! Lambda entrypoint of `GET /metrics`: the daily metrics of one workspace and date range,
//! for the frontend and the status page, behind a bearer token (`METRICS_API_TOKEN`).

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let lookup = |name: &str| std::env::var(name).ok();
    let token = Env(&lookup).required("METRICS_API_TOKEN")?;
    let deps = metrics::ApiDeps {
        pool: container.pool,
        token,
    };
    shared::lambda::http::serve(metrics::router(Arc::new(deps))).await
}
