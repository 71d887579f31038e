//! Lambda entrypoint of the suggestions agent: `suggestions.fifo` batches (grouped per
//! workspace) refresh the workspace's candidate suggestions.

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use suggestions::SuggestionsDeps;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = Arc::new(SuggestionsDeps::new(&container));
    shared::lambda::sqs::serve(suggestions::consumer(deps)).await
}
