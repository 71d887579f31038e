//! Lambda entrypoint of the feedback API (`GET /suggestions`, `POST /suggestions/{id}/feedback`),
//! verifying users' Supabase JWTs with `SUPABASE_JWT_SECRET`.

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let lookup = |name: &str| std::env::var(name).ok();
    let jwt_secret = Env(&lookup).required("SUPABASE_JWT_SECRET")?.into_bytes();
    let deps = suggestions::api::ApiDeps {
        pool: container.pool,
        jwt_secret,
    };
    shared::lambda::http::serve(suggestions::api::router(Arc::new(deps))).await
}
