//! Deliveries that can never be stored, kept aside instead of retried for ever.
//!
//! A webhook sender (Stripe, Shopify, Resend, PostHog) retries any non-2xx for days. When the
//! database refuses what a delivery carries — a number out of range, `\u0000` in text, a value
//! a CHECK forbids — retrying cannot help, and a 5xx would only make the sender hammer us
//! with it. The agent then acknowledges the delivery and [`keep`]s it here with the reason,
//! byte for byte, in a transaction of its own; the status page shows what is waiting.

use tokio_postgres::types::Type;

use crate::db::{DbContext, DbError, Pool};

/// One refused delivery.
#[derive(Debug, Clone, Copy)]
pub struct Quarantined<'a> {
    /// Who sent it: `stripe`, `shopify`, `resend`, `posthog-webhook`.
    pub source: &'a str,
    /// The sender's id for the delivery (event id, webhook id, svix id), so a redelivery is
    /// kept once.
    pub key: &'a str,
    pub reason: &'a str,
    /// The body exactly as it arrived.
    pub payload: &'a [u8],
}

/// Longest key and reason kept: both come from outside.
const MAX_TEXT: usize = 1_000;

/// Keeps a refused delivery; false when the same (source, key) was kept before.
pub async fn keep(pool: &Pool, item: Quarantined<'_>) -> Result<bool, DbError> {
    let key = crate::text::clip(item.key, MAX_TEXT);
    let reason = crate::redact::credentials(crate::text::clip(item.reason, MAX_TEXT));
    let client = pool.get().await.context("check out a connection")?;
    let inserted = client
        .execute_typed(
            "INSERT INTO quarantine (source, key, reason, payload) VALUES ($1, $2, $3, $4)
             ON CONFLICT (source, key) DO NOTHING",
            &[
                (&item.source, Type::TEXT),
                (&crate::text::without_nul(key).as_ref(), Type::TEXT),
                (&crate::text::without_nul(&reason).as_ref(), Type::TEXT),
                (&item.payload, Type::BYTEA),
            ],
        )
        .await
        .context("keep a refused delivery")?;
    Ok(inserted == 1)
}

/// What the quarantine holds from the last 7 days, per source: (source, count, newest
/// reason).
pub async fn summary(pool: &Pool) -> Result<Vec<(String, i64, String)>, DbError> {
    let client = pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT source, count(*), (array_agg(reason ORDER BY received_at DESC))[1]
               FROM quarantine WHERE received_at > now() - interval '7 days'
              GROUP BY source ORDER BY source",
            &[],
        )
        .await
        .context("read the quarantine")?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}
