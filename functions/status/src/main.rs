//! Lambda entrypoint of the status agent: settings, telemetry, pool and transport are built
//! once per container, then every API Gateway request is served by [`status::router`].

use std::sync::Arc;

use shared::lambda::LambdaError;
use shared::settings::Settings;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    shared::telemetry::init();
    let settings = Settings::from_env()?;
    let pool = shared::db::connect(&settings.database)?;
    let transport = shared::queue::connect(&settings.queue, &pool).await;
    let deps = status::StatusDeps {
        pool,
        transport,
        agents: vec!["status"],
    };
    shared::lambda::http::serve(status::router(Arc::new(deps))).await
}
