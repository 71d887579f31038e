//! Lambda entrypoint of the hourly sweep (the `email-sweep` EventBridge rule): queue each
//! user due a campaign now. Campaign rules come from `EMAIL_CAMPAIGNS_FILE` or the shipped
//! `campaigns.toml`.

use email::campaigns::Rules;
use shared::lambda::{Container, LambdaError};
use shared::runs::{RunLog, Trigger};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let rules = Rules::from_lookup(|name| std::env::var(name).ok())?;
    let (pool, transport) = (container.pool, container.transport);
    let runs = RunLog::new(pool.clone(), "email-sweep");
    shared::lambda::schedule::serve(move |tick| {
        let (pool, transport, rules, runs) =
            (pool.clone(), transport.clone(), rules.clone(), runs.clone());
        async move {
            let sweep = email::sweep::sweep(&pool, transport.as_ref(), &rules, tick.at);
            let report = runs.observe(Trigger::Schedule, sweep).await?;
            tracing::info!(schedule = tick.schedule.name, ?report, "email sweep done");
            Ok::<(), email::EmailError>(())
        }
    })
    .await
}
