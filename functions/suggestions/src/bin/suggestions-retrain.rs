//! Lambda entrypoint of the nightly ranker retrain, invoked by the `suggestions-retrain`
//! EventBridge rule: fit on the verdicts so far, promote only if better on the holdout.

use shared::lambda::{Container, LambdaError};
use shared::runs::{RunLog, Trigger};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let pool = container.pool;
    let runs = RunLog::new(pool.clone(), "suggestions-retrain");
    shared::lambda::schedule::serve(move |tick| {
        let (pool, runs) = (pool.clone(), runs.clone());
        async move {
            let outcome = runs
                .observe(
                    Trigger::Schedule,
                    suggestions::ranker::retrain(&pool, tick.at),
                )
                .await?;
            tracing::info!(schedule = tick.schedule.name, ?outcome, "ranker retrained");
            Ok::<(), suggestions::SuggestionsError>(())
        }
    })
    .await
}
