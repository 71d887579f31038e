//! Leases: mutual exclusion for long work (an ETL run) that survives a transaction pooler.
//!
//! A session advisory lock belongs to whichever backend the pooler lent at that moment, so
//! it leaks or is granted twice (`docs/architecture.md`, "Rules of the shared state"). A lease
//! is a row instead: taken with one atomic upsert that succeeds only when the previous lease
//! has expired, renewed while the work goes on, and carrying a fencing token that grows by one
//! on every new holder.
//!
//! The token is what makes a lost lease harmless. A holder that stalled past its expiry may
//! still believe it holds the lease; every write it makes under the lease first calls
//! [`Lease::fence`] inside the writing transaction, which locks the lease row and checks that
//! it is still the current, unexpired holder. The row lock means a new contender cannot take
//! over between that check and the commit.
//!
//! Time is always the database's clock, never the Lambda's.

use std::time::Duration;

use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use crate::db::{DbContext, DbError};
use crate::retry::{RetryClass, Retryable};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds the lease now (it expired or was taken over): stop working.
    #[error("lease {name} is no longer held by {holder} with token {token}")]
    Lost {
        name: String,
        holder: String,
        token: i64,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Retryable for LeaseError {
    fn retry_class(&self) -> RetryClass {
        match self {
            LeaseError::Lost { .. } => RetryClass::Permanent,
            LeaseError::Db(error) => error.retry_class(),
        }
    }
}

/// A lease this process holds (or held: see [`Lease::fence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub token: i64,
    pub ttl: Duration,
}

const ACQUIRE: &str = "
    INSERT INTO leases AS l (name, holder, fencing_token, expires_at, acquired_at)
    VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3), clock_timestamp())
    ON CONFLICT (name) DO UPDATE
       SET holder = EXCLUDED.holder,
           fencing_token = l.fencing_token + 1,
           expires_at = EXCLUDED.expires_at,
           acquired_at = EXCLUDED.acquired_at
     WHERE l.expires_at < clock_timestamp()
    RETURNING fencing_token";

/// Tries once to take the lease `name` for `ttl`. `None` means it is held by someone else.
pub async fn try_acquire(
    client: &impl GenericClient,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Lease>, DbError> {
    let row = client
        .query_typed_opt(
            ACQUIRE,
            &[
                (&name, Type::TEXT),
                (&holder, Type::TEXT),
                (&ttl.as_secs_f64(), Type::FLOAT8),
            ],
        )
        .await
        .context("acquire lease")?;
    Ok(row.map(|row| Lease {
        name: name.to_string(),
        holder: holder.to_string(),
        token: row.get(0),
        ttl,
    }))
}

impl Lease {
    fn lost(&self) -> LeaseError {
        LeaseError::Lost {
            name: self.name.clone(),
            holder: self.holder.clone(),
            token: self.token,
        }
    }

    /// Extends the lease by its ttl from now. Fails with [`LeaseError::Lost`] if it expired
    /// and was taken, or expired at all: a lease that lapsed is not silently revived.
    pub async fn renew(&self, client: &impl GenericClient) -> Result<(), LeaseError> {
        let updated = client
            .execute_typed(
                "UPDATE leases SET expires_at = clock_timestamp() + make_interval(secs => $4)
                  WHERE name = $1 AND holder = $2 AND fencing_token = $3 AND expires_at > clock_timestamp()",
                &[
                    (&self.name, Type::TEXT),
                    (&self.holder, Type::TEXT),
                    (&self.token, Type::INT8),
                    (&self.ttl.as_secs_f64(), Type::FLOAT8),
                ],
            )
            .await
            .context("renew lease")?;
        if updated == 1 {
            Ok(())
        } else {
            Err(self.lost())
        }
    }

    /// Gives the lease up. The row stays (expired) so the next token is still larger.
    pub async fn release(&self, client: &impl GenericClient) -> Result<(), DbError> {
        client
            .execute_typed(
                "UPDATE leases SET expires_at = '-infinity' WHERE name = $1 AND holder = $2 AND fencing_token = $3",
                &[(&self.name, Type::TEXT), (&self.holder, Type::TEXT), (&self.token, Type::INT8)],
            )
            .await
            .context("release lease")?;
        Ok(())
    }

    /// Call inside the transaction that writes under this lease, before committing. It locks
    /// the lease row (so nobody can take it over until the transaction ends) and fails with
    /// [`LeaseError::Lost`] unless this holder's token is still current and unexpired.
    pub async fn fence(&self, transaction: &impl GenericClient) -> Result<(), LeaseError> {
        let row = transaction
            .query_typed_opt(
                "SELECT 1 FROM leases
                  WHERE name = $1 AND holder = $2 AND fencing_token = $3 AND expires_at > clock_timestamp()
                  FOR SHARE",
                &[(&self.name, Type::TEXT), (&self.holder, Type::TEXT), (&self.token, Type::INT8)],
            )
            .await
            .context("check lease fence")?;
        row.map(|_| ()).ok_or_else(|| self.lost())
    }
}
