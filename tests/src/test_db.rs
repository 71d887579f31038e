//! A fresh database per test, so tests run in parallel without seeing each other's rows.
//!
//! `DATABASE_URL` names a server and a database to connect to for `CREATE DATABASE`; the
//! test command points it either straight at PostgreSQL or at PgBouncer in transaction mode,
//! and every test must pass both ways.

use std::time::Duration;

use secrecy::SecretString;
use shared::db::{Pool, migrations};
use shared::settings::DatabaseSettings;

pub struct TestDb {
    pub name: String,
    pub url: String,
}

/// The admin URL, or a clear instruction when it is missing.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL",
    )
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    let server = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// A direct (unpooled) connection, for set-up statements and for tests that need to control
/// exactly which session runs what.
pub async fn raw_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connect to {url}: {error}"));
    tokio::spawn(connection);
    client
}

impl TestDb {
    /// Creates a database as a new Supabase project has it: no migrations, but the `auth`
    /// schema and API roles Supabase provides (created here, as PostgreSQL has none).
    pub async fn empty() -> Self {
        let admin = admin_url();
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        raw_connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("CREATE DATABASE");
        let url = with_database(&admin, &name);
        let db = Self { name, url };
        local_stack::supabase_auth::install_where_missing(&db.client().await)
            .await
            .expect("create the Supabase auth schema");
        db
    }

    /// Creates a database with every migration applied.
    pub async fn new() -> Self {
        let db = Self::empty().await;
        let mut client = db.client().await;
        migrations::apply(&mut client)
            .await
            .expect("apply migrations");
        db
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        raw_connect(&self.url).await
    }

    /// What the quarantine holds: (source, key, reason, payload), oldest first.
    pub async fn quarantined(&self) -> Vec<(String, String, String, Vec<u8>)> {
        self.client()
            .await
            .query_typed(
                "SELECT source, key, reason, payload FROM quarantine ORDER BY id",
                &[],
            )
            .await
            .expect("read the quarantine")
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
            .collect()
    }

    /// The production pool constructor, pointed at this database.
    pub fn pool(&self, size: usize) -> Pool {
        shared::db::connect(&DatabaseSettings {
            url: SecretString::from(self.url.clone()),
            pool_size: size,
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
        })
        .expect("build pool")
    }

    /// What a Lambda container holds, on this database: a pool of `size`, the Postgres
    /// queue, and `clock`. Agents under test are built from it with their own constructors.
    pub fn container(&self, size: usize, clock: shared::clock::Clock) -> shared::lambda::Container {
        let pool = self.pool(size);
        let transport = std::sync::Arc::new(shared::queue::postgres::PostgresTransport::new(
            pool.clone(),
        ));
        shared::lambda::Container::new(pool, transport, clock)
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_swapped() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "t_1"),
            "postgres://u@h:1/t_1"
        );
        assert_eq!(
            with_database("postgres://u@h:1/postgres?sslmode=require", "t_1"),
            "postgres://u@h:1/t_1?sslmode=require"
        );
        assert_eq!(
            with_database("postgres://u@h:1", "t_1"),
            "postgres://u@h:1/t_1"
        );
    }
}
