//! Supabase's `auth` schema and API roles for plain PostgreSQL: what the migrations and the
//! row level security policies expect a Supabase project to have (`auth.users`, `auth.uid()`,
//! `auth.jwt()`, the roles `anon`, `authenticated` and `service_role`). The tests and the
//! local stack run it before the migrations; on a Supabase database it does nothing.

use anyhow::Context;

/// The definitions, as Supabase makes them (see the file's header).
pub const SQL: &str = include_str!("../sql/supabase_auth.sql");

/// Creates the schema and roles unless `auth.users` already exists. Returns whether it did.
pub async fn install_where_missing(client: &tokio_postgres::Client) -> anyhow::Result<bool> {
    let present: bool = client
        .query_one("SELECT to_regclass('auth.users') IS NOT NULL", &[])
        .await
        .context("look for auth.users")?
        .get(0);
    if present {
        return Ok(false);
    }
    client
        .batch_execute(SQL)
        .await
        .context("create the Supabase auth schema")?;
    Ok(true)
}
