//! Lambda entrypoint of the suggestions agent: `suggestions.fifo` batches (grouped per
//! workspace) refresh the workspace's candidate suggestions.

use shared::lambda::{Container, LambdaError};
use shared::messages::SuggestionsRefresh;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let pool = container.pool;
    shared::lambda::sqs::serve(move |request: SuggestionsRefresh| {
        let pool = pool.clone();
        async move { suggestions::refresh(&pool, &request).await.map(|_| ()) }
    })
    .await
}
