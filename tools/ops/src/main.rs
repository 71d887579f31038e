//! Operator commands, run with the same environment as the functions (`DATABASE_URL`,
//! `QUEUE_TRANSPORT` and the queue URLs), so they act on SQS in AWS and on the Postgres queue
//! locally:
//!
//! * `ops redrive <queue>|all` — moves a queue's dead letters back to it (after the cause is
//!   fixed; the dead-letter alarm says when).
//! * `ops redrive outbox` — puts the outbox rows the relay set aside after repeated failures
//!   back in line (the status page counts them).
//! * `ops replay stripe --export <file> [--rebuild]` — writes the Stripe ledger to a JSONL
//!   file; with `--rebuild`, empties the mirror and the ledger and replays the file through
//!   the webhook's own path (after a fix to the mirror rules; the file is the backup, and
//!   `billing backfill <file>` finishes an interrupted rebuild).
//! * `ops replay posthog <from> <to> [--workspace <id>]` — derives the people of the stored
//!   events of those UTC days again and asks the metrics agent to recompute each day.

use anyhow::{Context, bail};
use chrono::NaiveDate;
use shared::queue::catalog;
use shared::queue::outbox::Outbox;
use shared::settings::Settings;

const USAGE: &str = "usage:
  ops redrive <queue>|all
  ops redrive outbox
  ops replay stripe --export <file.jsonl> [--rebuild]
  ops replay posthog <from YYYY-MM-DD> <to YYYY-MM-DD> [--workspace <uuid>]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let settings = Settings::from_env().context("read the environment")?;
    let pool = shared::db::connect(&settings.database)?;
    let transport = shared::queue::connect(&settings.queue, &pool).await;
    match words.as_slice() {
        ["redrive", "outbox"] => {
            let moved = shared::queue::outbox::redrive(&pool).await?;
            println!("outbox: {moved} rows set aside put back in line");
        }
        ["redrive", queue] => {
            let queues: Vec<&str> = if *queue == "all" {
                catalog::QUEUES.iter().map(|queue| queue.name).collect()
            } else {
                vec![
                    catalog::find(queue)
                        .with_context(|| format!("unknown queue {queue}; one of {}", names()))?
                        .name,
                ]
            };
            for queue in queues {
                let moved = transport
                    .redrive(queue)
                    .await
                    .with_context(|| format!("re-drive {queue}"))?;
                println!("{queue}: {moved} dead letters moved back");
            }
        }
        ["replay", "stripe", "--export", file, rest @ ..] => {
            let path = std::path::Path::new(file);
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("create {file}"))?,
            );
            let exported = billing::export_ledger(&pool, &mut out).await?;
            std::io::Write::flush(&mut out).with_context(|| format!("write {file}"))?;
            println!("{exported} Stripe events written to {file}");
            match rest {
                [] => {}
                ["--rebuild"] => {
                    // No webhook is verified here: the events come from our own ledger.
                    let deps = billing::BillingDeps {
                        pool: pool.clone(),
                        transport,
                        clock: shared::clock::Clock::system(),
                        webhook_secrets: Vec::new(),
                    };
                    let report = billing::rebuild(&deps, path).await?;
                    println!("rebuilt: {report:?}");
                }
                _ => bail!("{USAGE}"),
            }
        }
        ["replay", "posthog", from, to, rest @ ..] => {
            let workspace = match rest {
                [] => None,
                ["--workspace", id] => Some(id.parse::<uuid::Uuid>().context("--workspace")?),
                _ => bail!("{USAGE}"),
            };
            let from: NaiveDate = from.parse().context("from")?;
            let to: NaiveDate = to.parse().context("to")?;
            let outbox = Outbox::new(pool.clone(), transport);
            let replayed = analytics::store::replay(
                &pool,
                &outbox,
                workspace,
                from,
                to,
                shared::clock::Clock::system().now(),
            )
            .await?;
            println!("{replayed:?}");
        }
        _ => bail!("{USAGE}"),
    }
    Ok(())
}

fn names() -> String {
    catalog::QUEUES
        .iter()
        .map(|queue| queue.name)
        .collect::<Vec<_>>()
        .join(", ")
}
