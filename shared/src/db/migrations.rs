//! Applies the SQL files of `migrations/` in order and records each one where the Supabase
//! CLI records its own (`supabase_migrations.schema_migrations`), so `supabase db push` and
//! this runner agree on what a database already has.
//!
//! The files are embedded at build time (see `build.rs`), so the local stack and the tests
//! need nothing on disk. Each file runs in its own transaction under a transaction-scoped
//! advisory lock: two processes migrating at once apply every file exactly once, and the lock
//! cannot leak through a transaction pooler the way a session lock would.

use tokio_postgres::types::Type;

use super::{DbContext, DbError};

/// One embedded migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The 14-digit timestamp prefix, which the CLI treats as the version.
    pub version: &'static str,
    pub name: &'static str,
    pub sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Every migration in the repository, oldest first.
pub fn all() -> &'static [Migration] {
    MIGRATIONS
}

const HISTORY_DDL: &str = "
    CREATE SCHEMA IF NOT EXISTS supabase_migrations;
    CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (
        version text NOT NULL PRIMARY KEY,
        statements text[],
        name text
    );";

/// Applies what is missing; returns the versions applied by this call.
pub async fn apply(client: &mut tokio_postgres::Client) -> Result<Vec<&'static str>, DbError> {
    apply_set(client, MIGRATIONS).await
}

pub async fn apply_set(
    client: &mut tokio_postgres::Client,
    migrations: &'static [Migration],
) -> Result<Vec<&'static str>, DbError> {
    let mut applied = Vec::new();
    for migration in migrations {
        let transaction = client.transaction().await.context("begin migration")?;
        transaction
            .batch_execute("SELECT pg_advisory_xact_lock(hashtext('supabase_migrations'))")
            .await
            .context("lock migrations")?;
        transaction
            .batch_execute(HISTORY_DDL)
            .await
            .context("create migration history")?;
        let done = transaction
            .query_typed_opt(
                "SELECT 1 FROM supabase_migrations.schema_migrations WHERE version = $1",
                &[(&migration.version, Type::TEXT)],
            )
            .await
            .context("read migration history")?
            .is_some();
        if done {
            transaction.rollback().await.context("end migration")?;
            continue;
        }
        transaction
            .batch_execute(migration.sql)
            .await
            .map_err(|source| DbError::Postgres {
                context: "apply migration",
                source,
            })?;
        transaction
            .execute_typed(
                "INSERT INTO supabase_migrations.schema_migrations (version, name, statements) VALUES ($1, $2, ARRAY[$3])",
                &[
                    (&migration.version, Type::TEXT),
                    (&migration.name, Type::TEXT),
                    (&migration.sql, Type::TEXT),
                ],
            )
            .await
            .context("record migration")?;
        transaction.commit().await.context("commit migration")?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        applied.push(migration.version);
    }
    Ok(applied)
}

/// The newest version recorded in the database; `None` when nothing was ever applied.
pub async fn current_version(client: &tokio_postgres::Client) -> Result<Option<String>, DbError> {
    let history = client
        .query_typed_one(
            "SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .context("look for migration history")?;
    if !history.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client
        .query_typed_one(
            "SELECT max(version) FROM supabase_migrations.schema_migrations",
            &[],
        )
        .await
        .context("read migration version")?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_as_the_supabase_cli_names_them() {
        assert!(!all().is_empty());
        for migration in all() {
            assert_eq!(migration.version.len(), 14, "{migration:?}");
            assert!(migration.version.bytes().all(|b| b.is_ascii_digit()));
            assert!(!migration.name.is_empty());
        }
        let versions: Vec<_> = all().iter().map(|m| m.version).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(versions, sorted, "versions must be unique and in order");
    }
}
