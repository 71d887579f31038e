//! Integration tests, in one binary so they share one build.
//!
//! Modules under `pg` need only PostgreSQL (each test gets a fresh database) and run twice
//! in the test command: directly and through PgBouncer in transaction mode. `sqs` needs the
//! moto server, `tls` the test command's TLS-enabled cluster; `adapters` and `template` need
//! nothing running.

mod adapters;
mod local_stack;
mod pg;
mod sqs;
mod template;
mod tls;
