//! Postgres access that works against Supabase through its transaction-mode pooler.
//!
//! * [`pool`] builds the one small connection pool a process keeps (TLS when the URL says
//!   `sslmode=require`, verified against Supabase's bundled root CA).
//! * [`migrations`] applies `migrations/*.sql` and records them where the Supabase CLI does.
//! * [`DbError`] wraps driver and pool errors and says whether retrying can help.
//!
//! Every statement with parameters goes through `query_typed`/`execute_typed` (unnamed
//! statements) and parameterless SQL through `batch_execute`/`simple_query`: a named
//! statement may land on another backend behind the pooler (DESIGN.md §7).

pub mod migrations;
pub mod pool;

pub use deadpool_postgres::{Object as Connection, Pool};
pub use pool::connect;
pub use tokio_postgres::types::Type;

use crate::retry::{RetryClass, Retryable};

/// A database failure, with the operation that failed as context.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{context}: {}", describe_postgres(source))]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{context}: connection pool: {source}")]
    Pool {
        context: &'static str,
        #[source]
        source: deadpool_postgres::PoolError,
    },
    #[error("invalid database configuration: {0}")]
    Config(String),
}

/// The driver's own `Display` says only "db error"; the server's message and SQLSTATE are
/// what an operator needs.
fn describe_postgres(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// Attaches context to driver errors at each I/O boundary.
pub trait DbContext<T> {
    fn context(self, context: &'static str) -> Result<T, DbError>;
}

impl<T> DbContext<T> for Result<T, tokio_postgres::Error> {
    fn context(self, context: &'static str) -> Result<T, DbError> {
        self.map_err(|source| DbError::Postgres { context, source })
    }
}

impl<T> DbContext<T> for Result<T, deadpool_postgres::PoolError> {
    fn context(self, context: &'static str) -> Result<T, DbError> {
        self.map_err(|source| DbError::Pool { context, source })
    }
}

/// SQLSTATEs worth another try: the same statement can succeed once the competing
/// transaction is gone (serialization failure, deadlock) or a new connection is made.
const TRANSIENT_SQLSTATES: &[&str] = &["40001", "40P01", "57P01", "57P02", "57P03", "53300"];

/// Classifies a driver error: serialization failures, deadlocks and lost connections are
/// transient; everything else (constraint violations, syntax, permissions) is permanent.
pub fn classify_postgres(error: &tokio_postgres::Error) -> RetryClass {
    if let Some(code) = error.code() {
        let code = code.code();
        return if TRANSIENT_SQLSTATES.contains(&code) || code.starts_with("08") {
            RetryClass::transient()
        } else {
            RetryClass::Permanent
        };
    }
    // No SQLSTATE means the failure happened below SQL: a closed socket, a timeout, an I/O
    // error. A fresh connection may well succeed.
    if error.is_closed()
        || std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>())
    {
        RetryClass::transient()
    } else {
        RetryClass::Permanent
    }
}

impl Retryable for DbError {
    fn retry_class(&self) -> RetryClass {
        match self {
            DbError::Postgres { source, .. } => classify_postgres(source),
            DbError::Pool { source, .. } => match source {
                deadpool_postgres::PoolError::Backend(error) => classify_postgres(error),
                deadpool_postgres::PoolError::Timeout(_) => RetryClass::transient(),
                _ => RetryClass::Permanent,
            },
            DbError::Config(_) => RetryClass::Permanent,
        }
    }
}
