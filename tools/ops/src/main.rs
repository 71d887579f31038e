//! Operator commands, run with the same environment as the functions (`DATABASE_URL`,
//! `QUEUE_TRANSPORT` and the queue URLs, and the agent's own variables), so they act on SQS
//! in AWS and on the Postgres queue locally. Each builds the agent it drives with that
//! agent's own constructor, and goes through the agent's own code path:
//!
//! * `ops redrive <queue>|all|outbox` — moves a queue's dead letters back to it (after the
//!   cause is fixed; the dead-letter alarm says when), or puts the outbox rows the relay set
//!   aside after repeated failures back in line (the status page counts them).
//! * `ops replay stripe --export <file> [--rebuild]` — writes the Stripe ledger to a JSONL
//!   file; with `--rebuild`, empties the mirror and the ledger and replays the file through
//!   the webhook's own path (after a fix to the mirror rules; the file is the backup, and
//!   `ops billing-backfill <file>` finishes an interrupted rebuild).
//! * `ops replay posthog <from> <to> [--workspace <id>]` — derives the people of the stored
//!   events of those UTC days again and asks the metrics agent to recompute each day.
//! * `ops billing-backfill <events.jsonl>` — replays stored Stripe events (one payload per
//!   line) through the webhook's path.
//! * `ops stripe backfill [--restart] [--concurrency N]` — reads every object of the Stripe
//!   account from its list API (`STRIPE_API_KEY`, `STRIPE_API_BASE_URL`) into the mirror
//!   through the webhook's path, continuing from the last stored page; a progress bar shows
//!   how far it is.
//! * `ops etl-backfill <connection> <from> <to>` — re-reads a date range of one connection.
//! * `ops metrics-recompute <workspace> <from> <to>` — recomputes a range of days.
//! * `ops email-preview <d1|d7|d30> <member> [--html]` — prints what that member would receive
//!   now, sending and recording nothing.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use shared::lambda::Container;
use shared::queue::catalog;
use shared::queue::outbox::Outbox;
use shared::settings::Env;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "ops", about = "Operator commands for the growth agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Move dead letters back to their queue (`all` for every queue), or `outbox` rows set
    /// aside back in line.
    Redrive { target: String },
    /// Replay stored events through an agent's own path.
    #[command(subcommand)]
    Replay(Replay),
    /// Replay Stripe events from a JSONL file (one event payload per line).
    BillingBackfill { events: PathBuf },
    /// Read the Stripe account from Stripe's API.
    #[command(subcommand)]
    Stripe(StripeCommand),
    /// Re-read a date range of one ETL connection.
    EtlBackfill {
        connection: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    },
    /// Recompute a workspace's daily metrics over a range.
    MetricsRecompute {
        workspace: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    },
    /// Print the email a member would receive now (`d1`, `d7` or `d30`), sending nothing.
    EmailPreview {
        campaign: email::campaigns::Campaign,
        /// The member's Supabase Auth user id.
        member: Uuid,
        /// Print the HTML part instead of the subject and text.
        #[arg(long)]
        html: bool,
    },
}

#[derive(Subcommand)]
enum StripeCommand {
    /// Backfill the mirror from Stripe's list API, continuing from the last stored page.
    Backfill {
        /// Forget the stored cursors and read everything again.
        #[arg(long)]
        restart: bool,
        /// Objects of a page written at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

#[derive(Subcommand)]
enum Replay {
    /// Write the Stripe ledger to a file; with `--rebuild`, rebuild the mirror from it.
    Stripe {
        #[arg(long)]
        export: PathBuf,
        #[arg(long)]
        rebuild: bool,
    },
    /// Derive the people of stored PostHog events again and recompute those days.
    Posthog {
        from: NaiveDate,
        to: NaiveDate,
        #[arg(long)]
        workspace: Option<Uuid>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let container = Container::init()
        .await
        .map_err(|error| anyhow::anyhow!(error))
        .context("read the environment")?;
    let env = Env::process();
    match cli.command {
        Command::Redrive { target } => redrive(&container, &target).await?,
        Command::Replay(Replay::Stripe { export, rebuild }) => {
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&export)
                    .with_context(|| format!("create {}", export.display()))?,
            );
            let exported = billing::export_ledger(&container.pool, &mut out).await?;
            std::io::Write::flush(&mut out)
                .with_context(|| format!("write {}", export.display()))?;
            println!("{exported} Stripe events written to {}", export.display());
            if rebuild {
                let report = billing::rebuild(&ledger_replayer(&container), &export).await?;
                println!("rebuilt: {report:?}");
            }
        }
        Command::Replay(Replay::Posthog {
            from,
            to,
            workspace,
        }) => {
            let outbox = Outbox::new(container.pool.clone(), container.transport.clone());
            let now = container.clock.now();
            let replayed =
                analytics::store::replay(&container.pool, &outbox, workspace, from, to, now)
                    .await?;
            println!("{replayed:?}");
        }
        Command::BillingBackfill { events } => {
            let file = std::fs::File::open(&events)
                .with_context(|| format!("open {}", events.display()))?;
            let deps = ledger_replayer(&container);
            let report = billing::backfill(&deps, std::io::BufReader::new(file)).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Stripe(StripeCommand::Backfill {
            restart,
            concurrency,
        }) => {
            let api = billing::stripe_api::StripeApi::new(
                billing::stripe_api::ApiConfig::from_env(&env)?,
                container.clock.clone(),
            )?;
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} {msg} — {pos} objects ({per_sec})",
                )
                .context("progress bar template")?,
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let options = billing::BackfillOptions {
                concurrency,
                restart,
            };
            let progress = |progress: billing::backfill::Progress| {
                bar.set_message(format!(
                    "{} page {}",
                    progress.resource.path(),
                    progress.pages
                ));
                bar.set_position(progress.objects);
            };
            let report =
                billing::backfill_from_api(&ledger_replayer(&container), &api, options, &progress)
                    .await;
            bar.finish();
            println!("{}", serde_json::to_string_pretty(&report?)?);
        }
        Command::EtlBackfill {
            connection,
            from,
            to,
        } => {
            let deps = etl::EtlDeps::new(&container, etl::Config::from_env(&env)?)?;
            let report = etl::backfill(&deps, connection, from, to).await?;
            println!("{report:?}");
        }
        Command::MetricsRecompute {
            workspace,
            from,
            to,
        } => {
            let deps = Arc::new(metrics::MetricsDeps::new(&container));
            let days = metrics::recompute(&deps, workspace, from, to).await?;
            println!("recomputed {days} days");
        }
        Command::EmailPreview {
            campaign,
            member,
            html,
        } => {
            let composer = email::composer_from_env(&env)?;
            let now = container.clock.now();
            let rendered = email::send::preview(&container.pool, &composer, campaign, member, now)
                .await?
                .with_context(|| format!("no member {member}"))?;
            if html {
                println!("{}", rendered.html);
            } else {
                println!("Subject: {}\n\n{}", rendered.subject, rendered.text);
            }
        }
    }
    Ok(())
}

/// The billing agent for events from our own ledger or an export of it: no webhook is
/// verified, so it needs no endpoint secret.
fn ledger_replayer(container: &Container) -> billing::BillingDeps {
    let config = billing::config::Config {
        webhook_secrets: Vec::new(),
    };
    billing::BillingDeps::new(container, config)
}

async fn redrive(container: &Container, target: &str) -> anyhow::Result<()> {
    if target == "outbox" {
        let moved = shared::queue::outbox::redrive(&container.pool).await?;
        println!("outbox: {moved} rows set aside put back in line");
        return Ok(());
    }
    let queues: Vec<&str> = if target == "all" {
        catalog::QUEUES.iter().map(|queue| queue.name).collect()
    } else {
        let names: Vec<&str> = catalog::QUEUES.iter().map(|queue| queue.name).collect();
        vec![
            catalog::find(target)
                .with_context(|| format!("unknown queue {target}; one of {}", names.join(", ")))?
                .name,
        ]
    };
    for queue in queues {
        let moved = container
            .transport
            .redrive(queue)
            .await
            .with_context(|| format!("re-drive {queue}"))?;
        println!("{queue}: {moved} dead letters moved back");
    }
    Ok(())
}
