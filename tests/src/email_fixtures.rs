//! People and senders for the email agent's tests: a workspace, members who signed up at a
//! given time (Supabase Auth users with a confirmed address, in the workspace), and a sender
//! whose retries are quick.

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

/// The most common start: a UTC workspace and Ada, who signed up and joined it on
/// 2026-11-30 at 10:00 UTC. Returns (workspace, member).
pub async fn workspace_with_ada(client: &tokio_postgres::Client) -> (Uuid, Uuid) {
    let workspace = workspace(client, "UTC").await;
    let ada = user(client, workspace, "ada", "2026-11-30T10:00:00Z", None).await;
    (workspace, ada)
}

/// A member who signed up at `signed_up_at` as `{handle}@example.com` (confirmed), with
/// `timezone` in their profile (NULL: the workspace's), and joined `workspace`; returns
/// their user id.
pub async fn user(
    client: &tokio_postgres::Client,
    workspace: Uuid,
    handle: &str,
    signed_up_at: &str,
    timezone: Option<&str>,
) -> Uuid {
    let email = format!("{handle}@example.com");
    let signed_up_at: DateTime<Utc> = signed_up_at.parse().expect("an RFC 3339 time");
    let member: Uuid = client
        .query_typed_one(
            "INSERT INTO auth.users (id, aud, role, email, email_confirmed_at, raw_user_meta_data,
                                     created_at, updated_at)
             VALUES (gen_random_uuid(), 'authenticated', 'authenticated', $1, $2,
                     jsonb_strip_nulls(jsonb_build_object('name', 'Ada Lovelace', 'timezone', $3::text)),
                     $2, $2)
             RETURNING id",
            &[
                (&email, Type::TEXT),
                (&signed_up_at, Type::TIMESTAMPTZ),
                (&timezone, Type::TEXT),
            ],
        )
        .await
        .unwrap()
        .get(0);
    crate::fixtures::membership(client, workspace, member, "owner").await;
    member
}

/// The handle a member was created with (`user`'s `handle`).
pub async fn handle(client: &tokio_postgres::Client, member: Uuid) -> String {
    client
        .query_typed_one(
            "SELECT split_part(email, '@', 1) FROM auth.users WHERE id = $1",
            &[(&member, Type::UUID)],
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
