//! Lambda entrypoint of the suggestions agent: `suggestions.fifo` batches (grouped per
//! workspace) refresh the workspace's candidate suggestions.

use shared::lambda::{Container, LambdaError};
use shared::messages::SuggestionsRefresh;
use shared::runs::{RunLog, Trigger};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let (pool, clock) = (container.pool, container.clock);
    let runs = RunLog::new(pool.clone(), "suggestions");
    shared::lambda::sqs::serve(move |request: SuggestionsRefresh| {
        let (pool, runs, clock) = (pool.clone(), runs.clone(), clock.clone());
        async move {
            runs.observe(
                Trigger::Queue,
                suggestions::refresh(&pool, &request, &clock),
            )
            .await
            .map(|_| ())
        }
    })
    .await
}
