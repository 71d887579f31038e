//! Shared pieces of the integration tests and benchmarks.
//!
//! * [`test_db`] — one fresh, migrated database per test, created from `DATABASE_URL`.
//! * [`moto`] — SQS queues on the moto server the test command starts (`MOTO_ENDPOINT`).
//! * [`contract`] — the queue contract: the behaviour both transports must show, written
//!   once against the [`shared::queue::Transport`] trait and run against each.

pub mod contract;
pub mod moto;
pub mod test_db;
