//! Lambda entrypoint of the metrics agent: `metrics.fifo` batches (grouped per workspace)
//! recompute the days they name. As a command, `metrics recompute <workspace> <from> <to>`
//! backfills a range through the same code path.

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};
use shared::messages::MetricsRecompute;
use shared::runs::{RunLog, Trigger};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = Arc::new(metrics::MetricsDeps {
        pool: container.pool,
        transport: container.transport,
        clock: container.clock,
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let runs = RunLog::new(deps.pool.clone(), "metrics");
            shared::lambda::sqs::serve(move |request: MetricsRecompute| {
                let (deps, runs) = (deps.clone(), runs.clone());
                async move {
                    runs.observe(Trigger::Queue, metrics::handle(&deps, &request))
                        .await
                        .map(|_| ())
                }
            })
            .await
        }
        [command, workspace, from, to] if command == "recompute" => {
            let days =
                metrics::recompute(&deps, workspace.parse()?, from.parse()?, to.parse()?).await?;
            println!("recomputed {days} days");
            Ok(())
        }
        _ => Err("usage: metrics [recompute <workspace> <from YYYY-MM-DD> <to YYYY-MM-DD>]".into()),
    }
}
