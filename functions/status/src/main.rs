//! Lambda entrypoint of the status agent: `GET /status`, `GET /status.json` and
//! `POST /status/login`, opened by `STATUS_TOKEN` or, with `SUPABASE_JWT_SECRET` set, by an
//! admin's Supabase access token.

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
        access: status::access::Access {
            token: env.required("STATUS_TOKEN")?,
            jwt_secret: env.optional("SUPABASE_JWT_SECRET").map(String::into_bytes),
        },
        clock: container.clock,
    };
    shared::lambda::http::serve(status::router(Arc::new(deps))).await
}
