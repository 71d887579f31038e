//! Shared pieces of the integration tests and benchmarks.
//!
//! * [`attack`] — the hostile-request catalogue, run against the local stack by the suite and
//!   by the `attack` binary against any URL (a `--release` build).
//! * [`test_db`] — one fresh, migrated database per test, created from `DATABASE_URL`.
//! * [`moto`] — SQS queues on the moto server the test command starts (`MOTO_ENDPOINT`).
//! * [`resend_standin`] — Resend's `POST /emails` on a local port, with idempotency and scripted failures.
//! * [`email_fixtures`] — workspaces, signed-up users and a quick-retrying sender for the email tests.
//! * [`contract`] — the queue contract: the behaviour both transports must show, written
//!   once against the [`shared::queue::Transport`] trait and run against each.
//! * [`stripe_events`] — seeded, realistic Stripe webhook traffic (out of order, duplicated,
//!   same-second chains, two API shapes) and the mirror state it must produce.
//! * [`stripe_check`] — compares a database's `stripe` schema with that state.

pub mod attack;
pub mod bench_http;
pub mod contract;
pub mod email_fixtures;
pub mod moto;
pub mod resend_standin;
pub mod stripe_check;
pub mod stripe_events;
pub mod test_db;

/// The key-encryption keys the tests seal tokens and hash secrets with: the local stack's,
/// so data a test writes opens in a stack started on the same database.
pub fn test_keys() -> std::sync::Arc<shared::crypto::Keys> {
    std::sync::Arc::new(
        shared::crypto::Keys::parse(local_stack::DEFAULT_ENCRYPTION_KEYS)
            .expect("the local key parses"),
    )
}
