//! Lambda entrypoint of the nightly ranker retrain, invoked by the `suggestions-retrain`
//! EventBridge rule ([`suggestions::on_tick`]).

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use suggestions::SuggestionsDeps;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = Arc::new(SuggestionsDeps::new(&container));
    shared::lambda::schedule::serve(suggestions::on_tick(deps)).await
}
