//! Lambda entrypoint of the email routes: `POST /webhooks/resend` and
//! `GET`/`POST /email/unsubscribe` ([`email::api`]).

use std::sync::Arc;

use email::api::{ApiDeps, Config};
use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = ApiDeps::new(&container, Config::from_env(&Env::process())?);
    shared::lambda::http::serve(email::api::router(Arc::new(deps))).await
}
