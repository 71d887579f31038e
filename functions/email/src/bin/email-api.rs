//! Lambda entrypoint of the email routes: `POST /webhooks/resend` and
//! `GET`/`POST /email/unsubscribe`.

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use shared::queue::outbox::Outbox;
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let lookup = |name: &str| std::env::var(name).ok();
    let env = Env(&lookup);
    let deps = email::api::ApiDeps {
        outbox: Outbox::new(container.pool.clone(), container.transport),
        pool: container.pool,
        signer: email::signer_from_env(&env)?,
        webhook_secrets: email::api::webhook_secrets(&env)?,
        product: env
            .optional("EMAIL_PRODUCT_NAME")
            .unwrap_or_else(|| email::DEFAULT_PRODUCT_NAME.to_string()),
        clock: container.clock,
    };
    shared::lambda::http::serve(email::api::router(Arc::new(deps))).await
}
