//! The billing agent's entrypoint: the Lambda behind `POST /webhooks/stripe`, or, as
//! `billing backfill <events.jsonl>`, a replay of stored Stripe events through the same code.

use std::sync::Arc;

use shared::lambda::{Container, LambdaError};

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = Arc::new(billing::BillingDeps {
        pool: container.pool,
        transport: container.transport,
        clock: container.clock,
        webhook_secrets: billing::webhook_secrets(|name| std::env::var(name).ok())?,
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => shared::lambda::http::serve(billing::router(deps)).await,
        [command, path] if command == "backfill" => {
            let file = std::fs::File::open(path).map_err(|error| format!("{path}: {error}"))?;
            let report = billing::backfill(&deps, std::io::BufReader::new(file)).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        _ => Err("usage: billing [backfill <events.jsonl>]".into()),
    }
}
