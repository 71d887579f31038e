//! People and senders for the email agent's tests: a workspace, users who signed up at a given
//! time, and a sender whose retries are quick.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use email::send::{Composer, SenderDeps};
use email::unsubscribe::TokenSigner;
use shared::db::Pool;
use shared::retry::RetryPolicy;
use tokio_postgres::types::Type;
use uuid::Uuid;

pub const UNSUBSCRIBE_SECRET: &str = "test-unsubscribe-secret";
pub const BASE_URL: &str = "https://api.example.test";

pub async fn workspace(client: &tokio_postgres::Client, timezone: &str) -> Uuid {
    client
        .query_typed_one(
            "INSERT INTO workspaces (name, timezone) VALUES ('Lovelace Labs', $1) RETURNING id",
            &[(&timezone, Type::TEXT)],
        )
        .await
        .unwrap()
        .get(0)
}

/// The most common start: a UTC workspace and Ada, who signed up there on 2026-11-30 at
/// 10:00 UTC. Returns (workspace, user).
pub async fn workspace_with_ada(client: &tokio_postgres::Client) -> (Uuid, Uuid) {
    let workspace = workspace(client, "UTC").await;
    let ada = user(client, workspace, "ada", "2026-11-30T10:00:00Z", None).await;
    (workspace, ada)
}

/// A user who signed up at `signed_up_at`, in `timezone` (NULL: the workspace's).
pub async fn user(
    client: &tokio_postgres::Client,
    workspace: Uuid,
    distinct_id: &str,
    signed_up_at: &str,
    timezone: Option<&str>,
) -> Uuid {
    let email = format!("{distinct_id}@example.com");
    let signed_up_at: DateTime<Utc> = signed_up_at.parse().expect("an RFC 3339 time");
    client
        .query_typed_one(
            "INSERT INTO users (workspace_id, distinct_id, email, name, timezone, signed_up_at)
             VALUES ($1, $2, $3, 'Ada Lovelace', $4, $5) RETURNING id",
            &[
                (&workspace, Type::UUID),
                (&distinct_id, Type::TEXT),
                (&email, Type::TEXT),
                (&timezone, Type::TEXT),
                (&signed_up_at, Type::TIMESTAMPTZ),
            ],
        )
        .await
        .unwrap()
        .get(0)
}

/// The `email` agent as its Lambda builds it, sending through `provider`, with fast retries.
pub fn sender(pool: &Pool, provider: Arc<dyn email::provider::EmailProvider>) -> SenderDeps {
    let transport = Arc::new(shared::queue::postgres::PostgresTransport::new(
        pool.clone(),
    ));
    let container =
        shared::lambda::Container::new(pool.clone(), transport, shared::clock::Clock::system());
    let config = email::send::Config {
        provider,
        composer: Composer {
            templates: email::templates::Templates::new(),
            signer: TokenSigner::new(vec![UNSUBSCRIBE_SECRET.into()]),
            from: "Growth Agents <hello@example.test>".into(),
            product: "Growth Agents".into(),
            public_base_url: BASE_URL.into(),
            app_url: "https://app.example.test/".into(),
        },
    };
    SenderDeps {
        retry: RetryPolicy {
            first_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            jitter_seed: Some(7),
            ..RetryPolicy::default()
        },
        ..SenderDeps::new(&container, config)
    }
}
