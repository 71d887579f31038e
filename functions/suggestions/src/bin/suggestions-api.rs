//! Lambda entrypoint of the feedback API (`GET /suggestions`, `POST /suggestions/{id}/feedback`),
//! verifying users' Supabase access tokens with `SUPABASE_JWT_SECRET` and `SUPABASE_URL`.

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let lookup = |name: &str| std::env::var(name).ok();
    let deps = suggestions::api::ApiDeps {
        pool: container.pool,
        jwt: shared::jwt::JwtVerifier::from_env(&Env(&lookup))?,
        clock: container.clock,
    };
    shared::lambda::http::serve(suggestions::api::router(Arc::new(deps))).await
}
