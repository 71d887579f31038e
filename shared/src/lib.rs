//! The runtime every agent stands on.
//!
//! Each agent is one AWS Lambda (a binary under `functions/`) whose domain logic lives in a
//! library that the Lambda entrypoint, the local stack and the tests call identically. This
//! crate is what they share:
//!
//! * [`adoption`] — the suggestion adoption KPI, read by the suggestions API and the status page.
//! * [`agents`] — the agents' names, once: run log, status page, schedules, queues, template.
//! * [`settings`] — one typed struct read once from the environment; secrets stay wrapped.
//! * [`clock`] — the one source of "now", fixed or shifted in tests.
//! * [`telemetry`] — JSON logs inside Lambda, readable logs on a terminal.
//! * [`db`] — the connection pool (TLS for Supabase, safe behind a transaction pooler), the
//!   migration runner shared by tests and the local stack, and error classification.
//! * [`retry`] — bounded exponential backoff with jitter, only for transient failures.
//! * [`lease`] — row leases with fencing tokens, for long work that must not overlap.
//! * [`queue`] — typed messages with group and deduplication ids, the transactional outbox,
//!   and two transports behind one trait: SQS FIFO in AWS, a Postgres queue locally.
//! * [`http`] — the HTTP edge: [`http::ApiError`], the bearer and Supabase-user extractors,
//!   body limit, CORS, and the layer that turns a panic into a 500 and an overrun into a 503.
//! * [`membership`] — who may read a workspace through the member APIs: its members (by
//!   their access token) or a server with the API's service token.
//! * [`entry`] — an agent's queue consumer and schedule handler, instrumented by the run log.
//! * [`lambda`] — adapters from Lambda events (HTTP, SQS FIFO batches, schedules) to the
//!   agents' handlers.
//! * [`events`] — the `events` table, written by the analytics and the email agents alike;
//!   [`people`] — the audience's people those events and Mixpanel's people updates describe.
//! * [`messages`] — the messages agents send each other (body, group, deduplication id).
//! * [`runs`] — the agents' run log (`agent_runs`, and embedded metrics inside Lambda).
//! * [`schedule`] — the schedules, defined once and mirrored by `infra/template.yaml`.
//! * [`webhook`] — HMAC signature checks for Stripe, Shopify and Svix (Resend).
//! * [`crypto`] — platform tokens sealed (AES-256-GCM envelopes), webhook secrets hashed.
//! * [`jwt`] — Supabase access tokens (ES256/RS256 from the project's published keys, HS256
//!   legacy), every claim checked against our clock.
//! * [`redact`] — credentials removed from any text before it is stored or shown.
//! * [`text`] — outside text cut on character boundaries and checked for what PostgreSQL
//!   refuses; [`quarantine`] keeps deliveries it refused anyway.
//!
//! The rules behind these choices (no named statements, no session state, leases instead of
//! session locks) are explained in `docs/architecture.md`, "Rules of the shared state".

pub mod adoption;
pub mod agents;
pub mod clock;
pub mod crypto;
pub mod db;
pub mod entry;
pub mod events;
pub mod http;
pub mod jwt;
pub mod lambda;
pub mod lease;
pub mod membership;
pub mod messages;
pub mod people;
pub mod quarantine;
pub mod queue;
pub mod redact;
pub mod retry;
pub mod runs;
pub mod schedule;
pub mod settings;
pub mod telemetry;
pub mod text;
pub mod webhook;
