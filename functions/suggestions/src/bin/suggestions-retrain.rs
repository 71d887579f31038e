//! Lambda entrypoint of the nightly ranker retrain, invoked by the `suggestions-retrain`
//! EventBridge rule: fit on the verdicts so far, promote only if better on the holdout.

use shared::lambda::{Container, LambdaError};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let pool = container.pool;
    shared::lambda::schedule::serve(move |tick| {
        let pool = pool.clone();
        async move {
            let outcome = suggestions::ranker::retrain(&pool, tick.at).await?;
            tracing::info!(schedule = tick.schedule.name, ?outcome, "ranker retrained");
            Ok::<(), suggestions::SuggestionsError>(())
        }
    })
    .await
}
