//! Shared pieces of the integration tests and benchmarks.
//!
//! * [`attack`] — the hostile-request catalogue, run against the local stack by the suite and
//!   by the `attack` binary against any URL (a `--release` build).
//! * [`browser`] — the Node scripts that drive Chromium for the browser tests.
//! * [`routes`] — a request through a router, answered as status and JSON.
//! * [`test_db`] — one fresh, migrated database per test, created from `DATABASE_URL`.
//! * [`moto`] — SQS queues on the moto server the test command starts (`MOTO_ENDPOINT`).
//! * [`resend_standin`] — Resend's `POST /emails` on a local port, with idempotency and scripted failures.
//! * [`fixtures`] — the workspace and connection rows most tests start from, and fast retries.
//! * [`email_fixtures`] — workspaces, signed-up users and a quick-retrying sender for the email tests.
//! * [`contract`] — the queue contract: the behaviour both transports must show, written
//!   once against the [`shared::queue::Transport`] trait and run against each.
//! * [`stripe_events`] — seeded, realistic Stripe webhook traffic (out of order, duplicated,
//!   same-second chains, two API shapes) and the mirror state it must produce.
//! * [`stripe_check`] — compares a database's `stripe` schema with that state.
//! * [`stripe_account`] — that traffic cut at one second: the account Stripe's API shows
//!   then (for the backfill), the later webhooks, and the state both must leave.

pub mod attack;
pub mod bench_http;
pub mod browser;
pub mod contract;
pub mod email_fixtures;
pub mod fixtures;
pub mod moto;
pub mod resend_standin;
pub mod routes;
pub mod stripe_account;
pub mod stripe_check;
pub mod stripe_events;
pub mod test_db;

/// The local stack's agents with the tests' own Stripe endpoint secret and metrics token,
/// and a Supabase project of their own, so a test proves the stack uses what it is given.
pub fn stack_agents(stripe_secret: &str, metrics_token: &str) -> local_stack::AgentConfigs {
    local_stack::AgentConfigs {
        billing: billing::config::Config {
            webhook_secrets: vec![stripe_secret.into()],
        },
        shopify_webhook: etl::WebhookConfig {
            webhook_secrets: vec!["shopify_test".into()],
            ..etl::WebhookConfig::local()
        },
        metrics_api: metrics::api::Config {
            token: Some(metrics_token.to_string().into()),
            ..metrics::api::Config::local()
        },
        ..local_stack::AgentConfigs::local()
    }
    .with_jwt(shared::jwt::JwtConfig {
        legacy_secret: Some(
            "jwt-test-secret-of-at-least-32-characters"
                .to_string()
                .into(),
        ),
        ..shared::jwt::JwtConfig::local()
    })
}

/// The key-encryption keys the tests seal tokens and hash secrets with: the local stack's,
/// so data a test writes opens in a stack started on the same database.
pub fn test_keys() -> std::sync::Arc<shared::crypto::Keys> {
    std::sync::Arc::new(shared::crypto::Keys::local())
}
