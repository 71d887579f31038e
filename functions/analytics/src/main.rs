//! Lambda entrypoint of the analytics agent: every PostHog and Mixpanel route behind API
//! Gateway, served by [`analytics::router`].

use std::sync::Arc;

use analytics::{AnalyticsDeps, Config};
use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = AnalyticsDeps::new(&container, Config::from_env(&Env::process())?);
    shared::lambda::http::serve(analytics::router(Arc::new(deps))).await
}
