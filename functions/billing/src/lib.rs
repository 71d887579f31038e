//! The billing agent: Stripe webhooks into Supabase, exactly once, newest state wins.
//!
//! Stripe calls `POST /webhooks/stripe` ([`router`]). After the signature check, [`ingest`]
//! handles one event in one transaction:
//!
//! 1. events of types we do not model go to the ledger (`stripe.events`) and nowhere else;
//! 2. otherwise the object is locked (`pg_advisory_xact_lock` on its id, so two events of one
//!    object never interleave) and its stored version read;
//! 3. [`ordering::is_newer`] decides whether the event carries newer state; deleted objects
//!    are terminal;
//! 4. the ledger row is inserted — if the event id is already there this is a duplicate and
//!    the transaction is abandoned, so a redelivery changes nothing;
//! 5. a newer event rewrites the mirror row ([`mirror`]); a subscription also rewrites its
//!    items and its revenue facts ([`revenue`]); a revenue-bearing change asks the metrics
//!    agent to recompute that workspace's day (outbox, dispatched after commit).
//!
//! Webhooks never reach Stripe's API: every column comes from the event payload. Only the
//! operator's backfill ([`backfill`], `ops stripe backfill`) reads the API ([`stripe_api`]),
//! turning each object read into an API read that takes the same transaction; the ordering
//! rule never lets it overwrite a newer event.
//!
//! What can go wrong, and what Stripe hears (Stripe retries every non-2xx for three days):
//!
//! * not a snapshot event → 400 with the reason;
//! * an event we can never store — `\u0000` anywhere in it, money that overflows an exact
//!   decimal ([`revenue::Overflow`]), a value the database refuses (a number out of range, a
//!   time PostgreSQL cannot hold) — is acknowledged 200 `quarantined` and kept with the
//!   reason in `quarantine` ([`shared::quarantine`]): retrying cannot help, and it must not
//!   hold back the events of other objects;
//! * a transient failure (lost connection, serialization failure, a lock or statement
//!   timeout of the transaction's [`Budget::REQUEST`]) is retried in-process, then answered
//!   503 with `Retry-After` so Stripe redelivers; nothing is half-written because
//!   everything is one transaction;
//! * anything else is our defect: 500, and the redelivery succeeds once it is fixed.
//!
//! Layout: [`event`] parses a delivery; [`ingest`] is the transaction; `writes` builds its
//! statements from the [`mirror`]'s field lists; [`http`] is the route; [`replay`] feeds
//! stored events through the same path; [`backfill`] pages Stripe's list API through it,
//! a page's plain rows of one table sharing one transaction (`ingest_batch`, the same steps
//! as arrays); [`config`] builds the agent.

pub mod backfill;
pub mod config;
pub mod event;
pub mod http;
pub mod ingest;
mod ingest_batch;
pub mod mirror;
pub mod ordering;
pub mod replay;
pub mod revenue;
pub mod stripe_api;
mod writes;

pub use backfill::{ApiBackfillReport, BackfillOptions, backfill_from_api};
pub use event::StripeEvent;
pub use http::router;
pub use ingest::{ingest, ingest_event};
pub use replay::{BackfillReport, backfill, export_ledger, rebuild};

use std::sync::Arc;

use serde::Serialize;
use shared::db::{DbError, Pool};
use shared::queue::{QueueError, Transport};
use shared::retry::{RetryClass, Retryable};

/// Stripe events are a few kilobytes; anything near this is not one.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// Stripe's ids are at most 255 characters; a longer one is not Stripe's (and would not fit
/// a btree index entry).
pub const MAX_ID_BYTES: usize = 255;

/// What the billing agent needs.
pub struct BillingDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    pub clock: shared::clock::Clock,
    /// Endpoint secrets; several while one is being rolled.
    pub webhook_secrets: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The payload is not a Stripe event; retrying cannot help.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The event is Stripe's but can never be stored (money that overflows, `\u0000`); it is
    /// quarantined, not retried.
    #[error("the event cannot be stored: {0}")]
    Unstorable(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// SQLSTATE 54000: a value too large for the server's limits (a text too long for its
/// btree index entry). Like the refused values of [`DbError::is_refused_value`], the same
/// event fails the same way every time.
const PROGRAM_LIMIT_EXCEEDED: &str = "54000";

impl BillingError {
    /// Why this event can never be stored, when that is what went wrong.
    fn unstorable_reason(&self) -> Option<String> {
        match self {
            BillingError::Unstorable(reason) => Some(reason.clone()),
            BillingError::Db(error) if error.is_refused_value() || exceeds_limits(error) => {
                Some(error.to_string())
            }
            _ => None,
        }
    }
}

fn exceeds_limits(error: &DbError) -> bool {
    matches!(error, DbError::Postgres { source, .. }
        if source.code().is_some_and(|code| code.code() == PROGRAM_LIMIT_EXCEEDED))
}

impl Retryable for BillingError {
    fn retry_class(&self) -> RetryClass {
        match self {
            BillingError::Malformed(_) | BillingError::Unstorable(_) => RetryClass::Permanent,
            BillingError::Db(error) => error.retry_class(),
            BillingError::Queue(error) => error.retry_class(),
        }
    }
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ingested {
    /// The mirror now shows this event's state.
    Applied,
    /// Recorded; the mirror already held a newer state (or the object was deleted).
    Stale,
    /// Already recorded: nothing changed.
    Duplicate,
    /// Recorded in the ledger; the type is not mirrored.
    Unsupported,
    /// It can never be stored: kept in `quarantine` with the reason, nothing else written.
    Quarantined,
}
