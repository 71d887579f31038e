//! Postgres access that works against Supabase through its transaction-mode pooler.
//!
//! * [`pool`] builds the one small connection pool a process keeps (TLS when the URL says
//!   `sslmode=require`, verified against Supabase's bundled root CA).
//! * [`migrations`] applies `migrations/*.sql` and records them where the Supabase CLI does.
//! * [`DbError`] wraps driver and pool errors and says whether retrying can help, and
//!   whether the server refused a value (a permanent fault of the input, not of ours).
//! * [`begin`] opens a transaction bounded by a [`Budget`]: how long a statement may run,
//!   how long it may wait for a lock, how long the transaction may sit idle. Without these
//!   one row lock held elsewhere makes every request that touches the row wait for ever.
//!
//! Every statement with parameters goes through `query_typed`/`execute_typed` (unnamed
//! statements) and parameterless SQL through `batch_execute`/`simple_query`: a named
//! statement may land on another backend behind the pooler (`docs/architecture.md`, "Rules of
//! the shared state").

pub mod migrations;
pub mod pool;

use std::time::Duration;

pub use deadpool_postgres::{Object as Connection, Pool, Transaction};
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
/// transaction is gone (serialization failure, deadlock, a lock or statement timeout of a
/// [`Budget`]) or a new connection is made.
const TRANSIENT_SQLSTATES: &[&str] = &[
    "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300", "25P03",
];

/// SQLSTATEs that mean "this value cannot be stored": a number out of range, `\u0000` in
/// text or JSONB, an invalid byte sequence, a violated NOT NULL or CHECK, a value too long
/// for its index (54000). The same input fails the same way every time, so it is refused,
/// never retried.
fn is_refused_value_code(code: &str) -> bool {
    code.starts_with("22") || matches!(code, "23502" | "23514" | "54000")
}

/// How long one transaction may wait, set with `SET LOCAL` so it holds behind a transaction
/// pooler and ends with the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `statement_timeout`: the longest one statement may run.
    pub statement: Duration,
    /// `lock_timeout`: the longest one statement may wait for a lock.
    pub lock: Duration,
    /// `idle_in_transaction_session_timeout`: a client that opened the transaction and went
    /// away (a frozen Lambda) releases its locks after this.
    pub idle: Duration,
}

impl Budget {
    /// For work a caller waits on (a webhook, a capture request): short enough that a held
    /// lock turns into a 503 with `Retry-After` well inside API Gateway's 29 s.
    pub const REQUEST: Budget = Budget {
        statement: Duration::from_secs(5),
        lock: Duration::from_secs(2),
        idle: Duration::from_secs(10),
    };
    /// For queue messages and schedules, whose set-based statements may take longer.
    pub const BACKGROUND: Budget = Budget {
        statement: Duration::from_secs(60),
        lock: Duration::from_secs(10),
        idle: Duration::from_secs(30),
    };

    /// The `SET LOCAL` statements that impose this budget.
    pub fn sql(&self) -> String {
        format!(
            "SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
             SET LOCAL idle_in_transaction_session_timeout = {}",
            self.statement.as_millis(),
            self.lock.as_millis(),
            self.idle.as_millis()
        )
    }
}

/// Opens a transaction on `client` bounded by `budget`.
pub async fn begin(client: &mut Connection, budget: Budget) -> Result<Transaction<'_>, DbError> {
    let transaction = client.transaction().await.context("begin")?;
    limit(&transaction, budget).await?;
    Ok(transaction)
}

/// Imposes `budget` on an open transaction. Callers that pipeline their first statements
/// send this first in the same batch, saving the round trip [`begin`] spends on it.
pub async fn limit(
    transaction: &tokio_postgres::Transaction<'_>,
    budget: Budget,
) -> Result<(), DbError> {
    transaction
        .batch_execute(&budget.sql())
        .await
        .context("set the transaction's time limits")
}

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

impl DbError {
    /// Whether the server refused a value this input carries (see [`is_refused_value_code`]):
    /// a permanent fault of the input, answered 4xx or quarantined, never retried.
    pub fn is_refused_value(&self) -> bool {
        self.driver_error()
            .and_then(tokio_postgres::Error::code)
            .is_some_and(|code| is_refused_value_code(code.code()))
    }

    /// The server's message for a refused value, for the caller to read.
    pub fn refused_reason(&self) -> Option<String> {
        if !self.is_refused_value() {
            return None;
        }
        self.driver_error()
            .and_then(tokio_postgres::Error::as_db_error)
            .map(|db| db.message().to_string())
    }

    fn driver_error(&self) -> Option<&tokio_postgres::Error> {
        match self {
            DbError::Postgres { source, .. } => Some(source),
            DbError::Pool {
                source: deadpool_postgres::PoolError::Backend(source),
                ..
            } => Some(source),
            DbError::Pool { .. } | DbError::Config(_) => None,
        }
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
