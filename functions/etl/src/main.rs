//! Lambda entrypoint of the ETL agent. One function serves both halves: the `etl-meta`,
//! `etl-tiktok` and `etl-shopify` schedules dispatch runs onto `etl.fifo`, and batches from
//! `etl.fifo` execute them (group = platform and account, so one account's runs never
//! overlap). One queue has one consumer, hence one function for every platform.
//!
//! As a command, `etl backfill <connection-id> <from> <to>` re-reads a date range through the
//! same path. Base URLs: see [`etl::Endpoints::from_lookup`]. The Shopify webhook route is served by the
//! `shopify-webhook` binary, an HTTP function.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use etl::{Endpoints, EtlDeps, EtlRun, Platform};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};
use shared::lambda::schedule::tick_from_event;
use shared::lambda::{Container, LambdaError};
use shared::retry::RetryPolicy;
use shared::runs::{RunLog, Trigger};

async fn handle(
    deps: &EtlDeps,
    runs: &RunLog,
    payload: Value,
    holder: &str,
) -> Result<Value, LambdaError> {
    if payload.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(payload)?;
        // A run that fails is recorded and alerted, and the next schedule tries again, so
        // only infrastructure errors (database, lease bookkeeping) send a message back.
        let response = shared::lambda::sqs::handle_batch(&event, |run: EtlRun| async move {
            runs.observe_judged(
                Trigger::Queue,
                etl::run(deps, &run, holder),
                etl::RunReport::judged,
            )
            .await
            .map(|_| ())
        })
        .await?;
        return Ok(serde_json::to_value(response)?);
    }
    let event: EventBridgeEvent = serde_json::from_value(payload)?;
    let tick = tick_from_event(&event)?;
    let platform = Platform::for_schedule(tick.schedule)
        .ok_or_else(|| format!("schedule {} does not dispatch ETL runs", tick.schedule.name))?;
    let enqueued = runs
        .observe(
            Trigger::Schedule,
            etl::dispatch(deps, platform, tick.at.date_naive()),
        )
        .await?;
    Ok(json!({ "enqueued": enqueued }))
}

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let deps = Arc::new(EtlDeps {
        pool: container.pool,
        transport: container.transport,
        clock: container.clock,
        keys: Arc::new(shared::crypto::Keys::from_env(&shared::settings::Env(
            &|name| std::env::var(name).ok(),
        ))?),
        http: etl::http_client(Duration::from_secs(60))?,
        endpoints: Endpoints::from_lookup(|name| std::env::var(name).ok()),
        retry: RetryPolicy::default(),
        meta_app_secret: etl::meta_app_secret(|name| std::env::var(name).ok()),
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, connection, from, to] = args.as_slice()
        && command == "backfill"
    {
        let report = etl::backfill(&deps, connection.parse()?, from.parse()?, to.parse()?).await?;
        println!("{report:?}");
        return Ok(());
    }
    if !args.is_empty() {
        return Err(
            "usage: etl [backfill <connection-id> <from YYYY-MM-DD> <to YYYY-MM-DD>]".into(),
        );
    }
    let runs = RunLog::new(deps.pool.clone(), "etl");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (deps, runs) = (deps.clone(), runs.clone());
        async move { handle(&deps, &runs, event.payload, &event.context.request_id).await }
    }))
    .await
}
