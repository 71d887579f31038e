//! Tests against a real PostgreSQL, one fresh database each.

mod analytics;
mod billing;
mod billing_backfill;
mod billing_load;
mod browser_routes;
mod consumer;
mod email;
mod etl;
mod etl_async;
mod lease;
mod member_api;
mod member_email;
mod metrics;
mod migrations;
mod outbox;
mod pool;
mod queue_contract;
mod retry;
mod rls;
mod shopify;
mod status;
mod suggestions;
