//! Lambda entrypoint of the email sender: `email.fifo` batches (grouped per user) send each
//! campaign once ([`email::send::consumer`]). `ops email-preview` prints what a user would
//! receive without sending.

use std::sync::Arc;

use email::send::{Config, SenderDeps};
use shared::lambda::{Container, LambdaError};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = SenderDeps::new(&container, Config::from_env(&Env::process())?);
    shared::lambda::sqs::serve(email::send::consumer(Arc::new(deps))).await
}
