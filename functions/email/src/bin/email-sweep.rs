//! Lambda entrypoint of the hourly sweep (the `email-sweep` EventBridge rule): queue each
//! user due a campaign now. Campaign rules come from `EMAIL_CAMPAIGNS_FILE` or the shipped
//! `campaigns.toml`.

use email::campaigns::Rules;
use shared::lambda::{Container, LambdaError};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let rules = Rules::from_lookup(|name| std::env::var(name).ok())?;
    let (pool, transport) = (container.pool, container.transport);
    shared::lambda::schedule::serve(move |tick| {
        let (pool, transport, rules) = (pool.clone(), transport.clone(), rules.clone());
        async move {
            let report = email::sweep::sweep(&pool, transport.as_ref(), &rules, tick.at).await?;
            tracing::info!(schedule = tick.schedule.name, ?report, "email sweep done");
            Ok::<(), email::EmailError>(())
        }
    })
    .await
}
