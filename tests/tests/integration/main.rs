//! Integration tests, in one binary so they share one build.
//!
//! Modules under `pg` need only PostgreSQL (each test gets a fresh database) and run twice
//! in the test command: directly and through PgBouncer in transaction mode. `sqs` needs the
//! moto server, `tls` the test command's TLS-enabled cluster, `sdk_clients` the official
//! PostHog and Mixpanel SDKs (`scripts/install-sdk-clients.sh`); `adapters`, `jwks` and
//! `template` need nothing running (`jwks` starts its own Supabase Auth stand-in); `browser`
//! and `browser_sdks` need Node, playwright-core, the browser SDKs and Chromium (all
//! installed by `scripts/install-sdk-clients.sh`).

mod adapters;
mod agents_e2e;
mod attack;
mod bounded_waits;
mod browser;
mod browser_sdks;
mod jwks;
mod local_stack;
mod pg;
mod sdk_clients;
mod sqs;
mod template;
mod tls;
