//! Lambda entrypoint of the status agent: `GET /status`, `GET /status.json` and
//! `POST /status/login`, opened by `STATUS_TOKEN` or, with `SUPABASE_JWT_SECRET` and
//! `SUPABASE_URL` set, by an admin's Supabase access token.

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let lookup = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let env = Env(&lookup);
    let deps = status::StatusDeps {
        pool: container.pool,
        transport: container.transport,
        access: status::access::Access::new(
            env.required("STATUS_TOKEN")?,
            match env.optional("SUPABASE_JWT_SECRET") {
                Some(_) => Some(shared::jwt::JwtVerifier::from_env(&env)?),
                None => None,
            },
        ),
        clock: container.clock,
    };
    shared::lambda::http::serve(status::router(Arc::new(deps))).await
}
