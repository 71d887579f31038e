//! Lambda entrypoint of the metrics agent: `metrics.fifo` batches (grouped per workspace)
//! recompute the days they name. Backfills of a range are `ops metrics-recompute`.

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = Arc::new(metrics::MetricsDeps::new(&container));
    shared::lambda::sqs::serve(metrics::consumer(deps)).await
}
