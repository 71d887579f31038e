//! Stripe events from a file or from our own ledger, through the webhook's own path:
//! [`backfill`] replays a JSONL export, [`export_ledger`] writes one, [`rebuild`] empties the
//! mirror and replays an export into it (after a fix to the mirror rules).

use std::io::BufRead;

use serde::Serialize;
use shared::db::{DbContext, Pool};

use crate::{BillingDeps, BillingError, Ingested, ingest};

/// How a backfill went.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BackfillReport {
    pub applied: u64,
    pub stale: u64,
    pub duplicate: u64,
    pub unsupported: u64,
    /// Events that can never be stored, kept in `quarantine`.
    pub quarantined: u64,
    /// (line number, reason) of lines that are not Stripe events.
    pub rejected: Vec<(usize, String)>,
}

/// Replays a JSONL file of Stripe events (one event per line, as Stripe sends them) through
/// the same path as the webhook. Bad lines are reported and skipped; a database failure stops
/// the replay (rerunning it is safe: applied events become duplicates).
pub async fn backfill(
    deps: &BillingDeps,
    lines: impl BufRead,
) -> Result<BackfillReport, BillingError> {
    let mut report = BackfillReport::default();
    for (index, line) in lines.lines().enumerate() {
        let line =
            line.map_err(|error| BillingError::Malformed(format!("line {}: {error}", index + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        match ingest(deps, line.as_bytes()).await {
            Ok(Ingested::Applied) => report.applied += 1,
            Ok(Ingested::Stale) => report.stale += 1,
            Ok(Ingested::Duplicate) => report.duplicate += 1,
            Ok(Ingested::Unsupported) => report.unsupported += 1,
            Ok(Ingested::Quarantined) => report.quarantined += 1,
            Err(BillingError::Malformed(reason)) => report.rejected.push((index + 1, reason)),
            Err(error) => return Err(error),
        }
    }
    Ok(report)
}
/// Tables the ledger's events are applied to, emptied by [`rebuild`].
const MIRROR_TABLES: &str = "stripe.events, stripe.customers, stripe.products, stripe.prices, \
     stripe.subscriptions, stripe.subscription_items, stripe.invoices, stripe.charges, \
     stripe.disputes, stripe.checkout_sessions, stripe.refunds, stripe.payment_intents, \
     stripe.subscription_mrr, stripe.mrr_changes";

/// Writes every stored Stripe event, oldest first, one JSON payload per line (the format
/// [`backfill`] reads); returns how many.
pub async fn export_ledger(
    pool: &Pool,
    out: &mut impl std::io::Write,
) -> Result<u64, BillingError> {
    let client = pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT payload::text FROM stripe.events ORDER BY created, id",
            &[],
        )
        .await
        .context("read the ledger")?;
    for row in &rows {
        writeln!(out, "{}", row.get::<_, &str>(0))
            .map_err(|error| BillingError::Malformed(format!("write the export: {error}")))?;
    }
    Ok(rows.len() as u64)
}

/// Rebuilds the mirror from a ledger export: empties the ledger and the mirror in one
/// transaction, then replays `export` through the webhook's own path (a fixed mirror rule
/// re-applied to history). The export is the backup: if this stops half-way,
/// `ops billing-backfill <export>` finishes it (what was replayed becomes duplicates).
pub async fn rebuild(
    deps: &BillingDeps,
    export: &std::path::Path,
) -> Result<BackfillReport, BillingError> {
    let file = std::fs::File::open(export)
        .map_err(|error| BillingError::Malformed(format!("{}: {error}", export.display())))?;
    {
        let client = deps.pool.get().await.context("check out a connection")?;
        client
            .batch_execute(&format!("TRUNCATE {MIRROR_TABLES}"))
            .await
            .context("empty the ledger and mirror")?;
    }
    backfill(deps, std::io::BufReader::new(file)).await
}
