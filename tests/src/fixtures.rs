//! The rows most tests start from — a workspace, a member, a platform connection — and a retry
//! policy quick enough for tests. They live here once, so a change to these tables or to
//! the retry defaults is one edit, not one per test file.

use std::time::Duration;

use shared::retry::RetryPolicy;
use tokio_postgres::{GenericClient, types::Type};
use uuid::Uuid;

/// A new workspace with the schema's defaults (UTC, USD), returning its id.
pub async fn workspace(client: &impl GenericClient, name: &str) -> Uuid {
    client
        .query_typed_one(
            "INSERT INTO workspaces (name) VALUES ($1) RETURNING id",
            &[(&name, Type::TEXT)],
        )
        .await
        .expect("insert workspace")
        .get(0)
}

/// The product's own analytics workspace (members' actions and email outcomes land there).
pub async fn product_workspace(client: &impl GenericClient) -> Uuid {
    client
        .query_typed_one(
            "INSERT INTO workspaces (name, is_product) VALUES ('Product analytics', true) RETURNING id",
            &[],
        )
        .await
        .expect("insert the product workspace")
        .get(0)
}

/// A member as Supabase Auth creates one when a person signs up and confirms `email`,
/// returning their user id (the `sub` of their access tokens).
pub async fn auth_user(client: &impl GenericClient, email: &str) -> Uuid {
    client
        .query_typed_one(
            "INSERT INTO auth.users (id, aud, role, email, email_confirmed_at, created_at, updated_at)
             VALUES (gen_random_uuid(), 'authenticated', 'authenticated', $1, now(), now(), now())
             RETURNING id",
            &[(&email, Type::TEXT)],
        )
        .await
        .expect("insert auth user")
        .get(0)
}

/// `user` joins `workspace` as `role` (`owner`, `admin`, `member`).
pub async fn membership(client: &impl GenericClient, workspace: Uuid, user: Uuid, role: &str) {
    client
        .execute_typed(
            "INSERT INTO workspace_members (workspace_id, user_id, role) VALUES ($1, $2, $3)",
            &[
                (&workspace, Type::UUID),
                (&user, Type::UUID),
                (&role, Type::TEXT),
            ],
        )
        .await
        .expect("insert membership");
}

/// A connection of `workspace` to `account` on `platform` (`meta`, `tiktok`, `shopify`),
/// holding `token` in plain text as a connection created before sealing would, in USD.
pub async fn connection(
    client: &impl GenericClient,
    workspace: Uuid,
    platform: &str,
    account: &str,
    token: &str,
) -> Uuid {
    client
        .query_typed_one(
            "INSERT INTO connections (workspace_id, platform, external_account_id, access_token, currency)
             VALUES ($1, $2, $3, $4, 'USD') RETURNING id",
            &[
                (&workspace, Type::UUID),
                (&platform, Type::TEXT),
                (&account, Type::TEXT),
                (&token, Type::TEXT),
            ],
        )
        .await
        .expect("insert connection")
        .get(0)
}

/// Retries after 10 ms, at most 50 ms apart: the real schedule's shape without its waits.
pub fn fast_retries(max_retries: usize) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
}
