//! Lambda entrypoint of the analytics agent: every PostHog and Mixpanel route behind API
//! Gateway, served by [`analytics::router`].

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = analytics::AnalyticsDeps {
        pool: container.pool,
        transport: container.transport,
        clock: container.clock.clone(),
        keys: Arc::new(shared::crypto::Keys::from_env(&shared::settings::Env(
            &|name| std::env::var(name).ok(),
        ))?),
    };
    shared::lambda::http::serve(analytics::router(Arc::new(deps))).await
}
